"""A real ``printery-workers`` process: start it, probe its endpoints, signal it, read its log.

The daemon runs from the checkout (``cmd/printery-workers``) under this
interpreter, with the repository root on ``PYTHONPATH`` so test workers
(``tests.support.workers:EchoWorker``) can be named in ``WORKER_MODE``. It logs
JSON lines on stderr (``ENVIRONMENT=production``), kept in a file per process.

Everything here waits on another process, so waiting is polling: a short
interval and an overall deadline, never a bare sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from prometheus_client.parser import text_string_to_metric_families

from printery.settings import Settings
from tests.support.redis_server import free_port

__all__ = [
    "LAUNCHER",
    "ROOT",
    "Daemon",
    "children_of",
    "metric_value",
    "running_daemons",
    "stop_cleanly",
]

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "cmd" / "printery-workers"

_POLL_S = 0.02
# Settings the test runner's own environment must not leak into a daemon under test.
_SETTINGS = {name.upper() for name in Settings.model_fields}


def _clean_environ() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in _SETTINGS
        and key != "PYTHONPATH"
        and not key.upper().endswith(("_CONCURRENCY", "_HANG_TIMEOUT"))
    }


class Daemon:
    """One ``printery-workers`` process with its endpoints on a free loopback port.

    ``env`` is laid over a clean environment and these defaults: JSON logs,
    ``HTTP_HOST=127.0.0.1``, a free ``HTTP_PORT``, a unique ``CONSUMER_NAME``.
    ``wrap`` prefixes the command (``unshare … --``); ``pythonpath`` adds
    directories after the repository root. Use it as a context manager: the
    process is killed on the way out if a test left it running.
    """

    def __init__(
        self,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        *,
        wrap: Sequence[str] = (),
        pythonpath: Sequence[Path] = (),
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        name = f"e2e-{uuid.uuid4().hex[:8]}"
        self.stderr_path = log_dir / f"{name}.stderr"
        self.stdout_path = log_dir / f"{name}.stdout"
        self.env = {
            **_clean_environ(),
            "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT, *pythonpath)),
            "ENVIRONMENT": "production",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            "CONSUMER_NAME": name,
            **(env or {}),
        }
        self.command = [*wrap, sys.executable, str(LAUNCHER), *args]
        self.process: subprocess.Popen[bytes] | None = None
        self.signalled_at: float | None = None

    # -- the process ----------------------------------------------------------------

    def start(self) -> Self:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=err, cwd=ROOT
            )
        return self

    def __enter__(self) -> Self:
        return self if self.process is not None else self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send(self, sig: signal.Signals, pid: int | None = None) -> None:
        """Send ``sig`` to the daemon (or to ``pid``, its stand-in); remembers when."""
        os.kill(self.pid if pid is None else pid, sig)
        self.signalled_at = time.monotonic()

    def wait_exit(self, timeout: float) -> int:
        """The exit status, within ``timeout`` seconds; fails with the log tail otherwise."""
        assert self.process is not None, "not started"
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running after {timeout} s; stderr:\n{self.tail()}"
            ) from None

    def seconds_since_signal(self) -> float:
        assert self.signalled_at is not None, "no signal sent"
        return time.monotonic() - self.signalled_at

    def kill(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=10)

    # -- waiting --------------------------------------------------------------------

    def wait_until(
        self,
        what: str,
        predicate: Callable[[], bool],
        timeout: float = 15,
    ) -> None:
        """Poll ``predicate`` until it holds; fails on the deadline or if the daemon exits."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"daemon exited {self.process.returncode} before {what}; stderr:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"not {what} within {timeout} s; stderr:\n{self.tail()}")
            time.sleep(_POLL_S)

    def wait_status(self, path: str, status: int, timeout: float = 15) -> None:
        self.wait_until(f"GET {path} → {status}", lambda: self.get(path)[0] == status, timeout)

    def wait_ready(self, timeout: float = 15) -> None:
        self.wait_status("/ready", 200, timeout)

    def wait_event(self, event: str, timeout: float = 15) -> dict[str, Any]:
        """The first log event named ``event``, once it was written."""
        self.wait_until(f"logged {event}", lambda: bool(self.events(event)), timeout)
        return self.events(event)[0]

    # -- endpoints ------------------------------------------------------------------

    def get(self, path: str) -> tuple[int, str]:
        """Status and body of ``GET path``; ``(0, reason)`` while nothing answers."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def get_json(self, path: str) -> tuple[int, dict[str, Any]]:
        status, body = self.get(path)
        return status, json.loads(body) if status else {}

    def worker_states(self) -> dict[str, str]:
        """Each worker's state, from /status; empty while nothing answers."""
        _, body = self.get_json("/status")
        return {name: str(w["state"]) for name, w in body.get("workers", {}).items()}

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200, (status, body)
        return body

    # -- the log --------------------------------------------------------------------

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def tail(self, chars: int = 3000) -> str:
        return self.stderr()[-chars:]

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines on stderr (of one event name, if given), in order."""
        found = []
        for line in self.stderr().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line still being written, or not a log record
            if isinstance(record, dict) and (name is None or record.get("event") == name):
                found.append(record)
        return found

    def event_names(self) -> list[str]:
        return [str(e.get("event")) for e in self.events()]


def metric_value(text: str, sample: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, by name and exact labels; None if absent."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    return None


def children_of(pid: int) -> Iterator[int]:
    """The pids of ``pid``'s children, from /proc."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with_children = task / "children"
        if with_children.exists():
            yield from (int(child) for child in with_children.read_text().split())


@contextlib.contextmanager
def running_daemons(tmp_path: Path, env: dict[str, str], count: int) -> Iterator[list[Daemon]]:
    """``count`` daemons of one environment, each ready; stopped (SIGKILL if need be) after."""
    with contextlib.ExitStack() as stack:
        daemons = [stack.enter_context(Daemon(tmp_path, env)) for _ in range(count)]
        for daemon in daemons:
            daemon.wait_ready(timeout=30)
        yield daemons


def stop_cleanly(daemons: Sequence[Daemon]) -> None:
    """SIGTERM each daemon; every one must drain and exit 0."""
    for daemon in daemons:
        daemon.send(signal.SIGTERM)
    codes = [daemon.wait_exit(timeout=15) for daemon in daemons]
    assert [0] * len(daemons) == codes, [d.tail() for d in daemons]
