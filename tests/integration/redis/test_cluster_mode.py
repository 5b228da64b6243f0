"""Cluster mode on a real Redis Cluster: the client, the mode check, the partition count."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from printery.errors import ConfigError
from printery.redis.adapter import StreamAdapter, Write
from printery.redis.cluster import check_server_mode, open_adapter, start_adapter
from printery.redis.keys import Keys, partition_tags
from printery.settings import Settings, load_settings
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer


def cluster_settings(url: str, prefix: str, **env: str) -> Settings:
    return load_settings(
        {}, {"REDIS_URL": url, "REDIS_MODE": "cluster", "STREAM_PREFIX": prefix, **env}
    )


@pytest.fixture
async def cluster_adapter(redis_cluster: RedisCluster, prefix: str) -> AsyncIterator[StreamAdapter]:
    settings = cluster_settings(redis_cluster.url, prefix)
    adapter = open_adapter(settings, client_name="printery:test")
    await start_adapter(adapter, settings)
    yield adapter
    await adapter.close()


async def test_commit_in_every_partition_lands_on_every_primary(
    redis_cluster: RedisCluster, cluster_adapter: StreamAdapter, prefix: str
) -> None:
    """One commit per partition (ack plus tagged outputs) runs, and the keys spread 4/4/4."""
    for tag in partition_tags(12):
        keys = Keys(prefix).partition(tag)
        await cluster_adapter.ensure_group(keys.started, "validator")
        await cluster_adapter.add(keys.started, {"n": tag})
        [entry] = await cluster_adapter.read(
            keys.started, "validator", "c1", count=1, block_ms=None
        )
        writes = [
            Write.xadd(keys.validated, {"n": tag}),
            Write.hset(keys.deployment("dep"), {"stage": "validated"}),
        ]
        assert [True] == await cluster_adapter.commit(
            keys.started, "validator", [(entry.id, writes)]
        )
        assert 1 == await cluster_adapter.length(keys.validated)
    # started, validated and the timeline: three keys per partition, four partitions per primary.
    assert [12, 12, 12] == sorted(redis_cluster.keys_per_primary(f"{prefix}:{{p*").values())


async def test_scripts_survive_a_flushed_script_cache(
    redis_cluster: RedisCluster, cluster_adapter: StreamAdapter, prefix: str
) -> None:
    """After SCRIPT FLUSH on every node, NOSCRIPT reloads the script: the commit runs once."""
    keys = Keys(prefix).partition(partition_tags(12)[5])
    await cluster_adapter.ensure_group(keys.started, "g")
    await cluster_adapter.add(keys.started, {"a": "1"})
    [entry] = await cluster_adapter.read(keys.started, "g", "c1", count=1, block_ms=None)
    for node in redis_cluster.primaries:
        with node.client() as client:
            client.script_flush()
    batch = [(entry.id, [Write.xadd(keys.validated, {"a": "1"})])]
    assert [True] == await cluster_adapter.commit(keys.started, "g", batch)
    assert [False] == await cluster_adapter.commit(keys.started, "g", batch)
    assert 1 == await cluster_adapter.length(keys.validated)


async def test_heartbeats_are_read_from_every_node(
    cluster_adapter: StreamAdapter, prefix: str
) -> None:
    """Heartbeat keys hash to many slots; every one is found and read."""
    keys = Keys(prefix)
    names = [f"c{i}" for i in range(20)]
    for name in names:
        assert await cluster_adapter.heartbeat(keys.heartbeat(name), name, name, 60_000)
    found = await cluster_adapter.heartbeats(keys.heartbeat_pattern)
    assert sorted(n.encode() for n in names) == sorted(found)


async def test_standalone_mode_against_a_cluster_is_a_config_error(
    redis_cluster: RedisCluster,
) -> None:
    """REDIS_MODE=standalone pointed at a cluster node: ConfigError naming REDIS_MODE."""
    settings = load_settings({}, {"REDIS_URL": redis_cluster.url})
    with pytest.raises(ConfigError) as caught:
        await check_server_mode(settings)
    assert "REDIS_MODE" == caught.value.setting
    assert "set REDIS_MODE=cluster" in caught.value.reason


async def test_get_many_reads_keys_of_every_slot(
    cluster_adapter: StreamAdapter, prefix: str
) -> None:
    """On a cluster get_many reads keys that live on different primaries, in the keys' order."""
    keys = [f"{prefix}:{{p{n}}}:marker" for n in range(12)]
    for n, key in enumerate(keys[::2]):
        await cluster_adapter.set_once(key, str(n), None)
    assert ["0", None, "1", None, "2", None, "3", None, "4", None, "5", None] == (
        await cluster_adapter.get_many(keys)
    )


