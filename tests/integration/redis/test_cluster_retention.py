"""Retention on a Redis Cluster: every partition's streams are trimmed, each in its own slot."""

from __future__ import annotations

import anyio

from printery.daemon.retention import Trimmer, partitioned_targets
from printery.pipeline.validator import ValidatorWorker
from printery.redis.cluster import open_adapter, partitions_of, start_adapter
from printery.redis.keys import Keys
from printery.settings import load_settings
from printery.worker import WorkerDeps
from tests.support.redis_cluster import RedisCluster


async def test_acknowledged_entries_of_every_partition_are_trimmed(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    """Acked entries older than the retention go in all 12 partitions; pending ones stay."""
    env = {
        "REDIS_URL": redis_cluster.url,
        "REDIS_MODE": "cluster",
        "STREAM_PREFIX": prefix,
        "STREAM_RETENTION": "0.001",
    }
    settings = load_settings({}, env)
    adapter = open_adapter(settings, client_name="t")
    await start_adapter(adapter, settings)
    parts = partitions_of(settings).all
    worker = ValidatorWorker(WorkerDeps(settings, adapter, Keys(prefix), "c1"))
    found = partitioned_targets(settings, parts, [worker])
    assert {k.started for k in parts} <= {t.stream for t in found}
    for keys in parts:
        await adapter.ensure_group(keys.started, "validator")
        for _ in range(3):
            await adapter.add(keys.started, {"n": "1"})
        read = await adapter.read(keys.started, "validator", "c1", count=3, block_ms=None)
        await adapter.commit(keys.started, "validator", [(e.id, []) for e in read[:2]])
    await anyio.sleep(0.01)  # past the 1 ms retention, by Redis's clock too
    trimmer = Trimmer(adapter, Keys(prefix), found, interval=60, emit=lambda _: None)
    trimmed = await trimmer.trim_once()
    lengths = [await adapter.length(k.started) for k in parts]
    await adapter.close()
    assert 24 <= trimmed
    assert [1] * 12 == lengths  # the one still pending in each partition is kept
