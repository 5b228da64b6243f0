"""Shared pieces of the benchmarks: a private redis-server, sample entries, timing."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["SERVER_PIDS", "deployment_fields", "machine", "redis_server"]

SERVER_PIDS: dict[str, int] = {}  # URL -> pid of the redis-server behind it, while it runs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server of the benchmark's own on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                data,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.02)
            url = f"redis://127.0.0.1:{port}/0"
            SERVER_PIDS[url] = proc.pid
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def deployment_fields(n: int) -> dict[str, str]:
    """A ``deployment.started`` CloudEvent of the design's shape (~450 bytes)."""
    data = {
        "deployment_id": f"dep-{n}",
        "service": "billing-api",
        "version": "1.4.2",
        "environment": "production",
        "requested_by": "ci@example.com",
        "dependencies": [{"service": "auth-api", "version": "^2.1.0"}],
        "health_check": {
            "url": "http://billing-api.prod.svc:8080/healthz",
            "expect_status": 200,
            "timeout_s": 2,
            "interval_s": 5,
            "healthy_threshold": 2,
            "deadline_s": 300,
        },
    }
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "bench",
        "type": "deployment.started",
        "time": "2026-11-22T00:00:00.000Z",
        "subject": f"dep-{n}",
        "datacontenttype": "application/json",
        "data": json.dumps(data, separators=(",", ":")),
    }


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