async def test_cluster_mode_against_a_standalone_server_is_a_config_error(
    redis_server: RedisServer, prefix: str
) -> None:
    """REDIS_MODE=cluster pointed at a standalone server: ConfigError naming REDIS_MODE."""
    settings = cluster_settings(redis_server.url, prefix)
    adapter = open_adapter(settings, client_name="t")
    with pytest.raises(ConfigError) as caught:
        await start_adapter(adapter, settings)
    await adapter.close()
    assert "REDIS_MODE" == caught.value.setting
    assert "cluster_enabled:0" in caught.value.reason


async def test_partition_count_is_recorded_and_a_different_one_refused(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    """The first start records PARTITIONS; a later start with another count is refused naming it."""
    first = cluster_settings(redis_cluster.url, prefix, PARTITIONS="12")
    adapter = open_adapter(first, client_name="t")
    await start_adapter(adapter, first)
    await start_adapter(adapter, first)  # the same count again: fine
    assert "12" == await adapter.get(Keys(prefix).partitions_record)
    other = cluster_settings(redis_cluster.url, prefix, PARTITIONS="6")
    disagrees = open_adapter(other, client_name="t")
    with pytest.raises(ConfigError) as caught:
        await start_adapter(disagrees, other)
    await disagrees.close()
    await adapter.close()
    assert "PARTITIONS" == caught.value.setting
    assert "PARTITIONS=12" in caught.value.reason


async def test_registry_step_is_idempotent_and_the_latest_request_wins(
    cluster_adapter: StreamAdapter, prefix: str
) -> None:
    """set_latest repeated is harmless; an earlier request never overwrites a later one."""
    keys = Keys(prefix).partition(partition_tags(12)[0])
    registry, order = keys.registry("production"), keys.registry_requested("production")
    later = "2026-12-03T10:00:00Z"
    assert await cluster_adapter.set_latest(registry, "api", "2.0.0", order_key=order, order=later)
    assert await cluster_adapter.set_latest(registry, "api", "2.0.0", order_key=order, order=later)
    earlier = "2026-12-03T09:00:00Z"
    dropped = await cluster_adapter.set_latest(
        registry, "api", "1.0.0", order_key=order, order=earlier
    )
    assert (False, {"api": "2.0.0"}) == (dropped, await cluster_adapter.hash_all(registry))
    assert {"api": later} == await cluster_adapter.hash_all(order)


async def test_reaper_spares_live_heartbeats_and_pending_on_a_cluster(
    cluster_adapter: StreamAdapter, prefix: str
) -> None:
    """Idle consumers go unless one holds a message or has a live heartbeat in another slot."""
    keys = Keys(prefix).partition(partition_tags(12)[2])
    heartbeat = Keys(prefix).heartbeat("")
    await cluster_adapter.ensure_group(keys.started, "g")
    await cluster_adapter.add(keys.started, {"n": "1"})
    await cluster_adapter.read(keys.started, "g", "holder", count=1, block_ms=None)
    for name in ("idle", "alive"):
        await cluster_adapter.client.xgroup_createconsumer(keys.started, "g", name)
    assert await cluster_adapter.heartbeat(heartbeat + "alive", "t", "{}", 60_000)
    gone = await cluster_adapter.reap_consumers(
        keys.started, "g", idle_ms=-1, heartbeat_prefix=heartbeat
    )
    info = await cluster_adapter.stream_info(keys.started)
    assert info is not None
    assert (["idle"], ["alive", "holder"]) == (
        gone,
        sorted(c.name for c in info.groups[0].consumers),
    )


async def test_stream_reads_go_to_their_node_without_asking_the_seed_for_keys(
    redis_cluster: RedisCluster, cluster_adapter: StreamAdapter, prefix: str
) -> None:
    """XREADGROUP and XREAD in every partition: the entries come back, no COMMAND GETKEYS sent.

    redis-py would ask the seed node for the keys of each (a round trip and a
    connection per read); the client reads them from the arguments.
    """
    for node in redis_cluster.primaries:
        with node.client() as client:
            client.config_resetstat()
    for tag in partition_tags(12):
        keys = Keys(prefix).partition(tag)
        await cluster_adapter.ensure_group(keys.started, "g")
        added = await cluster_adapter.add(keys.started, {"n": tag})
        [entry] = await cluster_adapter.read(keys.started, "g", "c1", count=10, block_ms=10)
        assert added == entry.id
        reply = await cluster_adapter.client.xread({keys.started: "0-0"}, count=1)
        assert [added] == [i.decode() for i, _ in reply[0][1]]
    for node in redis_cluster.primaries:
        with node.client() as client:
            stats = client.info("commandstats")
        assert "cmdstat_command|getkeys" not in stats
