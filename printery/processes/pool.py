"""A pool of long-lived children speaking pool protocol 1: one message in flight per child.

::

    slot task (one per child) ─► spawn ─► "ready" within start_timeout_s ─► idle
        ▲                                    │ exits first / silent / OSError:
        │                                    │   at start ............ ChildStartFailed (a crash)
        │                                    │   later, 3 in a row ... ChildStartFailed
        │                                    ▼
        │          idle ──► a handler takes it (acquire) ──► task ─► progress/log ─► result
        │            │  ping every heartbeat_timeout_s / 3;       │        │
        │            │  silent for heartbeat_timeout_s: kill      │        └─ over task_timeout_s,
        │            ▼                                            │           bad line: kill
        └── backoff ◄── gone (crash, kill, recycle after max_tasks_per_child / max_rss_mb)

The handler's own task runs the exchange with the child it took, so a
message costs no hand-off between tasks. The child's stdout lines are
handed over in the pipe's callback (straight to the waiting handler, no
reader task between), and its end as well: a child that dies while idle is
noticed and replaced at once, never handed a message. ``task_timeout_s`` is
a timer per message that kills the child and wakes its handler. A child that exits before
``ready`` is a broken definition: waiting handlers get
:class:`~printery.errors.Drained` (their messages are handed back
uncounted) and the pool raises :class:`ChildStartFailed`, which the
supervisor counts as a crash. ``close`` sends ``shutdown`` to every child,
closes its stdin, and kills the group of any still running at the deadline.

One module, past 400 lines: spawning, the handshake, the exchange, the
heartbeat and the recycling all act on the same children and the same idle
queue under one set of invariants (a child is idle, busy or gone, never two);
split, each part would reach into the others' state.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from anyio.abc import TaskStatus

from printery.envelope import compact_json
from printery.errors import Drained, PrinteryError, RetryLater
from printery.lifecycle import ChildSpawned, ChildStopped, Emit
from printery.processes.child import Child, ChildExited, StdoutItem, describe_exit
from printery.processes.protocol import PROTOCOL_VERSION, ChildResult, ProtocolError, parse_result
from printery.processes.workers_file import WorkerDefinition

__all__ = ["ChildStartFailed", "Pool", "PoolChild"]

_START_FAILURES = 3  # replacement children failing to start in a row before the worker crashes
_PING_FRACTION = 3  # an idle child is pinged every heartbeat_timeout_s / 3
_TIMED_OUT = TimeoutError("task_timeout_s")  # what the task timer hands the waiting handler


def _is_line(item: dict[str, Any] | BaseException) -> bool:
    """A child's ``progress`` or ``log`` line (not a result, not the end of its stdout)."""
    return isinstance(item, dict) and item.get("op") in ("progress", "log")


class ChildStartFailed(PrinteryError):
    """Children of a worker exit (or stay silent) before ``ready``: its definition is broken."""


