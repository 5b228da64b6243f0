"""Handling: the handler tasks that run a worker's handler on each read message.

They are started as read messages need them, up to the worker's concurrency.

A handler task takes buffered messages back to back and yields to the other
tasks once a millisecond (``_SLICE_S``), or whenever it waits: a turn of the
event loop per message cost as much as a small handler. Each handler runs in
a cancel scope of its own, so the watchdog can cut one that made no progress
for its hang timeout without touching the others; its message is retried.
"""

from __future__ import annotations

import contextlib
import math
import time
import traceback

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from printery.engine.state import HANDLING, Commit, ConsumerState
from printery.envelope import MalformedEvent
from printery.errors import Drained, Permanent, RedisUnavailable, RetryLater, find
from printery.lifecycle import HandlerHung, HandlerRaised, MessageHandled, Outcome
from printery.message import Message
from printery.redis.replies import Entry
from printery.redis.writes import outputs_problem

__all__ = ["Handling"]

_SLICE_S = 0.001  # longest a handler task takes buffered messages without yielding


class Handling(ConsumerState):
    """The handling part of a consumer run."""

    def _spawn_handlers(self) -> None:
        """Start handler tasks as read messages need them, up to the worker's concurrency.

        Handler tasks are started when messages wait that no idle task will take,
        and then kept. An idle worker holds none: the dependency-checker's and the
        health monitor's 1,000 slots each, started up front, were 2,000 waiting
        tasks, 20 MB of an idle daemon's 82.
        """
        concurrency = self.worker.concurrency
        if self._handlers >= concurrency:
            return  # all started: the common case, once a worker has been busy
        waiting = self._buffered()
        while self._handlers < concurrency and self._handlers - len(self.running) < waiting:
            self._handlers += 1
            self._main.start_soon(
                self._handler_loop, self._buffer_recv.clone(), self._commit_send.clone()
            )

    async def _handler_loop(
        self, buffer: MemoryObjectReceiveStream[Entry], commits: MemoryObjectSendStream[Commit]
    ) -> None:
        # One cancel scope per handler task, not per message (a scope costs about as
        # much as a small handler's work): the watchdog cuts the task's scope, and a
        # fresh one is made only after a cut.
        async with buffer, commits:
            slot = _Slot()
            while not slot.ended:
                with anyio.CancelScope() as slot.scope:
                    await self._handle_buffered(buffer, commits, slot)
                if slot.cut is not None:
                    entry, started = slot.cut
                    slot.cut = None
                    if not slot.completed:
                        reason = f"hung: no progress for {self.hang_timeout:g} s"
                        self._retry(entry, reason, commits, started)
                    self.progress()

    async def _handle_buffered(
        self,
        buffer: MemoryObjectReceiveStream[Entry],
        commits: MemoryObjectSendStream[Commit],
        slot: _Slot,
    ) -> None:
        """Handle buffered messages until the buffer ends, or until a cut handler has ended."""
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
                    slot.ended = True
                    return
                yield_at = time.monotonic() + _SLICE_S
            except anyio.EndOfStream:
                slot.ended = True
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
                self._wake_reader()  # the last one buffered: the read loop may read now
            self.running[entry.id] = self.ctx.clock()
            if not self._watch.is_set():
                self._watch.set()
            self._scopes[entry.id] = slot.scope
            token = HANDLING.set((self, entry.id))
            started = time.perf_counter()
            slot.completed = False
            try:
                await self._process(entry, commits)
                slot.completed = True
            finally:
                HANDLING.reset(token)
                self.running.pop(entry.id, None)
                del self._scopes[entry.id]
                if self._cut.pop(entry.id, None) is not None:
                    slot.cut = (entry, started)
            if slot.cut is not None:
                return  # it ignored its cut and finished: on in a fresh scope
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
            self._handed_to_committer(entry.id)

    def _dead_letter(
        self, entry: Entry, reason: str, commits: MemoryObjectSendStream[Commit], started: float
    ) -> None:
        _submit(commits, self._dead_letter_commit(entry, reason, started))
        self._handed_to_committer(entry.id)

    def _handed_to_committer(self, entry_id: str) -> None:
        self._nudge_committer()
        if self._reads_past_commits:
            if entry_id in self.held:  # not released meanwhile (claimed by another)
                self._committing.add(entry_id)
            self._wake_reader()  # a handler is free: the read loop may read for it now

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
        self._spawn_handlers()


def _submit(commits: MemoryObjectSendStream[Commit], commit: Commit) -> None:
    """Hand a result to the committer; once the run is cancelled, the message stays pending.

    A handler that outlived the run's cancellation (it shielded itself) finds the
    committer gone: its message is left to the hand-back or another consumer's claim.
    """
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        commits.send_nowait(commit)


class _Slot:
    """One handler task's scope, and what the watchdog's cut left for the task to settle."""

    __slots__ = ("completed", "cut", "ended", "scope")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.cut: tuple[Entry, float] | None = None
        self.completed = False
        self.ended = False
