"""The demo's second act: what the supervisor does when things go wrong.

::

    a WorkerManager of its own, supervised, RESTART_BACKOFF_MS=250, MAX_DELIVERIES=3
    ├── flaky-reporter  a plain Worker that crashes on its first run
    └── resizer         a StreamWorker on <prefix>:demo:images, concurrency 1
    1. crash   flaky-reporter raises; the supervisor restarts it after the backoff,
               the resizer keeps running
    2. poison  a message whose handler always raises: redelivered with backoff,
               then dead-lettered to <prefix>:demo:images:dead with its reason
    3. drain   one slow job running, four read behind it; stop_all (what SIGTERM
               does): the four are handed back at once, the slow one commits

Every line it prints comes from a lifecycle event or from Redis, not from a
script of what should have happened: a step that did not happen is reported
as missing and the demo exits 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
from anyio.abc import TaskStatus

from printery.context import WorkerContext, WorkerDeps
from printery.lifecycle import (
    Emit,
    Hub,
    LifecycleEvent,
    MessageHandled,
    MessagesHandedBack,
    Outcome,
    WorkerCrashed,
    WorkerRestartScheduled,
    WorkerState,
    WorkerStateChanged,
)
from printery.message import Message
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from printery.redis.writes import Write
from printery.settings import Settings, load_settings
from printery.supervisor.manager import WorkerManager
from printery.supervisor.restarts import RestartPolicy
from printery.worker import StreamWorker, Worker

__all__ = ["run_supervisor_act"]

E = TypeVar("E")

_STEP_S = 5.0  # each step takes well under a second; past this it is reported missing
_BEHIND = 4  # messages read behind the slow one, to be handed back by the drain
_POLICY = RestartPolicy(max_restarts=3, backoff_s=0.25, backoff_max_s=2.0, window_s=300)


class _FlakyReporter:
    """Crashes on its first run, as a worker with a bug in its start-up would."""

    name = "flaky-reporter"
    depends_on: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.runs = 0
        self.crash = anyio.Event()

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        self.runs += 1
        task_status.started()
        if self.runs == 1:
            await self.crash.wait()
            raise RuntimeError("lost its report printer (simulated)")
        await ctx.stopping.wait()


class _Resizer(StreamWorker):
    """Makes thumbnails; a ``job`` field of ``poison`` always raises, ``slow`` takes 0.5 s."""

    name = "resizer"

    def __init__(self, deps: WorkerDeps) -> None:
        super().__init__(deps)
        self.slow_started = anyio.Event()

    @property
    def stream(self) -> str:
        return f"{self.keys.prefix}:demo:images"

    async def handle(self, message: Message) -> Sequence[Write]:
        job = message.fields.get("job", "")
        if job == "poison":
            raise ValueError("not an image: the file starts with %PDF-1.7")
        if job == "slow":
            self.slow_started.set()
            await anyio.sleep(0.5)  # a handler that is simply slow: the drain waits for it
        return [Write.xadd(f"{self.keys.prefix}:demo:thumbnails", {"of": message.id})]


@dataclass(slots=True)
class _Seen:
    """The act's lifecycle events, in order; wakes waiters on each."""

    events: list[LifecycleEvent] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def __call__(self, event: LifecycleEvent) -> None:
        self.events.append(event)
        self.changed.set()
        self.changed = anyio.Event()

    def first(self, kind: type[E], test: Callable[[E], bool] = lambda _: True) -> E | None:
        return next((e for e in self.events if isinstance(e, kind) and test(e)), None)

    async def wait_for(self, kind: type[E], test: Callable[[E], bool] = lambda _: True) -> E | None:
        """The first event of ``kind`` passing ``test``, waiting up to a step's time."""
        with anyio.move_on_after(_STEP_S):
            while (found := self.first(kind, test)) is None:
                await self.changed.wait()
            return found
        return None


def _settings(prefix: str) -> Settings:
    return load_settings(
        {},
        {
            "STREAM_PREFIX": prefix,
            "CONSUMER_NAME": "demo-supervisor",
            "BLOCK_MS": "200",
            "MAX_DELIVERIES": "3",
            "RETRY_BACKOFF_MS": "100",
            "HTTP_PORT": "0",
            "SHUTDOWN_TIMEOUT": "5",
        },
    )