class PoolChild:
    """A ready child, what it said that nobody took yet, and why it was retired (if it was).

    The child's stdout lines arrive in the pipe's callback (:meth:`arrive`):
    a handler waiting in :meth:`next` gets each at once, with no reader task
    and no queue between; a line nobody waits for waits in ``unread``.
    """

    def __init__(self, child: Child) -> None:
        self.child = child
        self.unread: deque[dict[str, Any] | BaseException] = deque()
        self._waiter: asyncio.Future[dict[str, Any] | BaseException] | None = None
        self.gone = anyio.Event()
        self.retired: str | None = None  # why the daemon let it go (a kill reason, or start)
        self.killed = False  # whether the daemon killed it, or it had exited by itself
        self.detail = ""
        self.last_heartbeat = time.time()
        # The running message's task_timeout_s: one timer per child, re-armed only
        # when it fires early, not a timer made and cancelled per message.
        self._timing: str | None = None  # the message whose deadline is kept
        self._deadline = 0.0  # loop time
        self._timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def deliver(self, item: dict[str, Any] | BaseException) -> None:
        """Hand ``item`` to the waiting handler, or keep it for the next one."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(item)
        else:
            self.unread.append(item)

    async def next(self) -> dict[str, Any] | BaseException:
        """The child's next message, or the exception that ended its stdout."""
        if self.unread:
            return self.unread.popleft()
        waiter: asyncio.Future[dict[str, Any] | BaseException]
        waiter = self._waiter = self._loop.create_future()
        try:
            return await waiter
        finally:
            self._waiter = None

    def time_task(self, entry_id: str, timeout: float) -> None:
        """Kill the child when ``entry_id`` runs past ``timeout`` seconds (until :meth:`untime`)."""
        self._timing, self._timeout = entry_id, timeout
        self._deadline = self._loop.time() + timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)

    def untime(self) -> None:
        self._timing = None

    def _check_deadline(self) -> None:
        self._timer = None
        if self._timing is None:
            return
        if self._loop.time() < self._deadline:  # a later message's: wait for that one
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)
            return
        entry_id, self._timing = self._timing, None
        self.retire("timeout", f"over task_timeout_s ({self._timeout:g} s) on {entry_id}")
        self.deliver(_TIMED_OUT)  # ahead of the end of stdout that the kill brings

    def retire(self, reason: str, detail: str = "") -> None:
        if self.retired is None and not self.gone.is_set() and self.child.returncode is None:
            self.retired, self.detail, self.killed = reason, detail, True
        self.child.kill()

    def status(self) -> dict[str, Any]:
        rss = self.child.rss_mb()
        return {
            "pid": self.child.pid,
            "current": self.child.current,
            "handled": self.child.handled,
            "rss_mb": None if rss is None else round(rss, 1),
            "last_heartbeat_age_s": round(max(0.0, time.time() - self.last_heartbeat), 1),
        }


