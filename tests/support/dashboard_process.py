"""A real `printery dashboard` process on a free loopback port, for the slower tiers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.redis_server import free_port

__all__ = ["DashboardProcess"]

_ROOT = Path(__file__).resolve().parents[2]
_POLL_S = 0.05


class DashboardProcess:
    """``printery dashboard`` with ``env`` over a clean environment; killed on the way out."""

    def __init__(self, log_dir: Path, env: Mapping[str, str]) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = log_dir / f"dashboard-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DASHBOARD_", "REDIS_"))}
        self.env = {**base, "PYTHONPATH": str(_ROOT), "DASHBOARD_PORT": str(self.port), **env}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from printery.cli.main import main; main()", "dashboard"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=_ROOT,
            )
        self.wait_until_serving()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def wait_until_serving(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.get("/api/status")[0] != 200:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"dashboard exited {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"dashboard not serving within {timeout} s:\n{self.log()}")
            time.sleep(_POLL_S)

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, and the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)
