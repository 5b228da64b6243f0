"""Secrets never leak: password and webhook-secret canaries across every output."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.e2e.daemon import ROOT, Daemon
from tests.support.redis_server import RedisServer

PASSWORD = "canary-pw-5b1e9"
WEBHOOK_SECRET = "canary-hook-7c3d2"


@pytest.mark.timeout(60)
def test_secret_canaries_appear_in_no_log_endpoint_or_config(tmp_path: Path, prefix: str) -> None:
    """Debug logs, a handler traceback, /status, /metrics, /health, /ready, printery config."""
    server = RedisServer(tmp_path / "redis", extra=("--requirepass", PASSWORD))
    server.start()
    url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
    env = {
        "REDIS_URL": url,
        "NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "LOG_LEVEL": "debug",
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": "tests.support.workers:EchoWorker",
        "MAX_DELIVERIES": "1",
    }
    daemon = Daemon(tmp_path, env).start()
    try:
        daemon.wait_ready()
        client = redis.Redis.from_url(url)
        client.xadd(f"{prefix}:test:in", {"fail": "raise"})  # a traceback in the logs
        client.xadd(f"{prefix}:test:in", {"n": "1"})
        daemon.wait_until("one output", lambda: client.xlen(f"{prefix}:test:out") == 1)
        pages = [daemon.get(path)[1] for path in ("/status", "/metrics", "/health", "/ready")]
        daemon.send(signal.SIGTERM)
        assert daemon.wait_exit(timeout=20) == 0
        config = subprocess.run(
            [sys.executable, "-c", "from printery.cli.main import main; main()", "config"],
            env={**daemon.env},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        daemon.kill()
        server.stop()
    outputs = {
        "log": daemon.stderr() + daemon.stdout(),
        "config": config.stdout + config.stderr,
        **dict(zip(("/status", "/metrics", "/health", "/ready"), pages, strict=True)),
    }
    assert "handler raised ValueError" in outputs["log"]
    assert f"redis://:***@127.0.0.1:{server.port}/0" in outputs["config"]
    leaks = {name for name, text in outputs.items() if PASSWORD in text or WEBHOOK_SECRET in text}
    assert leaks == set()
