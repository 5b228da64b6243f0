"""Retention's events: the trim loop outlives Redis errors; metrics and logs follow its events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import structlog
from prometheus_client import generate_latest

from printery.daemon.logs import configure_logging, log_sink
from printery.daemon.metrics import Metrics
from printery.daemon.retention import Target, Trimmer
from printery.errors import RedisError, RedisUnavailable
from printery.lifecycle import LifecycleEvent, StreamTrimmed, TrimFailed
from printery.redis.adapter import StreamAdapter, Trim
from printery.redis.keys import Keys
from printery.redis.replies import GroupStats
from tests.e2e.daemon import metric_value

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


class Stop(Exception):
    """Ends the trimmer's loop from its injected sleep."""


class Flaky(StreamAdapter):
    """fakeredis, with each stream's trims failing as scripted: an error, or None to trim."""

    def __init__(self, script: dict[str, list[Exception | None]]) -> None:
        super().__init__(fakeredis.FakeAsyncRedis())
        self.script = script

    async def trim_acknowledged(self, stream: str, *args: Any, **kwargs: Any) -> Trim:
        failure = self.script.get(stream, []).pop(0) if self.script.get(stream) else None
        if failure is not None:
            raise failure
        return await super().trim_acknowledged(stream, *args, **kwargs)


async def test_an_outage_ends_the_pass_and_the_next_interval_trims() -> None:
    """RedisUnavailable: one TrimFailed, the pass ends, the loop sleeps and trims next time."""
    events: list[LifecycleEvent] = []
    adapter = Flaky({"a": [RedisUnavailable("Connection refused")]})
    await adapter.client.xadd("a", {"n": "1"}, id="1-0")
    await adapter.client.xadd("b", {"n": "1"}, id="1-0")
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise Stop

    streams = [Target("a", 60, by_age=True), Target("b", 60, by_age=True)]
    trimmer = Trimmer(adapter, Keys("p"), streams, interval=7, emit=events.append, sleep=sleep)
    with pytest.raises(Stop):
        await trimmer.run()
    assert [7, 7] == sleeps
    expected = [
        TrimFailed("a", "Connection refused"),
        StreamTrimmed("a", 1, 0),
        StreamTrimmed("b", 1, 0),
    ]
    assert expected == events
    assert [] == await adapter.client.keys("p:trim-lock:*")


async def test_an_error_on_one_stream_does_not_stop_the_others() -> None:
    """A refused command on one stream is reported; the pass goes on to the next."""
    events: list[LifecycleEvent] = []
    adapter = Flaky({"a": [RedisError("NOPERM no permissions to run 'xtrim'")]})
    await adapter.client.xadd("b", {"n": "1"}, id="1-0")
    streams = [Target("a", 60, by_age=True), Target("b", 60, by_age=True)]
    trimmer = Trimmer(adapter, Keys("p"), streams, interval=7, emit=events.append)
    assert 1 == await trimmer.trim_once()
    expected = [TrimFailed("a", "NOPERM no permissions to run 'xtrim'"), StreamTrimmed("b", 1, 0)]
    assert expected == events


def test_metrics_count_trimmed_entries_and_show_every_streams_length() -> None:
    """printery_stream_trimmed_total adds up; a consumed stream's length is read fresh."""
    stats = [GroupStats("p:in", "g", 42, 0, 0, 1)]
    metrics = Metrics(dict, lambda: stats)
    for event in (StreamTrimmed("p:in", 5, 7), StreamTrimmed("p:audit", 3, 9)):
        metrics.sink(event)
    metrics.sink(StreamTrimmed("p:audit", 0, 8))
    text = generate_latest(metrics.registry).decode()
    assert 5 == metric_value(text, "printery_stream_trimmed_total", stream="p:in")
    assert 3 == metric_value(text, "printery_stream_trimmed_total", stream="p:audit")
    assert 42 == metric_value(text, "printery_stream_length", stream="p:in")
    assert 8 == metric_value(text, "printery_stream_length", stream="p:audit")


def test_a_failed_trim_is_a_warning_and_a_trim_a_debug_line() -> None:
    """trim_failed at warning with stream and error; stream_trimmed at debug, only if any went."""
    configure_logging("debug", "production")
    sink = log_sink("c1")
    with structlog.testing.capture_logs() as logs:
        sink(StreamTrimmed("p:a", 0, 3))
        sink(StreamTrimmed("p:a", 2, 1))
        sink(TrimFailed("p:a", "Connection refused"))
    expected = [
        ("printery.stream_trimmed", "debug", "p:a"),
        ("printery.trim_failed", "warning", "p:a"),
    ]
    assert expected == [(e["event"], e["log_level"], e["stream"]) for e in logs]
