"""The WorkerManager: starts workers in dependency order, supervises them, drains them.

::

    start_all ── each worker starts once its selected dependencies have started
                 (independent ones in parallel; a worker has started when it
                 calls task_status.started())
    supervise:   serve() ends ─┬─ stopping ............................ stopped
                               ├─ RedisPermanent / ConfigError ........ failed, no retry
                               │                                      (standalone: exit 2)
                               └─ crash / return / hang (health pass) ─┬─ standalone: exit 1
                                                                       └─ supervised:
                                           budget left? ── yes ─► restarting ─ backoff ─► start
                                                        └─ no ──► failed (others keep running)
    stop_all ── stopping is set on every worker at once (reading stops everywhere);
                each drains and returns, awaited last level first; at the deadline
                the rest are cancelled; a worker that ignores cancellation is failed.

The health pass (every ``HEALTH_CHECK_INTERVAL``) finds hangs: a ``running``
worker whose last beat is older than its hang timeout is cancelled and
counted as a crash. Crashes are seen at once, since the supervising task
ends. Degraded workers (Redis away) are never hung and spend no budget.

Past 400 lines on purpose: the state machine drawn above is one unit, and
splitting its transitions across modules would hide the picture.
"""

from __future__ import annotations

import math
import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from printery.errors import ConfigError, RedisPermanent, find
from printery.lifecycle import (
    Emit,
    WorkerCrashed,
    WorkerFailed,
    WorkerRestartScheduled,
    WorkerState,
    WorkerStateChanged,
)
from printery.supervisor.ordering import start_levels
from printery.supervisor.restarts import RestartBudget, RestartPolicy
from printery.worker import Worker, WorkerContext

__all__ = ["WorkerManager", "WorkerStatus"]

_CANCEL_GRACE_S = 5.0  # how long a hung, cancelled worker may take to return before it is failed


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """A snapshot of one worker, for /status, /health and heartbeats."""

    name: str
    state: WorkerState
    restarts: int
    uptime_s: float
    last_beat_age_s: float
    reason: str


class _StartSignal:
    """The ``task_status`` handed to ``serve``: marks the worker running when it starts."""

    def __init__(self, slot: _Slot) -> None:
        self._slot = slot

    def started(self, value: Any = None) -> None:
        self._slot.manager._set_state(self._slot, WorkerState.RUNNING, "started")
        self._slot.started.set()


@dataclass(slots=True, eq=False)
class _Slot:
    manager: WorkerManager
    worker: Worker
    hang_timeout: float
    budget: RestartBudget
    state: WorkerState = WorkerState.STOPPED
    reason: str = ""
    ctx: WorkerContext | None = None
    scope: anyio.CancelScope | None = None
    started: anyio.Event = field(default_factory=anyio.Event)
    finished: anyio.Event = field(default_factory=anyio.Event)
    hung: bool = False
    cancel_requested_at: float | None = None
    running_since: float | None = None
    wake: anyio.Event = field(default_factory=anyio.Event)


