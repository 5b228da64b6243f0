"""The pipeline's handlers leave no reference cycles behind: what they make, refcounting frees.

Garbage in cycles waits for the collector, and in a daemon that handles
hundreds of messages a second the collector's passes were a tenth of the CPU
and, for the oldest generation, pauses of 30 to 50 ms (the pipeline's p99).
Each test runs a handler a hundred times against a real Redis and a loopback
HTTP endpoint with the collector off, then counts what a collection finds:
one cycle per message would be a hundred at least.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from printery.envelope import Event
from printery.message import Message
from printery.pipeline.dependency_checker import DependencyCheckerWorker
from printery.pipeline.health_monitor import HealthMonitorWorker
from printery.pipeline.notifier import NotifierWorker
from printery.redis.adapter import StreamAdapter
from tests.support.harness import make_deps

pytestmark = [pytest.mark.timeout(30), pytest.mark.redis_server]

MESSAGES = 100
ALLOWED = 10  # a one-off cycle or two (a pool's first connection, a cached object) is no leak


@pytest.fixture
async def endpoint() -> AsyncIterator[str]:
    """A loopback health endpoint (GET /health) and webhook (POST /hook); its base URL."""

    async def ok(_: web.Request) -> web.Response:
        return web.Response(status=200)

    app = web.Application()
    app.add_routes([web.get("/health", ok), web.post("/hook", ok)])
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def message(type: str, n: int, data: dict[str, Any]) -> Message:
    event = Event.create(
        type, f"dep-{n}", {"deployment_id": f"dep-{n}", **data}, source="printery/test"
    )
    return Message("s", f"{n}-0", {k.encode(): v.encode() for k, v in event.to_fields().items()}, 1)


DEPLOYMENT = {"service": "billing-api", "version": "1.4.2", "environment": "production"}


async def cycles_per_run(handle: Callable[[int], Awaitable[object]]) -> int:
    """Objects in cycles after MESSAGES calls (warmed up first, collector off meanwhile)."""
    for n in range(5):  # first connections, lazily imported modules, caches
        await handle(-1 - n)
    gc.collect()
    gc.disable()
    try:
        for n in range(MESSAGES):
            await handle(n)
        return gc.collect()
    finally:
        gc.enable()


async def test_the_dependency_checker_leaves_no_cycles(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """A hundred checks, each reading the registry (HMGET), leave no objects in cycles."""
    worker = DependencyCheckerWorker(make_deps(real_adapter, prefix))
    await real_adapter.client.hset(worker.keys.registry("production"), "auth-api", "2.3.0")
    data = {**DEPLOYMENT, "dependencies": [{"service": "auth-api", "version": "^2.1.0"}]}

    async def handle(n: int) -> object:
        return await worker.handle(message("deployment.validated", n, data))

    assert await cycles_per_run(handle) <= ALLOWED


async def test_the_health_monitor_leaves_no_cycles(
    real_adapter: StreamAdapter, prefix: str, endpoint: str
) -> None:
    """A hundred watches, each one GET of a healthy endpoint, leave no objects in cycles."""
    worker = HealthMonitorWorker(make_deps(real_adapter, prefix))
    check = {"url": f"{endpoint}/health", "healthy_threshold": 1, "interval_s": 1}
    data = {**DEPLOYMENT, "dependencies": [], "health_check": check}

    async def handle(n: int) -> object:
        return await worker.handle(message("deployment.dependencies_satisfied", n, data))

    try:
        assert await cycles_per_run(handle) <= ALLOWED
    finally:
        await worker.aclose()


async def test_the_notifier_leaves_no_cycles(
    real_adapter: StreamAdapter, prefix: str, endpoint: str
) -> None:
    """A hundred deliveries, each a marker GET and a POST, leave no objects in cycles."""
    worker = NotifierWorker(make_deps(real_adapter, prefix, NOTIFY_WEBHOOK_URLS=f"{endpoint}/hook"))

    async def handle(n: int) -> object:
        return await worker.handle(message("deployment.healthy", n, {**DEPLOYMENT, "reasons": []}))

    try:
        assert await cycles_per_run(handle) <= ALLOWED
    finally:
        await worker.aclose()
