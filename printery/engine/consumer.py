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
import contextvars
import functools
import math
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel
import stamina
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from printery.envelope import MalformedEvent, now_rfc3339
from printery.errors import (
    Drained,
    GroupMissing,
    Permanent,
    RedisUnavailable,
    RetryLater,
    find,
)
from printery.lifecycle import (
    ConsumersReaped,
    HandlerRaised,
    MessageHandled,
    MessagesClaimed,
    MessagesHandedBack,
    Outcome,
    RedisConnectivity,
)
from printery.message import Message
from printery.redis.adapter import Entry, Write, outputs_problem
from printery.redis.keys import Keys

if TYPE_CHECKING:
    from printery.context import WorkerContext, WorkerDeps
    from printery.worker import StreamWorker

__all__ = ["StreamConsumer", "handler_progress"]

# Which consumer and message the current handler task is working on, so that
# StreamWorker.beat() inside a handler credits the right message.
_HANDLING: contextvars.ContextVar[tuple[StreamConsumer, str] | None] = contextvars.ContextVar(
    "printery_handling", default=None
)


def handler_progress(within: float = 0.0) -> bool:
    """Record progress of the handler running in this task; False outside a handler.

    ``within`` > 0 promises the next progress within that many seconds (a
    bounded wait ahead): the hang detector counts from then, not from now.
    """
    current = _HANDLING.get()
    if current is None:
        return False
    consumer, entry_id = current
    if entry_id in consumer.running:
        consumer.running[entry_id] = consumer.ctx.clock() + within
    consumer.progress()
    return True


T = TypeVar("T")

_COMMIT_BATCH = 256
_COMMIT_LINGER_S = 0.002  # longest a result waits for others to share its round trip
_SLICE_S = 0.001  # longest a handler task takes buffered messages without yielding
_RECONNECT_S = (0.1, 5.0)  # first and largest delay between reconnect attempts


@dataclass(slots=True)
class _Commit:
    """A finished handler's result, waiting for the committer."""

    entry: Entry
    writes: Sequence[Write]
    outcome: Outcome
    started: float
    reason: str = ""


