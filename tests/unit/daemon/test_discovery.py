"""Workers of one's own: found through the printery.workers entry-point group or a path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from printery.daemon.discovery import load_factory
from printery.errors import ConfigError
from tests.support.workers import CrashingWorker, EchoWorker

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def installed_entry_point(tmp_path: Path) -> Iterator[None]:
    """A distribution on sys.path that registers ``crasher`` in the printery.workers group."""
    dist = tmp_path / "printery_testworkers-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: printery-testworkers\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[printery.workers]\ncrasher = tests.support.workers:CrashingWorker\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield
    sys.path.remove(str(tmp_path))


def test_an_entry_point_names_a_worker(installed_entry_point: None) -> None:
    """A worker registered by another package's entry point is found by its name."""
    assert load_factory("crasher") is CrashingWorker


def test_a_module_attribute_path_names_a_worker() -> None:
    """--worker=module:attribute loads that factory."""
    assert load_factory("tests.support.workers:EchoWorker") is EchoWorker


@pytest.mark.parametrize("name", ["nope", "tests.support.workers:Nope", "no.such.module:X"])
def test_an_unknown_worker_is_a_config_error(name: str) -> None:
    """A name nobody provides is a one-line ConfigError on WORKER_MODE."""
    with pytest.raises(ConfigError) as caught:
        load_factory(name)
    assert "WORKER_MODE" == caught.value.setting
