"""printery status on a Redis Cluster: each pipeline stream summed over its partitions."""

from __future__ import annotations

from printery.admin.status import collect_status
from printery.redis.cluster import open_adapter, partitions_of, start_adapter
from printery.redis.keys import Keys
from printery.settings import load_settings
from tests.support.redis_cluster import RedisCluster


async def test_status_sums_the_partitions_and_keeps_each(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    """Entries in three partitions: one started row of length 3, pending summed, 12 kept."""
    settings = load_settings(
        {}, {"REDIS_URL": redis_cluster.url, "REDIS_MODE": "cluster", "STREAM_PREFIX": prefix}
    )
    adapter = open_adapter(settings, client_name="t")
    await start_adapter(adapter, settings)
    parts = partitions_of(settings).all
    for keys in parts[:3]:
        await adapter.ensure_group(keys.started, "validator")
        await adapter.add(keys.started, {"n": "1"})
        await adapter.read(keys.started, "validator", "c1", count=1, block_ms=None)
    await adapter.add(Keys.dead(parts[4].started), {"error": "x"})
    doc = await collect_status(adapter, Keys(prefix), partitions=parts)
    await adapter.close()
    [started] = [s for s in doc["streams"] if s["stream"] == f"{prefix}:deployment:started"]
    [group] = started["groups"]
    assert (3, 1, 12) == (started["length"], started["dead_letters"], len(started["partitions"]))
    assert ("validator", 3, 0) == (group["group"], group["pending"], group["lag"])
    assert [{"name": "c1", "pending": 3}] == [
        {"name": c["name"], "pending": c["pending"]} for c in group["consumers"]
    ]
