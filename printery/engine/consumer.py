"""The stream runtime: how a :class:`~printery.worker.StreamWorker` consumes its group.

::

    read loop ──► buffer ──► N handler tasks ──► committer ──► Redis (ack + outputs, atomic,
                                                               a whole batch per round trip)
        ▲            ▲              │
        │            │              └─ RetryLater: re-deliver after backoff (XCLAIM, count+1)
        │            └── maintenance: XAUTOCLAIM long-idle messages of dead consumers
        └── own pending first (at start, after every Redis error), then new (``>``)

Everything read and not yet acked is *held*: at most ``max_in_flight``
messages, each refreshed (idle time reset) every third of ``CLAIM_IDLE_MS``
so no live handler's message is claimed by another consumer.

A handler task takes buffered messages back to back and yields to the other
tasks once a millisecond (``_SLICE_S``), or whenever it waits: a turn of the
event loop per message cost as much as a small handler. The committer waits
(never polls) up to ``_COMMIT_LINGER_S`` for results to share a round trip.

Drain (``ctx.stopping``): the read in progress is cancelled, buffered
messages that never started are handed back (made long-idle so a live
consumer claims them now), running handlers finish and commit, then the
consumer deletes itself from the group if it holds nothing. The manager's
deadline cancels whatever is still running; those messages stay pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel
import stamina
from anyio.abc import TaskGroup, TaskStatus

from printery.engine.committer import Committing
from printery.engine.handling import Handling
from printery.engine.maintenance import Maintaining
from printery.engine.state import Commit, Handled, handler_progress
from printery.errors import (
    GroupMissing,
    RedisUnavailable,
)
from printery.lifecycle import (
    RedisConnectivity,
)
from printery.redis.keys import Keys
from printery.redis.replies import Entry

if TYPE_CHECKING:
    from printery.context import WorkerContext, WorkerDeps

__all__ = ["StreamConsumer", "handler_progress"]

T = TypeVar("T")

_RECONNECT_S = (0.1, 5.0)  # first and largest delay between reconnect attempts


class StreamConsumer(Handling, Committing, Maintaining):
    """One worker's consumer of one group; lives for one run of the worker."""

    def __init__(self, worker: Handled, deps: WorkerDeps, ctx: WorkerContext) -> None:
        settings = deps.settings
        self.worker = worker
        self.adapter = deps.adapter
        self.ctx = ctx
        ctx.stalest_handler = self._stalest_handler
        self.stream = worker.stream
        self.group = worker.group
        self.consumer = deps.consumer
        self.heartbeat_prefix = Keys(settings.stream_prefix).heartbeat("")
        self.batch_size = settings.batch_size
        self.block_ms = settings.block_ms
        self.claim_idle_ms = settings.claim_idle_ms
        self.claim_interval_s = settings.claim_interval_s
        self.reap_idle_ms = int(settings.consumer_idle_timeout * 1000)
        self.max_deliveries = settings.max_deliveries
        self.retry_backoff_s = (
            settings.retry_backoff_ms / 1000,
            settings.retry_backoff_max_ms / 1000,
        )
        self.limit = worker.max_in_flight
        self._reads_past_commits = worker.reads_past_commits
        self._committing: set[str] = set()
        self._commit_due: asyncio.Event | None = None
        self.held: dict[str, Entry] = {}
        self.started: set[str] = set()
        self.running: dict[str, float] = {}  # message id -> last progress of its handler
        self.hang_timeout = worker.hang_timeout
        self._late_hand_back: list[str] = []
        self._interrupted: list[str] = []
        # Handlers the watchdog may cut, the ones it cut (and when), and messages
        # that failed and wait for their redelivery: those spent their delivery.
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._cut: dict[str, float] = {}
        self._backing_off: set[str] = set()
        self._watch = anyio.Event()
        self._space = anyio.Event()
        self._degraded = False
        self._recover_after: str | None = "0"
        self._buffer_send, self._buffer_recv = anyio.create_memory_object_stream[Entry](math.inf)
        self._commit_send, self._commit_recv = anyio.create_memory_object_stream[Commit](math.inf)
        self._read_scope = anyio.CancelScope()
        self._side: TaskGroup
        self._main: TaskGroup
        self._handlers = 0

    @property
    def in_flight(self) -> int:
        """Messages read and not yet acked: buffered, running, or waiting to commit."""
        return len(self.held)

    # -- the run ---------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        # Redis may be away at start: keep trying, but a drain request ends the wait.
        async with anyio.create_task_group() as startup:
            startup.start_soon(self._cancel_on_stop, startup.cancel_scope)
            await self._reconnecting(lambda: self.adapter.ensure_group(self.stream, self.group))
            startup.cancel_scope.cancel()
        if self.ctx.stopping.is_set():
            return
        drained = False
        try:
            async with anyio.create_task_group() as main:
                self._main = main  # handler tasks start in it as messages need them
                main.start_soon(self._committer)
                async with anyio.create_task_group() as side:
                    self._side = side
                    side.start_soon(self._stop_watcher)
                    side.start_soon(self._maintenance)
                    side.start_soon(self._watchdog)
                    await self._read_loop(task_status)
                    side.cancel_scope.cancel()
                await self._drain()
            # Handlers that asked to retry while draining: hand those back too.
            await self._hand_back_ids(self._late_hand_back)
            await self._hand_back_ids(self._interrupted, uncount=True)
            drained = True
        finally:
            for stream in (
                self._buffer_send,
                self._buffer_recv,
                self._commit_send,
                self._commit_recv,
            ):
                stream.close()  # idempotent; a cancelled run must not leave them open
            if not drained:
                # Cancelled at the deadline (or crashed): whatever we hold is handed
                # back so a live consumer takes it now rather than after CLAIM_IDLE_MS.
                with anyio.CancelScope(shield=True, deadline=self._cleanup_deadline(2)):
                    await self._hand_back(
                        exclude=set(),
                        counted={*self.started, *self._late_hand_back, *self._backing_off},
                    )
        with anyio.CancelScope(deadline=self._cleanup_deadline(2)):
            await self._forget_self()

    async def _cancel_on_stop(self, scope: anyio.CancelScope) -> None:
        await self.ctx.stopping.wait()
        scope.cancel()

    async def _stop_watcher(self) -> None:
        await self.ctx.stopping.wait()
        self._read_scope.cancel()
        self._space.set()

    # -- reading -----------------------------------------------------------------

    async def _read_loop(self, task_status: TaskStatus[None]) -> None:
        announced = False
        while not self.ctx.stopping.is_set():
            if self._must_wait():
                # Waiting for room is alive: beat every half hang timeout meanwhile, so
                # only a loop that has stopped looks hung (handlers have the watchdog).
                self._space = anyio.Event()
                with anyio.move_on_after(self.hang_timeout / 2):
                    await self._space.wait()
                self.progress()
                continue
            free = self._free()
            if not announced:
                task_status.started()
                announced = True
            with anyio.CancelScope() as self._read_scope:
                if self.ctx.stopping.is_set():
                    break
                entries = await self._reconnecting(functools.partial(self._read, free))
            if self._read_scope.cancel_called:
                break
            self.progress()
            for entry in entries:
                self._accept(entry)

    async def _read(self, free: int) -> list[Entry]:
        if self._recover_after is None:
            began = time.monotonic()
            entries = await self.adapter.read(
                self.stream,
                self.group,
                self.consumer,
                count=min(free, self.batch_size),
                block_ms=self.block_ms,
            )
            if not entries and time.monotonic() - began < self.block_ms / 2000:
                # The server did not honour BLOCK (fakeredis never blocks): pause
                # instead of spinning. A real Redis answers empty only after BLOCK_MS.
                await anyio.sleep(min(0.05, self.block_ms / 1000))
            return entries
        # Own pending first: a read that timed out on our side may have been
        # delivered by the server into our pending list.
        entries = await self.adapter.read(
            self.stream,
            self.group,
            self.consumer,
            count=min(free, self.batch_size),
            block_ms=None,
            after=self._recover_after,
        )
        self._recover_after = entries[-1].id if entries else None
        return [e for e in entries if e.id not in self.held]

    async def _reconnecting(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` until Redis answers; meanwhile the worker is degraded, never crashed."""
        failed = 0
        if not self._degraded:
            # Redis answers, as nearly always: one try without the retry machinery, whose
            # setup costs a quarter of a round trip's CPU (twice a message for a worker
            # that reads and commits one message at a time).
            try:
                return await op()
            except RedisUnavailable as exc:
                failed = 1
                self._went_down(exc, failed)
                if isinstance(exc, GroupMissing):
                    with contextlib.suppress(RedisUnavailable):  # the retries below report it
                        await self.adapter.ensure_group(self.stream, self.group)
            await anyio.sleep(_RECONNECT_S[0])  # the retries' first wait
        async for attempt in stamina.retry_context(
            on=RedisUnavailable,
            attempts=None,
            timeout=None,
            wait_initial=_RECONNECT_S[0],
            wait_max=_RECONNECT_S[1],
        ):
            with attempt:
                number = failed + attempt.num
                try:
                    result = await op()
                except GroupMissing as exc:
                    # Stream deleted or Redis flushed: recreate, then back off like any outage.
                    self._went_down(exc, number)
                    await self.adapter.ensure_group(self.stream, self.group)
                    raise
                except RedisUnavailable as exc:
                    self._went_down(exc, number)
                    raise
                if self._degraded:
                    self._degraded = False
                    self.ctx.running()
                    self.ctx.emit(RedisConnectivity(self.worker.name, up=True, attempt=number))
                return result
        raise AssertionError("unreachable: retry_context retries forever")  # pragma: no cover

    def _went_down(self, exc: Exception, attempt: int) -> None:
        self.ctx.beat()  # reconnecting is progress: a Redis outage is not a hang
        self._recover_after = "0"
        if not self._degraded:
            self._degraded = True
            self.ctx.degraded(str(exc))
        self.ctx.emit(
            RedisConnectivity(self.worker.name, up=False, error=str(exc), attempt=attempt)
        )
