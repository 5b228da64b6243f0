"""Workers in their own processes: what a child costs, against the same work in-process.

Side by side, in one run, on one redis-server:

- **pool**: a pass-through worker of the workers file (2 children, pool
  protocol 1: one JSON line each way per message) against the same
  pass-through written as an in-process ``StreamWorker`` (concurrency 2).
  Both read the same ``deployment.started`` entries (~450 bytes) and write one
  output event per input with the ack. Target: the pool at >= 0.5x.
  ``prefetch = 100`` is measured too: reads and commits then carry many
  messages per round trip, as the in-process worker's do.
- **oneshot**: one process per message (2 at a time) against bare
  ``python -c pass`` spawns (2 at a time): what oneshot adds to a spawn.

    python bench/processes.py [--messages 5000] [--oneshot 200] [--rounds 3]

Rates are taken from Redis's own entry ids, first output to last, so a
pool's start (spawning its children) is not counted as message time. Ratios
are medians over rounds; each round runs every side once. Each line also
gives the CPU per message of the daemon (this process: event loop, Redis
client, the exchange with the children), of the children (reaped when the
worker stops) and of redis-server: the figures that stay put when a shared
machine is noisy. The last line adds them up for the pool with read-ahead:
the most messages a second this machine's cores could run at that cost, if
every core were busy, against what the target asks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SERVER_PIDS, machine, process_cpu_s, redis_server
from bench.peers import entry_ms
from bench.pipeline_latency import cpu_seconds
from bench.runtime_throughput import PassThrough, fill, run_until_handled
from printery.processes.worker import process_worker_factory
from printery.processes.workers_file import WorkerDefinition
from printery.redis.adapter import StreamAdapter, connect
from printery.redis.keys import Keys
from printery.settings import load_settings
from printery.worker import StreamWorker, WorkerDeps

CHILDREN = Path(__file__).resolve().parent / "children"
PREFETCH = 100  # 2 × (1 + 100) = 202 held: the in-process worker's read-ahead (2 + 2 × 100)


def _definition(mode: str, prefetch: int = 0) -> WorkerDefinition:
    script = "passthrough_pool.py" if mode == "pool" else "passthrough_oneshot.py"
    return WorkerDefinition(
        name="passthrough",
        command=(sys.executable, str(CHILDREN / script)),
        input="in",
        outputs=("out",),
        mode="pool" if mode == "pool" else "oneshot",
        processes=2,
        prefetch=prefetch,
    )


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class _Cpu:
    """CPU µs per message of this process, its reaped children and Redis, per side, over rounds."""

    def __init__(self, url: str) -> None:
        self.redis_pid = SERVER_PIDS[url]
        self.own: dict[str, list[float]] = {}
        self.children: dict[str, list[float]] = {}
        self.redis: dict[str, list[float]] = {}

    async def measure(self, side: str, count: int, run: Any) -> float:
        own, children = process_cpu_s(), _children_cpu_s()
        server = cpu_seconds(self.redis_pid)
        elapsed: float = await run
        self.own.setdefault(side, []).append((process_cpu_s() - own) / count * 1e6)
        self.children.setdefault(side, []).append((_children_cpu_s() - children) / count * 1e6)
        self.redis.setdefault(side, []).append((cpu_seconds(self.redis_pid) - server) / count * 1e6)
        return elapsed

    def total(self, side: str) -> float:
        """Median CPU µs per message of the daemon, the children and Redis together."""
        return sum(statistics.median(x[side]) for x in (self.own, self.children, self.redis))

    def line(self, side: str) -> str:
        own = statistics.median(self.own[side])
        children = statistics.median(self.children[side])
        server = statistics.median(self.redis[side])
        return (
            f"daemon {own:4.0f} µs/msg"
            + (f", children {children:3.0f}" if children else "")
            + f", Redis {server:3.0f}"
        )


async def _run(url: str, prefix: str, count: int, kind: str, prefetch: int = 0) -> float:
    """Seconds to handle ``count`` messages with ``kind``: inproc, pool or oneshot."""
    settings = load_settings(
        {}, {"STREAM_PREFIX": prefix, "PASSTHROUGH_CONCURRENCY": "2", "LOG_LEVEL": "warning"}
    )
    adapter = StreamAdapter(connect(url, socket_timeout=5, connect_timeout=2))
    deps = WorkerDeps(settings, adapter, Keys(prefix), "c")
    worker: StreamWorker
    if kind == "inproc":
        worker = PassThrough(deps)
    else:
        worker = process_worker_factory(_definition(kind, prefetch))(deps)  # type: ignore[assignment]  # a ProcessWorker
    elapsed = await run_until_handled(worker, count)
    outputs = await adapter.length(f"{prefix}:out")
    await adapter.close()
    if outputs != count:
        raise SystemExit(f"bench: {kind} wrote {outputs} outputs for {count} messages")
    if kind == "oneshot":
        return elapsed  # a spawn per message: its start is message time
    client = aioredis.Redis.from_url(url)
    (first, _), *_ = await client.xrange(f"{prefix}:out", count=1)
    (last, _), *_ = await client.xrevrange(f"{prefix}:out", count=1)
    await client.aclose()
    return max(entry_ms(last) - entry_ms(first), 1) / 1000 * count / (count - 1)


async def _bare_spawns(count: int) -> float:
    """Seconds for ``count`` ``python -c pass`` runs, two at a time."""
    limit = anyio.Semaphore(2)

    async def one() -> None:
        async with limit:
            process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
            await process.wait()

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    return time.perf_counter() - began


async def main(count: int, oneshot: int, rounds: int) -> None:
    print(f"processes: {count} messages (pool), {oneshot} (oneshot), {rounds} rounds, {machine()}")
    inproc_rates: list[float] = []
    ratios: list[float] = []
    prefetched: list[float] = []
    spawn_ms: list[float] = []
    oneshot_ms: list[float] = []
    with redis_server() as url:
        cpu = _Cpu(url)
        for r in range(rounds):
            await fill(url, f"i{r}:in", count)
            inproc = count / await cpu.measure("i", count, _run(url, f"i{r}", count, "inproc"))
            await fill(url, f"p{r}:in", count)
            pool = count / await cpu.measure("p", count, _run(url, f"p{r}", count, "pool"))
            await fill(url, f"f{r}:in", count)
            ahead = count / await cpu.measure(
                "f", count, _run(url, f"f{r}", count, "pool", PREFETCH)
            )
            inproc_rates.append(inproc)
            ratios.append(pool / inproc)
            prefetched.append(ahead / inproc)
            await fill(url, f"o{r}:in", oneshot)
            oneshot_ms.append(await _run(url, f"o{r}", oneshot, "oneshot") / oneshot * 1000)
            spawn_ms.append(await _bare_spawns(oneshot) / oneshot * 1000)
    inproc = statistics.median(inproc_rates)
    ratio = statistics.median(ratios)
    spread = ", ".join(f"{x:.2f}" for x in ratios)
    print(
        f"  in-process StreamWorker pass-through (concurrency 2): {inproc:9,.0f} msg/s (median)"
        f"; {cpu.line('i')}"
    )
    print(
        f"  pool worker pass-through (2 children):                {inproc * ratio:9,.0f} msg/s"
        f" = {ratio:.2f} x in-process (rounds: {spread}; target >= 0.5); {cpu.line('p')}"
    )
    ahead = statistics.median(prefetched)
    spread = ", ".join(f"{x:.2f}" for x in prefetched)
    print(
        f"  the same, prefetch = {PREFETCH} (read ahead per child):"
        f"      {inproc * ahead:9,.0f} msg/s = {ahead:.2f} x in-process (rounds: {spread})"
        f"; {cpu.line('f')}"
    )
    cores = os.cpu_count() or 1
    total = cpu.total("f")
    print(
        f"  CPU of the pool with read-ahead, all processes:      {total:9.0f} µs/msg: at most"
        f" {cores / total * 1e6:,.0f} msg/s on {cores} cores all busy; the target asks"
        f" {inproc / 2:,.0f}"
    )
    bare, per_message = statistics.median(spawn_ms), statistics.median(oneshot_ms)
    print(f"  bare `python -c pass` spawn, 2 at a time:             {bare:9.2f} ms each")
    print(
        f"  oneshot pass-through, 2 at a time:                    {per_message:9.2f} ms per message"
        f" = {per_message / bare:.2f} x a bare spawn"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--oneshot", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.messages, args.oneshot, args.rounds)
