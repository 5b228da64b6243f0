"""The health monitor: poll the new version until it is healthy, or its deadline passes.

::

    deployment.dependencies_satisfied ─► no health_check ──────────────────────► healthy
                                        └► GET url every interval_s (timeout_s each)
                                            healthy_threshold consecutive expect_status ─► healthy
                                            deadline_s passed ─────────────────────────► unhealthy
    healthy:   HSET registry:<environment> service=version  ┐ one atomic commit,
               deployment.healthy → notifications           ┘ with the ack
               (unless a later request of that service already turned healthy)
    unhealthy: deployment.unhealthy → notifications, with the last status or error

Concurrency. A watch lasts up to ``deadline_s`` (300 s by default) and spends
nearly all of it asleep, so watches and requests are sized apart:

- handler slots (``self.concurrency``) are ``HEALTH_MONITOR_MAX_WATCHES``
  (1000): a hundred deployments with a two-second deadline finish in about
  two seconds, not two hundred.
- HTTP requests in flight are bounded by ``HEALTH_MONITOR_CONCURRENCY`` (10),
  a semaphore around each poll; that is the load this worker puts on the
  services it watches. Waiting for the semaphore counts against the deadline.

One ``aiohttp.ClientSession`` per worker run, created on first use inside the
running loop and closed when :meth:`serve` returns. Redirects are not
followed: a health URL was checked against ``HEALTH_CHECK_ALLOWED_HOSTS``, the
target of a redirect was not.

On a drain, a watch waiting between polls is handed back at once, without
spending a delivery, and the consumer that claims it watches again from the
start; a poll in flight is cancelled if it outlasts ``SHUTDOWN_TIMEOUT``.

The registry holds what was requested last, not what turned healthy last:
two versions of one service watched at once (a rollout, then a rollback)
leave the later request's version, ordered by when each was validated (its
timeline's ``validation_at``; the event's own time if that is gone).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import anyio

from printery.message import Message
from printery.pipeline.deployment import Deployment, HealthCheck
from printery.pipeline.http_worker import HttpStreamWorker
from printery.pipeline.timeline import timeline_writes
from printery.pipeline.validator import deployment_fields, read_deployment, rules_from, successor
from printery.redis.writes import Write
from printery.worker import WorkerDeps

__all__ = ["HealthMonitorWorker", "WatchResult"]

_SOURCE = "printery/health-monitor"
_ERROR_CHARS = 300


@dataclass(frozen=True, slots=True)
class WatchResult:
    """How a watch ended: healthy or not, after how many polls, and what was seen last."""

    healthy: bool
    polls: int
    elapsed_s: float
    last_status: int | None = None
    last_error: str | None = None

    @property
    def last(self) -> str:
        if self.last_status is not None:
            return f"HTTP {self.last_status}"
        return self.last_error or "no response"


class HealthMonitorWorker(HttpStreamWorker):
    """Watches each deployment's health URL; see the module docstring."""

    name = "health-monitor"
    depends_on = ("dependency-checker",)
    default_concurrency = 10

    def __init__(self, deps: WorkerDeps) -> None:
        super().__init__(deps)
        self.request_limit = self.concurrency  # HEALTH_MONITOR_CONCURRENCY: requests in flight
        self.concurrency = self.settings.health_monitor_max_watches
        self.rules = rules_from(self.settings)
        self._requests: anyio.Semaphore | None = None

    @property
    def stream(self) -> str:
        return self.keys.dependencies_satisfied

    def new_session(self) -> aiohttp.ClientSession:
        # Health URLs are checked hosts: no proxy from the environment in between. The
        # pool is as large as the semaphore, so neither limit hides behind the other.
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.request_limit), trust_env=False
        )

    async def handle(self, message: Message) -> Sequence[Write]:
        event, deployment = read_deployment(
            message, self.rules, "deployment.dependencies_satisfied"
        )
        check = deployment.health_check
        result = WatchResult(True, 0, 0.0) if check is None else await self.watch(check)
        data: dict[str, object] = {
            "deployment_id": deployment.deployment_id,
            "service": deployment.service,
            "version": deployment.version,
            "environment": deployment.environment,
            "polls": result.polls,
            "elapsed_s": round(result.elapsed_s, 3),
            "last_status": result.last_status,
            "last_error": result.last_error,
        }
        if result.healthy or check is None:
            summary = (
                "healthy: no health check"
                if check is None
                else f"healthy: {check.healthy_threshold} consecutive HTTP {check.expect_status} "
                f"from {check.url} ({result.polls} polls, {result.elapsed_s:.1f} s)"
            )
            out = successor(event, "deployment.healthy", {**data, "reasons": []}, source=_SOURCE)
            return [
                *await self._record(deployment, event.time),
                Write.xadd(self.keys.notifications, out.to_fields()),
                *self._timeline(deployment, "healthy", summary),
            ]
        reason = (
            f"not healthy within {check.deadline_s:g} s: wanted HTTP {check.expect_status} "
            f"{check.healthy_threshold}× in a row from {check.url}; last: {result.last}"
        )
        out = successor(
            event, "deployment.unhealthy", {**data, "reasons": [reason]}, source=_SOURCE
        )
        return [
            Write.xadd(self.keys.notifications, out.to_fields()),
            *self._timeline(deployment, "unhealthy", f"{reason} ({result.polls} polls)"),
        ]

    async def _record(self, deployment: Deployment, requested: str) -> list[Write]:
        """Record the version in the registry: in the commit, or on a cluster just before it.

        The order is when the deployment was validated (its timeline), else the
        event's time: the latest request wins, not the last to turn healthy.
        On a Redis Cluster the registry cannot share the partition's slot, so
        it is its own idempotent step, run before the ack-gated commit: a
        redelivery (the commit lost with its daemon) repeats it harmlessly.
        """
        registry = self.keys.registry(deployment.environment)
        order_key = self.keys.registry_requested(deployment.environment)
        timeline = self.keys.deployment(deployment.deployment_id)
        if not self.settings.cluster:
            write = Write.hset_latest(
                registry,
                deployment.service,
                deployment.version,
                order_key=order_key,
                order=requested,
                order_from=(timeline, "validation_at"),  # read in the commit itself
            )
            return [write]
        found = await self.deps.adapter.hash_get(timeline, ["validation_at"])
        order = found["validation_at"] or requested
        await self.deps.adapter.set_latest(
            registry, deployment.service, deployment.version, order_key=order_key, order=order
        )
        return []

    async def watch(self, check: HealthCheck) -> WatchResult:
        """Poll until ``healthy_threshold`` consecutive ``expect_status``, or the deadline."""
        started = time.monotonic()
        polls = consecutive = 0
        status: int | None = None
        error: str | None = "no response before the deadline"
        with anyio.move_on_after(check.deadline_s):
            while True:
                status, error = await self._poll(check)
                polls += 1
                self.beat()
                consecutive = consecutive + 1 if status == check.expect_status else 0
                if consecutive >= check.healthy_threshold:
                    return WatchResult(True, polls, time.monotonic() - started, status)
                await self.pause(check.interval_s)  # on drain: handed back at once
        return WatchResult(False, polls, time.monotonic() - started, status, error)

    async def _poll(self, check: HealthCheck) -> tuple[int | None, str | None]:
        if self._requests is None:
            self._requests = anyio.Semaphore(self.request_limit)
        async with self._requests:
            try:
                async with self.http().get(
                    check.url,
                    timeout=aiohttp.ClientTimeout(total=check.timeout_s),
                    allow_redirects=False,
                ) as response:
                    return response.status, None
            except TimeoutError:
                return None, f"timed out after {check.timeout_s:g} s"
            except aiohttp.ClientError as exc:
                return None, f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]

    def _timeline(self, deployment: Deployment, status: str, message: str) -> list[Write]:
        return timeline_writes(
            self.keys,
            deployment.deployment_id,
            "health",
            status,
            message,
            deployment_fields(deployment),
            ttl_s=self.settings.timeline_ttl,
        )
