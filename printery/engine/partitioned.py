"""One worker over every partition of its stage: a consumer per partition stream.

In cluster mode (README "Redis Cluster") a stage's stream is ``PARTITIONS`` streams, one
per hash tag, spread over the primaries. A worker reads all of them: one
:class:`~printery.engine.consumer.StreamConsumer` per partition, in one task
group, every daemon in the same consumer groups (no assignment protocol:
the groups share the work, as they do for one stream). Why one consumer per
stream rather than one XREADGROUP over many: a cluster refuses a command
whose keys span hash slots (CROSSSLOT), and every partition has a slot of
its own, so a read cannot cover two partitions; a consumer per stream also
keeps the claim, hand-back, drain and reap paths of standalone mode
unchanged. The cost is one blocking connection per partition while idle
(``bench/cluster.py`` counts them).

Each consumer's task carries its partition's :class:`~printery.redis.keys.Keys`
in :data:`PARTITION_KEYS`; the handler tasks it spawns inherit it, so a
worker's ``self.keys`` (printery.worker) names its partition's keys, and
everything one message writes shares the input's hash tag.

The worker's concurrency is the worker's over all its partitions: each
partition runs ``ceil(concurrency / partitions)`` handler tasks (1000 watch
slots over 12 partitions are 84 tasks each, not 12,000 to start), and
:class:`Turns` lets at most ``concurrency`` of them run a handler at once, as
in standalone mode (a worker of concurrency 1 runs one handler, not 12). A
handler keeps its turn from one message of its partition to the next while
that partition has read messages waiting; when another partition waits, for
``TURN_BATCHES`` x ``BATCH_SIZE`` messages (what a consumer reads ahead) or
``TURN_S``, whichever comes first. So one partition's messages are handled
in runs, and its committer finds a run's results together and commits them
in a few script calls. (Handlers without turns, one per partition,
interleaved message by message, and each commit carried a handful of
results: a commit costs mostly per call, not per message.) A turn counted in
messages keeps its length when the machine is busy; the time bound serves
slow handlers. A handler waiting for its turn beats (it is not hung), and
the drain hands its message back uncounted.

A worker is degraded while any of its partitions is (their consumers report
it), and running again once every one has reconnected.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from printery.engine.consumer import StreamConsumer
from printery.engine.state import Handled, handler_progress
from printery.errors import Drained
from printery.lifecycle import WorkerState
from printery.message import Message
from printery.redis.keys import Keys
from printery.redis.writes import Write

if TYPE_CHECKING:
    from printery.context import WorkerContext, WorkerDeps

__all__ = ["PARTITION_KEYS", "TURN_BATCHES", "TURN_S", "PartitionView", "Turns", "run_partitions"]

PARTITION_KEYS: ContextVar[Keys | None] = ContextVar("printery_partition_keys", default=None)
"""The keys of the partition the current task's consumer reads; None outside cluster mode."""

TURN_BATCHES = 2
"""A turn's length in messages, in read batches (``BATCH_SIZE``), while another partition waits."""

TURN_S = 0.1
"""The longest a handler keeps its turn over its partition's messages while another waits."""


class _Seat:
    """One handler task's place at the turns: whether it holds one, since when, and how it is."""

    __slots__ = ("busy", "handled", "holds", "over", "since")

    def __init__(self) -> None:
        self.holds = False
        self.busy = False  # in a handler now (not between two messages)
        self.over = False  # the turn is over: give it back when the handler returns
        self.since = 0.0
        self.handled = 0  # messages handled in this turn


_SEAT: ContextVar[_Seat | None] = ContextVar("printery_turn_seat", default=None)


