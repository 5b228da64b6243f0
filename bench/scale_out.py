"""Scale-out: 1, 2 and 4 processes sharing one consumer group, on this machine's cores.

printery: ``printery-workers --worker validator`` processes, each its own
consumer (``CONSUMER_NAME``) in the ``validator`` group. Baseline: the same
number of processes running the plain redis-py pass-through loop of
``runtime_throughput.py`` in one group of their own. Every process is started
and ready first; then ``--messages`` ``deployment.started`` entries are
published, and the clock runs until every one has its output. Also reports
the CPU each side used (in cores: 1.00 is one core busy for the whole run),
which shows where this machine's cores cap the scaling.

    python bench/scale_out.py [--messages 20000] [--processes 1,2,4]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SERVER_PIDS, free_port, machine, redis_server, stop_processes
from bench.pipeline_latency import cpu_seconds, wait_http
from bench.runtime_throughput import fill, output_fields
from printery.redis.keys import Keys

ROOT = Path(__file__).resolve().parent.parent


def serve_baseline(url: str, stream: str, consumer: str) -> None:
    """The hand-rolled loop: XREADGROUP COUNT 100, one pipelined XADD… + XACK per batch."""
    import asyncio

    async def main() -> None:
        client = aioredis.Redis.from_url(url)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        out = f"{stream}:out"
        while not stop.is_set():
            reply = await client.xreadgroup("g", consumer, {stream: ">"}, count=100, block=200)
            for _, entries in reply or []:
                async with client.pipeline(transaction=False) as pipe:
                    for _, fields in entries:
                        pipe.xadd(out, output_fields(fields))  # type: ignore[arg-type]
                    pipe.xack(stream, "g", *[entry_id for entry_id, _ in entries])
                    await pipe.execute()
        await client.aclose()

    asyncio.run(main())


async def wait_len(url: str, stream: str, count: int, limit_s: float) -> None:
    """Until ``stream`` holds ``count`` entries: another process's progress, polled."""
    client = aioredis.Redis.from_url(url)
    deadline = time.monotonic() + limit_s
    try:
        while await client.xlen(stream) < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {stream} not at {count} entries within {limit_s:g} s")
            await anyio.sleep(0.01)
    finally:
        await client.aclose()


async def measure(
    url: str, procs: list[subprocess.Popen[bytes]], source: str, out: str, count: int
) -> tuple[float, float, float]:
    """Publish ``count`` entries to ``source``; msg/s, and cores used by ``procs`` and Redis."""
    before = [cpu_seconds(p) for p in procs]
    redis_before = cpu_seconds(SERVER_PIDS[url])
    began = time.perf_counter()
    await fill(url, source, count)
    await wait_len(url, out, count, 600)
    elapsed = time.perf_counter() - began
    used = sum(cpu_seconds(p) - b for p, b in zip(procs, before, strict=True))
    redis_used = cpu_seconds(SERVER_PIDS[url]) - redis_before
    return count / elapsed, used / elapsed, redis_used / elapsed


async def baseline_run(url: str, n: int, count: int) -> tuple[float, float, float]:
    stream = f"base{n}:in"
    client = aioredis.Redis.from_url(url)
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    await client.aclose()
    procs = [
        subprocess.Popen([sys.executable, __file__, "--serve-baseline", url, stream, f"c{i}"])
        for i in range(n)
    ]
    try:
        await anyio.sleep(0.5)  # the loops only need a connection: nothing to probe
        return await measure(url, procs, stream, f"{stream}:out", count)
    finally:
        stop_processes(procs)


async def printery_run(url: str, n: int, count: int) -> tuple[float, float, float]:
    prefix = f"so{n}"
    keys = Keys(prefix)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(n):
            port = free_port()
            env = {
                **os.environ,
                "REDIS_URL": url,
                "STREAM_PREFIX": prefix,
                "WORKER_MODE": "validator",
                "CONSUMER_NAME": f"scale-{i}",
                "HTTP_HOST": "127.0.0.1",
                "HTTP_PORT": str(port),
                "LOG_LEVEL": "error",
                "PYTHONPATH": str(ROOT),
            }
            procs.append(
                subprocess.Popen([sys.executable, str(ROOT / "cmd" / "printery-workers")], env=env)
            )
            await anyio.to_thread.run_sync(wait_http, f"http://127.0.0.1:{port}/ready", 60)
        return await measure(url, procs, keys.started, keys.validated, count)
    finally:
        stop_processes(procs)


async def main(count: int, counts: list[int]) -> None:
    print(f"scale-out, {count} messages, {machine()}")
    print("  validator processes sharing one group; baseline: as many plain redis-py loops")
    with redis_server() as url:
        first: float | None = None
        for n in counts:
            base, base_cores, base_redis = await baseline_run(url, n, count)
            rate, cores, redis_cores = await printery_run(url, n, count)
            first = first or rate
            print(
                f"  {n} process{'es' if n > 1 else '  '}: printery {rate:7,.0f} msg/s "
                f"({rate / base:.2f} x baseline {base:7,.0f}; {rate / first:.2f} x 1 process)  "
                f"cores: printery {cores:.2f} + redis {redis_cores:.2f}, "
                f"baseline {base_cores:.2f} + redis {base_redis:.2f}"
            )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-baseline"]:
        serve_baseline(*sys.argv[2:5])
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--messages", type=int, default=20_000)
        parser.add_argument("--processes", default="1,2,4")
        args: Any = parser.parse_args()
        anyio.run(main, args.messages, [int(n) for n in args.processes.split(",")])
