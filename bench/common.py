"""Shared pieces of the benchmarks: a private redis-server, sample entries, timing."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

# The tests' redis-server, restartable and stallable; the benchmarks pass their own binary.
from tests.support.redis_server import RedisServer, free_port

__all__ = [
    "SERVER_PIDS",
    "RedisServer",
    "deployment_fields",
    "free_port",
    "machine",
    "process_cpu_s",
    "redis_server",
    "round_trip_cpu",
    "stop_processes",
]

SERVER_PIDS: dict[str, int] = {}  # URL -> pid of the redis-server behind it, while it runs


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server of the benchmark's own on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: redis-server is not installed (apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as data:
        server = RedisServer(Path(data), binary=binary)
        server.start()
        try:
            assert server.process is not None
            SERVER_PIDS[server.url] = server.process.pid
            yield server.url
        finally:
            server.stop()


def deployment_fields(n: int, health_check: dict[str, Any] | None = None) -> dict[str, str]:
    """A ``deployment.started`` CloudEvent of the design's shape (~450 bytes).

    ``health_check`` replaces the default one (a cluster URL nobody polls here).
    """
    data = {
        "deployment_id": f"dep-{n}",
        "service": "billing-api",
        "version": "1.4.2",
        "environment": "production",
        "requested_by": "ci@example.com",
        "dependencies": [{"service": "auth-api", "version": "^2.1.0"}],
        "health_check": health_check
        or {
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


def process_cpu_s() -> float:
    """CPU seconds this process has used (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stop_processes(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process, then wait for each (killed if it takes over 40 s)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def round_trip_cpu(url: str, count: int = 200) -> tuple[float, float]:
    """CPU µs of one redis-py PING, back to back and after 20 ms idle: this machine's wake-up cost.

    A process that sleeps between messages pays the second figure for every
    round trip; one kept busy pays the first. Low-rate CPU per message is
    mostly this difference, whatever runs the loop.
    """
    client = aioredis.Redis.from_url(url)
    await client.ping()
    began = process_cpu_s()
    for _ in range(count):
        await client.ping()
    hot = (process_cpu_s() - began) / count * 1e6
    spent = 0.0
    for _ in range(count // 4):
        time.sleep(0.02)  # idle without the loop: only the round trip is counted below
        before = process_cpu_s()
        await client.ping()
        spent += process_cpu_s() - before
    await client.aclose()
    return hot, spent / (count // 4) * 1e6
