"""The whole pipeline on a real three-primary Redis Cluster, through two daemons, one SIGKILLed.

Both daemons run all four workers in REDIS_MODE=cluster with 12 partitions:
every worker reads all twelve partition streams of its stage. Deployments are
published into the partition their id hashes to. The doomed daemon is killed
with -9 holding messages; the survivor claims them, and every deployment
reaches exactly one outcome, its registry entry written once, its keys in its
own partition, the partitions on all three primaries.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest
import redis

from printery.pipeline.publish import started_event
from printery.redis.keys import Keys, Partitions
from tests.e2e.daemon import Daemon
from tests.e2e.health_endpoint import HealthEndpoint
from tests.support.redis_cluster import RedisCluster

DEPLOYMENTS = 48
GROUPS = {
    "deployment:started": "validator",
    "deployment:validated": "dependency-checker",
    "deployment:dependencies-satisfied": "health-monitor",
    "notifications": "notifier",
}


def streams(parts: Partitions) -> list[tuple[str, str]]:
    return [(f"{k.root}:{s}", g) for k in parts.all for s, g in GROUPS.items()]


def held_by(client: redis.RedisCluster, parts: Partitions, consumer: str) -> int:
    """Messages ``consumer`` has read and not acked, over every partition of the four stages."""
    return sum(
        len(client.xpending_range(s, g, min="-", max="+", count=1000, consumername=consumer))
        for s, g in streams(parts)
        if client.exists(s)
    )


def outcomes(client: redis.RedisCluster, parts: Partitions) -> Counter[tuple[str, str, str]]:
    """(deployment id, event type, partition tag) of every notification, over the partitions."""
    found: Counter[tuple[str, str, str]] = Counter()
    for keys in parts.all:
        for _, fields in client.xrange(keys.notifications):
            data = json.loads(fields[b"data"])
            found[(data["deployment_id"], fields[b"type"].decode(), str(keys.tag))] += 1
    return found


@pytest.mark.timeout(150)
def test_pipeline_on_a_cluster_survives_a_sigkilled_daemon(
    tmp_path: Path, redis_cluster: RedisCluster, prefix: str
) -> None:
    """Two cluster-mode daemons, one killed -9 mid-run: each deployment healthy exactly once."""
    parts = Partitions(Keys(prefix), 12)
    env = {
        "REDIS_URL": redis_cluster.url,
        "REDIS_MODE": "cluster",
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": "all",
        "BLOCK_MS": "200",
        "CLAIM_IDLE_MS": "1500",
        "CLAIM_INTERVAL_MS": "300",
        "HEARTBEAT_INTERVAL": "0.5",
        "HEALTH_MONITOR_CONCURRENCY": "24",
    }
    client = redis.RedisCluster.from_url(redis_cluster.url)
    with HealthEndpoint(delay=0.3) as health:
        health.up.set()
        daemons = [Daemon(tmp_path, {**env, "CONSUMER_NAME": n}) for n in ("doomed", "survivor")]
        with daemons[0] as doomed, daemons[1] as survivor:
            for daemon in daemons:
                daemon.wait_ready()
            for n in range(DEPLOYMENTS):
                event = started_event(health.deployment(n, deadline_s=60))
                client.xadd(parts.of(f"dep-{n}").started, event.to_fields())  # type: ignore[arg-type]  # redis-py's field type
            doomed.wait_until(
                "the doomed daemon holds messages",
                lambda: held_by(client, parts, "doomed") >= 3,
                timeout=30,
            )
            doomed.send(signal.SIGKILL)
            assert -signal.SIGKILL == doomed.wait_exit(timeout=10)
            held = held_by(client, parts, "doomed")
            survivor.wait_until(
                f"{DEPLOYMENTS} outcomes",
                lambda: sum(outcomes(client, parts).values()) >= DEPLOYMENTS,
                timeout=60,
            )
            survivor.wait_until(
                "nothing pending anywhere",
                lambda: all(
                    client.xpending(s, g)["pending"] == 0
                    for s, g in streams(parts)
                    if client.exists(s)
                ),
                timeout=30,
            )
            metrics = survivor.metrics()
            survivor.send(signal.SIGTERM)
            assert 0 == survivor.wait_exit(timeout=20), survivor.stderr()[-2000:]

    assert held >= 1  # it really died holding work
    # Lag and pending are reported per partition stream.
    assert [] == [k.started for k in parts.all if f'stream="{k.started}"' not in metrics]
    expected = {
        (f"dep-{n}", "deployment.healthy", str(parts.of(f"dep-{n}").tag)): 1
        for n in range(DEPLOYMENTS)
    }
    assert expected == dict(outcomes(client, parts))
    assert [] == [s for s, _ in streams(parts) if client.exists(Keys.dead(s))]
    registry = client.hgetall(parts.all[0].registry("staging"))
    assert {f"svc-{n}".encode(): b"1.0.0" for n in range(DEPLOYMENTS)} == registry
    # Every primary holds partitions' streams: the work was spread over the cluster.
    per_primary = redis_cluster.keys_per_primary(f"{prefix}:{{p*:deployment:started")
    assert [4, 4, 4] == sorted(per_primary.values())
    client.close()
