"""WorkerManager: start order, supervision, restarts, hangs and the drain, with fake workers."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from printery.errors import ConfigError, RedisPermanent
from printery.lifecycle import (
    LifecycleEvent,
    WorkerCrashed,
    WorkerFailed,
    WorkerRestartScheduled,
    WorkerState,
    WorkerStateChanged,
)
from printery.settings import BUILTIN_WORKERS
from printery.supervisor.manager import WorkerManager
from printery.supervisor.ordering import start_levels
from printery.supervisor.restarts import RestartPolicy
from printery.worker import WorkerContext
from tests.support.events import Recorder

pytestmark = pytest.mark.timeout(20)

# Restarts that take a millisecond or so: the policy under test, not the wall clock.
TINY = RestartPolicy(max_restarts=3, backoff_s=0.001, backoff_max_s=0.004, window_s=300.0)
RUNNING, STOPPED, FAILED = WorkerState.RUNNING, WorkerState.STOPPED, WorkerState.FAILED


# -- fake workers -------------------------------------------------------------------------


class Probe:
    """Starts (once its gate opens, if it has one), serves until asked to stop; logs each step."""

    def __init__(
        self,
        name: str,
        depends_on: Sequence[str] = (),
        *,
        log: list[tuple[str, str]] | None = None,
        gate: anyio.Event | None = None,
    ) -> None:
        self.name = name
        self.depends_on = tuple(depends_on)
        self.log = [] if log is None else log
        self.gate = gate
        self.starts = 0
        self.ctx: WorkerContext | None = None

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        self.starts += 1
        self.ctx = ctx
        self.log.append(("enter", self.name))
        if self.gate is not None:
            await self.gate.wait()
        task_status.started()
        self.log.append(("started", self.name))
        await ctx.stopping.wait()
        self.log.append(("stopped", self.name))


class Crasher:
    """Raises at every start, or, given a trigger, once started and triggered."""

    depends_on: tuple[str, ...] = ()

    def __init__(self, name: str, *, trigger: anyio.Event | None = None, times: int = -1) -> None:
        self.name = name
        self.trigger = trigger
        self.times = times  # crash this many starts, then serve normally; -1: always
        self.starts = 0

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        self.starts += 1
        if 0 <= self.times < self.starts:
            task_status.started()
            await ctx.stopping.wait()
            return
        if self.trigger is not None:
            task_status.started()
            await self.trigger.wait()
        raise RuntimeError(f"{self.name} crash {self.starts}")


class Doomed:
    """Raises a fault that no restart can fix."""

    depends_on: tuple[str, ...] = ()

    def __init__(self, name: str, error: Exception) -> None:
        self.name = name
        self.error = error
        self.starts = 0

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        self.starts += 1
        raise self.error


class Quitter:
    """Starts, then returns without being asked to stop."""

    depends_on: tuple[str, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name
        self.starts = 0

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        self.starts += 1
        task_status.started()


class Hanger:
    """Starts, and on its first run never beats again; later runs behave."""

    depends_on: tuple[str, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name
        self.starts = 0
        self.ctx: WorkerContext | None = None

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        self.starts += 1
        self.ctx = ctx
        task_status.started()
        if self.starts == 1:
            await anyio.sleep_forever()
        await ctx.stopping.wait()


class Stubborn:
    """Starts, then ignores ``ctx.stopping``; honours cancellation (or not, if told)."""

    depends_on: tuple[str, ...] = ()

    def __init__(
        self,
        name: str,
        depends_on: Sequence[str] = (),
        *,
        release: anyio.Event | None = None,
    ) -> None:
        self.name = name
        self.depends_on = tuple(depends_on)
        self.release = release  # given: ignore cancellation until it is set
        self.cancelled = False

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        try:
            if self.release is not None:
                with anyio.CancelScope(shield=True):
                    await self.release.wait()
            await anyio.sleep_forever()
        finally:
            self.cancelled = True


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- helpers ---------------------------------------------------------------------------


@asynccontextmanager
async def supervising(
    *workers: Any,
    recorder: Recorder,
    start: bool = True,
    hang_timeout: float = 60.0,
    **options: Any,
) -> AsyncIterator[WorkerManager]:
    """A running manager with the workers registered (and started); drained on exit."""
    options.setdefault("health_check_interval", 3600.0)  # health passes only when the test asks
    manager = WorkerManager(emit=recorder, **options)
    for worker in workers:
        manager.register(worker, hang_timeout=hang_timeout)
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        if start:
            await manager.start_all()
        try:
            yield manager
        finally:
            with anyio.CancelScope(shield=True):
                await manager.stop_all()


def state_of(manager: WorkerManager, name: str) -> WorkerState:
    return manager.status()[name].state


def entered(events: Sequence[LifecycleEvent], name: str, state: WorkerState) -> int:
    """How often ``name`` entered ``state``."""
    return sum(
        1
        for e in events
        if isinstance(e, WorkerStateChanged) and e.worker == name and e.new is state
    )


def envelope(policy: RestartPolicy, attempt: int) -> tuple[float, float]:
    base = min(policy.backoff_max_s, policy.backoff_s * 2 ** (attempt - 1))
    return 0.8 * base, min(1.2 * base, policy.backoff_max_s)


def pipeline(log: list[tuple[str, str]], gate: anyio.Event | None = None) -> list[Probe]:
    """The four built-in workers' dependency graph, registered out of order."""
    return [
        Probe("health-monitor", ["dependency-checker"], log=log),
        Probe("notifier", log=log),
        Probe("dependency-checker", ["validator"], log=log),
        Probe("validator", log=log, gate=gate),
    ]


