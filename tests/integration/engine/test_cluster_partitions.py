"""A worker over many partitions (cluster mode's engine) against a real redis-server.

The partitioned engine names its streams by hash tag; one standalone server
holds them all as well as a cluster would, so these tests need no cluster:
what is under test is how one worker shares its handlers among partitions
(turns), how a drain treats a handler waiting for its turn, and the worker's
state when some partitions are degraded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from printery.errors import RedisUnavailable
from printery.lifecycle import LifecycleEvent, Outcome, RedisConnectivity
from printery.message import Message
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys, Partitions
from printery.redis.replies import Entry
from printery.redis.writes import Write
from printery.worker import StreamWorker, WorkerDeps
from tests.support.events import Recorder, handled
from tests.support.harness import make_deps, running

pytestmark = pytest.mark.timeout(30)


class PartWorker(StreamWorker):
    """Reads ``<root>:test:in`` of each partition, writes ``<root>:test:out``; records who ran."""

    name = "part"
    default_concurrency = 1

    def __init__(self, deps: WorkerDeps) -> None:
        super().__init__(deps)
        self.order: list[tuple[str, str]] = []  # (partition root, message id), as begun
        self.now = 0
        self.peak = 0
        self.hold: anyio.Event | None = None  # set: messages with "hold" wait for it
        self.holding = anyio.Event()

    @property
    def stream(self) -> str:
        return f"{self.keys.root}:test:in"

    async def handle(self, message: Message) -> Sequence[Write]:
        self.order.append((self.keys.root, message.id))
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            if "busy" in message.fields:  # CPU work that never yields
                until = time.monotonic() + float(message.fields["busy"])
                while time.monotonic() < until:
                    pass
            if "sleep" in message.fields:
                await anyio.sleep(float(message.fields["sleep"]))  # the handler's own work
            if "hold" in message.fields and self.hold is not None:
                self.holding.set()
                await self.hold.wait()
        finally:
            self.now -= 1
        return [Write.xadd(f"{self.keys.root}:test:out", {"in_id": message.id})]


def _parts(prefix: str, count: int) -> tuple[Keys, ...]:
    return Partitions(Keys(prefix), count).all


def _worker(adapter: StreamAdapter, prefix: str, count: int, **env: str) -> PartWorker:
    deps = make_deps(adapter, prefix, REDIS_MODE="cluster", PARTITIONS=str(count), **env)
    return PartWorker(deps)


async def _publish(adapter: StreamAdapter, keys: Keys, n: int, **fields: str) -> list[str]:
    stream = f"{keys.root}:test:in"
    return [await adapter.add(stream, {"n": str(i), **fields}) for i in range(n)]


def _runs(order: list[tuple[str, str]]) -> list[str]:
    """The partitions in the order they were handled, one entry per unbroken run."""
    runs: list[str] = []
    for root, _ in order:
        if not runs or runs[-1] != root:
            runs.append(root)
    return runs


async def test_concurrency_is_the_workers_over_all_partitions(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """Concurrency 2 over 4 busy partitions: never more than 2 handlers at once; all acked."""
    recorder = Recorder()
    worker = _worker(real_adapter, prefix, 4, PART_CONCURRENCY="2")
    for keys in _parts(prefix, 4):
        await _publish(real_adapter, keys, 10, sleep="0.005")
    async with running(worker, recorder=recorder):
        await recorder.wait_for(lambda ev: len(handled(ev)) == 40)
    assert worker.peak == 2
    assert {e.outcome for e in handled(recorder.events)} == {Outcome.ACKED}
    for keys in _parts(prefix, 4):
        assert await real_adapter.length(f"{keys.root}:test:out") == 10


async def test_each_partitions_read_messages_are_handled_in_one_run(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """Concurrency 1, three partitions of 30 read at once: three runs, not interleaved.

    A handler keeps its turn while its partition has read messages waiting,
    which is what lets the partition's committer commit them together. Each
    message holds the CPU 0.5 ms, so handlers that yield once a millisecond
    would interleave the partitions without turns.
    """
    recorder = Recorder()
    worker = _worker(real_adapter, prefix, 3)
    for keys in _parts(prefix, 3):
        await _publish(real_adapter, keys, 30, busy="0.0005")
    async with running(worker, recorder=recorder):
        await recorder.wait_for(lambda ev: len(handled(ev)) == 90)
    runs = _runs(worker.order)
    assert sorted(runs) == sorted(k.root for k in _parts(prefix, 3))


async def test_a_backlog_does_not_hold_off_another_partition_past_its_turn(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """150 messages of 2 ms in one partition, 1 in another: that one goes within the first."""
    recorder = Recorder()
    worker = _worker(real_adapter, prefix, 2)
    busy, other = _parts(prefix, 2)
    await _publish(real_adapter, busy, 150, sleep="0.002")
    [lone] = await _publish(real_adapter, other, 1)
    async with running(worker, recorder=recorder):
        await recorder.wait_for(lambda ev: len(handled(ev)) == 151)
    position = worker.order.index((other.root, lone))
    # 150 x 2 ms is 0.3 s; a turn lasts TURN_S (0.1 s) while another partition waits.
    assert position < 150


async def test_drain_hands_back_a_message_waiting_for_its_turn(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """A handler holds the only turn; the drain hands the waiting one's message back, uncounted."""
    recorder = Recorder()
    worker = _worker(real_adapter, prefix, 2, CLAIM_IDLE_MS="60000")
    worker.hold = anyio.Event()
    first, second = _parts(prefix, 2)
    [held] = await _publish(real_adapter, first, 1, hold="1")
    async with running(worker, recorder=recorder) as manager:
        with anyio.fail_after(10):
            await worker.holding.wait()
        [waiting] = await _publish(real_adapter, second, 1)
        with anyio.fail_after(10):
            # Read, and its handler waiting for the turn: nothing to await but the
            # consumer's bookkeeping, so it is looked at every 10 ms.
            while not any(waiting in c.started for c in worker.consumers):
                await anyio.sleep(0.01)
        assert worker.ctx is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(manager.stop_all)
            await worker.ctx.stopping.wait()
            worker.hold.set()  # the running handler finishes and commits in the drain
    assert (second.root, waiting) not in worker.order
    assert [(e.message_id, e.outcome) for e in handled(recorder.events)] == [(held, Outcome.ACKED)]
    _, claimed, _ = await real_adapter.autoclaim(
        f"{second.root}:test:in", "part", "c2", min_idle_ms=60000, start="0-0", count=10
    )
    assert [(waiting, 1)] == [(e.id, e.deliveries) for e in claimed]  # handed back uncounted