class Pool:
    """``processes`` children of one definition; ``run`` keeps them, ``request`` uses one."""

    def __init__(
        self,
        definition: WorkerDefinition,
        *,
        line_limit: int,
        emit: Emit,
        on_stderr: Callable[[int, str], None],
        backoff_s: tuple[float, float],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.definition = definition
        self.name = definition.name
        self.line_limit = line_limit
        self.emit = emit
        self.on_stderr = on_stderr
        self.backoff_s = backoff_s
        self.env = definition.child_environment(environ)
        self.live: list[PoolChild] = []
        self._idle: deque[PoolChild] = deque()
        self._changed = asyncio.Event()
        self._broken: str | None = None
        self._closing = False
        self._waiting = 0
        self._watchers = 0

    # -- keeping the children ------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Start every child (all ready, or ChildStartFailed), then keep them until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                first = [await self._spawn_ready() for _ in range(self.definition.processes)]
                for child in first:
                    tg.start_soon(self._slot, child)
                task_status.started()
        finally:
            # Cancelled (the drain's deadline, a crash): kill and reap what is left, and say so.
            with anyio.CancelScope(shield=True, deadline=anyio.current_time() + 2.0):
                for held in list(self.live):
                    held.retire("shutdown", "still running when the worker stopped")
                    await self._reap(held)

    async def _slot(self, child: PoolChild) -> None:
        failures = crashes = 0
        while True:
            await self._watch(child)
            await self._reap(child)
            if self._closing:
                return
            if child.retired in ("tasks", "rss"):
                crashes = 0  # recycled, not failed: replaced at once
            else:  # the backoff grows only while children fail before handling anything
                crashes = 1 if child.child.handled else crashes + 1
            if crashes:
                first, cap = self.backoff_s
                await anyio.sleep(min(cap, first * 2.0 ** (crashes - 1)))
            while True:
                if self._closing:
                    return
                try:
                    child = await self._spawn_ready()
                    break
                except ChildStartFailed:
                    failures += 1
                    if failures >= _START_FAILURES:
                        await self._break(f"{failures} children in a row failed to start")
                        raise
                    first, cap = self.backoff_s
                    await anyio.sleep(min(cap, first * 2.0 ** (failures - 1)))
            failures = 0

    async def _spawn_ready(self) -> PoolChild:
        """A new child that said ``ready`` in time; ChildStartFailed saying why not."""
        d = self.definition
        holder: list[PoolChild] = []
        child = Child(
            d.command,
            env=self.env,
            cwd=d.cwd,
            line_limit=self.line_limit,
            on_stderr=self.on_stderr,
            on_stdout=lambda item: self._arrived(holder[0], item),
        )
        held = PoolChild(child)
        holder.append(held)
        try:
            await child.start()
        except OSError as exc:
            raise ChildStartFailed(f"cannot start {d.command[0]!r}: {exc}") from None
        self.emit(ChildSpawned(self.name, child.pid))
        message: dict[str, Any] | BaseException | None = None
        with anyio.move_on_after(d.start_timeout_s):
            message = await held.next()
        problem = ""
        if message is None:
            problem = f"did not say ready within start_timeout_s ({d.start_timeout_s:g} s)"
        elif isinstance(message, ChildExited):
            await child.wait()
            problem = f"exited before it said ready ({describe_exit(child.returncode)})"
        elif isinstance(message, BaseException):
            problem = f"wrote a bad first line: {message}"
        elif message.get("op") != "ready" or message.get("protocol") != PROTOCOL_VERSION:
            problem = f'began with {compact_json(message)[:200]}, not {{"op":"ready","protocol":1}}'
        if problem:
            held.retire("start", problem)
            held.retired, held.detail = "start", problem  # even when it exited by itself
            await self._reap(held)
            raise ChildStartFailed(f"worker {self.name!r}: a child {problem}")
        self.live.append(held)
        self._idle.append(held)
        self._notify()
        return held

    def _arrived(self, held: PoolChild, item: StdoutItem) -> None:
        """One of the child's stdout lines (or its end), in the pipe's callback."""
        if isinstance(item, ChildExited | ProtocolError):
            if isinstance(item, ProtocolError):
                held.retire("protocol", str(item))
            held.gone.set()
            self._drop_idle(held)
            held.deliver(item)
            return
        held.last_heartbeat = time.time()  # any line is life, a pong or not
        if item.get("op") != "pong":
            held.deliver(item)

    async def _watch(self, held: PoolChild) -> None:
        """Until the child is gone: ping it while idle, and kill it when it stays silent."""
        timeout = self.definition.heartbeat_timeout_s
        while not held.gone.is_set():
            with anyio.move_on_after(timeout / _PING_FRACTION):
                await held.gone.wait()
            if held.gone.is_set() or held.child.current is not None:
                continue  # a running message has task_timeout_s for its silence
            silent = time.monotonic() - held.child.last_seen
            if silent > timeout:
                held.retire("heartbeat", f"silent for {silent:.1f} s while idle")
                continue
            try:
                await held.child.send({"op": "ping"})
            except ChildExited:
                continue

    async def _reap(self, held: PoolChild) -> None:
        self._drop_idle(held)
        if held in self.live:
            self.live.remove(held)
        with anyio.CancelScope(shield=True):
            code = await held.child.stop()
        killed = held.killed
        reason = held.retired or "exited"
        detail = held.detail or describe_exit(code)
        self.emit(ChildStopped(self.name, held.child.pid, reason, killed, detail))

    def _drop_idle(self, held: PoolChild) -> None:
        if held in self._idle:
            self._idle.remove(held)

    async def _break(self, reason: str) -> None:
        """Tell waiting handlers to hand their messages back uncounted, then let them."""
        self._broken = reason
        self._notify()
        with anyio.move_on_after(1.0):
            while self._waiting:
                await self._wait_changed()

    def _notify(self) -> None:
        if self._watchers:  # an Event per change costs; made only when someone waits
            self._changed.set()
            self._changed = asyncio.Event()

    async def _wait_changed(self) -> None:
        self._watchers += 1
        try:
            await self._changed.wait()
        finally:
            self._watchers -= 1

    # -- using a child ---------------------------------------------------------------

    async def request(
        self,
        task: dict[str, Any],
        *,
        on_message: Callable[[list[dict[str, Any]]], Awaitable[None]],
    ) -> ChildResult:
        """Run one task on an idle child; RetryLater when the child fails, Drained if broken."""
        held = await self._acquire()
        entry_id = str(task["id"])
        child = held.child
        child.current = entry_id
        answered = False
        try:
            result = await self._exchange(held, task, entry_id, on_message)
            answered = True
            return result
        finally:
            child.current = None
            if not answered:  # cut short (a drain's deadline): its late reply must not linger
                held.retire("shutdown", "cut short while it held a message")
            self._release(held)

    async def _acquire(self) -> PoolChild:
        self._waiting += 1
        try:
            while True:
                if self._broken is not None:
                    raise Drained(f"worker {self.name!r} cannot start children: {self._broken}")
                while self._idle:
                    held = self._idle.popleft()
                    if not held.gone.is_set():
                        return held
                await self._wait_changed()
        finally:
            self._waiting -= 1
            if self._broken is not None:
                self._notify()

    def _release(self, held: PoolChild) -> None:
        d = self.definition
        if held.gone.is_set() or held.retired is not None:
            return
        held.child.handled += 1
        if d.max_tasks_per_child and held.child.handled >= d.max_tasks_per_child:
            held.retire("tasks", f"handled {held.child.handled} (max_tasks_per_child)")
            return
        if d.max_rss_mb:
            rss = held.child.rss_mb()
            if rss is not None and rss > d.max_rss_mb:
                held.retire("rss", f"{rss:.0f} MiB resident > max_rss_mb {d.max_rss_mb:g}")
                return
        self._idle.append(held)
        self._notify()

    async def _exchange(
        self,
        held: PoolChild,
        task: dict[str, Any],
        entry_id: str,
        on_message: Callable[[list[dict[str, Any]]], Awaitable[None]],
    ) -> ChildResult:
        timeout = self.definition.task_timeout_s
        held.time_task(entry_id, timeout)  # a timer, not a cancel scope per message (they cost)
        try:
            with contextlib.suppress(ChildExited):  # the end of stdout says how it ended
                await held.child.send(task)
            while True:
                message = await held.next()
                if message is _TIMED_OUT:
                    break
                if isinstance(message, ProtocolError):
                    raise RetryLater(f"protocol error, child replaced: {message}")
                if isinstance(message, BaseException):
                    await held.child.wait()
                    raise RetryLater(
                        "the child exited while handling the message "
                        f"({describe_exit(held.child.returncode)})"
                    )
                op = message.get("op")
                if op in ("progress", "log"):
                    # Those that came in meanwhile go with it: one write to Redis for a burst.
                    lines = [message]
                    while held.unread and _is_line(held.unread[0]):
                        lines.append(held.unread.popleft())  # type: ignore[arg-type]  # _is_line
                    await on_message(lines)
                    continue
                if op != "result" or str(message.get("id")) != entry_id:
                    held.retire("protocol", f"unexpected {op!r} line while handling {entry_id}")
                    raise RetryLater(f"protocol error, child replaced: unexpected {op!r} line")
                try:
                    return parse_result(message)
                except ProtocolError as exc:
                    held.retire("protocol", str(exc))
                    raise RetryLater(f"protocol error, child replaced: {exc}") from None
        finally:
            held.untime()
        raise RetryLater(f"task_timeout_s ({timeout:g} s) exceeded: the child was killed")

    # -- stopping --------------------------------------------------------------------

    async def close(self, deadline: float) -> None:
        """``shutdown`` to each child, stdin closed; at ``deadline`` (anyio time) kill the rest."""
        self._closing = True
        for held in list(self.live):
            with contextlib.suppress(ChildExited):
                await held.child.send({"op": "shutdown"})
            held.child.close_stdin()
        with anyio.move_on_at(deadline):
            for held in list(self.live):
                await held.gone.wait()
        for held in list(self.live):
            held.retire("shutdown", "still running at the drain deadline")

    def statuses(self) -> list[dict[str, Any]]:
        return [held.status() for held in list(self.live)]
