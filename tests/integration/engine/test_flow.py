"""The stream runtime against a real redis-server: handling, acks, outputs, drain."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from printery.lifecycle import Hub, Outcome
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from printery.settings import load_settings
from printery.supervisor.manager import WorkerManager
from printery.worker import WorkerDeps
from tests.support.events import Recorder, handled
from tests.support.harness import make_deps, running
from tests.support.redis_server import RedisServer
from tests.support.workers import EchoWorker

pytestmark = pytest.mark.timeout(30)


def _deps(adapter: StreamAdapter, prefix: str, consumer: str = "c1", **env: str) -> WorkerDeps:
    settings = load_settings(
        {}, {"STREAM_PREFIX": prefix, "BLOCK_MS": "200", "CLAIM_IDLE_MS": "2000", **env}
    )
    return WorkerDeps(settings, adapter, Keys(prefix), consumer)


async def test_messages_flow_through_and_are_acked(
    redis_server: RedisServer, real_adapter: StreamAdapter, prefix: str
) -> None:
    """Every published entry yields one output and leaves nothing pending."""
    recorder = Recorder()
    worker = EchoWorker(_deps(real_adapter, prefix))
    manager = WorkerManager(emit=Hub([recorder]))
    manager.register(worker)
    for i in range(20):
        await real_adapter.add(worker.stream, {"n": str(i)})
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        await manager.start_all()
        await recorder.wait_for(lambda ev: len(handled(ev)) == 20)
        await manager.stop_all()
    client = real_adapter.client
    assert await client.xlen(worker.out) == 20
    stats = await real_adapter.group_stats(worker.stream, worker.group)
    assert stats is not None
    assert stats.pending == 0
    assert {e.outcome for e in handled(recorder.events)} == {Outcome.ACKED}


async def test_cpu_bound_handler_leaves_room_for_other_tasks(
    redis_server: RedisServer, real_adapter: StreamAdapter, prefix: str
) -> None:
    """Buffered messages run back to back, but other tasks get a turn every millisecond.

    Each message holds the CPU for 0.5 ms without awaiting anything, so a 1 ms
    slice ends after at most 3 of them; a loop that never yielded would run a
    whole read batch (100) between two turns of the ticker.
    """
    recorder = Recorder()
    worker = EchoWorker(make_deps(real_adapter, prefix, ECHO_CONCURRENCY="1"))
    for _ in range(300):
        await real_adapter.add(worker.stream, {"busy": "0.0005"})
    seen: list[int] = []  # messages begun, at each turn of the ticker

    async def ticker() -> None:
        while True:
            seen.append(len(worker.calls))
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        async with running(worker, recorder=recorder):
            await recorder.wait_for(lambda ev: len(handled(ev)) == 300)
        tg.cancel_scope.cancel()
    assert worker.concurrency == 1
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert max(gaps) <= 3, f"up to {max(gaps)} messages ran between two turns of another task"
    assert seen[-1] == 300


async def test_waiting_handlers_leave_the_event_loop_idle(
    redis_server: RedisServer, real_adapter: StreamAdapter, prefix: str
) -> None:
    """While handlers wait on I/O with messages queued behind them, the runtime waits too.

    The committer lingers for results to share a round trip; it must wait for
    them, not poll: polling kept a notifier's CPU busy. Polling shows as turns
    of the event loop: about 3 a message when waiting, 40-50 when polling.
    """
    recorder = Recorder()
    worker = EchoWorker(make_deps(real_adapter, prefix, ECHO_CONCURRENCY="4"))
    for _ in range(200):
        await real_adapter.add(worker.stream, {"sleep": "0.02"})
    async with running(worker, recorder=recorder):
        await recorder.wait_for(lambda ev: len(handled(ev)) >= 1)
        with _loop_turns() as turns:
            await recorder.wait_for(lambda ev: len(handled(ev)) == 200)
    assert turns[0] < 10 * 200, f"{turns[0]} turns of the event loop for 200 messages"


@contextlib.contextmanager
def _loop_turns() -> Iterator[list[int]]:
    """Count the event loop's turns (each polls its selector once) in the block."""
    selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]  # no public count
    select, turns = selector.select, [0]

    def counted(timeout: float | None = None) -> Any:
        turns[0] += 1
        return select(timeout)

    selector.select = counted
    try:
        yield turns
    finally:
        selector.select = select


class GatedWorker(EchoWorker):
    """Echo whose handlers wait at a gate, counting how many run at once."""

    def __init__(self, deps: WorkerDeps) -> None:
        super().__init__(deps)
        self.gate = anyio.Event()
        self.now = 0
        self.peak = 0
        self._at: dict[int, anyio.Event] = {}

    async def running_at_once(self, count: int) -> None:
        """Return once ``count`` handlers wait at the gate together."""
        if self.now < count:
            await self._at.setdefault(count, anyio.Event()).wait()

    async def handle(self, message: Any) -> Any:
        self.now += 1
        self.peak = max(self.peak, self.now)
        if self.now in self._at:
            self._at.pop(self.now).set()
        try:
            await self.gate.wait()
            return await super().handle(message)
        finally:
            self.now -= 1


def _handler_tasks() -> int:
    return sum("_handler_loop" in task.get_name() for task in asyncio.all_tasks())


async def test_handler_tasks_start_as_messages_need_them_up_to_the_concurrency(
    redis_server: RedisServer, real_adapter: StreamAdapter, prefix: str
) -> None:
    """An idle worker holds no handler task; 3 messages start 3, 103 start 50 (its concurrency).

    The tasks are kept once started, and never more than the concurrency run.
    """
    recorder = Recorder()
    worker = GatedWorker(make_deps(real_adapter, prefix, ECHO_CONCURRENCY="50"))
    async with running(worker, recorder=recorder):
        assert 0 == _handler_tasks()
        for n in range(3):
            await real_adapter.add(worker.stream, {"n": str(n)})
        await worker.running_at_once(3)
        assert 3 == _handler_tasks()
        for n in range(100):
            await real_adapter.add(worker.stream, {"n": str(n)})
        await worker.running_at_once(50)
        assert (50, 50) == (_handler_tasks(), worker.peak)
        worker.gate.set()
        await recorder.wait_for(lambda ev: len(handled(ev)) == 103)
        assert (50, 50) == (_handler_tasks(), worker.peak)