class Turns:
    """The worker's ``concurrency`` turns at running a handler, shared by its partitions.

    A handler task takes a turn before its handler runs and keeps it between
    messages while its partition has more read; it gives it back when the
    partition has none waiting, when the drain starts, or when the turn is
    over: ``turn_messages`` handled, or ``turn_s`` gone, while others wait.
    A referee (:meth:`referee`, a task of its own) ends the turns that lasted
    ``turn_s``: a busy one at its handler's return, one kept between messages
    at once (its task may have nothing left to handle). Waiters are served
    first come, first served.
    """

    def __init__(
        self, concurrency: int, turn_messages: int, turn_s: float, stopping: anyio.Event
    ) -> None:
        self.free = concurrency
        self.turn_messages = turn_messages
        self.turn_s = turn_s
        self.stopping = stopping
        self.holders: set[_Seat] = set()
        self.waiting: collections.deque[tuple[_Seat, anyio.Event]] = collections.deque()
        self._contended = anyio.Event()

    async def take(self, seat: _Seat, hang_timeout: float) -> None:
        """Wait for a turn (beating meanwhile); Drained once the drain starts."""
        if self.stopping.is_set():
            raise Drained("draining: handed back to a live consumer")
        if self.free and not self.waiting:
            self.free -= 1
            self._seated(seat)
            return
        woken = anyio.Event()
        self.waiting.append((seat, woken))
        self._contended.set()
        try:
            while not woken.is_set():
                # Waiting for a turn is alive: only a handler that stopped looks hung.
                with anyio.move_on_after(hang_timeout / 2):
                    await woken.wait()
                handler_progress()
        except BaseException:
            if seat.holds:
                self.give_back(seat)
            else:
                self.waiting.remove((seat, woken))
            raise
        if not seat.holds:  # woken by the drain
            raise Drained("draining: handed back to a live consumer")

    def give_back(self, seat: _Seat) -> None:
        """End ``seat``'s turn: the first waiter's now, or a free one."""
        if not seat.holds:
            return
        seat.holds = False
        self.holders.discard(seat)
        if self.waiting:
            waiter, woken = self.waiting.popleft()
            self._seated(waiter)
            woken.set()
        else:
            self.free += 1

    def _seated(self, seat: _Seat) -> None:
        seat.holds = True
        seat.over = False
        seat.handled = 0
        seat.since = anyio.current_time()
        self.holders.add(seat)

    async def referee(self) -> None:
        """End the turns that lasted ``turn_s`` while others wait; wake every waiter on drain."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._wake_on_drain, tg.cancel_scope)
            while True:
                if not self.waiting:
                    self._contended = anyio.Event()
                    await self._contended.wait()
                await anyio.sleep(self.turn_s)
                now = anyio.current_time()
                for seat in list(self.holders):
                    if not self.waiting:
                        break
                    if now - seat.since < self.turn_s:
                        continue
                    if seat.busy:
                        seat.over = True
                    else:
                        self.give_back(seat)

    async def _wake_on_drain(self, scope: anyio.CancelScope) -> None:
        await self.stopping.wait()
        while self.waiting:
            _, woken = self.waiting.popleft()
            woken.set()
        scope.cancel()


class PartitionView:
    """A worker as one partition's consumer sees it: its stream, its turns at the handlers."""

    def __init__(self, worker: Handled, keys: Keys, partitions: int, turns: Turns) -> None:
        token = PARTITION_KEYS.set(keys)
        try:
            self.stream = worker.stream  # the worker names its stream from self.keys
        finally:
            PARTITION_KEYS.reset(token)
        self.keys = keys
        self.name = worker.name
        self.group = worker.group
        self.hang_timeout = worker.hang_timeout
        self.reads_past_commits = worker.reads_past_commits
        self.concurrency = max(1, math.ceil(worker.concurrency / partitions))
        self.max_in_flight = self.concurrency + (worker.max_in_flight - worker.concurrency)
        self.consumer: StreamConsumer | None = None
        self._worker = worker
        self._turns = turns

    def _waiting(self) -> bool:
        """Whether this partition has read messages no handler has taken yet."""
        consumer = self.consumer
        return consumer is not None and consumer._reads_waiting()

    async def handle(self, message: Message) -> Sequence[Write]:
        seat = _SEAT.get()
        if seat is None:  # this handler task's first message
            seat = _Seat()
            _SEAT.set(seat)  # the task's context: kept for its next messages
        turns = self._turns
        if not seat.holds:
            await turns.take(seat, self.hang_timeout)
        seat.busy = True
        kept = False
        try:
            result = await self._worker.handle(message)
            seat.handled += 1
            kept = (
                not seat.over
                and not turns.stopping.is_set()
                and self._waiting()
                and (seat.handled < turns.turn_messages or not turns.waiting)
            )
        finally:
            seat.busy = False
            if not kept:
                turns.give_back(seat)
        return result


class _Degraded:
    """The worker's state over its partitions: degraded while any partition is."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.report = ctx.on_state
        self.down: dict[Keys, str] = {}

    def on_state(self, state: WorkerState, reason: str) -> None:
        keys = PARTITION_KEYS.get()
        if keys is None or state not in (WorkerState.DEGRADED, WorkerState.RUNNING):
            self.report(state, reason)
            return
        if state is WorkerState.DEGRADED:
            first = not self.down
            self.down[keys] = reason
            if first:
                self.report(state, f"{keys.root}: {reason}")
            return
        if self.down.pop(keys, None) is not None and not self.down:
            self.report(state, reason)


async def run_partitions(
    worker: Handled,
    deps: WorkerDeps,
    ctx: WorkerContext,
    partitions: Sequence[Keys],
    consumers: list[StreamConsumer],
    *,
    task_status: TaskStatus[None],
) -> None:
    """Run one consumer per partition until the drain; started once every one has started.

    ``consumers`` is filled as they are made (the worker sums their in-flight
    counts). A consumer that returns before its first read (a drain during
    start) leaves the worker unstarted, as a single consumer would.
    """
    announced = 0
    settled = 0
    all_settled = anyio.Event()
    turns = Turns(
        max(1, worker.concurrency),
        TURN_BATCHES * deps.settings.batch_size,
        TURN_S,
        ctx.stopping,
    )
    state = _Degraded(ctx)
    ctx.on_state = state.on_state

    def settle(started: bool) -> None:
        nonlocal announced, settled
        announced += started
        settled += 1
        if settled == len(partitions):
            all_settled.set()

    class _Status:
        def __init__(self) -> None:
            self.done = False

        def started(self, value: None = None) -> None:
            if not self.done:
                self.done = True
                settle(True)

    async def one(keys: Keys) -> None:
        PARTITION_KEYS.set(keys)  # this task's context: its handler tasks inherit it
        status = _Status()
        view = PartitionView(worker, keys, len(partitions), turns)
        consumer = StreamConsumer(view, deps, ctx)
        view.consumer = consumer
        consumers.append(consumer)
        try:
            await consumer.run(task_status=status)
        finally:
            if not status.done:
                status.done = True
                settle(False)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(turns.referee)
            async with anyio.create_task_group() as partitioned:
                for keys in partitions:
                    partitioned.start_soon(one, keys)
                await all_settled.wait()
                # Every consumer pointed ctx at its own handlers; the hang check needs them all.
                ctx.stalest_handler = lambda: min(
                    (s for c in consumers if (s := c._stalest_handler()) is not None),
                    default=None,
                )
                if announced == len(partitions):
                    task_status.started()
            tg.cancel_scope.cancel()
    finally:
        ctx.on_state = state.report