async def run_supervisor_act(
    adapter: StreamAdapter, prefix: str, say: Callable[[str], None], *, emit: Emit | None = None
) -> int:
    """Run the three steps on ``adapter`` under ``prefix``; returns how many went missing."""
    settings = _settings(prefix)
    keys = Keys(prefix)
    seen = _Seen()
    hub = Hub([seen, *([emit] if emit is not None else [])])
    flaky = _FlakyReporter()
    resizer = _Resizer(WorkerDeps(settings, adapter, keys, settings.consumer_name))
    manager = WorkerManager(
        emit=hub, supervised=True, policy=_POLICY, health_check_interval=1, shutdown_timeout=5
    )
    manager.register(flaky)
    if not isinstance(resizer, Worker):  # a StreamWorker always is; this tells mypy
        raise TypeError(resizer)
    manager.register(resizer)
    missing = 0
    say("")
    say(f"── the supervisor: {flaky.name} and {resizer.name} under a WorkerManager of their own")
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        await manager.start_all()
        try:
            missing += await _crash(flaky, seen, say)
            missing += await _poison(adapter, resizer, seen, settings, say)
            missing += await _slow_then_drain(adapter, resizer, manager, seen, say)
        finally:
            if not manager.stopping:  # the drain step stops it; an earlier failure must too
                with anyio.CancelScope(shield=True):
                    await manager.stop_all()
    return missing


async def _crash(flaky: _FlakyReporter, seen: _Seen, say: Callable[[str], None]) -> int:
    began = anyio.current_time()
    flaky.crash.set()
    crashed = await seen.wait_for(WorkerCrashed, lambda e: e.worker == flaky.name)
    scheduled = await seen.wait_for(WorkerRestartScheduled, lambda e: e.worker == flaky.name)
    back = await seen.wait_for(
        WorkerStateChanged,
        lambda e: e.worker == flaky.name and e.new is WorkerState.RUNNING and flaky.runs == 2,
    )
    if crashed is None or scheduled is None or back is None:
        say(f"  MISSING: {flaky.name} was not restarted within {_STEP_S:g} s")
        return 1
    say(f"  crash: {flaky.name} raised {crashed.error}")
    say(
        f"    the supervisor restarts it after {scheduled.delay_s:.2f} s of backoff "
        f"(restart {scheduled.attempt} of {_POLICY.max_restarts}; the next waits twice as long)"
    )
    say(
        f"    {flaky.name} is running again {anyio.current_time() - began:.2f} s after the crash; "
        "the resizer never stopped"
    )
    return 0


async def _poison(
    adapter: StreamAdapter,
    resizer: _Resizer,
    seen: _Seen,
    settings: Settings,
    say: Callable[[str], None],
) -> int:
    poison_id = await adapter.add(resizer.stream, {"job": "poison"})
    dead = await seen.wait_for(
        MessageHandled,
        lambda e: e.message_id == poison_id and e.outcome is Outcome.DEAD_LETTERED,
    )
    dead_stream = Keys.dead(resizer.stream)
    letters = await adapter.entries(dead_stream)
    if dead is None or not letters or letters[-1].fields is None:
        say(f"  MISSING: the poison message {poison_id} was not dead-lettered")
        return 1
    fields = {k.decode(): v.decode(errors="replace") for k, v in letters[-1].fields.items()}
    say(
        f"  poison: message {poison_id} raised on each of its {fields.get('deliveries')} "
        f"deliveries (MAX_DELIVERIES={settings.max_deliveries}, retried with backoff)"
    )
    say(f"    dead-lettered to {dead_stream} with its reason: {fields.get('error')}")
    say(f"    (printery dlq list {resizer.stream} shows it; printery dlq replay resends it)")
    return 0


async def _slow_then_drain(
    adapter: StreamAdapter,
    resizer: _Resizer,
    manager: WorkerManager,
    seen: _Seen,
    say: Callable[[str], None],
) -> int:
    await adapter.add(resizer.stream, {"job": "slow"})
    with anyio.move_on_after(_STEP_S):
        await resizer.slow_started.wait()
    for n in range(_BEHIND):
        await adapter.add(resizer.stream, {"job": f"thumbnail-{n}"})
    # The read loop signals nothing per read: poll what the worker holds, with a deadline.
    with anyio.move_on_after(_STEP_S):
        while resizer.in_flight < 1 + _BEHIND:  # noqa: ASYNC110 - no event to await
            await anyio.sleep(0.01)
    held = resizer.in_flight
    await manager.stop_all()
    handed = seen.first(MessagesHandedBack, lambda e: e.worker == resizer.name)
    stats = await adapter.group_stats(resizer.stream, resizer.group)
    pending = 0 if stats is None else stats.pending
    if handed is None or handed.count != _BEHIND or pending != _BEHIND:
        say(
            f"  MISSING: the drain should hand back {_BEHIND} of {held} held messages "
            f"(handed back {0 if handed is None else handed.count}, {pending} pending)"
        )
        return 1
    say(
        f"  drain: the resizer holds {held} messages, one running (0.5 s), {_BEHIND} read behind it"
    )
    say(
        f"    stop (what SIGTERM does): reading stops at once; the {_BEHIND} not started are "
        "handed back, pending and idle, so a live consumer claims them now"
    )
    say(
        f"    the running one finished and committed; {pending} pending in group "
        f"{resizer.group}, none lost"
    )
    return 0
