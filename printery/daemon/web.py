"""HTTP endpoints: /health, /ready, /metrics, /status (docs/operations.md), served by aiohttp."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import anyio
from aiohttp import web
from prometheus_client.exposition import choose_encoder

from printery import __version__
from printery.daemon.metrics import Metrics
from printery.errors import ConfigError
from printery.supervisor.manager import WorkerManager

__all__ = ["Endpoints"]

_PING_TIMEOUT_S = 0.5
_STATS_TIMEOUT_S = 1.0


class Endpoints:
    """The probe and metrics server; ``/health`` never depends on Redis."""

    def __init__(
        self,
        manager: WorkerManager,
        metrics: Metrics,
        *,
        consumer: str,
        redis_ok: Callable[[], Awaitable[bool]],
        refresh_stats: Callable[[], Awaitable[None]],
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self.consumer = consumer
        self.redis_ok = redis_ok
        self.refresh_stats = refresh_stats
        self.app = web.Application()
        self.app.add_routes(
            [
                web.get("/health", self.health),
                web.get("/ready", self.ready),
                web.get("/metrics", self.metrics_page),
                web.get("/status", self.status),
            ]
        )
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, shutdown_timeout=1.0)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(
                "HTTP_PORT", f"cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        sockets = self._runner.addresses
        self.port = int(sockets[0][1]) if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _workers_json(self) -> dict[str, object]:
        workers: dict[str, object] = {
            name: {
                "state": s.state.value,
                "restarts": s.restarts,
                "uptime_s": round(s.uptime_s, 3),
                "reason": s.reason,
                "last_beat_age_s": round(s.last_beat_age_s, 3)
                if s.last_beat_age_s != float("inf")
                else None,
            }
            for name, s in self.manager.status().items()
        }
        for worker in self.manager.workers():
            children = getattr(worker, "children_status", None)
            if callable(children) and isinstance(workers.get(worker.name), dict):
                workers[worker.name]["children"] = children()  # type: ignore[index]  # built just above
        return workers

    async def health(self, _: web.Request) -> web.Response:
        live = self.manager.is_live()
        return web.json_response(
            {"status": "ok" if live else "unhealthy", "workers": self._workers_json()},
            status=200 if live else 503,
        )

    async def ready(self, _: web.Request) -> web.Response:
        workers_ready = self.manager.is_ready()
        redis_ok = False
        if workers_ready:
            with anyio.move_on_after(_PING_TIMEOUT_S):
                redis_ok = await self.redis_ok()
        ready = workers_ready and redis_ok
        body = {
            "status": "ready" if ready else "not ready",
            "redis": redis_ok,
            "draining": self.manager.stopping,
            "workers": self._workers_json(),
        }
        return web.json_response(body, status=200 if ready else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        with anyio.move_on_after(_STATS_TIMEOUT_S):
            await self.refresh_stats()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def status(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "consumer": self.consumer,
                "pid": os.getpid(),
                "version": __version__,
                "draining": self.manager.stopping,
                "workers": self._workers_json(),
            }
        )