class WorkerManager:
    """Registers, starts, supervises, restarts and stops workers.

    Build it inside the running event loop: it creates anyio events.
    """

    def __init__(
        self,
        *,
        emit: Emit,
        supervised: bool = False,
        policy: RestartPolicy | None = None,
        health_check_interval: float = 30.0,
        shutdown_timeout: float = 30.0,
        known_workers: set[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.emit = emit
        self.supervised = supervised
        self.policy = policy or RestartPolicy()
        self.health_check_interval = health_check_interval
        self.shutdown_timeout = shutdown_timeout
        self.known_workers = known_workers or set()
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.slots: dict[str, _Slot] = {}
        self.levels: list[list[Worker]] = []
        self.last_tick = clock()
        self.stopping = False
        # When the whole stop must be over (anyio time), set by stop_all: what the
        # daemon does after the drain (releasing its heartbeat) gives up at it.
        self.stop_deadline = math.inf
        self.exit_code = 0
        self.fatal = anyio.Event()  # standalone crash, or every worker failed: drain and exit 1
        self._stopped = anyio.Event()
        self._changed = anyio.Event()
        self._tg: TaskGroup | None = None

    # -- registration and order ---------------------------------------------------

    def register(self, worker: Worker, *, hang_timeout: float | None = None) -> None:
        """Add a worker; its hang timeout is ``hang_timeout``, else its own, else 60 s."""
        if worker.name in self.slots:
            raise ConfigError("WORKER_MODE", f"worker {worker.name!r} is registered twice")
        if hang_timeout is None:
            hang_timeout = float(getattr(worker, "hang_timeout", 60.0))
        budget = RestartBudget(self.policy, clock=self.clock, rng=self.rng)
        self.slots[worker.name] = _Slot(self, worker, hang_timeout, budget)

    def check(self) -> None:
        """Order the registered workers; ConfigError on a cycle or an unknown dependency.

        Done once every worker is registered, so registration order never matters.
        """
        self.levels = start_levels(
            [s.worker for s in self.slots.values()], self.known_workers | set(self.slots)
        )

    # -- running --------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Own every worker's task and the health loop until :meth:`stop_all` completes."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._health_loop)
            task_status.started()
            await self._stopped.wait()
            tg.cancel_scope.cancel()

    async def start_all(self) -> None:
        """Start every worker as soon as its own selected dependencies have started.

        Returns once every worker has started (or ended, or the daemon is failing).
        """
        if self._tg is None:
            raise RuntimeError("start_all() needs run() to be running")
        self.check()
        for slot in self.slots.values():
            self._tg.start_soon(self._start_when_ready, slot)
        for slot in self.slots.values():
            await _first_of(slot.started, slot.finished, self.fatal)

    async def _start_when_ready(self, slot: _Slot) -> None:
        for dep in slot.worker.depends_on:
            if dep in self.slots:
                other = self.slots[dep]
                await _first_of(other.started, other.finished, self.fatal)
        if self.stopping or self.fatal.is_set():
            slot.finished.set()
            return
        await self._supervise(slot)

    async def stop_all(self) -> None:
        """Drain: every worker stops reading at once; they are awaited last level first.

        All are told at once, so no worker keeps taking new messages while a
        dependant finishes its in-flight work; the whole drain is bounded by
        the deadline.
        """
        self.stopping = True
        # The deadline is split so the whole stop fits inside SHUTDOWN_TIMEOUT:
        # workers drain until ``soft``; then stragglers are cancelled and their
        # shielded cleanup (a commit, a hand-back) must end by ``cleanup``; the
        # daemon's own closing (heartbeat, connections) gets the rest.
        start = anyio.current_time()
        self.stop_deadline = start + self.shutdown_timeout
        reserve = min(2.0, self.shutdown_timeout * 0.2)
        soft = start + self.shutdown_timeout - reserve
        cleanup = start + self.shutdown_timeout - reserve / 2
        for slot in self.slots.values():
            if slot.ctx is not None:
                slot.ctx.cleanup_deadline = cleanup
        with anyio.CancelScope(deadline=soft) as deadline:
            for slot in self.slots.values():
                self._request_stop(slot)
            for level in reversed(self.levels):
                for worker in level:
                    await self.slots[worker.name].finished.wait()
        if deadline.cancelled_caught:
            await self._cancel_remaining(until=cleanup + reserve / 4)
        self._stopped.set()

    async def _cancel_remaining(self, until: float) -> None:
        pending = [s for s in self.slots.values() if not s.finished.is_set()]
        for slot in pending:
            if slot.scope is not None:
                slot.scope.cancel()
        with anyio.CancelScope(deadline=until):
            for slot in pending:
                await slot.finished.wait()
        for slot in pending:
            if not slot.finished.is_set():
                self._set_state(slot, WorkerState.FAILED, "ignored cancellation")
                self.emit(WorkerFailed(slot.worker.name, "ignored cancellation when stopped"))

    def _request_stop(self, slot: _Slot) -> None:
        if slot.ctx is not None:
            slot.ctx.stopping.set()
        if slot.state in {WorkerState.RUNNING, WorkerState.DEGRADED, WorkerState.STARTING}:
            self._set_state(slot, WorkerState.STOPPING, "stop requested")
        slot.wake.set()  # a worker waiting out its backoff stops waiting
        if slot.scope is None and slot.ctx is None:
            slot.finished.set()

    async def restart(self, name: str) -> None:
        """Stop one worker (drain) and start it again; spends no restart budget."""
        slot = self.slots[name]
        slot.hung = False
        if slot.ctx is not None:
            slot.ctx.stopping.set()
        slot.reason = "restart requested"
        slot.wake.set()

    # -- supervision ----------------------------------------------------------------

    async def _supervise(self, slot: _Slot) -> None:
        name = slot.worker.name
        try:
            while not self.stopping:
                slot.hung = False
                slot.cancel_requested_at = None
                requested_restart = False
                slot.ctx = WorkerContext(name, self.emit, self._state_setter(slot), self.clock)
                self._set_state(slot, WorkerState.STARTING, slot.reason or "starting")
                kind, error = "returned", "serve() returned while not stopping"
                trace = ""
                try:
                    with anyio.CancelScope() as slot.scope:
                        await slot.worker.serve(slot.ctx, task_status=_StartSignal(slot))
                    if slot.scope.cancelled_caught and slot.hung:
                        kind, error = "hang", f"no progress for {slot.hang_timeout:g} s"
                    elif slot.ctx.stopping.is_set():
                        requested_restart = not self.stopping
                        kind = ""
                except Exception as exc:  # noqa: BLE001 - any crash is the supervisor's business
                    permanent = find(exc, (RedisPermanent, ConfigError))
                    if permanent is not None:
                        kind, error = "permanent", str(permanent)
                    else:
                        kind, error = "crash", _describe(exc)
                        trace = traceback.format_exc()
                finally:
                    slot.scope = None
                    slot.budget.paused()
                    slot.running_since = None
                if self.stopping:
                    break
                if requested_restart:
                    slot.reason = "restarted on request"
                    continue
                self.emit(WorkerCrashed(name, kind, error, trace))
                if kind == "permanent":
                    self._fail(slot, error)
                    if not self.supervised:  # bad credentials, bad configuration: exit 2
                        self.exit_code = 2
                        self.fatal.set()
                    return
                if not self.supervised:
                    self._set_state(slot, WorkerState.FAILED, error)
                    self.emit(WorkerFailed(name, f"{kind} in standalone mode: {error}"))
                    self.exit_code = 1
                    self.fatal.set()
                    return
                delay = slot.budget.on_failure()
                if delay is None:
                    self._fail(slot, f"restart budget spent ({self.policy.max_restarts}): {error}")
                    return
                self._set_state(slot, WorkerState.RESTARTING, f"{kind}: {error}")
                self.emit(WorkerRestartScheduled(name, slot.budget.restarts, delay))
                slot.wake = anyio.Event()
                with anyio.move_on_after(delay):
                    await slot.wake.wait()
                slot.reason = f"restart {slot.budget.restarts} after {kind}"
            if slot.state is not WorkerState.FAILED:  # failed at the deadline stays failed
                self._set_state(slot, WorkerState.STOPPED, "stopped")
        finally:
            slot.finished.set()

    def _fail(self, slot: _Slot, reason: str) -> None:
        self._set_state(slot, WorkerState.FAILED, reason)
        self.emit(WorkerFailed(slot.worker.name, reason))
        if all(s.state is WorkerState.FAILED for s in self.slots.values()):
            self.exit_code = 1
            self.fatal.set()

    def _state_setter(self, slot: _Slot) -> Callable[[WorkerState, str], None]:
        def set_state(state: WorkerState, reason: str) -> None:
            if slot.state in {WorkerState.STOPPING, WorkerState.FAILED}:
                return  # a draining worker's reconnects do not make it "running" again
            self._set_state(slot, state, reason)

        return set_state

    def _set_state(self, slot: _Slot, state: WorkerState, reason: str) -> None:
        old = slot.state
        if old is state:
            return
        slot.state = state
        slot.reason = reason
        if state is WorkerState.RUNNING:
            slot.budget.running()
            if slot.running_since is None:
                slot.running_since = self.clock()
        elif old is WorkerState.RUNNING:
            slot.budget.paused()
        self.emit(WorkerStateChanged(slot.worker.name, old, state, reason))
        self._changed.set()
        self._changed = anyio.Event()

    async def _health_loop(self) -> None:
        while True:
            self.health_check()
            await anyio.sleep(self.health_check_interval)

    def health_check(self) -> dict[str, WorkerStatus]:
        """One supervisor pass: find hangs, settle budgets, return every worker's status."""
        now = self.clock()
        self.last_tick = now
        for slot in self.slots.values():
            slot.budget.settle()
            ctx = slot.ctx
            if (
                slot.state is WorkerState.RUNNING
                and ctx is not None
                and slot.scope is not None
                and now - ctx.last_progress() > slot.hang_timeout
                and not slot.hung
            ):
                slot.hung = True
                slot.cancel_requested_at = now
                slot.scope.cancel()
            if (
                slot.cancel_requested_at is not None
                and not slot.finished.is_set()
                and slot.scope is not None
                and now - slot.cancel_requested_at
                > max(_CANCEL_GRACE_S, self.health_check_interval)
            ):
                self._fail(slot, "ignored cancellation after a hang")
                slot.cancel_requested_at = None
        return self.status()

    # -- reading state ----------------------------------------------------------------

    def status(self) -> dict[str, WorkerStatus]:
        now = self.clock()
        return {
            name: WorkerStatus(
                name=name,
                state=slot.state,
                restarts=slot.budget.total_restarts,
                uptime_s=0.0 if slot.running_since is None else now - slot.running_since,
                last_beat_age_s=math.inf if slot.ctx is None else _age(now, slot.ctx),
                reason=slot.reason,
            )
            for name, slot in self.slots.items()
        }

    def is_live(self) -> bool:
        """/health: the supervisor ticked recently and no worker is failed."""
        ticked = self.clock() - self.last_tick <= 2 * self.health_check_interval
        return ticked and not any(s.state is WorkerState.FAILED for s in self.slots.values())

    def is_ready(self) -> bool:
        """/ready (less the Redis ping): every worker running and no drain under way."""
        return not self.stopping and all(
            s.state is WorkerState.RUNNING for s in self.slots.values()
        )

    async def wait_for_healthy(self, timeout: float) -> bool:  # noqa: ASYNC109 - the API the issue fixes
        """Wait until every worker is running; False on timeout."""
        with anyio.move_on_after(timeout):
            while not self.is_ready():
                await self._changed.wait()
        return self.is_ready()

    def workers(self) -> Sequence[Worker]:
        return [s.worker for s in self.slots.values()]


async def _first_of(*events: anyio.Event) -> None:
    """Return as soon as any of the events is set."""
    async with anyio.create_task_group() as tg:

        async def waiter(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(waiter, event)


def _describe(exc: BaseException) -> str:
    """``Type: message`` of the crash, unwrapping a task group's lone exception."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def _age(now: float, ctx: WorkerContext) -> float:
    """Seconds since the worker's last progress; 0 while a promise of progress still runs."""
    return max(0.0, now - ctx.last_progress())
