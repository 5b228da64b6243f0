"""LOG_FORMAT in a real daemon: JSON into a pipe, console on a terminal, as asked in between."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.daemon import ROOT, Daemon

pytestmark = pytest.mark.timeout(40)


def _is_json(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _started_line(daemon: Daemon) -> str:
    daemon.wait_until(
        "logged printery.daemon_started", lambda: "printery.daemon_started" in daemon.stderr()
    )
    return next(line for line in daemon.stderr().splitlines() if "daemon_started" in line)


@pytest.mark.parametrize(
    ("env", "as_json"),
    [
        ({"ENVIRONMENT": "staging"}, True),  # auto, not a terminal: JSON, whatever ENVIRONMENT says
        ({"ENVIRONMENT": "production", "LOG_FORMAT": "console"}, False),
        ({"ENVIRONMENT": "development", "LOG_FORMAT": "json"}, True),
    ],
)
def test_log_format_into_a_file(
    tmp_path: Path, echo_env: dict[str, str], env: dict[str, str], as_json: bool
) -> None:
    """With stderr a file, auto means JSON even in staging; an explicit LOG_FORMAT wins."""
    with Daemon(tmp_path, {**echo_env, **env}) as daemon:
        line = _started_line(daemon)
        daemon.send(signal.SIGTERM)
        assert 0 == daemon.wait_exit(timeout=20)
    assert as_json == _is_json(line), line


def test_log_format_auto_on_a_terminal_is_console(tmp_path: Path, echo_env: dict[str, str]) -> None:
    """On a terminal (a pty), the default auto renders console lines, not JSON."""
    daemon = Daemon(tmp_path, {**echo_env, "ENVIRONMENT": "staging"})
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        daemon.command, env=daemon.env, stdout=terminal, stderr=terminal, cwd=ROOT
    )
    os.close(terminal)
    text = b""
    signalled = False
    try:
        deadline = time.monotonic() + 20
        # Read until the daemon has gone: a full terminal buffer would block its writes.
        while process.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    text += os.read(controller, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
            if not signalled and b"printery.daemon_started" in text:
                process.send_signal(signal.SIGTERM)
                signalled = True
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        os.close(controller)
    lines = [ln for ln in text.decode(errors="replace").splitlines() if "daemon_started" in ln]
    assert (0, 1, False) == (code, len(lines), _is_json(lines[0] if lines else "{}")), text