# -- start order -------------------------------------------------------------------------


def test_start_levels_follow_depends_on() -> None:
    """validator and notifier start first, then dependency-checker, then health-monitor."""
    levels = start_levels(pipeline([]), set())
    assert [{"notifier", "validator"}, {"dependency-checker"}, {"health-monitor"}] == [
        {w.name for w in level} for level in levels
    ]


async def test_start_order_is_topological() -> None:
    """A dependant is entered only after its dependency has started; notifier is in level 0."""
    log: list[tuple[str, str]] = []
    gate = anyio.Event()
    recorder = Recorder()
    async with supervising(
        *pipeline(log, gate), recorder=recorder, start=False, known_workers=set(BUILTIN_WORKERS)
    ) as manager:
        async with anyio.create_task_group() as tg:
            tg.start_soon(manager.start_all)
            await recorder.wait_for(lambda _: ("started", "notifier") in log, timeout=5)
            await anyio.wait_all_tasks_blocked()
            assert [] == [
                step for step in log if step[1] in {"dependency-checker", "health-monitor"}
            ]
            gate.set()
        assert dict.fromkeys(BUILTIN_WORKERS, RUNNING) == {
            name: state_of(manager, name) for name in BUILTIN_WORKERS
        }
    assert log.index(("started", "validator")) < log.index(("enter", "dependency-checker"))
    assert log.index(("started", "dependency-checker")) < log.index(("enter", "health-monitor"))
    assert log.index(("enter", "notifier")) < log.index(("enter", "dependency-checker"))


async def test_a_blocked_start_does_not_delay_an_independent_worker() -> None:
    """Workers of one level start in parallel: notifier runs while validator is still starting."""
    gate = anyio.Event()
    validator, notifier = Probe("validator", gate=gate), Probe("notifier")
    recorder = Recorder()
    async with supervising(validator, notifier, recorder=recorder, start=False) as manager:
        async with anyio.create_task_group() as tg:
            tg.start_soon(manager.start_all)
            await recorder.wait_for(lambda ev: entered(ev, "notifier", RUNNING) == 1, timeout=5)
            assert WorkerState.STARTING == state_of(manager, "validator")
            gate.set()
        assert (RUNNING, RUNNING) == (state_of(manager, "validator"), state_of(manager, "notifier"))


