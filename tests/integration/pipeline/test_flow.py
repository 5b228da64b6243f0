"""The four pipeline workers end to end on a real redis-server, with real loopback HTTP servers."""

from __future__ import annotations

import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from printery.cli.main import run
from printery.envelope import Event
from printery.lifecycle import LifecycleEvent, MessageHandled, Outcome
from printery.pipeline.dependency_checker import DependencyCheckerWorker
from printery.pipeline.health_monitor import HealthMonitorWorker
from printery.pipeline.notifier import NotifierWorker, sign
from printery.pipeline.publish import started_event
from printery.pipeline.timeline import read_timeline
from printery.pipeline.validator import ValidatorWorker
from printery.redis.adapter import StreamAdapter
from printery.settings import BUILTIN_WORKERS
from printery.worker import StreamWorker
from tests.support.events import Recorder
from tests.support.harness import make_deps, running
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(40)

SECRET = "integration-secret"


@dataclass
class Servers:
    """A health endpoint and a webhook receiver on loopback; the receiver checks signatures."""

    base: str = ""
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    hook_requests: dict[str, int] = field(default_factory=dict)
    bad_signatures: int = 0
    flaky_failures: int = 0
    health_in_flight: int = 0
    health_peak: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)

    def touch(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, done: Callable[[], bool], timeout: float = 20) -> None:
        with anyio.fail_after(timeout):
            while not done():
                await self.changed.wait()

    async def hook(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await request.read()
        self.hook_requests[name] = self.hook_requests.get(name, 0) + 1
        self.touch()
        if not hmac.compare_digest(
            request.headers.get("X-Printery-Signature", ""), sign(SECRET, body)
        ):
            self.bad_signatures += 1
            return web.Response(status=401)
        try:  # the Standard Webhooks form too, checked by that spec's own library
            Webhook(SECRET.encode()).verify(body, dict(request.headers), json_parse=False)
        except WebhookVerificationError:
            self.bad_signatures += 1
            return web.Response(status=401)
        if name == "flaky" and self.flaky_failures > 0:
            self.flaky_failures -= 1
            return web.Response(status=503)
        event = json.loads(body)
        self.received.setdefault(event["subject"], []).append(event)
        self.touch()
        return web.Response(status=204)

    async def health(self, request: web.Request) -> web.Response:
        self.health_in_flight += 1
        self.health_peak = max(self.health_peak, self.health_in_flight)
        try:
            await anyio.sleep(0.01)
            return web.Response(status=200 if request.match_info["state"] == "up" else 503)
        finally:
            self.health_in_flight -= 1

    def outcome(self, deployment_id: str) -> dict[str, Any]:
        [event] = self.received[deployment_id]
        return event


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    state = Servers()
    app = web.Application()
    app.add_routes(
        [web.post("/hooks/{name}", state.hook), web.get("/health/{state}", state.health)]
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


def acked(worker: str, count: int) -> Callable[[list[LifecycleEvent]], bool]:
    def done(events: list[LifecycleEvent]) -> bool:
        return (
            sum(
                1
                for e in events
                if isinstance(e, MessageHandled)
                and e.worker == worker
                and e.outcome is Outcome.ACKED
            )
            >= count
        )

    return done


@contextlib.asynccontextmanager
async def pipeline(
    adapter: StreamAdapter, prefix: str, servers: Servers, recorder: Recorder, **env: str
) -> AsyncIterator[list[StreamWorker]]:
    """All four workers under one manager, webhooks pointed at the receiver."""
    env = {
        "NOTIFY_WEBHOOK_URLS": f"{servers.base}/hooks/main",
        "NOTIFY_WEBHOOK_SECRET": SECRET,
        "NOTIFY_WEBHOOK_BACKOFF_MS": "1",
        "NOTIFY_WEBHOOK_BACKOFF_MAX_MS": "5",
        "DEPENDENCY_WAIT_TIMEOUT": "1",
        **env,
    }
    deps = make_deps(adapter, prefix, **env)
    workers: list[StreamWorker] = [
        ValidatorWorker(deps),
        DependencyCheckerWorker(deps),
        HealthMonitorWorker(deps),
        NotifierWorker(deps),
    ]
    async with running(*workers, recorder=recorder, shutdown_timeout=5.0):
        yield workers


def request(
    deployment_id: str, service: str, version: str = "1.0.0", **more: Any
) -> dict[str, Any]:
    return {
        "deployment_id": deployment_id,
        "service": service,
        "version": version,
        "environment": "staging",
        **more,
    }


def health(url: str, **tuning: Any) -> dict[str, Any]:
    return {
        "url": url,
        "interval_s": 0.1,
        "timeout_s": 1,
        "healthy_threshold": 2,
        "deadline_s": 1.5,
        **tuning,
    }


OUTCOMES = [
    (
        "healthy",
        lambda base: request(
            "d-ok",
            "billing-api",
            health_check=health(f"{base}/health/up"),
            dependencies=[{"service": "auth-api", "version": "^2.1.0"}],
        ),
        "deployment.healthy",
        "healthy",
        [],
    ),
    (
        "rejected",
        lambda base: request("d-bad", "Billing_API", version="one"),
        "deployment.rejected",
        "rejected",
        [
            "service: must be a DNS-1123 label (got 'Billing_API')",
            "version: must be a semantic version like 1.4.2 (got 'one')",
        ],
    ),
    (
        "blocked",
        lambda base: request(
            "d-blocked",
            "search-api",
            dependencies=[
                {"service": "auth-api", "version": "^3.0.0"},
                {"service": "elastic", "version": ">=8"},
            ],
        ),
        "deployment.blocked",
        "blocked",
        ["auth-api ^3.0.0: found 2.3.0", "elastic >=8: not deployed"],
    ),
    (
        "unhealthy",
        lambda base: request(
            "d-sick",
            "image-resizer",
            health_check=health(f"{base}/health/down", timeout_s=0.5, deadline_s=0.5),
        ),
        "deployment.unhealthy",
        "unhealthy",
        None,
    ),
]


@pytest.mark.parametrize(
    ("make", "kind", "status", "reasons"),
    [case[1:] for case in OUTCOMES],
    ids=[case[0] for case in OUTCOMES],
)
async def test_each_outcome_end_to_end(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    redis_server: RedisServer,
    real_adapter: StreamAdapter,
    prefix: str,
    servers: Servers,
    make: Callable[[str], dict[str, Any]],
    kind: str,
    status: str,
    reasons: list[str] | None,
) -> None:
    """A deployment.started entry ends at the webhook, signed, with its timeline and audit."""
    recorder = Recorder()
    data = make(servers.base)
    deployment_id = data["deployment_id"]
    async with pipeline(real_adapter, prefix, servers, recorder) as workers:
        keys = workers[0].keys
        await real_adapter.client.hset(keys.registry("staging"), "auth-api", "2.3.0")
        started = started_event(data)
        await real_adapter.add(keys.started, started.to_fields())
        await servers.wait_for(lambda: deployment_id in servers.received)
        await recorder.wait_for(acked("notifier", 1))
    outcome = servers.outcome(deployment_id)
    assert outcome["type"] == kind
    assert outcome["traceparent"] == started.traceparent
    assert servers.bad_signatures == 0
    if reasons is not None:
        assert outcome["data"]["reasons"] == reasons
    timeline = await read_timeline(real_adapter, keys, deployment_id)
    assert timeline is not None
    assert timeline.fields["status"] == status
    assert timeline.log[-1]["stage"] == "notification"
    [(_, audit)] = await real_adapter.client.xrange(keys.delivered)
    assert audit[b"type"] == b"notification.delivered"
    registry = await real_adapter.client.hgetall(keys.registry("staging"))
    expected = {b"auth-api": b"2.3.0"}
    if kind == "deployment.healthy":
        expected[b"billing-api"] = b"1.0.0"
    assert registry == expected


async def test_redelivered_notification_is_not_sent_twice(
    redis_server: RedisServer, real_adapter: StreamAdapter, prefix: str, servers: Servers
) -> None:
    """A webhook that took the event is skipped when another one's failure forces a redelivery."""
    recorder = Recorder()
    servers.flaky_failures = 3  # every attempt of the first delivery
    worker = NotifierWorker(make_deps(
        real_adapter, prefix,
        NOTIFY_WEBHOOK_URLS=f"{servers.base}/hooks/steady,{servers.base}/hooks/flaky",
        NOTIFY_WEBHOOK_SECRET=SECRET, NOTIFY_WEBHOOK_ATTEMPTS="3",
        NOTIFY_WEBHOOK_BACKOFF_MS="1", NOTIFY_WEBHOOK_BACKOFF_MAX_MS="5",
    ))  # fmt: skip
    event = Event.create("deployment.healthy", "d-1", {"deployment_id": "d-1", "reasons": []})
    await real_adapter.add(worker.stream, event.to_fields())
    async with running(worker, recorder=recorder):
        await recorder.wait_for(acked("notifier", 1))
    handled = [e for e in recorder.events if isinstance(e, MessageHandled)]
    assert [(e.outcome, e.deliveries) for e in handled] == [
        (Outcome.RETRIED, 1),
        (Outcome.ACKED, 2),
    ]
    assert servers.hook_requests == {"steady": 1, "flaky": 4}
    assert len(servers.received["d-1"]) == 2  # one each: steady once, flaky once it recovered
    audit = await real_adapter.client.xrange(worker.keys.delivered)
    assert [json.loads(f[b"data"])["earlier_delivery"] for _, f in audit] == [True, False]


async def test_dependency_turning_healthy_inside_the_wait_unblocks(
    redis_server: RedisServer, real_adapter: StreamAdapter, prefix: str, servers: Servers
) -> None:
    """A deployment waiting on a dependency goes through once that dependency turns healthy."""
    recorder = Recorder()
    waiting = request(
        "d-api", "billing-api", dependencies=[{"service": "auth-api", "version": "^1.0.0"}]
    )
    dependency = request(
        "d-auth",
        "auth-api",
        version="1.2.0",
        health_check=health(f"{servers.base}/health/up", interval_s=0.3),
    )
    async with pipeline(
        real_adapter, prefix, servers, recorder, DEPENDENCY_WAIT_TIMEOUT="15"
    ) as workers:
        keys = workers[0].keys
        for data in (waiting, dependency):
            await real_adapter.add(keys.started, started_event(data).to_fields())
        await servers.wait_for(lambda: {"d-api", "d-auth"} <= set(servers.received))
        await recorder.wait_for(acked("notifier", 2))
    assert servers.outcome("d-api")["type"] == "deployment.healthy"
    timeline = await read_timeline(real_adapter, keys, "d-api")
    assert timeline is not None
    [checked] = [e for e in timeline.log if e["stage"] == "dependencies"]
    assert checked["status"] == "satisfied"
    assert "auth-api ^1.0.0: found 1.2.0 (after" in checked["message"]


async def test_hundred_watches_finish_in_about_one_deadline(
    redis_server: RedisServer, real_adapter: StreamAdapter, prefix: str, servers: Servers
) -> None:
    """100 deployments with a 2 s deadline end in under 3 deadlines, requests still bounded."""
    recorder = Recorder()
    deadline = 2.0
    worker = HealthMonitorWorker(make_deps(real_adapter, prefix))
    for i in range(100):
        data = request(
            f"d-{i}",
            f"svc-{i}",
            dependencies=[],
            health_check=health(
                f"{servers.base}/health/down", interval_s=0.25, deadline_s=deadline
            ),
        )
        event = Event.create("deployment.dependencies_satisfied", data["deployment_id"], data)
        await real_adapter.add(worker.stream, event.to_fields())
    begun = time.monotonic()
    async with running(worker, recorder=recorder, known_workers=set(BUILTIN_WORKERS)):
        await recorder.wait_for(acked("health-monitor", 100), timeout=3 * deadline)
        elapsed = time.monotonic() - begun
    assert deadline <= elapsed < 3 * deadline
    assert await real_adapter.client.xlen(worker.keys.notifications) == 100
    assert 1 < servers.health_peak <= worker.request_limit


async def test_publish_and_deployment_commands(
    redis_server: RedisServer,
    real_adapter: StreamAdapter,
    prefix: str,
    servers: Servers,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`printery publish deployment` feeds the pipeline; `printery deployment` shows the result."""
    recorder = Recorder()
    where = ["--redis-url", redis_server.url, "--stream-prefix", prefix]
    async with pipeline(real_adapter, prefix, servers, recorder):
        code = await anyio.to_thread.run_sync(run, [
            "publish", "deployment", *where, "--service", "billing-api", "--version", "2.0.0",
            "--environment", "staging", "--health-url", f"{servers.base}/health/up",
            "--interval", "0.1", "--healthy-threshold", "1",
        ])  # fmt: skip
        assert code == 0
        [deployment_id] = [
            line for line in capsys.readouterr().out.splitlines() if line.startswith("billing-api-")
        ]
        await servers.wait_for(lambda: deployment_id in servers.received)
        await recorder.wait_for(acked("notifier", 1))
    capsys.readouterr()  # the notifier's log lines
    assert deployment_id.startswith("billing-api-")
    assert await anyio.to_thread.run_sync(run, ["deployment", deployment_id, *where, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["fields"]["status"] == "healthy"
    assert [e["stage"] for e in shown["log"]] == [
        "validation",
        "dependencies",
        "health",
        "notification",
    ]
    assert await anyio.to_thread.run_sync(run, ["deployment", deployment_id, *where]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{deployment_id}  billing-api 2.0.0 → staging  [healthy]")
    assert await anyio.to_thread.run_sync(run, ["deployment", "never-published", *where]) == 1
    assert "no timeline for deployment 'never-published'" in capsys.readouterr().err
