"""SIGTERM while a hundred health watches are in flight, then a restart: every deployment ends.

A real ``printery-workers --worker=health-monitor`` polls a loopback health
endpoint that answers 503 until the test says the services are up. The drain
must end within ``SHUTDOWN_TIMEOUT`` without waiting for any watch, hand every
watch back uncounted, and a fresh daemon must bring each deployment to its
outcome exactly once.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest
import redis

from printery.envelope import Event
from tests.e2e.daemon import Daemon
from tests.e2e.health_endpoint import HealthEndpoint
from tests.e2e.ledger import publish
from tests.support.redis_server import RedisServer

WATCHES = 100
SHUTDOWN_TIMEOUT = 5


def satisfied(n: int, endpoint: HealthEndpoint) -> dict[str, str]:
    """A ``deployment.dependencies_satisfied`` event whose health check is ``/health/<n>``."""
    data = endpoint.deployment(n, deadline_s=120)
    return Event.create("deployment.dependencies_satisfied", f"dep-{n}", data).to_fields()


@pytest.mark.timeout(90)
def test_sigterm_mid_hundred_watches_exits_0_and_a_restart_ends_every_deployment(
    tmp_path: Path,
    client: redis.Redis,
    redis_server: RedisServer,
    prefix: str,
    endpoint: HealthEndpoint,
) -> None:
    """Exit 0 within SHUTDOWN_TIMEOUT; after a restart each deployment turns healthy once."""
    stream = f"{prefix}:deployment:dependencies-satisfied"
    notifications = f"{prefix}:notifications"
    env = {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": "health-monitor",
        "BLOCK_MS": "200",
        "SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
    }
    published = publish(client, stream, [satisfied(n, endpoint) for n in range(WATCHES)])

    with Daemon(tmp_path, env) as first:
        first.wait_ready()
        first.wait_until(
            f"all {WATCHES} watches polling", lambda: endpoint.asked_by() == WATCHES, timeout=30
        )
        first.send(signal.SIGTERM)
        code = first.wait_exit(timeout=SHUTDOWN_TIMEOUT + 1)
        took = first.seconds_since_signal()
    assert (0, True) == (code, took < SHUTDOWN_TIMEOUT + 1), first.tail()
    assert 0 == client.xlen(notifications)  # nothing was decided while unhealthy
    rows = client.xpending_range(stream, "health-monitor", min="-", max="+", count=1000)
    # Every watch was handed back, and the drain did not spend a delivery on it.
    assert (WATCHES, {0}) == (len(rows), {int(r["times_delivered"]) for r in rows})

    endpoint.up.set()
    with Daemon(tmp_path, env) as second:
        second.wait_until(
            f"{WATCHES} outcomes", lambda: client.xlen(notifications) >= WATCHES, timeout=30
        )
        second.wait_until(
            "nothing pending",
            lambda: client.xpending(stream, "health-monitor")["pending"] == 0,
        )
        second.send(signal.SIGTERM)
        assert 0 == second.wait_exit(timeout=SHUTDOWN_TIMEOUT + 1), second.tail()

    outcomes = Counter(
        (json.loads(f[b"data"])["deployment_id"], f[b"type"].decode())
        for _, f in client.xrange(notifications)
    )
    expected = {(f"dep-{n}", "deployment.healthy"): 1 for n in range(WATCHES)}
    assert expected == dict(outcomes)
    assert 0 == client.xlen(f"{stream}:dead")
    assert WATCHES == len(published) == client.hlen(f"{prefix}:registry:staging")
