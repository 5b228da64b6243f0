"""Runtime throughput: printery's stream runtime against a plain redis-py loop, side by side.

Both consume the same 50,000 ``deployment.started`` entries (~450 bytes),
decode ``data``, emit one output event per input and acknowledge it. The
baseline reads with ``XREADGROUP COUNT 100`` and sends one pipelined round
trip of ``XADD``s and ``XACK`` per batch; printery runs a pass-through
``StreamWorker`` under a ``WorkerManager``. The ratio is what counts: both
run in the same process tree on the same redis-server, one after the other.

    python bench/runtime_throughput.py [--messages 30000] [--rounds 3]

Ratios are the median over rounds; each round runs every side once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import deployment_fields, machine, redis_server
from printery.envelope import Event
from printery.lifecycle import Hub, LifecycleEvent, MessageHandled
from printery.message import Message
from printery.redis.adapter import StreamAdapter, connect, translated
from printery.redis.keys import Keys
from printery.redis.writes import Write
from printery.settings import load_settings
from printery.supervisor.manager import WorkerManager
from printery.worker import StreamWorker, WorkerDeps


async def fill(
    url: str, stream: str, count: int, health_check: dict[str, Any] | None = None
) -> None:
    client = aioredis.Redis.from_url(url)
    for start in range(0, count, 1000):
        async with client.pipeline(transaction=False) as pipe:
            for n in range(start, min(count, start + 1000)):
                pipe.xadd(stream, deployment_fields(n, health_check))  # type: ignore[arg-type]
            await pipe.execute()
    await client.aclose()


def output_fields(fields: dict[bytes, bytes]) -> dict[str, str]:
    data = json.loads(fields[b"data"])
    event = Event.create("deployment.validated", data["deployment_id"], data, source="bench")
    return event.to_fields()


async def baseline(url: str, stream: str, count: int) -> float:
    """The hand-rolled loop printery must keep up with."""
    client = aioredis.Redis.from_url(url)
    await client.xgroup_create(stream, "g", id="0")
    out = f"{stream}:out"
    done = 0
    began = time.perf_counter()
    while done < count:
        reply = await client.xreadgroup("g", "c", {stream: ">"}, count=100, block=1000)
        if not reply:
            continue
        entries = reply[0][1]
        async with client.pipeline(transaction=False) as pipe:
            for _, fields in entries:
                pipe.xadd(out, output_fields(fields))  # type: ignore[arg-type]
            pipe.xack(stream, "g", *[entry_id for entry_id, _ in entries])
            await pipe.execute()
        done += len(entries)
    elapsed = time.perf_counter() - began
    await client.aclose()
    return count / elapsed


class PassThrough(StreamWorker):
    name = "passthrough"

    @property
    def stream(self) -> str:
        return f"{self.keys.prefix}:in"

    async def handle(self, message: Message) -> Sequence[Write]:
        return [Write.xadd(f"{self.keys.prefix}:out", output_fields(message.raw))]


class PlainCommitAdapter(StreamAdapter):
    """The same runtime with a non-atomic commit (pipelined XADD + XACK), to price the script."""

    async def commit(
        self, stream: str, group: str, batch: Sequence[tuple[str, Sequence[Write]]]
    ) -> list[bool]:
        with translated():
            async with self.client.pipeline(transaction=False) as pipe:
                for _, writes in batch:
                    for w in writes:
                        pipe.xadd(w.key, dict(zip(w.args[::2], w.args[1::2], strict=True)))
                pipe.xack(stream, group, *[entry_id for entry_id, _ in batch])
                await pipe.execute()
        return [True] * len(batch)


async def run_until_handled(worker: StreamWorker, count: int) -> float:
    """Run ``worker`` under a WorkerManager until it has handled ``count`` messages; seconds."""
    done = anyio.Event()
    handled = 0

    def count_handled(event: LifecycleEvent) -> None:
        nonlocal handled
        if isinstance(event, MessageHandled):
            handled += 1
            if handled == count:
                done.set()

    manager = WorkerManager(emit=Hub([count_handled]))
    manager.register(worker)
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        began = time.perf_counter()
        await manager.start_all()
        async with anyio.create_task_group() as first:

            async def finish(event: anyio.Event) -> None:
                await event.wait()
                first.cancel_scope.cancel()

            first.start_soon(finish, done)
            first.start_soon(finish, manager.fatal)
        elapsed = time.perf_counter() - began
        await manager.stop_all()
    if manager.fatal.is_set():
        raise SystemExit("bench: the worker crashed; run with LOG_LEVEL=debug to see why")
    return elapsed


async def printery_run(url: str, prefix: str, count: int, concurrency: int, atomic: bool) -> float:
    settings = load_settings(
        {}, {"STREAM_PREFIX": prefix, "PASSTHROUGH_CONCURRENCY": str(concurrency)}
    )
    client = connect(url, socket_timeout=5, connect_timeout=2)
    adapter = StreamAdapter(client) if atomic else PlainCommitAdapter(client)
    worker = PassThrough(WorkerDeps(settings, adapter, Keys(prefix), "c"))
    elapsed = await run_until_handled(worker, count)
    await adapter.close()
    return count / elapsed


async def main(count: int, rounds: int) -> None:
    print(f"runtime throughput, {count} messages, {rounds} rounds, {machine()}")
    # Each round runs the baseline and every printery variant one after the other, and
    # ratios are taken within a round: a busy neighbour slows both sides of a ratio alike.
    base_rates: list[float] = []
    rates: dict[tuple[int, bool], list[float]] = {}
    with redis_server() as url:
        for r in range(rounds):
            await fill(url, f"base{r}:in", count)
            base = await baseline(url, f"base{r}:in", count)
            base_rates.append(base)
            for concurrency in (1, 4, 16):
                for atomic in (True, False):
                    prefix = f"p{r}c{concurrency}{'a' if atomic else 'n'}"
                    await fill(url, f"{prefix}:in", count)
                    rate = await printery_run(url, prefix, count, concurrency, atomic)
                    rates.setdefault((concurrency, atomic), []).append(rate / base)
    base = statistics.median(base_rates)
    print(f"  baseline redis-py loop (COUNT 100, 1 round trip/batch): {base:9,.0f} msg/s (median)")
    for concurrency in (1, 4, 16):
        atomic = statistics.median(rates[concurrency, True])
        plain = statistics.median(rates[concurrency, False])
        spread = ", ".join(f"{x:.2f}" for x in rates[concurrency, True])
        cost = plain / atomic - 1
        print(
            f"  printery concurrency {concurrency:2}: atomic {atomic:.2f} x baseline "
            f"(rounds: {spread}), plain {plain:.2f} x; atomic commit costs {cost:+.1%}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.messages, args.rounds)
