"""Retention's settings and the streams a daemon trims."""

from __future__ import annotations

from typing import Any

import pytest

from printery.daemon.retention import Target, targets
from printery.errors import ConfigError
from printery.redis.keys import Keys
from printery.settings import load_settings
from printery.worker import WorkerDeps
from tests.support.workers import EchoWorker

pytestmark = pytest.mark.timeout(10)


def test_retention_defaults_are_the_documented_ones() -> None:
    """A day of acknowledged entries, a pass a minute, thirty days of dead letters."""
    settings = load_settings({}, {})
    expected = (86400.0, 60.0, 2_592_000.0)
    assert expected == (
        settings.stream_retention,
        settings.stream_trim_interval,
        settings.dead_letter_retention,
    )


@pytest.mark.parametrize(
    ("var", "raw", "attribute", "expected"),
    [
        ("STREAM_RETENTION", "300", "stream_retention", 300.0),
        ("STREAM_RETENTION", "1.5", "stream_retention", 1.5),
        ("STREAM_RETENTION", "none", "stream_retention", None),
        ("STREAM_RETENTION", " None ", "stream_retention", None),
        ("STREAM_TRIM_INTERVAL", "0.5", "stream_trim_interval", 0.5),
        ("DEAD_LETTER_RETENTION", "604800", "dead_letter_retention", 604800.0),
        ("DEAD_LETTER_RETENTION", "NONE", "dead_letter_retention", None),
    ],
)
def test_good_retention_value_is_parsed(var: str, raw: str, attribute: str, expected: Any) -> None:
    """Seconds (fractions too), or ``none`` in any case to keep every entry."""
    assert expected == getattr(load_settings({}, {var: raw}), attribute)


@pytest.mark.parametrize(
    ("var", "raw", "fragment"),
    [
        ("STREAM_RETENTION", "0", "greater than 0 (got '0')"),
        ("STREAM_RETENTION", "-5", "greater than 0"),
        ("STREAM_RETENTION", "forever", "must be a number of seconds above 0, or none"),
        ("STREAM_RETENTION", "nan", "must be a number of seconds above 0, or none"),
        ("STREAM_RETENTION", "inf", "must be a number of seconds above 0, or none"),
        ("STREAM_RETENTION", "", "must be a number of seconds above 0, or none"),
        ("STREAM_RETENTION", "1e12", "less than or equal to 315360000"),
        ("STREAM_TRIM_INTERVAL", "0", "greater than 0"),
        ("STREAM_TRIM_INTERVAL", "none", "valid number"),
        ("STREAM_TRIM_INTERVAL", "86401", "less than or equal to 86400"),
        ("DEAD_LETTER_RETENTION", "-1", "greater than 0"),
        ("DEAD_LETTER_RETENTION", "month", "must be a number of seconds above 0, or none"),
    ],
)
def test_bad_retention_value_is_named(var: str, raw: str, fragment: str) -> None:
    """A bad value is one ConfigError naming the variable and what it allows."""
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {var: raw})
    assert var == caught.value.setting
    assert fragment in str(caught.value)


def test_targets_are_every_owned_stream_with_its_retention() -> None:
    """Stages by acknowledgement, the audit stream and dead letters by age, each once."""
    keys = Keys("p")
    settings = load_settings({}, {"STREAM_RETENTION": "300", "DEAD_LETTER_RETENTION": "900"})
    stages = [keys.started, keys.validated, keys.dependencies_satisfied, keys.notifications]
    expected = [
        *(Target(s, 300.0) for s in stages),
        Target(keys.delivered, 300.0, by_age=True),
        *(Target(Keys.dead(s), 900.0, by_age=True) for s in stages),
    ]
    assert expected == targets(settings, keys)


def test_a_workers_input_and_declared_outputs_are_trimmed_too() -> None:
    """A worker of one's own adds its stream, its outputs and their dead letters."""
    keys = Keys("p")
    settings = load_settings({}, {"STREAM_PREFIX": "p"})
    echo = EchoWorker(WorkerDeps(settings, None, keys, "c"))  # type: ignore[arg-type]  # not used
    found = {t.stream: t for t in targets(settings, keys, [echo, echo])}
    assert Target("p:test:in", 86400.0) == found["p:test:in"]
    assert Target("p:test:out", 86400.0) == found["p:test:out"]
    assert Target("p:test:in:dead", 2_592_000.0, by_age=True) == found["p:test:in:dead"]
    assert 13 == len(found)


def test_a_stream_some_worker_reads_is_never_trimmed_by_age_alone() -> None:
    """A worker reading the audit stream makes it a stream trimmed by acknowledgement."""
    keys = Keys("p")
    settings = load_settings({}, {"STREAM_PREFIX": "p"})

    class AuditReader(EchoWorker):
        name = "audit-reader"

        @property
        def stream(self) -> str:
            return keys.delivered

    reader = AuditReader(WorkerDeps(settings, None, keys, "c"))  # type: ignore[arg-type]  # not used
    found = {t.stream: t for t in targets(settings, keys, [reader])}
    assert Target(keys.delivered, 86400.0, by_age=False) == found[keys.delivered]


def test_none_keeps_those_streams_out_of_every_pass() -> None:
    """STREAM_RETENTION=none leaves only dead letters; both none leave nothing."""
    keys = Keys("p")
    only_dead = targets(load_settings({}, {"STREAM_RETENTION": "none"}), keys)
    assert all(t.stream.endswith(":dead") for t in only_dead)
    assert 4 == len(only_dead)
    both = load_settings({}, {"STREAM_RETENTION": "none", "DEAD_LETTER_RETENTION": "none"})
    assert [] == targets(both, keys)
