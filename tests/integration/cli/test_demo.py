"""``printery demo`` as a user runs it: a subprocess that must end 0 with all four outcomes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.redis_server import redis_server_binary

pytestmark = pytest.mark.timeout(60)

OUTCOMES = (
    "outcome: deployment.healthy",
    "outcome: deployment.rejected",
    "outcome: deployment.blocked",
    "outcome: deployment.unhealthy",
)


def run_demo(path: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from printery.cli.main import main; main()", "demo"],
        capture_output=True,
        text=True,
        timeout=45,
        env={**os.environ, "PATH": path},
        check=False,
    )
    return done, time.monotonic() - started


def test_demo_on_a_throwaway_redis_server() -> None:
    """With redis-server on PATH the demo runs its own and shows all four outcomes within 15 s."""
    binary = redis_server_binary()
    done, elapsed = run_demo(os.pathsep.join([str(Path(binary).parent), os.environ["PATH"]]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "a throwaway redis-server on 127.0.0.1:" in done.stdout
    for outcome in OUTCOMES:
        assert outcome in done.stdout
    assert "4 of 4 outcomes as expected" in done.stdout
    assert elapsed < 15


def test_demo_without_redis_server_uses_fakeredis() -> None:
    """With no redis-server installed the demo runs on fakeredis, just as promptly."""
    path = str(Path(sys.executable).parent)
    if shutil.which("redis-server", path=path):
        pytest.skip("redis-server sits next to this Python: it cannot be hidden from the demo")
    done, elapsed = run_demo(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Redis is fakeredis, in-process" in done.stdout
    for outcome in OUTCOMES:
        assert outcome in done.stdout
    assert elapsed < 15
