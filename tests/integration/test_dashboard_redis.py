"""The dashboard on a real redis-server: one sampler for many viewers, real replay and purge."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import redis

from printery.dashboard.app import create_app
from printery.dashboard.sampler import Sampler
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from tests.support.dashboard import (
    add_dead_letter,
    dashboard_client,
    heartbeat_record,
    put_heartbeat,
)
from tests.support.dashboard_process import DashboardProcess
from tests.support.redis_server import RedisServer

TOKEN = "integration-token-0123"


async def _calls(adapter: StreamAdapter) -> dict[str, int]:
    stats: dict[str, Any] = await adapter.client.info("commandstats")
    return {name: int(v["calls"]) for name, v in stats.items()}


async def test_many_viewers_cost_one_reading(real_adapter: StreamAdapter, prefix: str) -> None:
    """Forty overview, fragment and /api/status requests read Redis not once beyond the sampler."""
    keys = Keys(prefix)
    await put_heartbeat(real_adapter, prefix, heartbeat_record("d1", {"validator": {}}))
    sampler = Sampler(real_adapter, keys, interval=3600)
    from aiohttp.test_utils import TestClient, TestServer

    app = create_app(real_adapter, keys, None, sampler=sampler)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await (await client.get("/")).text()
        before = await _calls(real_adapter)
        paths = ["/", "/?fragment=1", "/api/status", "/"] * 10
        answers = await asyncio.gather(*(client.get(p) for p in paths))
        after = await _calls(real_adapter)
    assert [200] * len(paths) == [a.status for a in answers]
    assert 1 == sampler.reads
    grown = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert {"cmdstat_info": 1} == grown  # only our own INFO between the two counts


async def test_replay_and_purge_on_real_redis(real_adapter: StreamAdapter, prefix: str) -> None:
    """Replay runs the real replay script; purge all trims exactly what was there."""
    stream = Keys(prefix).started
    ids = [await add_dead_letter(real_adapter, stream, error=f"e{i}") for i in range(5)]
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with dashboard_client(real_adapter, prefix, TOKEN) as client:
        replay = await client.post(
            f"/dead/{stream}/replay", data={"ids": ",".join(ids[:2])}, headers=bearer
        )
        body = await replay.json()
        purge = await client.post(f"/dead/{stream}/purge", data={"all": "1"}, headers=bearer)
        purged = await purge.json()
        page = await (await client.get(f"/streams/{stream}")).text()
    assert ids[:2] == [r["id"] for r in body["replayed"]]
    assert 3 == purged["purged"]
    assert 0 == await real_adapter.length(f"{stream}:dead")
    assert 2 == await real_adapter.length(stream)
    assert "replayed_from" in page


async def test_stream_page_on_real_redis(real_adapter: StreamAdapter, prefix: str) -> None:
    """Pending entries show their consumer and delivery count as Redis reports them."""
    stream = Keys(prefix).started
    for i in range(3):
        await real_adapter.add(stream, {"n": str(i)})
    await real_adapter.client.xgroup_create(stream, "grp", id="0")
    await real_adapter.client.xreadgroup("grp", "reader-1", {stream: ">"}, count=2)
    await real_adapter.client.xclaim(stream, "grp", "reader-2", 0, [b"0-0"])
    async with dashboard_client(real_adapter, prefix) as client:
        text = await (await client.get(f"/streams/{stream}")).text()
    assert 2 == text.count("<td>reader-1</td>")
    assert "reader-1 <span" in text


def test_command_serves_and_stops(redis_server: RedisServer, prefix: str, tmp_path: Path) -> None:
    """`printery dashboard` serves the overview from Redis and exits 0 on SIGTERM."""
    with redis.Redis.from_url(redis_server.url) as client:
        record = heartbeat_record("proc-daemon", {"validator": {"processed": 7}})
        import json

        client.set(f"{prefix}:heartbeat:proc-daemon", json.dumps(record), ex=60)
    env = {"REDIS_URL": redis_server.url, "STREAM_PREFIX": prefix, "ENVIRONMENT": "production"}
    with DashboardProcess(tmp_path, env) as dashboard:
        status, page = dashboard.get("/")
        code = dashboard.stop()
        log = dashboard.log()
    assert 200 == status
    assert "proc-daemon" in page
    assert 0 == code
    assert "printery.dashboard_started" in log