class StreamConsumer:
    """One worker's consumer of one group; lives for one run of the worker."""

    def __init__(self, worker: StreamWorker, deps: WorkerDeps, ctx: WorkerContext) -> None:
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
        self._space = anyio.Event()
        self._degraded = False
        self._recover_after: str | None = "0"
        self._buffer_send, self._buffer_recv = anyio.create_memory_object_stream[Entry](math.inf)
        self._commit_send, self._commit_recv = anyio.create_memory_object_stream[_Commit](math.inf)
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
                        exclude=set(), counted={*self.started, *self._late_hand_back}
                    )
        with anyio.CancelScope(deadline=self._cleanup_deadline(2)):
            await self._forget_self()

    def _cleanup_deadline(self, at_most_s: float) -> float:
        """When a cleanup step gives up: ``at_most_s`` from now, or the drain's deadline."""
        return min(anyio.current_time() + at_most_s, self.ctx.cleanup_deadline)

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
                self._space = anyio.Event()
                await self._space.wait()
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

    def _accept(self, entry: Entry) -> None:
        if entry.id in self.held:
            return
        self.held[entry.id] = entry
        self._buffer_send.send_nowait(entry)

    def _release(self, entry_id: str) -> None:
        self.held.pop(entry_id, None)
        self.started.discard(entry_id)
        self._space.set()

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
        self, buffer: MemoryObjectReceiveStream[Entry], commits: MemoryObjectSendStream[_Commit]
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
                token = _HANDLING.set((self, entry.id))
                try:
                    await self._process(entry, commits)
                finally:
                    _HANDLING.reset(token)
                    self.running.pop(entry.id, None)
                self.progress()  # a handler finished

    def progress(self) -> None:
        """Tell the hang detector the loop made progress (a running handler's is in ``running``)."""
        self.ctx.beat()

    def _stalest_handler(self) -> float | None:
        return min(self.running.values(), default=None)

    async def _process(self, entry: Entry, commits: MemoryObjectSendStream[_Commit]) -> None:
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
            commits.send_nowait(_Commit(entry, writes, Outcome.ACKED, started))

    def _dead_letter(
        self, entry: Entry, reason: str, commits: MemoryObjectSendStream[_Commit], started: float
    ) -> None:
        commits.send_nowait(self._dead_letter_commit(entry, reason, started))

    def _dead_letter_commit(self, entry: Entry, reason: str, started: float) -> _Commit:
        """The commit that acks ``entry`` and adds it, with the reason, to ``<stream>:dead``."""
        fields: dict[str, str | bytes] = {
            k.decode(errors="replace"): v for k, v in (entry.fields or {}).items()
        }
        fields.update(
            {
                "error": reason[:2000],
                "deliveries": str(entry.deliveries),
                "failed_at": now_rfc3339(),
                "original_id": entry.id,
                "original_stream": self.stream,
                "group": self.group,
            }
        )
        dead = [Write.xadd(Keys.dead(self.stream), fields)]
        return _Commit(entry, dead, Outcome.DEAD_LETTERED, started, reason)

    def _retry(
        self,
        entry: Entry,
        reason: str,
        commits: MemoryObjectSendStream[_Commit],
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
        self._side.start_soon(self._redeliver, entry, delay, counted)

    async def _redeliver(self, entry: Entry, delay: float, counted: bool) -> None:
        await anyio.sleep(delay)
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

    def _finish(self, entry: Entry, outcome: Outcome, started: float, reason: str) -> None:
        self._release(entry.id)
        self.ctx.emit(
            MessageHandled(
                self.worker.name,
                self.stream,
                entry.id,
                outcome,
                time.perf_counter() - started,
                entry.deliveries,
                reason,
            )
        )

    async def _committer(self) -> None:
        """Commit finished handlers' results in batches: one round trip for many messages."""
        async with self._commit_recv:
            async for first in self._commit_recv:
                batch = [first]
                await self._gather(batch, anyio.current_time() + _COMMIT_LINGER_S)
                while batch:
                    batch = await self._commit_batch(batch)

    async def _gather(self, batch: list[_Commit], linger_until: float) -> None:
        """Add the results that come in while handlers still have read messages to get through.

        Waits for them, never polls: a handler waiting on I/O (a webhook, a health
        endpoint) may take the whole linger, and polling meanwhile burns the CPU.
        """
        while len(batch) < _COMMIT_BATCH:
            try:
                batch.append(self._commit_recv.receive_nowait())
                continue
            except anyio.WouldBlock:
                if not self._buffer_send.statistics().current_buffer_used:
                    return  # nothing read is left to wait for: commit now
            except anyio.EndOfStream:
                return
            with anyio.move_on_at(linger_until):
                try:
                    batch.append(await self._commit_recv.receive())
                except anyio.EndOfStream:
                    return
                continue
            return  # lingered long enough

    async def _commit_batch(self, batch: list[_Commit]) -> list[_Commit]:
        """Commit, finish what went through; return the dead letters still to commit."""
        results = await self._reconnecting(functools.partial(self._commit_once, batch))
        again: list[_Commit] = []
        for request, result in zip(batch, results, strict=True):
            if isinstance(result, str):
                reason = f"cannot write the outputs: {result}"
                if request.outcome is Outcome.DEAD_LETTERED:
                    # Even <stream>:dead is unusable: it stays pending, and says so loudly.
                    self.ctx.emit(
                        HandlerRaised(self.worker.name, self.stream, request.entry.id, reason, "")
                    )
                    self._release(request.entry.id)
                else:
                    again.append(self._dead_letter_commit(request.entry, reason, request.started))
                continue
            reason = request.reason or ("" if result else "already acked")
            self._finish(request.entry, request.outcome, request.started, reason)
        return again

    async def _commit_once(self, batch: list[_Commit]) -> list[bool | str]:
        # One attempt is shielded, so the drain's soft deadline never splits a commit
        # from its bookkeeping; the backoff between attempts stays cancellable. Past
        # the cleanup deadline (Redis stalled) the reply is given up on: the script
        # is atomic, so the entry is either acked with its outputs or still pending.
        with anyio.CancelScope(shield=True, deadline=self.ctx.cleanup_deadline):
            return await self.adapter.commit(
                self.stream, self.group, [(c.entry.id, c.writes) for c in batch]
            )
        await anyio.lowlevel.checkpoint()  # the drain's cancellation, now past the deadline
        raise RedisUnavailable("commit reply given up at the shutdown deadline")

    # -- maintenance: refresh, claim, reap ----------------------------------------

    async def _maintenance(self) -> None:
        refresh_every = self.claim_idle_ms / 3000
        next_claim = next_reap = time.monotonic()
        while True:
            try:
                await self._refresh_held()
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + self.claim_interval_s
                    await self._claim()
                if now >= next_reap:
                    next_reap = now + max(60.0, self.claim_interval_s)
                    gone = await self.adapter.reap_consumers(
                        self.stream,
                        self.group,
                        idle_ms=self.reap_idle_ms,
                        heartbeat_prefix=self.heartbeat_prefix,
                    )
                    if gone:
                        self.ctx.emit(ConsumersReaped(self.worker.name, self.stream, tuple(gone)))
            except RedisUnavailable:
                pass  # the read loop reports the outage and reconnects
            await anyio.sleep(min(refresh_every, self.claim_interval_s))

    async def _refresh_held(self) -> None:
        if self.held:
            await self.adapter.refresh(self.stream, self.group, self.consumer, list(self.held))

    async def _claim(self) -> None:
        cursor = "0-0"
        while not self.ctx.stopping.is_set():
            free = self.limit - len(self.held)
            if free <= 0:
                return
            cursor, entries, deleted = await self.adapter.autoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_ms=self.claim_idle_ms,
                start=cursor,
                count=min(free, self.batch_size),
            )
            fresh = [e for e in entries if e.id not in self.held]
            if fresh or deleted:
                self.ctx.emit(
                    MessagesClaimed(self.worker.name, self.stream, len(fresh), tuple(deleted))
                )
            for entry_id in deleted:
                await self._account_deleted(entry_id)
            for entry in fresh:
                self._accept(entry)
            if cursor == "0-0":
                return

    async def _account_deleted(self, entry_id: str) -> None:
        """A pending entry whose message was trimmed: Redis dropped it; keep a record."""
        await self.adapter.add(
            Keys.dead(self.stream),
            {
                "error": "entry was deleted from the stream (trimmed) while pending",
                "deliveries": "0",
                "failed_at": now_rfc3339(),
                "original_id": entry_id,
                "original_stream": self.stream,
                "group": self.group,
            },
        )
        self.ctx.emit(
            MessageHandled(
                self.worker.name,
                self.stream,
                entry_id,
                Outcome.DEAD_LETTERED,
                0.0,
                0,
                "trimmed while pending",
            )
        )

    # -- drain -------------------------------------------------------------------

    async def _drain(self) -> None:
        """Hand back what never started, then let running handlers finish and commit."""
        await self._hand_back(exclude=self.started, counted=set())
        self._buffer_send.close()  # handler loops skip what was handed back, then end
        self._commit_send.close()  # the committer ends once every handler loop has

    async def _hand_back(self, exclude: set[str], counted: set[str]) -> None:
        """Make our pending messages (but ``exclude``) claimable by a live consumer now.

        Asks Redis rather than trusting ``held``: a read cancelled by the drain
        may have been delivered into our pending list all the same. Only
        ``counted`` ones (cut short mid-handler: maybe the message's fault,
        a hang) keep the delivery; the others never ran.
        """
        try:
            pending = await self.adapter.own_pending_ids(self.stream, self.group, self.consumer)
        except RedisUnavailable:
            return  # they stay pending and are claimed after CLAIM_IDLE_MS
        back = [i for i in pending if i not in exclude]
        await self._hand_back_ids([i for i in back if i in counted])
        await self._hand_back_ids([i for i in back if i not in counted], uncount=True)

    async def _hand_back_ids(self, ids: list[str], *, uncount: bool = False) -> None:
        if not ids:
            return
        try:
            count = await self.adapter.hand_back(
                self.stream, self.group, self.consumer, ids, uncount=uncount
            )
        except RedisUnavailable:
            return  # they stay pending and are claimed after CLAIM_IDLE_MS
        self.ctx.emit(MessagesHandedBack(self.worker.name, self.stream, count))
        for entry_id in ids:
            self._release(entry_id)

    async def _forget_self(self) -> None:
        # If Redis is away, a leftover name is reaped later by a live daemon.
        with contextlib.suppress(RedisUnavailable):
            await self.adapter.forget_consumer(self.stream, self.group, self.consumer)
