"""The dependency checker's handler: met, blocked with what was found, unblocked while waiting."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import pytest

from printery.envelope import Event
from printery.errors import Permanent
from printery.lifecycle import LifecycleEvent, MessageHandled, Outcome
from printery.message import Message
from printery.pipeline.dependency_checker import DependencyCheckerWorker
from printery.redis.adapter import StreamAdapter
from printery.redis.writes import Write
from printery.settings import BUILTIN_WORKERS
from tests.support.events import Recorder
from tests.support.harness import make_deps, running

pytestmark = pytest.mark.timeout(15)

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
AUTH = {"service": "auth-api", "version": "^2.1.0"}
POSTGRES = {"service": "postgres", "version": ">=14.0.0"}


def deployment(
    *dependencies: dict[str, str], deployment_id: str = "dep-42", environment: str = "production"
) -> dict[str, Any]:
    return {
        "deployment_id": deployment_id,
        "service": "billing-api",
        "version": "1.4.2",
        "environment": environment,
        "dependencies": list(dependencies),
    }


def validated(data: dict[str, Any], type: str = "deployment.validated") -> Message:
    event = Event.create(
        type, data["deployment_id"], data, source="printery/validator", traceparent=TRACE
    )
    raw = {k.encode(): v.encode() for k, v in event.to_fields().items()}
    return Message("s", "1-0", raw, 1)


def events(writes: Sequence[Write], stream: str) -> list[Event]:
    return [
        Event.from_fields(dict(zip(map(str, w.args[::2]), map(str, w.args[1::2]), strict=True)))
        for w in writes
        if w.op == "XADD" and w.key == stream
    ]


class FakeTime:
    """An injected clock and sleep: waits take no real time, and each sleep can act."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.during_sleep: Callable[[int], Awaitable[None]] | None = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.during_sleep is not None:
            await self.during_sleep(len(self.sleeps))


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_worker(
    adapter: StreamAdapter, prefix: str, fake_time: FakeTime, **env: str
) -> DependencyCheckerWorker:
    env.setdefault("DEPENDENCY_WAIT_TIMEOUT", "20")
    return DependencyCheckerWorker(
        make_deps(adapter, prefix, **env), sleep=fake_time.sleep, clock=fake_time.clock
    )


CASES = [
    ("all met", {"auth-api": "2.3.0", "postgres": "15.4.0"}, [AUTH, POSTGRES], []),
    ("no dependencies", {}, [], []),
    (
        "too old",
        {"auth-api": "1.9.0", "postgres": "15.4.0"},
        [AUTH, POSTGRES],
        ["auth-api ^2.1.0: found 1.9.0"],
    ),
    ("not deployed", {"auth-api": "2.3.0"}, [AUTH, POSTGRES], ["postgres >=14.0.0: not deployed"]),
    (
        "both unmet",
        {"auth-api": "3.0.0"},
        [AUTH, POSTGRES],
        ["auth-api ^2.1.0: found 3.0.0", "postgres >=14.0.0: not deployed"],
    ),
    (
        "prerelease outside the range",
        {"auth-api": "2.2.0-rc.1"},
        [AUTH],
        ["auth-api ^2.1.0: found 2.2.0-rc.1"],
    ),
    ("garbage in the registry", {"auth-api": "latest"}, [AUTH], ["auth-api ^2.1.0: found latest"]),
]


