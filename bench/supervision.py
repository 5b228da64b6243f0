"""Supervision: crash to replacement reading again, and drain of 1,000 in-flight handlers.

- Crash: a supervised worker (RESTART_BACKOFF_MS=0) crashes; measured from the
  crash to its replacement's first read, against the baseline of the same
  worker's cold start (serve() called to first read) in the same run.
  Target: under 100 ms plus the configured backoff.
- Drain: 1,000 handlers each sleeping 1 s are in flight when the drain
  starts; measured from stop_all() to every one acked, against the baseline
  of one handler's own duration. Target: close to 1 x.

    python bench/supervision.py
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
from anyio.abc import TaskStatus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, redis_server
from printery.lifecycle import Hub, LifecycleEvent, MessageHandled, WorkerState, WorkerStateChanged
from printery.message import Message
from printery.redis.adapter import StreamAdapter, connect
from printery.redis.keys import Keys
from printery.redis.writes import Write
from printery.settings import load_settings
from printery.supervisor.manager import WorkerManager
from printery.supervisor.restarts import RestartPolicy
from printery.worker import StreamWorker, WorkerContext, WorkerDeps

SLEEP_S = 1.0


class Sleeper(StreamWorker):
    name = "sleeper"

    def __init__(self, deps: WorkerDeps) -> None:
        super().__init__(deps)
        self.crash = anyio.Event()

    @property
    def stream(self) -> str:
        return f"{self.keys.prefix}:in"

    async def handle(self, message: Message) -> Sequence[Write]:
        await anyio.sleep(SLEEP_S)
        return [Write.xadd(f"{self.keys.prefix}:out", {"in": message.id})]

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._crash_on_demand)
            await super().serve(ctx, task_status=task_status)
            tg.cancel_scope.cancel()  # drained: the crash trigger goes with it

    async def _crash_on_demand(self) -> None:
        await self.crash.wait()
        self.crash = anyio.Event()
        raise RuntimeError("crash on demand")


class Timeline:
    def __init__(self) -> None:
        self.running: list[float] = []
        self.handled = 0
        self.changed = anyio.Event()

    def __call__(self, event: LifecycleEvent) -> None:
        if isinstance(event, WorkerStateChanged) and event.new is WorkerState.RUNNING:
            self.running.append(time.perf_counter())
        if isinstance(event, MessageHandled):
            self.handled += 1
        self.changed.set()
        self.changed = anyio.Event()


async def crash_to_reading(url: str) -> tuple[float, float]:
    settings = load_settings({}, {"STREAM_PREFIX": "sup-crash", "BLOCK_MS": "1000"})
    adapter = StreamAdapter(connect(url, socket_timeout=5, connect_timeout=2))
    worker = Sleeper(WorkerDeps(settings, adapter, Keys("sup-crash"), "c"))
    timeline = Timeline()
    manager = WorkerManager(
        emit=Hub([timeline]),
        supervised=True,
        policy=RestartPolicy(max_restarts=100, backoff_s=0, backoff_max_s=0),
    )
    manager.register(worker)
    cold, crashes = 0.0, []
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        began = time.perf_counter()
        await manager.start_all()
        cold = timeline.running[0] - began
        for n in range(20):
            crashed_at = time.perf_counter()
            worker.crash.set()
            while len(timeline.running) < n + 2:
                await timeline.changed.wait()
            crashes.append(timeline.running[-1] - crashed_at)
        await manager.stop_all()
    await adapter.close()
    crashes.sort()
    return cold, crashes[len(crashes) // 2]


async def drain(url: str, count: int) -> float:
    settings = load_settings(
        {},
        {
            "STREAM_PREFIX": "sup-drain",
            "SLEEPER_CONCURRENCY": str(count),
            "BATCH_SIZE": "1000",
            "SHUTDOWN_TIMEOUT": "60",
        },
    )
    adapter = StreamAdapter(connect(url, socket_timeout=5, connect_timeout=2))
    worker = Sleeper(WorkerDeps(settings, adapter, Keys("sup-drain"), "c"))
    async with adapter.client.pipeline(transaction=False) as pipe:
        for n in range(count):
            pipe.xadd(worker.stream, {"n": str(n)})
        await pipe.execute()
    timeline = Timeline()
    manager = WorkerManager(emit=Hub([timeline]), shutdown_timeout=60)
    manager.register(worker)
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        await manager.start_all()
        await anyio.sleep(SLEEP_S / 2)  # every handler is now mid-sleep: the state to drain
        began = time.perf_counter()
        await manager.stop_all()
        elapsed = time.perf_counter() - began
    acked = await adapter.client.xlen(f"{worker.keys.prefix}:out")
    await adapter.close()
    if acked != count:
        raise SystemExit(f"bench: only {acked} of {count} acked by the drain")
    return elapsed + SLEEP_S / 2  # from the handlers' start, comparable to one handler's time


async def main() -> None:
    print(f"supervision, {machine()}")
    with redis_server() as url:
        cold, crash = await crash_to_reading(url)
        print(f"  baseline cold start (serve() to first read):     {cold * 1000:7.1f} ms")
        print(
            f"  crash to replacement reading (backoff 0, median of 20): {crash * 1000:7.1f} ms "
            f"({crash / cold:.2f} x cold start; target < 100 ms)"
        )
        took = await drain(url, 1000)
        print(f"  baseline one handler:                             {SLEEP_S * 1000:7.1f} ms")
        print(
            f"  1,000 in-flight handlers drained and acked in:    {took * 1000:7.1f} ms "
            f"({took / SLEEP_S:.2f} x one handler)"
        )


if __name__ == "__main__":
    anyio.run(main)
