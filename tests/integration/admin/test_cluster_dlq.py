"""printery dlq on a Redis Cluster: a stage's dead letters replayed from every partition."""

from __future__ import annotations

import pytest

from printery.admin.dlq import DlqRequest
from printery.admin.dlq_partitions import run_partitioned
from printery.redis.adapter import StreamAdapter
from printery.redis.cluster import open_adapter, partitions_of, start_adapter
from printery.redis.keys import Keys
from printery.settings import load_settings
from tests.support.redis_cluster import RedisCluster

DEAD = {"error": "boom", "deliveries": "5", "failed_at": "2026-12-03T00:00:00Z", "group": "g"}


async def cluster_adapter(url: str, prefix: str) -> tuple[StreamAdapter, list[Keys]]:
    settings = load_settings(
        {}, {"REDIS_URL": url, "REDIS_MODE": "cluster", "STREAM_PREFIX": prefix}
    )
    adapter = open_adapter(settings, client_name="t")
    await start_adapter(adapter, settings)
    return adapter, list(partitions_of(settings).all)


async def test_replay_all_moves_every_partitions_dead_letters_back(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    """Dead letters in three partitions: replay --all puts each back on its partition's stream."""
    adapter, parts = await cluster_adapter(redis_cluster.url, prefix)
    for keys in parts[:3]:
        await adapter.add(Keys.dead(keys.started), {"n": str(keys.tag), **DEAD})
    request = DlqRequest("replay", f"{prefix}:deployment:started", replay_all=True, yes=True)
    code = await run_partitioned(adapter, request, Keys(prefix), parts)
    back = [[e.fields for e in await adapter.entries(k.started)] for k in parts[:3]]
    left = [await adapter.length(Keys.dead(k.started)) for k in parts]
    await adapter.close()
    assert 0 == code
    assert [[{b"n": str(k.tag).encode()}] for k in parts[:3]] == [
        [{k: v for k, v in (f or {}).items() if k != b"replayed_from"} for f in fs] for fs in back
    ]
    assert [0] * 12 == left


async def test_replay_by_id_finds_its_partition_and_reports_the_unknown(
    redis_cluster: RedisCluster, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replaying ids: each from the partition holding it; an id in none is named, exit 1."""
    adapter, parts = await cluster_adapter(redis_cluster.url, prefix)
    dead_id = await adapter.add(Keys.dead(parts[7].started), {"n": "7", **DEAD})
    request = DlqRequest("replay", f"{prefix}:deployment:started", ids=(dead_id, "1-1"), yes=True)
    code = await run_partitioned(adapter, request, Keys(prefix), parts)
    replayed = await adapter.length(parts[7].started)
    await adapter.close()
    assert (1, 1) == (code, replayed)
    assert "1-1: no such dead letter in any partition" in capsys.readouterr().err
