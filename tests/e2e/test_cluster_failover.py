"""A Redis Cluster primary killed with -9 under load: its replica takes over, nothing is lost.

A 3+3 cluster (one replica per primary). Two supervised cluster-mode daemons
run the whole pipeline; while deployments are in flight the primary serving
a third of the partitions is killed with SIGKILL. The daemons see the
failover as an outage (CLUSTERDOWN, refused connections): degraded, then back
once the replica is promoted, with no restart and no crash. Every deployment
reaches exactly one outcome and its version is registered.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest
import redis

from printery.pipeline.publish import started_event
from printery.redis.keys import Keys, Partitions, slot_of_tag
from tests.e2e.daemon import Daemon
from tests.e2e.health_endpoint import HealthEndpoint
from tests.support.redis_cluster import RedisCluster

DEPLOYMENTS = 48


def outcomes(client: redis.RedisCluster, parts: Partitions) -> Counter[tuple[str, str]]:
    found: Counter[tuple[str, str]] = Counter()
    for keys in parts.all:
        for _, fields in client.xrange(keys.notifications):
            found[(json.loads(fields[b"data"])["deployment_id"], fields[b"type"].decode())] += 1
    return found


@pytest.mark.timeout(180)
def test_primary_killed_under_load_loses_nothing_and_spends_no_budget(
    tmp_path: Path, replicated_cluster: RedisCluster, prefix: str
) -> None:
    """kill -9 of a primary mid-run: degraded and back, no restart, each deployment healthy once."""
    parts = Partitions(Keys(prefix), 12)
    env = {
        "REDIS_URL": replicated_cluster.url,
        "REDIS_MODE": "cluster",
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": "all",
        "SUPERVISED_MODE": "true",
        "BLOCK_MS": "200",
        "CLAIM_IDLE_MS": "3000",
        "CLAIM_INTERVAL_MS": "500",
        "HEARTBEAT_INTERVAL": "0.5",
        "REDIS_SOCKET_TIMEOUT": "2",
        "REDIS_CONNECT_TIMEOUT": "1",
        "HEALTH_MONITOR_CONCURRENCY": "24",
    }
    # The seed must outlive the failover: point the daemons at a primary that stays.
    victim = replicated_cluster.primaries[1]
    client = redis.RedisCluster.from_url(replicated_cluster.url)
    with HealthEndpoint(delay=0.3) as health:
        health.up.set()
        daemons = [Daemon(tmp_path, {**env, "CONSUMER_NAME": f"d{i}"}) for i in range(2)]
        with daemons[0] as one, daemons[1] as two:
            for daemon in daemons:
                daemon.wait_ready()
            for n in range(DEPLOYMENTS):
                event = started_event(health.deployment(n, deadline_s=90))
                client.xadd(parts.of(f"dep-{n}").started, event.to_fields())  # type: ignore[arg-type]  # redis-py's field type
            one.wait_until(
                "a few outcomes, the rest in flight",
                lambda: 4 <= sum(outcomes(client, parts).values()) < DEPLOYMENTS - 8,
                timeout=30,
            )
            assert victim.slots is not None
            on_victim = [
                k.tag
                for k in parts.all
                if victim.slots[0] <= slot_of_tag(str(k.tag)) <= victim.slots[1]
            ]
            assert 4 == len(on_victim)
            victim.kill()
            replicated_cluster.wait_failover(victim)
            one.wait_until(
                f"{DEPLOYMENTS} outcomes after the failover",
                lambda: sum(outcomes(client, parts).values()) >= DEPLOYMENTS,
                timeout=90,
            )
            for daemon in daemons:
                daemon.wait_until(
                    "every worker running again",
                    lambda d=daemon: set(d.worker_states().values()) == {"running"},
                    timeout=30,
                )
            events = [(d.events("printery.redis_unavailable"), d.event_names()) for d in daemons]
            for daemon in daemons:
                daemon.send(signal.SIGTERM)
            assert [0, 0] == [one.wait_exit(timeout=20), two.wait_exit(timeout=20)]

    expected = {(f"dep-{n}", "deployment.healthy"): 1 for n in range(DEPLOYMENTS)}
    assert expected == dict(outcomes(client, parts))
    registry = client.hgetall(parts.all[0].registry("staging"))
    assert {f"svc-{n}".encode(): b"1.0.0" for n in range(DEPLOYMENTS)} == registry
    assert any(unavailable for unavailable, _ in events), "no daemon saw the failover"
    for _, names in events:
        assert "printery.worker_restart_scheduled" not in names
        assert "printery.worker_crashed" not in names
    client.close()
