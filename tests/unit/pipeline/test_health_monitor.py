"""The health monitor's handler against a scripted loopback endpoint: verdicts and bounds."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import pytest
from aiohttp import web

from printery.envelope import Event
from printery.message import Message
from printery.pipeline.health_monitor import HealthMonitorWorker
from printery.redis.adapter import StreamAdapter
from printery.redis.writes import Write
from tests.support.harness import make_deps
from tests.support.redis_server import free_port

pytestmark = pytest.mark.timeout(15)

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Target:
    """A health endpoint that answers with the next status of its script; the last one repeats."""

    def __init__(self, *statuses: int, delay: float = 0.0) -> None:
        self.statuses = list(statuses)
        self.delay = delay
        self.hits = 0
        self.in_flight = 0
        self.peak = 0
        self.url = ""

    async def health(self, _: web.Request) -> web.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.sleep(self.delay)
            status = self.statuses[min(self.hits, len(self.statuses) - 1)]
            self.hits += 1
            if status in (301, 302):
                return web.Response(status=status, headers={"Location": "/ok"})
            return web.Response(status=status)
        finally:
            self.in_flight -= 1

    async def ok(self, _: web.Request) -> web.Response:
        return web.Response(status=200)


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    runners: list[web.AppRunner] = []

    async def start(target: Target) -> Target:
        app = web.Application()
        app.add_routes([web.get("/health", target.health), web.get("/ok", target.ok)])
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        target.url = f"http://127.0.0.1:{runner.addresses[0][1]}/health"
        return target

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def worker(fake_adapter: StreamAdapter, prefix: str) -> AsyncIterator[HealthMonitorWorker]:
    monitor = HealthMonitorWorker(make_deps(fake_adapter, prefix))
    yield monitor
    await monitor.aclose()


def satisfied(
    check: dict[str, Any] | None, deployment_id: str = "dep-42", version: str = "1.4.2"
) -> Message:
    data: dict[str, Any] = {
        "deployment_id": deployment_id,
        "service": "billing-api",
        "version": version,
        "environment": "production",
        "dependencies": [],
    }
    if check is not None:
        data["health_check"] = check
    event = Event.create(
        "deployment.dependencies_satisfied",
        deployment_id,
        data,
        source="printery/dependency-checker",
        traceparent=TRACE,
    )
    return Message("s", "1-0", {k.encode(): v.encode() for k, v in event.to_fields().items()}, 1)


def check(url: str, **tuning: Any) -> dict[str, Any]:
    return {"url": url, "interval_s": 0.02, "timeout_s": 0.2, "deadline_s": 1, **tuning}


def outcome(writes: Sequence[Write], worker: HealthMonitorWorker) -> Event:
    [fields] = [
        dict(zip(map(str, w.args[::2]), map(str, w.args[1::2]), strict=True))
        for w in writes
        if w.op == "XADD" and w.key == worker.keys.notifications
    ]
    return Event.from_fields(fields)


async def test_no_health_check_is_healthy_at_once(worker: HealthMonitorWorker) -> None:
    """Without a health check the version is recorded and announced healthy, in one commit."""
    given = satisfied(None)
    writes = await worker.handle(given)
    registry = [w for w in writes if w.key == worker.keys.registry("production")]
    event = outcome(writes, worker)
    order_key = worker.keys.registry_requested("production")
    # Ordered by when the timeline says it was validated, read in the commit; by the
    # given event's own time when the timeline is gone.
    timeline = worker.keys.deployment("dep-42")
    given_time = given.fields["time"]
    assert [
        (
            "HSET_LATEST",
            ("billing-api", "1.4.2", order_key, given_time, timeline, "validation_at"),
        )
    ] == [(w.op, w.args) for w in registry]
    assert (event.type, event.subject, event.traceparent) == ("deployment.healthy", "dep-42", TRACE)
    assert event.data_object()["polls"] == 0


SCRIPTS = [
    ("two in a row", (200,), {}, True, 2, "HTTP 200"),
    ("a failure resets the count", (200, 503, 200, 200), {}, True, 4, "HTTP 200"),
    (
        "another expected status",
        (204,),
        {"expect_status": 204, "healthy_threshold": 1},
        True,
        1,
        "HTTP 204",
    ),
    ("never healthy", (503,), {"deadline_s": 0.3}, False, None, "HTTP 503"),
    ("redirects are not followed", (302,), {"deadline_s": 0.3}, False, None, "HTTP 302"),
    (
        "healthy too late",
        (503, 503, 200),
        {"interval_s": 0.2, "deadline_s": 0.3},
        False,
        2,
        "HTTP 503",
    ),
]


@pytest.mark.parametrize(
    ("statuses", "tuning", "healthy", "polls", "last"),
    [case[1:] for case in SCRIPTS],
    ids=[case[0] for case in SCRIPTS],
)
async def test_polling_decides(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    worker: HealthMonitorWorker,
    serve: Any,
    statuses: tuple[int, ...],
    tuning: dict[str, Any],
    healthy: bool,
    polls: int | None,
    last: str,
) -> None:
    """Healthy after healthy_threshold consecutive expect_status; unhealthy at the deadline."""
    target = await serve(Target(*statuses))
    writes = await worker.handle(satisfied(check(target.url, **tuning)))
    event = outcome(writes, worker)
    data = event.data_object()
    assert event.type == ("deployment.healthy" if healthy else "deployment.unhealthy")
    if polls is not None:
        assert data["polls"] == polls
    wrote_registry = any(
        w.op == "HSET_LATEST" and w.key == worker.keys.registry("production") for w in writes
    )
    assert wrote_registry is healthy
    if not healthy:
        assert data["reasons"][0].endswith(f"last: {last}")


async def test_unreachable_endpoint_reports_the_error(worker: HealthMonitorWorker) -> None:
    """A refused connection ends unhealthy with the error, not a status."""
    url = f"http://127.0.0.1:{free_port()}/health"
    writes = await worker.handle(satisfied(check(url, deadline_s=0.3)))
    data = outcome(writes, worker).data_object()
    assert data["last_status"] is None
    assert "ClientConnectorError" in data["last_error"]


async def test_slow_endpoint_times_out(worker: HealthMonitorWorker, serve: Any) -> None:
    """A response slower than timeout_s counts as a failed poll that names the timeout."""
    target = await serve(Target(200, delay=1.0))
    writes = await worker.handle(satisfied(check(target.url, timeout_s=0.1, deadline_s=0.5)))
    data = outcome(writes, worker).data_object()
    assert data["last_error"] == "timed out after 0.1 s"


async def test_deadline_bounds_the_whole_watch(worker: HealthMonitorWorker, serve: Any) -> None:
    """A watch ends at deadline_s even in the middle of a poll or an interval."""
    target = await serve(Target(503, delay=0.3))
    started = time.monotonic()
    await worker.handle(satisfied(check(target.url, interval_s=5, timeout_s=1, deadline_s=1)))
    assert time.monotonic() - started < 1.5


async def test_requests_in_flight_are_bounded(
    fake_adapter: StreamAdapter, prefix: str, serve: Any
) -> None:
    """Thirty watches at once, at most HEALTH_MONITOR_CONCURRENCY requests in flight."""
    monitor = HealthMonitorWorker(make_deps(fake_adapter, prefix, HEALTH_MONITOR_CONCURRENCY="3"))
    target = await serve(Target(200, delay=0.02))
    results: list[str] = []

    async def one(i: int) -> None:
        writes = await monitor.handle(satisfied(check(target.url, deadline_s=10), f"d{i}"))
        results.append(outcome(writes, monitor).type)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(30):
                tg.start_soon(one, i)
    finally:
        await monitor.aclose()
    assert results == ["deployment.healthy"] * 30
    assert target.peak == 3


def test_watches_get_their_own_slots(fake_adapter: StreamAdapter, prefix: str) -> None:
    """Handler slots come from HEALTH_MONITOR_MAX_WATCHES; the concurrency bounds requests."""
    default = HealthMonitorWorker(make_deps(fake_adapter, prefix))
    assert (default.concurrency, default.request_limit) == (1000, 10)
    tuned = HealthMonitorWorker(
        make_deps(
            fake_adapter, prefix, HEALTH_MONITOR_CONCURRENCY="4", HEALTH_MONITOR_MAX_WATCHES="64"
        )
    )
    assert (tuned.concurrency, tuned.request_limit) == (64, 4)


async def test_timeline_records_the_result(worker: HealthMonitorWorker, serve: Any) -> None:
    """The health stage lands in the deployment's timeline with the outcome."""
    target = await serve(Target(200))
    writes = await worker.handle(satisfied(check(target.url)))
    [log] = [w for w in writes if w.op == "RPUSH"]
    entry = json.loads(log.args[0])
    assert (entry["stage"], entry["status"]) == ("health", "healthy")


async def test_the_registry_keeps_the_later_request_not_the_later_finish(
    worker: HealthMonitorWorker, fake_adapter: StreamAdapter
) -> None:
    """1.4.3 was validated after 1.4.2 but turns healthy first: 1.4.2 finishing later loses."""
    for deployment_id, validated_at in (("dep-old", "10:00"), ("dep-new", "10:05")):
        timeline = worker.keys.deployment(deployment_id)
        await fake_adapter.client.hset(timeline, "validation_at", f"2026-12-01T{validated_at}Z")
    stream = worker.stream
    await fake_adapter.ensure_group(stream, worker.group)
    for message in (satisfied(None, "dep-new", "1.4.3"), satisfied(None, "dep-old")):
        entry_id = await fake_adapter.add(stream, {"n": "1"})
        await fake_adapter.read(stream, worker.group, "c1", count=1, block_ms=None)
        assert [True] == await fake_adapter.commit(
            stream, worker.group, [(entry_id, await worker.handle(message))]
        )
    registry = await fake_adapter.hash_all(worker.keys.registry("production"))
    assert {"billing-api": "1.4.3"} == registry
