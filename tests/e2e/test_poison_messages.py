"""No single message takes a worker down: a hanging and a failing message, among good ones."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis

from tests.e2e.daemon import Daemon
from tests.e2e.ledger import publish


@pytest.mark.timeout(90)
def test_a_hanging_and_a_failing_message_are_dead_lettered_while_fifty_good_ones_flow(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """Default budgets, short hang timeout: 50 good handled, both bad dead-lettered, no restart."""
    env = {
        **echo_env,
        "ECHO_HANG_TIMEOUT": "1",
        "HEALTH_CHECK_INTERVAL": "0.5",
        "RETRY_BACKOFF_MS": "50",
        "RETRY_BACKOFF_MAX_MS": "200",
    }
    stream, out, dead = f"{prefix}:test:in", f"{prefix}:test:out", f"{prefix}:test:in:dead"
    with Daemon(tmp_path, env, ["--supervised"]) as daemon:
        daemon.wait_ready()
        [hanging] = publish(client, stream, [{"sleep": "3600"}])
        [failing] = publish(client, stream, [{"fail": "raise"}])
        good = publish(client, stream, [{"n": str(n)} for n in range(50)])
        daemon.wait_until("the fifty handled", lambda: client.xlen(out) == 50, timeout=20)
        daemon.wait_until("both bad ones dead", lambda: client.xlen(dead) == 2, timeout=40)
        daemon.wait_until("nothing pending", lambda: not client.xpending(stream, "echo")["pending"])
        assert 200 == daemon.get("/health")[0]
        assert "running" == daemon.worker_states()["echo"]
        daemon.send(signal.SIGTERM)
        assert 0 == daemon.wait_exit(timeout=20)
    assert [] == daemon.events("printery.worker_crashed")
    assert [] == [e for e in daemon.events("printery.worker_state") if e["state"] == "failed"]
    handled = sorted(bytes(f[b"in_id"]) for _, f in client.xrange(out))
    assert sorted(good) == handled
    reasons = {bytes(f[b"original_id"]): f for _, f in client.xrange(dead)}
    assert {hanging, failing} == set(reasons)
    assert reasons[hanging][b"error"].startswith(b"hung: no progress for 1 s (after 5 deliveries)")
    assert reasons[failing][b"error"].startswith(b"handler raised ValueError: asked to raise")
    assert (b"5", b"5") == (reasons[hanging][b"deliveries"], reasons[failing][b"deliveries"])
    hangs = daemon.events("printery.handler_hung")
    assert 5 == len(hangs)
    assert {(stream, hanging.decode())} == {(h["stream"], h["message_id"]) for h in hangs}
