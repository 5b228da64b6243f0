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

import contextlib
import functools
import math
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel
import stamina
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from printery.engine.committer import Committing
from printery.engine.maintenance import Maintaining
from printery.engine.state import HANDLING, Commit, Handled, handler_progress
from printery.envelope import MalformedEvent
from printery.errors import (
    Drained,
    GroupMissing,
    Permanent,
    RedisUnavailable,
    RetryLater,
    find,
)
from printery.lifecycle import (
    HandlerHung,
    HandlerRaised,
    MessageHandled,
    Outcome,
    RedisConnectivity,
)
from printery.message import Message
from printery.redis.keys import Keys
from printery.redis.replies import Entry
from printery.redis.writes import outputs_problem

if TYPE_CHECKING:
    from printery.context import WorkerContext, WorkerDeps

__all__ = ["StreamConsumer", "handler_progress"]

T = TypeVar("T")

_SLICE_S = 0.001  # longest a handler task takes buffered messages without yielding
_RECONNECT_S = (0.1, 5.0)  # first and largest delay between reconnect attempts


class StreamConsumer(Committing, Maintaining):
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
                main.start_soon(self._committer)
                for _ in range(self.worker.concurrency):
                    main.start_soon(
                        self._handler_loop, self._buffer_recv.clone(), self._commit_send.clone()
                    )
                self._buffer_recv.close()
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
            free = self.limit - len(self.held)
            # Read full batches: wait for room for one, unless nothing is held at all, or
            # every held message has started (the handlers would idle while a commit
            # frees room): then read what fits.
            if (
                free < min(self.batch_size, self.limit)
                and self.held
                and (free <= 0 or len(self.started) < len(self.held))
            ):
                # Waiting for room is alive: beat every half hang timeout meanwhile, so
                # only a loop that has stopped looks hung (handlers have the watchdog).
                self._space = anyio.Event()
                with anyio.move_on_after(self.hang_timeout / 2):
                    await self._space.wait()
                self.progress()
                continue
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
        async for attempt in stamina.retry_context(
            on=RedisUnavailable,
            attempts=None,
            timeout=None,
            wait_initial=_RECONNECT_S[0],
            wait_max=_RECONNECT_S[1],
        ):
            with attempt:
                try:
                    result = await op()
                except GroupMissing as exc:
                    # Stream deleted or Redis flushed: recreate, then back off like any outage.
                    self._went_down(exc, attempt.num)
                    await self.adapter.ensure_group(self.stream, self.group)
                    raise
                except RedisUnavailable as exc:
                    self._went_down(exc, attempt.num)
                    raise
                if self._degraded:
                    self._degraded = False
                    self.ctx.running()
                    self.ctx.emit(RedisConnectivity(self.worker.name, up=True, attempt=attempt.num))
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

    # -- handling ----------------------------------------------------------------

    async def _handler_loop(
        self, buffer: MemoryObjectReceiveStream[Entry], commits: MemoryObjectSendStream[Commit]
    ) -> None:
        async with buffer, commits:
            yield_at = 0.0
            while True:
                # Buffered messages are taken back to back, yielding to the other tasks
                # once per _SLICE_S rather than once per message: a yield is a trip
                # round the event loop, which costs as much as a small handler.
                try:
                    entry = buffer.receive_nowait()
                except anyio.WouldBlock:
                    try:
                        entry = await buffer.receive()  # waits, so others have run
                    except anyio.EndOfStream:
                        return
                    yield_at = time.monotonic() + _SLICE_S
                except anyio.EndOfStream:
                    return
                else:
                    now = time.monotonic()
                    if now >= yield_at:
                        await anyio.lowlevel.checkpoint()
                        yield_at = now + _SLICE_S
                if entry.id not in self.held or self.ctx.stopping.is_set():
                    continue  # draining: nothing new starts; it is handed back instead
                self.started.add(entry.id)
                if len(self.started) >= len(self.held):
                    self._space.set()  # the last one buffered: the read loop may read now
                self.running[entry.id] = self.ctx.clock()
                if not self._watch.is_set():
                    self._watch.set()
                token = HANDLING.set((self, entry.id))
                started = time.perf_counter()
                try:
                    with anyio.CancelScope() as scope:
                        self._scopes[entry.id] = scope
                        await self._process(entry, commits)
                finally:
                    HANDLING.reset(token)
                    self.running.pop(entry.id, None)
                    self._scopes.pop(entry.id, None)
                    cut = self._cut.pop(entry.id, None) is not None
                if cut and scope.cancelled_caught:
                    reason = f"hung: no progress for {self.hang_timeout:g} s"
                    self._retry(entry, reason, commits, started)
                self.progress()  # a handler finished

    def _stalest_handler(self) -> float | None:
        """When the longest-cut handler that ignores its cancellation was cut, or None.

        The manager counts a worker hung one hang timeout after that: only a
        handler that will not stop (or a loop that stopped) costs a restart.
        """
        return min(self._cut.values(), default=None)

    async def _watchdog(self) -> None:
        """Cut a handler that made no progress for its hang timeout: alone, its message retried.

        Sleeps until the stalest running handler would turn hung (or until one
        starts, when none runs), so a busy worker pays one scan per hang timeout.
        """
        while True:
            now = self.ctx.clock()
            due = math.inf
            for entry_id, last in list(self.running.items()):
                if entry_id in self._cut:
                    continue
                if now - last >= self.hang_timeout:
                    self._cut_handler(entry_id, now - last, now)
                else:
                    due = min(due, last + self.hang_timeout)
            if due == math.inf:
                self._watch = anyio.Event()
                await self._watch.wait()
            else:
                await anyio.sleep(due - now)

    def _cut_handler(self, entry_id: str, silent_s: float, now: float) -> None:
        scope = self._scopes.get(entry_id)
        if scope is None:
            return
        self._cut[entry_id] = now
        scope.cancel()
        entry = self.held.get(entry_id)
        subject = (entry.fields or {}).get(b"subject", b"") if entry is not None else b""
        self.ctx.emit(
            HandlerHung(
                self.worker.name,
                self.stream,
                entry_id,
                subject.decode(errors="replace"),
                silent_s,
            )
        )

    async def _process(self, entry: Entry, commits: MemoryObjectSendStream[Commit]) -> None:
        """Run the handler; its result goes to the committer, and the slot moves on at once."""
        started = time.perf_counter()
        if entry.fields is None:
            reason = "entry was deleted from the stream (trimmed) before it was handled"
            self._dead_letter(entry, reason, commits, started)
            return
        if entry.deliveries > self.max_deliveries:
            reason = (
                f"delivered {entry.deliveries} times without completing "
                f"(MAX_DELIVERIES={self.max_deliveries})"
            )
            self._dead_letter(entry, reason, commits, started)
            return
        message = Message(self.stream, entry.id, entry.fields, entry.deliveries)
        try:
            writes = await self.worker.handle(message)
        except (Permanent, MalformedEvent) as exc:
            self._dead_letter(entry, str(exc), commits, started)
        except Drained:
            self.started.discard(entry.id)
            self._interrupted.append(entry.id)  # no failure: handed back uncounted
        except RetryLater as exc:
            self._retry(entry, exc.reason, commits, started)
        except Exception as exc:  # noqa: BLE001 - one bad message must never crash the worker
            outage = find(exc, RedisUnavailable)
            if outage is not None:
                # Redis is away, not the message at fault: it keeps its delivery count.
                self._retry(entry, f"Redis unavailable: {outage}", commits, started, counted=False)
                return
            reason = f"handler raised {type(exc).__name__}: {exc}"
            self.ctx.emit(
                HandlerRaised(
                    self.worker.name, self.stream, entry.id, reason, traceback.format_exc()
                )
            )
            self._retry(entry, reason, commits, started)
        else:
            problem = outputs_problem(writes)
            if problem is not None:  # a bug in the handler: retried, then dead-lettered
                self.ctx.emit(HandlerRaised(self.worker.name, self.stream, entry.id, problem, ""))
                self._retry(entry, problem, commits, started)
                return
            _submit(commits, Commit(entry, writes, Outcome.ACKED, started))

    def _dead_letter(
        self, entry: Entry, reason: str, commits: MemoryObjectSendStream[Commit], started: float
    ) -> None:
        _submit(commits, self._dead_letter_commit(entry, reason, started))

    def _retry(
        self,
        entry: Entry,
        reason: str,
        commits: MemoryObjectSendStream[Commit],
        started: float,
        *,
        counted: bool = True,
    ) -> None:
        """Leave the message pending and handle it again after a backoff.

        ``counted=False`` (Redis was away) spends no delivery: the message is
        handled again in the same delivery once Redis answers, never dead-lettered
        for an outage.
        """
        if counted and entry.deliveries >= self.max_deliveries:
            reason = f"{reason} (after {entry.deliveries} deliveries)"
            self._dead_letter(entry, reason, commits, started)
            return
        self.started.discard(entry.id)
        if self.ctx.stopping.is_set():
            # Draining: no redelivery here; a live consumer takes it at once.
            self._late_hand_back.append(entry.id)
            return
        self.ctx.emit(
            MessageHandled(
                self.worker.name,
                self.stream,
                entry.id,
                Outcome.RETRIED,
                time.perf_counter() - started,
                entry.deliveries,
                reason,
            )
        )
        first, cap = self.retry_backoff_s
        delay = min(cap, first * 2.0 ** (entry.deliveries - 1)) if counted else first
        if counted:
            self._backing_off.add(entry.id)
        self._side.start_soon(self._redeliver, entry, delay, counted)

    async def _redeliver(self, entry: Entry, delay: float, counted: bool) -> None:
        await anyio.sleep(delay)
        self._backing_off.discard(entry.id)
        if counted:
            again = await self._reconnecting(
                lambda: self.adapter.reclaim(self.stream, self.group, self.consumer, entry)
            )
        else:  # still ours? then again as it is; the wait for Redis is _reconnecting's
            owned = await self._reconnecting(
                lambda: self.adapter.refresh(self.stream, self.group, self.consumer, [entry.id])
            )
            again = entry if entry.id in owned else None
        if again is None:
            self._release(entry.id)  # taken by another consumer meanwhile, or acked
            return
        self.held[entry.id] = again
        self._buffer_send.send_nowait(again)


def _submit(commits: MemoryObjectSendStream[Commit], commit: Commit) -> None:
    """Hand a result to the committer; once the run is cancelled, the message stays pending.

    A handler that outlived the run's cancellation (it shielded itself) finds the
    committer gone: its message is left to the hand-back or another consumer's claim.
    """
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        commits.send_nowait(commit)
