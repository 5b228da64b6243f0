"""The Redis Cluster fixtures: a real cluster, each primary owning an equal slot range."""

from __future__ import annotations

import time

import pytest
import redis

from tests.support.redis_cluster import RedisCluster, slot_ranges


def test_slot_ranges_cover_every_slot_once() -> None:
    """Three equal ranges cover 0..16383 contiguously, as redis-cli --cluster create splits them."""
    assert [(0, 5460), (5461, 10921), (10922, 16383)] == slot_ranges(3)


def test_three_primaries_serve_every_slot(redis_cluster: RedisCluster) -> None:
    """Each primary serves its own range, and a key is stored on the primary of its slot."""
    with redis.RedisCluster.from_url(redis_cluster.url, decode_responses=True) as client:
        owners = {p.port: p.slots for p in redis_cluster.primaries}
        assert 3 == len(client.get_primaries())
        for node in client.get_primaries():
            assert owners[node.port] is not None
        client.set("fixture:{a}", "1")  # slot 15495
        client.set("fixture:{b}", "1")  # slot 3300
        client.set("fixture:{c}", "1")  # slot 7365
        found = redis_cluster.keys_per_primary("fixture:*")
        assert [1, 1, 1] == sorted(found.values())
        client.delete("fixture:{a}", "fixture:{b}", "fixture:{c}")


@pytest.mark.timeout(90)
def test_replica_takes_over_a_killed_primary(replicated_cluster: RedisCluster) -> None:
    """A primary killed with -9 is replaced by its replica, which then serves its slots."""
    victim = replicated_cluster.primaries[1]
    assert victim.slots is not None
    started = time.monotonic()
    victim.kill()
    promoted = replicated_cluster.wait_failover(victim)
    assert victim.replica_of is None
    assert promoted.replica_of is victim
    assert promoted is replicated_cluster.owner_of(victim.slots[1])
    assert time.monotonic() - started < 30