async def test_a_worker_whose_dependency_started_does_not_wait_for_another_level_zero_worker() -> (
    None
):
    """Workers with no unmet dependency start; a slow validator holds up no relay."""
    gate = anyio.Event()
    recorder = Recorder()
    workers = [Probe("validator", gate=gate), Probe("notifier"), Probe("relay", ["notifier"])]
    async with (
        supervising(*workers, recorder=recorder, start=False) as manager,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(manager.start_all)
        await recorder.wait_for(lambda ev: entered(ev, "notifier", RUNNING) == 1, timeout=5)
        await anyio.wait_all_tasks_blocked()
        try:
            assert RUNNING == state_of(manager, "relay")
        finally:
            gate.set()


def test_a_cycle_is_a_config_error() -> None:
    """Workers that depend on each other are refused with ConfigError on WORKER_MODE."""
    with pytest.raises(ConfigError) as caught:
        start_levels([Probe("a", ["b"]), Probe("b", ["c"]), Probe("c", ["a"])], set())
    assert "WORKER_MODE" == caught.value.setting
    assert "cycle" in caught.value.reason


def test_a_self_dependency_is_a_cycle() -> None:
    """A worker that depends on itself is a cycle."""
    with pytest.raises(ConfigError, match="cycle"):
        start_levels([Probe("a", ["a"])], set())


async def test_register_refuses_a_cycle() -> None:
    """A cycle among the registered workers is a ConfigError once they are ordered."""
    manager = WorkerManager(emit=Recorder(), known_workers={"a", "b"})
    manager.register(Probe("a", ["b"]))
    manager.register(Probe("b", ["a"]))
    with pytest.raises(ConfigError) as caught:
        manager.check()
    assert "WORKER_MODE" == caught.value.setting


async def test_an_unknown_dependency_is_a_config_error() -> None:
    """A dependency on a worker nobody knows is refused, naming it."""
    manager = WorkerManager(emit=Recorder(), known_workers=set(BUILTIN_WORKERS))
    manager.register(Probe("x", ["validatr"]))
    with pytest.raises(ConfigError) as caught:
        manager.check()
    assert "WORKER_MODE" == caught.value.setting
    assert "'validatr'" in caught.value.reason


async def test_a_known_but_unselected_dependency_is_fine() -> None:
    """dependency-checker alone (validator runs elsewhere) starts without waiting for it."""
    recorder = Recorder()
    checker = Probe("dependency-checker", ["validator"])
    async with supervising(
        checker, recorder=recorder, known_workers=set(BUILTIN_WORKERS)
    ) as manager:
        assert [["dependency-checker"]] == [[w.name for w in level] for level in manager.levels]
        assert RUNNING == state_of(manager, "dependency-checker")


async def test_registration_order_does_not_matter() -> None:
    """A dependant may be registered before its dependency."""
    manager = WorkerManager(emit=Recorder(), known_workers=set(BUILTIN_WORKERS))
    manager.register(Probe("thumbnailer", ["resizer"]))
    manager.register(Probe("resizer"))
    manager.check()
    assert [["resizer"], ["thumbnailer"]] == [[w.name for w in lvl] for lvl in manager.levels]


async def test_registering_a_name_twice_is_a_config_error() -> None:
    """One live instance per worker: a second registration of a name is refused."""
    manager = WorkerManager(emit=Recorder())
    manager.register(Probe("a"))
    with pytest.raises(ConfigError, match="twice"):
        manager.register(Probe("a"))


# -- supervision ------------------------------------------------------------------------


async def test_supervised_crash_storm_spends_the_budget_then_fails() -> None:
    """max_restarts restarts with delays in the envelope, then failed; the others keep running."""
    recorder = Recorder()
    crasher, steady = Crasher("crasher"), Probe("steady")
    async with supervising(
        crasher, steady, recorder=recorder, supervised=True, policy=TINY, rng=random.Random(7)
    ) as manager:
        await recorder.wait_for(lambda ev: any(isinstance(e, WorkerFailed) for e in ev), timeout=5)
        scheduled = recorder.of(WorkerRestartScheduled)
        assert [1, 2, 3] == [e.attempt for e in scheduled]
        for event in scheduled:
            low, high = envelope(TINY, event.attempt)
            assert low <= event.delay_s <= high
        assert ["crash"] * 4 == [e.kind for e in recorder.of(WorkerCrashed)]
        assert ["crasher"] == [e.worker for e in recorder.of(WorkerFailed)]
        assert 4 == crasher.starts
        assert FAILED == state_of(manager, "crasher")
        assert 3 == manager.status()["crasher"].restarts
        assert manager.is_live() is False
        assert RUNNING == state_of(manager, "steady")
        assert ("stopped", "steady") not in steady.log
        assert manager.fatal.is_set() is False
        assert 0 == manager.exit_code
    assert STOPPED == state_of(manager, "steady")


async def test_standalone_crash_is_fatal() -> None:
    """Without supervision a crash fails the worker, sets ``fatal`` and exit code 1."""
    recorder = Recorder()
    trigger = anyio.Event()
    boom, steady = Crasher("boom", trigger=trigger), Probe("steady")
    async with supervising(boom, steady, recorder=recorder, policy=TINY) as manager:
        assert manager.is_live() is True
        trigger.set()
        with anyio.fail_after(5):
            await manager.fatal.wait()
        assert 1 == manager.exit_code
        assert FAILED == state_of(manager, "boom")
        assert [("crash", "RuntimeError: boom crash 1")] == [
            (e.kind, e.error) for e in recorder.of(WorkerCrashed)
        ]
        assert [] == recorder.of(WorkerRestartScheduled)
        assert 1 == boom.starts
    assert ("stopped", "steady") in steady.log


async def test_every_worker_failed_in_supervised_mode_is_fatal() -> None:
    """Supervised: once the last worker fails, ``fatal`` is set and the exit code is 1."""
    recorder = Recorder()
    policy = RestartPolicy(max_restarts=1, backoff_s=0.001, backoff_max_s=0.001)
    async with supervising(
        Crasher("a"), Crasher("b"), recorder=recorder, supervised=True, policy=policy
    ) as manager:
        with anyio.fail_after(5):
            await manager.fatal.wait()
        assert 1 == manager.exit_code
        assert {"a": FAILED, "b": FAILED} == {n: s.state for n, s in manager.status().items()}
        assert ["a", "b"] == sorted(e.worker for e in recorder.of(WorkerRestartScheduled))


@pytest.mark.parametrize(
    "error",
    [
        RedisPermanent("WRONGPASS invalid username-password pair"),
        ConfigError("NOTIFY_WEBHOOK_URLS", "each URL must be http:// or https://"),
        # What a task group inside serve() makes of a refused password.
        ExceptionGroup("unhandled errors in a TaskGroup", [RedisPermanent("NOPERM no access")]),
    ],
    ids=["redis-permanent", "config-error", "in-a-task-group"],
)
async def test_a_permanent_error_fails_at_once(error: Exception) -> None:
    """RedisPermanent or ConfigError from serve: failed immediately, no restart, no budget spent."""
    recorder = Recorder()
    doomed, steady = Doomed("doomed", error), Probe("steady")
    async with supervising(
        doomed, steady, recorder=recorder, supervised=True, policy=TINY
    ) as manager:
        await recorder.wait_for(lambda ev: any(isinstance(e, WorkerFailed) for e in ev), timeout=5)
        assert ["permanent"] == [e.kind for e in recorder.of(WorkerCrashed)]
        assert [] == recorder.of(WorkerRestartScheduled)
        assert 1 == doomed.starts
        assert FAILED == state_of(manager, "doomed")
        assert 0 == manager.status()["doomed"].restarts
        assert RUNNING == state_of(manager, "steady")


async def test_returning_while_not_stopping_is_a_crash() -> None:
    """A serve() that returns unasked counts as a crash and is restarted."""
    recorder = Recorder()
    quitter = Quitter("quitter")
    async with supervising(quitter, recorder=recorder, supervised=True, policy=TINY):
        await recorder.wait_for(lambda ev: any(isinstance(e, WorkerFailed) for e in ev), timeout=5)
        assert ["returned"] * 4 == [e.kind for e in recorder.of(WorkerCrashed)]
        assert 4 == quitter.starts


# -- hangs --------------------------------------------------------------------------------


async def test_a_worker_that_never_beats_is_cancelled_restarted_and_counted() -> None:
    """The health pass cancels a running worker silent past its hang timeout, then restarts it."""
    recorder = Recorder()
    clock = FakeClock()
    hanger = Hanger("hanger")
    async with supervising(
        hanger, recorder=recorder, supervised=True, policy=TINY, clock=clock, hang_timeout=10.0
    ) as manager:
        assert hanger.ctx is not None
        assert clock.now == hanger.ctx.last_beat
        clock.advance(10.0)
        manager.health_check()
        await anyio.wait_all_tasks_blocked()
        assert [] == recorder.of(WorkerCrashed)
        assert RUNNING == state_of(manager, "hanger")
        clock.advance(0.5)
        manager.health_check()
        await recorder.wait_for(
            lambda ev: hanger.starts == 2 and entered(ev, "hanger", RUNNING) == 2, timeout=5
        )
        assert [("hang", "no progress for 10 s")] == [
            (e.kind, e.error) for e in recorder.of(WorkerCrashed)
        ]
        assert [1] == [e.attempt for e in recorder.of(WorkerRestartScheduled)]
        assert 1 == manager.status()["hanger"].restarts
        assert RUNNING == state_of(manager, "hanger")


async def test_a_worker_that_beats_is_not_hung() -> None:
    """Beats inside the hang timeout keep a long-running worker alive."""
    recorder = Recorder()
    clock = FakeClock()
    probe = Probe("beater")
    async with supervising(
        probe, recorder=recorder, supervised=True, clock=clock, hang_timeout=10.0
    ) as manager:
        assert probe.ctx is not None
        for _ in range(5):
            clock.advance(8.0)
            probe.ctx.beat()
            manager.health_check()
        clock.advance(8.0)
        status = manager.health_check()
        await anyio.wait_all_tasks_blocked()
        assert [] == recorder.of(WorkerCrashed)
        assert (RUNNING, 8.0) == (status["beater"].state, status["beater"].last_beat_age_s)
        assert 48.0 == status["beater"].uptime_s


async def test_a_promise_of_progress_holds_off_the_hang_check_and_reads_as_age_zero() -> None:
    """beat(within=...) is progress until then: not hung, and its age is 0, never negative."""
    recorder = Recorder()
    clock = FakeClock()
    probe = Probe("promiser")
    async with supervising(
        probe, recorder=recorder, supervised=True, clock=clock, hang_timeout=10.0
    ) as manager:
        assert probe.ctx is not None
        probe.ctx.beat(within=30.0)
        clock.advance(5.0)
        assert 0.0 == manager.health_check()["promiser"].last_beat_age_s
        clock.advance(34.0)  # 9 s past the promise: within the hang timeout
        status = manager.health_check()
        await anyio.wait_all_tasks_blocked()
        assert [] == recorder.of(WorkerCrashed)
        assert (RUNNING, 9.0) == (status["promiser"].state, status["promiser"].last_beat_age_s)


async def test_a_degraded_worker_is_never_hung_and_spends_no_budget() -> None:
    """Redis away (degraded) is not a hang: no cancel, no restart, however long it lasts."""
    recorder = Recorder()
    clock = FakeClock()
    probe = Probe("patient")
    async with supervising(
        probe, recorder=recorder, supervised=True, clock=clock, hang_timeout=10.0
    ) as manager:
        assert probe.ctx is not None
        probe.ctx.degraded("redis away")
        clock.advance(1000.0)
        manager.health_check()
        await anyio.wait_all_tasks_blocked()
        assert [] == recorder.of(WorkerCrashed)
        assert WorkerState.DEGRADED == state_of(manager, "patient")
        assert 0 == manager.status()["patient"].restarts
        assert 1 == probe.starts


# -- drain ------------------------------------------------------------------------------


async def test_stop_all_stops_every_worker_and_returns_when_all_have() -> None:
    """Every worker is told to stop at once; stop_all returns once the last has stopped."""
    log: list[tuple[str, str]] = []
    recorder = Recorder()
    async with supervising(
        *pipeline(log), recorder=recorder, known_workers=set(BUILTIN_WORKERS)
    ) as manager:
        await manager.stop_all()
        assert manager.is_ready() is False
        assert manager.is_live() is True
    stops = [name for step, name in log if step == "stopped"]
    assert set(BUILTIN_WORKERS) == set(stops)
    assert len(BUILTIN_WORKERS) == len(stops)
    assert dict.fromkeys(BUILTIN_WORKERS, STOPPED) == {
        name: s.state for name, s in manager.status().items()
    }


async def test_stop_all_cancels_a_worker_that_will_not_drain() -> None:
    """At the shutdown deadline a worker ignoring ``stopping`` is cancelled and ends stopped."""
    recorder = Recorder()
    stubborn, polite = Stubborn("stubborn"), Probe("polite")
    async with supervising(stubborn, polite, recorder=recorder, shutdown_timeout=0.2) as manager:
        await manager.stop_all()
        assert stubborn.cancelled is True
        assert ("stopped", "polite") in polite.log
        assert {"stubborn": STOPPED, "polite": STOPPED} == {
            n: s.state for n, s in manager.status().items()
        }
        assert [] == recorder.of(WorkerFailed)


async def test_a_worker_ignoring_cancellation_at_the_deadline_is_failed() -> None:
    """A worker that shields itself from the deadline's cancel is marked failed."""
    recorder = Recorder()
    release = anyio.Event()
    immovable = Stubborn("immovable", release=release)
    async with supervising(immovable, recorder=recorder, shutdown_timeout=0.2) as manager:
        await manager.stop_all()
        assert FAILED == state_of(manager, "immovable")
        assert ["immovable"] == [e.worker for e in recorder.of(WorkerFailed)]
        release.set()


async def test_a_stuck_dependant_does_not_keep_its_dependencies_from_draining() -> None:
    """Every worker is asked to stop, and may drain, before the deadline."""
    recorder = Recorder()
    validator = Probe("validator")
    stuck = Stubborn("dependency-checker", ["validator"])
    async with supervising(validator, stuck, recorder=recorder, shutdown_timeout=0.2) as manager:
        await manager.stop_all()
    assert ("stopped", "validator") in validator.log


async def test_wait_for_healthy_waits_until_every_worker_runs() -> None:
    """wait_for_healthy returns True once the last worker has started."""
    recorder = Recorder()
    gate = anyio.Event()
    slow, fast = Probe("slow", gate=gate), Probe("fast")
    async with supervising(slow, fast, recorder=recorder, start=False) as manager:
        async with anyio.create_task_group() as tg:
            tg.start_soon(manager.start_all)
            await recorder.wait_for(lambda ev: entered(ev, "fast", RUNNING) == 1, timeout=5)
            assert manager.is_ready() is False

            async def open_gate() -> None:
                gate.set()

            tg.start_soon(open_gate)  # runs only once wait_for_healthy is waiting
            assert await manager.wait_for_healthy(5) is True
        assert manager.is_ready() is True


async def test_wait_for_healthy_times_out() -> None:
    """wait_for_healthy returns False when a worker does not start within the timeout."""
    recorder = Recorder()
    gate = anyio.Event()
    async with (
        supervising(Probe("slow", gate=gate), recorder=recorder, start=False) as manager,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(manager.start_all)
        assert await manager.wait_for_healthy(0.05) is False
        gate.set()


async def test_restart_drains_and_starts_again_without_spending_budget() -> None:
    """restart(name) stops the worker, starts it again, and counts no restart."""
    recorder = Recorder()
    probe = Probe("probe")
    async with supervising(probe, recorder=recorder, supervised=True, policy=TINY) as manager:
        await manager.restart("probe")
        await recorder.wait_for(
            lambda ev: probe.starts == 2 and entered(ev, "probe", RUNNING) == 2, timeout=5
        )
        assert [
            ("enter", "probe"),
            ("started", "probe"),
            ("stopped", "probe"),
            ("enter", "probe"),
            ("started", "probe"),
        ] == probe.log
        assert 0 == manager.status()["probe"].restarts
        assert [] == recorder.of(WorkerCrashed)
        assert [] == recorder.of(WorkerRestartScheduled)


async def test_restart_cuts_a_backoff_short() -> None:
    """restart(name) on a worker waiting out a long backoff starts it now."""
    recorder = Recorder()
    policy = RestartPolicy(max_restarts=3, backoff_s=3600.0, backoff_max_s=3600.0)
    flaky = Crasher("flaky", times=1)
    async with supervising(
        flaky, recorder=recorder, start=False, supervised=True, policy=policy
    ) as manager:
        async with anyio.create_task_group() as tg:
            tg.start_soon(manager.start_all)  # waits for flaky's start, i.e. through the backoff
            await recorder.wait_for(
                lambda ev: entered(ev, "flaky", WorkerState.RESTARTING) == 1, timeout=5
            )
            await manager.restart("flaky")
            await recorder.wait_for(lambda ev: entered(ev, "flaky", RUNNING) == 1, timeout=5)
        assert 2 == flaky.starts
        assert 1 == manager.status()["flaky"].restarts


async def test_standalone_permanent_fault_exits_2() -> None:
    """Standalone, a permanent fault (bad credentials) drains the daemon with exit code 2."""

    class BadCredentials:
        name = "locked-out"
        depends_on: tuple[str, ...] = ()

        async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
            raise RedisPermanent("WRONGPASS invalid username-password pair")

    recorder = Recorder()
    async with supervising(BadCredentials(), recorder=recorder, start=False) as manager:
        await manager.start_all()
        with anyio.fail_after(5):
            await manager.fatal.wait()
        assert (2, FAILED) == (manager.exit_code, state_of(manager, "locked-out"))