@pytest.mark.parametrize(
    ("registry", "dependencies", "unmet"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_registry_decides(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    fake_adapter: StreamAdapter,
    prefix: str,
    fake_time: FakeTime,
    registry: dict[str, str],
    dependencies: list[dict[str, str]],
    unmet: list[str],
) -> None:
    """Met ranges pass the deployment on; unmet ones block it, naming what was found instead."""
    worker = make_worker(fake_adapter, prefix, fake_time)
    if registry:
        await fake_adapter.client.hset(worker.keys.registry("production"), mapping=registry)
    data = deployment(*dependencies)
    writes = await worker.handle(validated(data))
    satisfied = events(writes, worker.keys.dependencies_satisfied)
    blocked = events(writes, worker.keys.notifications)
    if not unmet:
        assert [e.type for e in satisfied] == ["deployment.dependencies_satisfied"]
        assert blocked == []
        assert satisfied[0].data_object() == data
        assert satisfied[0].traceparent == TRACE
    else:
        assert satisfied == []
        assert [e.type for e in blocked] == ["deployment.blocked"]
        body = blocked[0].data_object()
        assert body["reasons"] == unmet
        assert blocked[0].subject == "dep-42"
        assert blocked[0].traceparent == TRACE


async def test_other_environments_do_not_count(
    fake_adapter: StreamAdapter, prefix: str, fake_time: FakeTime
) -> None:
    """A dependency running in staging does not satisfy a production deployment."""
    worker = make_worker(fake_adapter, prefix, fake_time)
    await fake_adapter.client.hset(worker.keys.registry("staging"), "auth-api", "2.3.0")
    writes = await worker.handle(validated(deployment(AUTH)))
    [blocked] = events(writes, worker.keys.notifications)
    assert blocked.data_object()["unmet"] == [
        {"service": "auth-api", "range": "^2.1.0", "found": None}
    ]


async def test_unmet_is_rechecked_with_capped_backoff_until_the_timeout(
    fake_adapter: StreamAdapter, prefix: str, fake_time: FakeTime
) -> None:
    """Re-checks wait 0.5 s doubling to 5 s, and the last one lands on the timeout itself."""
    worker = make_worker(fake_adapter, prefix, fake_time, DEPENDENCY_WAIT_TIMEOUT="20")
    writes = await worker.handle(validated(deployment(AUTH)))
    assert fake_time.sleeps == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 2.5]
    [blocked] = events(writes, worker.keys.notifications)
    assert blocked.data_object()["checks"] == 8


async def test_zero_timeout_blocks_after_one_check(
    fake_adapter: StreamAdapter, prefix: str, fake_time: FakeTime
) -> None:
    """DEPENDENCY_WAIT_TIMEOUT=0 means one look at the registry, no wait."""
    worker = make_worker(fake_adapter, prefix, fake_time, DEPENDENCY_WAIT_TIMEOUT="0")
    writes = await worker.handle(validated(deployment(AUTH)))
    assert fake_time.sleeps == []
    assert [e.type for e in events(writes, worker.keys.notifications)] == ["deployment.blocked"]


async def test_unblocked_when_the_registry_is_updated_during_the_wait(
    fake_adapter: StreamAdapter, prefix: str, fake_time: FakeTime
) -> None:
    """A dependency that turns healthy mid-wait lets the deployment through, not blocked."""
    worker = make_worker(fake_adapter, prefix, fake_time)

    async def deploy_auth(sleeps: int) -> None:
        if sleeps == 2:
            await fake_adapter.client.hset(worker.keys.registry("production"), "auth-api", "2.4.0")

    fake_time.during_sleep = deploy_auth
    writes = await worker.handle(validated(deployment(AUTH)))
    assert fake_time.sleeps == [0.5, 1.0]
    assert events(writes, worker.keys.notifications) == []
    assert len(events(writes, worker.keys.dependencies_satisfied)) == 1
    [log] = [w for w in writes if w.op == "RPUSH"]
    entry = json.loads(log.args[0])
    assert (entry["stage"], entry["status"]) == ("dependencies", "satisfied")
    assert entry["message"] == "auth-api ^2.1.0: found 2.4.0 (after 3 checks)"


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (validated(deployment(AUTH), type="deployment.started"), "type: expected"),
        (validated({**deployment(AUTH), "version": "one"}), "invalid deployment.validated"),
    ],
    ids=["wrong type", "invalid data"],
)
async def test_bad_input_is_dead_lettered(
    fake_adapter: StreamAdapter, prefix: str, fake_time: FakeTime, message: Message, match: str
) -> None:
    """Input that is not a valid deployment.validated is dead-lettered, never acted on."""
    worker = make_worker(fake_adapter, prefix, fake_time)
    with pytest.raises(Permanent, match=match):
        await worker.handle(message)


def test_waits_get_their_own_slots(fake_adapter: StreamAdapter, prefix: str) -> None:
    """Handler slots come from DEPENDENCY_CHECKER_MAX_WAITS; the concurrency bounds reads."""
    default = DependencyCheckerWorker(make_deps(fake_adapter, prefix))
    assert (default.concurrency, default.check_limit) == (1000, 5)
    tuned = DependencyCheckerWorker(
        make_deps(
            fake_adapter,
            prefix,
            DEPENDENCY_CHECKER_CONCURRENCY="2",
            DEPENDENCY_CHECKER_MAX_WAITS="50",
        )
    )
    assert (tuned.concurrency, tuned.check_limit) == (50, 2)


async def test_registry_reads_in_flight_are_bounded(
    fake_adapter: StreamAdapter, prefix: str, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many deployments are checked at once, at most the concurrency read the registry."""
    worker = make_worker(fake_adapter, prefix, fake_time, DEPENDENCY_CHECKER_CONCURRENCY="3")
    real = fake_adapter.hash_get
    in_flight = peak = 0

    async def counted(key: str, names: Sequence[str]) -> dict[str, str | None]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.01)
        try:
            return await real(key, names)
        finally:
            in_flight -= 1

    monkeypatch.setattr(fake_adapter, "hash_get", counted)
    await fake_adapter.client.hset(worker.keys.registry("production"), "auth-api", "2.3.0")
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(worker.handle, validated(deployment(AUTH, deployment_id=f"d{i}")))
    assert peak == 3


def acked(events: list[LifecycleEvent]) -> list[MessageHandled]:
    return [e for e in events if isinstance(e, MessageHandled) and e.outcome is Outcome.ACKED]


async def test_waiting_deployments_do_not_hold_up_new_ones(
    fake_adapter: StreamAdapter, prefix: str
) -> None:
    """With more deployments waiting than DEPENDENCY_CHECKER_CONCURRENCY, a new one still passes."""
    recorder = Recorder()
    worker = DependencyCheckerWorker(
        make_deps(
            fake_adapter, prefix, DEPENDENCY_CHECKER_CONCURRENCY="2", DEPENDENCY_WAIT_TIMEOUT="30"
        )
    )
    for i in range(10):
        stuck = validated(deployment(AUTH, deployment_id=f"waiting-{i}"))
        await fake_adapter.add(worker.stream, {k.decode(): v for k, v in stuck.raw.items()})
    free = validated(deployment(deployment_id="free"))
    await fake_adapter.add(worker.stream, {k.decode(): v for k, v in free.raw.items()})
    async with running(
        worker, recorder=recorder, shutdown_timeout=1.0, known_workers=set(BUILTIN_WORKERS)
    ):
        await recorder.wait_for(lambda ev: len(acked(ev)) == 1, timeout=5)
    [out] = await fake_adapter.client.xrange(worker.keys.dependencies_satisfied)
    assert out[1][b"subject"] == b"free"
