"""Dashboard: server time and Redis commands per page, 50 daemons, 20 streams, 10,000 dead letters.

On a redis-server of its own: 50 daemons' heartbeats (four workers each,
reading 20 streams), 20 streams of 500 entries with a group and pending
entries, and 10,000 dead letters on one of them. Then, with the dashboard app
in this process behind aiohttp's test server on loopback:

- the sampler's reading (the ``printery status --json`` document), which every
  page shares: time and commands per reading;
- the overview and ``/api/status`` served from that reading: time and commands
  per page (expected: none);
- the dead-letter page (the newest 50 of 10,000): time and commands per page;
- ten viewers polling the overview every 2 s for 10 s against one: commands.

Baselines, in the same run: the CLI's own reading (``collect_status``, what
``printery status`` does) for the sampler, and the two bare commands a
dead-letter list needs (``XLEN``, ``XREVRANGE … COUNT 51``) for that page.
Commands are counted from ``INFO commandstats`` deltas (the INFO itself
subtracted). Times are medians; a page's time includes the loopback HTTP
round trip of the client, which runs in the same process.

    python bench/dashboard.py [--rounds 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp.test_utils import TestClient, TestServer

from bench.common import deployment_fields, machine, redis_server
from printery.admin.status import collect_status
from printery.dashboard.app import create_app
from printery.dashboard.sampler import Sampler
from printery.redis.adapter import StreamAdapter, connect
from printery.redis.keys import Keys

PREFIX = "bench"
DAEMONS, STREAMS, DEAD, ENTRIES = 50, 20, 10_000, 500
WORKERS = ("validator", "dependency-checker", "health-monitor", "notifier")


async def commands(adapter: StreamAdapter) -> int:
    stats: dict[str, Any] = await adapter.client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


async def counted(adapter: StreamAdapter, runs: int, call: Any) -> tuple[float, float]:
    """Median seconds per call, and Redis commands per call (INFO's own not counted)."""
    times = []
    before = await commands(adapter)
    for _ in range(runs):
        began = time.perf_counter()
        await call()
        times.append(time.perf_counter() - began)
    spent = await commands(adapter) - before - 1  # the INFO of `before`
    return statistics.median(times), spent / runs


async def fill(adapter: StreamAdapter) -> str:
    client = adapter.client
    streams = [f"{PREFIX}:bench:s{i:02}" for i in range(STREAMS)]
    now = datetime.now(UTC).isoformat()
    for d in range(DAEMONS):
        workers = {
            name: {
                "state": "running",
                "restarts": d % 3,
                "uptime_s": 3600.0 + d,
                "processed": 1000 * d + w,
                "failed": d % 5,
                "reason": None,
                "in_flight": w,
                "stream": streams[(d * len(WORKERS) + w) % STREAMS],
                "group": name,
            }
            for w, name in enumerate(WORKERS)
        }
        record = {
            "consumer": f"pod-{d:02}",
            "host": f"node-{d % 7}",
            "pid": 1000 + d,
            "version": "0.1.0",
            "started_at": now,
            "uptime_s": 3600.0,
            "updated_at": now,
            "interval_s": 3600.0,  # fresh for the whole run
            "token": "t",
            "workers": workers,
        }
        await client.set(f"{PREFIX}:heartbeat:pod-{d:02}", json.dumps(record), ex=7200)
    fields = deployment_fields(0)
    for s in streams:
        pipe = client.pipeline(transaction=False)
        for _ in range(ENTRIES):
            pipe.xadd(s, fields)
        await pipe.execute()
        for name in WORKERS:
            if any(
                s == streams[(d * len(WORKERS) + w) % STREAMS]
                for d in range(DAEMONS)
                for w, n in enumerate(WORKERS)
                if n == name
            ):
                await client.xgroup_create(s, name, id="0")
                await client.xreadgroup(name, f"pod-00-{name}", {s: ">"}, count=50)
    dead_stream = streams[0]
    pipe = client.pipeline(transaction=False)
    for i in range(DEAD):
        pipe.xadd(
            f"{dead_stream}:dead",
            {
                **fields,
                "error": f"schema: field {i} invalid",
                "deliveries": "5",
                "failed_at": now,
                "original_id": "1-0",
                "original_stream": dead_stream,
                "group": "validator",
            },
        )
    await pipe.execute()
    return dead_stream


async def main(rounds: int) -> None:
    print(f"dashboard, {machine()}")
    print(
        f"  {DAEMONS} daemons × {len(WORKERS)} workers, {STREAMS} streams × {ENTRIES} entries, "
        f"{DEAD:,} dead letters; medians of {rounds} rounds"
    )
    with redis_server() as url:
        adapter = StreamAdapter(connect(url, socket_timeout=10, connect_timeout=5))
        keys = Keys(PREFIX)
        dead_stream = await fill(adapter)
        base_t, base_n = await counted(adapter, rounds, lambda: collect_status(adapter, keys))
        sampler = Sampler(adapter, keys, interval=3600)
        app = create_app(adapter, keys, None, sampler=sampler)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:

            async def get(path: str) -> None:
                response = await client.get(path)
                assert response.status == 200, (path, response.status)
                await response.read()

            read_t, read_n = await counted(adapter, rounds, sampler.sample)
            over_t, over_n = await counted(adapter, rounds, lambda: get("/"))
            api_t, api_n = await counted(adapter, rounds, lambda: get("/api/status"))
            dead_path = f"/dead/{dead_stream}"

            async def bare() -> None:
                await adapter.client.xlen(f"{dead_stream}:dead")
                await adapter.client.xrevrange(f"{dead_stream}:dead", count=51)

            bare_t, bare_n = await counted(adapter, rounds, bare)
            dead_t, dead_n = await counted(adapter, rounds, lambda: get(dead_path))
            older = (
                f"{dead_path}?before="
                + (await adapter.client.xrevrange(f"{dead_stream}:dead", count=5001))[-1][
                    0
                ].decode()
            )
            deep_t, deep_n = await counted(adapter, rounds, lambda: get(older))
            size = len(await (await client.get("/")).read())
        viewers = {n: await polling(adapter, keys, n) for n in (1, 10)}
        await adapter.close()

    def ms(s: float) -> str:
        return f"{s * 1000:7.2f} ms"

    print(f"  status reading, the CLI's (baseline)   {ms(base_t)}  {base_n:5.0f} commands")
    print(
        f"  status reading, the sampler's          {ms(read_t)}  {read_n:5.0f} commands"
        f"   ratio {read_t / base_t:.2f}"
    )
    print(
        f"  overview page from the snapshot        {ms(over_t)}  {over_n:5.0f} commands"
        f"   {size / 1024:.0f} KiB"
    )
    print(f"  /api/status from the snapshot          {ms(api_t)}  {api_n:5.0f} commands")
    cold_t, cold_n = read_t + over_t, read_n + over_n
    print(f"  overview, cold (reading + page)        {ms(cold_t)}  {cold_n:5.0f} commands")
    print(f"  dead letters, XLEN + XREVRANGE (base)  {ms(bare_t)}  {bare_n:5.0f} commands")
    print(
        f"  dead-letter page, newest 50 of {DEAD:,}  {ms(dead_t)}  {dead_n:5.0f} commands"
        f"   ratio {dead_t / bare_t:.1f}"
    )
    print(f"  dead-letter page, 5,000 back           {ms(deep_t)}  {deep_n:5.0f} commands")
    for n, (readings, spent) in viewers.items():
        print(
            f"  {n:2} viewer(s) polling every 2 s for 10 s: {readings} readings, {spent} commands"
        )


async def polling(adapter: StreamAdapter, keys: Keys, viewers: int) -> tuple[int, int]:
    """Sampler readings and Redis commands while ``viewers`` tabs poll the overview for 10 s."""
    sampler = Sampler(adapter, keys, interval=2.0)
    app = create_app(adapter, keys, None, sampler=sampler)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await (await client.get("/")).read()
        before, reads = await commands(adapter), sampler.reads

        async def viewer(offset: float) -> None:
            await asyncio.sleep(offset)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                await (await client.get("/?fragment=1")).read()
                await asyncio.sleep(2)

        await asyncio.gather(*(viewer(i * 2 / viewers) for i in range(viewers)))
        return sampler.reads - reads, await commands(adapter) - before - 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    asyncio.run(main(parser.parse_args().rounds))