class DownAdapter(StreamAdapter):
    """Reads of the streams in ``down`` fail as if their node were away."""

    down: set[str]

    async def read(self, stream: str, *args: Any, **kwargs: Any) -> list[Entry]:
        if stream in self.down:
            await anyio.sleep(0.01)  # an outage answers late, never at once
            raise RedisUnavailable(f"{stream}: connection refused")
        return await super().read(stream, *args, **kwargs)


def _connectivity(events: list[LifecycleEvent], *, up: bool) -> list[RedisConnectivity]:
    return [e for e in events if isinstance(e, RedisConnectivity) and e.up is up]


async def test_worker_is_degraded_while_any_partition_is(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """Two partitions down, then one back: still degraded; both back: running again."""
    adapter = DownAdapter(real_adapter.client)
    adapter.down = set()
    recorder = Recorder()
    worker = _worker(adapter, prefix, 3)
    one, two, _ = (f"{k.root}:test:in" for k in _parts(prefix, 3))
    async with running(worker, recorder=recorder) as manager:
        adapter.down |= {one, two}
        await recorder.wait_for(
            lambda ev: all(
                any(s in e.error for e in _connectivity(ev, up=False)) for s in (one, two)
            )
        )
        assert manager.status()["part"].state.value == "degraded"
        adapter.down.discard(two)
        await recorder.wait_for(lambda ev: len(_connectivity(ev, up=True)) == 1)
        assert manager.status()["part"].state.value == "degraded"
        adapter.down.clear()
        await recorder.wait_for(lambda ev: len(_connectivity(ev, up=True)) == 2)
        assert manager.status()["part"].state.value == "running"
