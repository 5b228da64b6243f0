"""Real daemons under faults: SIGKILL mid-handler, a taken consumer name, a wrong password."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import redis

from tests.support.daemon_process import DaemonProcess
from tests.support.redis_server import RedisServer

ECHO = "tests.support.workers:EchoWorker"


@pytest.mark.timeout(60)
def test_killed_daemons_message_is_claimed_by_a_survivor(
    tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    """SIGKILL mid-handler leaves the message pending; a live daemon claims and handles it once."""
    client = redis.Redis.from_url(redis_server.url)
    env = {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": ECHO,
        "BLOCK_MS": "200",
        "CLAIM_IDLE_MS": "1000",
        "CLAIM_INTERVAL_MS": "200",
    }
    doomed = DaemonProcess(tmp_path, {**env, "CONSUMER_NAME": "doomed"}).start()
    survivor = DaemonProcess(tmp_path, {**env, "CONSUMER_NAME": "survivor"})
    try:
        doomed.wait_ready()
        entry_id = client.xadd(f"{prefix}:test:in", {"sleep": "0.5"})
        doomed.wait_until(
            "the doomed daemon took it",
            lambda: client.xpending(f"{prefix}:test:in", "echo")["pending"] == 1,
        )
        doomed.send(signal.SIGKILL)
        assert doomed.wait_exit(timeout=10) == -signal.SIGKILL
        survivor.start()
        survivor.wait_until(
            "the survivor handled it", lambda: client.xlen(f"{prefix}:test:out") == 1, timeout=20
        )
        survivor.send(signal.SIGTERM)
        assert survivor.wait_exit(timeout=20) == 0
    finally:
        doomed.stop()
        survivor.stop()
    [(_, fields)] = client.xrange(f"{prefix}:test:out")
    assert (fields[b"in_id"], fields[b"consumer"], fields[b"deliveries"]) == (
        entry_id,
        b"survivor",
        b"2",
    )
    assert client.xpending(f"{prefix}:test:in", "echo")["pending"] == 0


@pytest.mark.timeout(60)
def test_a_second_daemon_with_the_same_consumer_name_is_refused(
    tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    """Two processes never share one consumer: the second exits 2 with one line."""
    env = {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": ECHO,
        "CONSUMER_NAME": "twin",
        "HEARTBEAT_INTERVAL": "0.5",
    }
    first = DaemonProcess(tmp_path, env).start()
    second = DaemonProcess(tmp_path, env)
    try:
        first.wait_ready()
        second.start()
        code = second.wait_exit(timeout=20)
        assert first.get("/ready")[0] == 200  # the first keeps running
    finally:
        second.stop()
        first.send(signal.SIGTERM)
        first.wait_exit(timeout=20)
        first.stop()
    lines = second.log_text().strip().splitlines()
    assert code == 2
    assert len(lines) == 1
    assert "CONSUMER_NAME 'twin' is in use" in lines[0]


@pytest.mark.timeout(60)
def test_wrong_password_is_one_clear_line_not_a_retry_loop(tmp_path: Path) -> None:
    """A Redis that refuses the password: exit 2 at once with one line, the password hidden."""
    server = RedisServer(tmp_path / "redis", extra=("--requirepass", "right-pw"))
    server.start()
    try:
        url = f"redis://:wrong-pw-canary@127.0.0.1:{server.port}/0"
        daemon = DaemonProcess(tmp_path, {"REDIS_URL": url, "WORKER_MODE": ECHO}).start()
        began = time.monotonic()
        try:
            code = daemon.wait_exit(timeout=20)
        finally:
            daemon.stop()
        took = time.monotonic() - began
    finally:
        server.stop()
    text = daemon.log_text()
    lines = text.strip().splitlines()
    assert (code, len(lines), took < 10) == (2, 1, True), text
    assert lines[0].startswith("printery-workers: ")
    assert "wrong-pw-canary" not in text
    assert "Traceback" not in text
