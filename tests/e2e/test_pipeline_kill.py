"""Three daemons run the whole pipeline; one is SIGKILLed mid-batch; the survivors finish its work.

Each daemon runs all four workers against the same groups. Health checks
answer slowly, so the doomed daemon is killed holding messages it read and
had not acked. Nothing it held is lost or doubled: the survivors claim it
after ``CLAIM_IDLE_MS`` and every deployment reaches exactly one outcome.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest
import redis

from printery.pipeline.publish import started_event
from tests.e2e.daemon import Daemon
from tests.e2e.health_endpoint import HealthEndpoint
from tests.e2e.ledger import publish
from tests.support.redis_server import RedisServer

DEPLOYMENTS = 60
GROUPS = {
    "deployment:started": "validator",
    "deployment:validated": "dependency-checker",
    "deployment:dependencies-satisfied": "health-monitor",
    "notifications": "notifier",
}


def started(n: int, health: HealthEndpoint) -> dict[str, str]:
    data = health.deployment(n, deadline_s=60, requested_by="e2e@example.com")
    return started_event(data).to_fields()


def held_by(client: redis.Redis, prefix: str, consumer: str) -> int:
    """Messages ``consumer`` has read and not acked, over the four groups."""
    return sum(
        len(
            client.xpending_range(
                f"{prefix}:{stream}", group, min="-", max="+", count=1000, consumername=consumer
            )
        )
        for stream, group in GROUPS.items()
        if client.exists(f"{prefix}:{stream}")
    )


@pytest.mark.timeout(90)
def test_sigkill_mid_batch_survivors_claim_and_every_deployment_ends_once(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """Scenario 2: one of three daemons killed holding messages; each deployment healthy once."""
    env = {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": "all",
        "BLOCK_MS": "200",
        "CLAIM_IDLE_MS": "1500",
        "CLAIM_INTERVAL_MS": "200",
        "HEARTBEAT_INTERVAL": "0.5",
        # Small reads share the deployments among the three daemons: with the
        # default 100, whichever daemon's blocked read returned first could take
        # a whole stage's worth, and the doomed one sometimes held nothing.
        "BATCH_SIZE": "4",
    }
    with HealthEndpoint(delay=0.5) as health:
        health.up.set()
        daemons = [
            Daemon(tmp_path, {**env, "CONSUMER_NAME": name})
            for name in ("doomed", "survivor-1", "survivor-2")
        ]
        with daemons[0] as doomed, daemons[1] as one, daemons[2] as two:
            for daemon in daemons:
                daemon.wait_ready()
            publish(
                client,
                f"{prefix}:deployment:started",
                [started(n, health) for n in range(DEPLOYMENTS)],
            )
            doomed.wait_until(
                "the doomed daemon holds messages",
                lambda: held_by(client, prefix, "doomed") >= 3,
                timeout=30,
            )
            doomed.send(signal.SIGKILL)
            assert -signal.SIGKILL == doomed.wait_exit(timeout=10)
            held = held_by(client, prefix, "doomed")
            one.wait_until(
                f"{DEPLOYMENTS} outcomes",
                lambda: client.xlen(f"{prefix}:notifications") >= DEPLOYMENTS,
                timeout=45,
            )
            one.wait_until(
                "the doomed daemon's messages claimed",
                lambda: not held_by(client, prefix, "doomed"),
            )
            one.wait_until(
                "nothing pending anywhere",
                lambda: all(
                    client.xpending(f"{prefix}:{s}", g)["pending"] == 0 for s, g in GROUPS.items()
                ),
                timeout=20,
            )
            for survivor in (one, two):
                survivor.send(signal.SIGTERM)
            assert [0, 0] == [one.wait_exit(timeout=15), two.wait_exit(timeout=15)]

    assert held >= 1  # it really died holding work
    outcomes = Counter(
        (json.loads(f[b"data"])["deployment_id"], f[b"type"].decode())
        for _, f in client.xrange(f"{prefix}:notifications")
    )
    assert {(f"dep-{n}", "deployment.healthy"): 1 for n in range(DEPLOYMENTS)} == dict(outcomes)
    assert [] == [s for s in GROUPS if client.exists(f"{prefix}:{s}:dead")]
    claimed = sum(e["count"] for d in (one, two) for e in d.events("printery.messages_claimed"))
    assert claimed >= held, "the survivors did not claim what the doomed daemon held"
