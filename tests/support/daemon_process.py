"""A real ``printery-workers`` process for end-to-end tests: start, probe, signal, read logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "cmd" / "printery-workers"


class DaemonProcess:
    """One daemon with JSON logs in a file; endpoints on a free loopback port."""

    def __init__(
        self, log_dir: Path, env: dict[str, str], args: Sequence[str] = (), wrap: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"daemon-{self.port}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            "PYTHONPATH": str(ROOT),
            "ENVIRONMENT": "production",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            **env,
        }
        self.command = [*wrap, sys.executable, str(LAUNCHER), *args]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=log)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def get(self, path: str) -> tuple[int, str]:
        """Status and body of GET ``path``; (0, reason) when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def wait_until(self, what: str, predicate: Callable[[], bool], timeout: float = 15) -> None:
        """Poll an outside process's state (nothing in this process to await), with a deadline."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} within {timeout} s; log:\n{self.log_text()[-3000:]}")
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"daemon exited {self.process.returncode} before {what}; "
                    f"log:\n{self.log_text()[-3000:]}"
                )
            time.sleep(0.02)

    def wait_ready(self, timeout: float = 15) -> None:
        self.wait_until("/ready turned 200", lambda: self.get("/ready")[0] == 200, timeout)

    def send(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines, parsed; lines that are not JSON are skipped."""
        found = []
        for line in self.log_text().splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return found

    def event_names(self) -> list[str]:
        return [str(e.get("event")) for e in self.events()]
