"""``cmd/printery-workers``, the launcher of a checkout, with and without the dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

LAUNCHER = Path(__file__).resolve().parents[2] / "cmd" / "printery-workers"


def launch(*python_flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *python_flags, str(LAUNCHER), "--version"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_a_python_without_the_dependencies_gets_one_line_and_exit_2() -> None:
    """Without site-packages (-S) the launcher names the missing module and what to run."""
    done = launch("-S", "-I")
    lines = done.stderr.splitlines()
    assert (2, "", 1) == (done.returncode, done.stdout, len(lines)), done.stderr
    assert lines[0].startswith("printery-workers: '")
    assert "is not installed for" in lines[0]
    assert "run: python3 -m venv .venv && .venv/bin/pip install -e ." in lines[0]


def test_a_python_with_the_dependencies_runs_the_daemon() -> None:
    """With the dependencies installed the launcher is the daemon: --version answers, exit 0."""
    done = launch()
    assert (0, "") == (done.returncode, done.stderr)
    assert done.stdout.startswith("printery ")
