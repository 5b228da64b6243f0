"""The dependency checker: is every service this deployment needs already running?

::

    deployment.validated ─► HMGET registry:<env> ─┬─ all ranges met ─► dependencies_satisfied
                             ▲                     └─ unmet ─► wait 0.5 s, 1, 2, 4, 5, 5 … s
                             └──────── re-check ◄──┘   until DEPENDENCY_WAIT_TIMEOUT,
                                                       then deployment.blocked (notifications)

An unmet dependency may be deploying right now, so it is re-checked with
backoff for a bounded time before the deployment is blocked; the blocked
event names each unmet dependency and what the registry holds instead
(``auth-api ^2.1.0: found 1.9.0``, ``postgres >=14: not deployed``).

Concurrency. A waiting deployment holds its handler slot for up to
``DEPENDENCY_WAIT_TIMEOUT`` (60 s) while doing nothing but sleeping, so slots
and registry reads are sized apart:

- handler slots (``self.concurrency``) are ``DEPENDENCY_CHECKER_MAX_WAITS``
  (1000): enough that deployments waiting on their dependencies never stop
  a new deployment from being checked at once. A sleeping handler costs a
  coroutine, nothing more; ``max_in_flight`` (slots + ``BATCH_SIZE``) bounds
  what this consumer holds.
- registry reads in flight are bounded by ``DEPENDENCY_CHECKER_CONCURRENCY``
  (5), a semaphore around each HMGET: that is the load this worker puts on
  Redis, whatever the number of waits.

The re-check is a plain loop of anyio sleeps rather than a retry decorator:
an unmet dependency is an answer, not an exception, and the last check has to
land on the deadline itself rather than one backoff step past it.

On a drain, a wait in progress carries on like any running handler; if it
outlasts ``SHUTDOWN_TIMEOUT`` it is cancelled, the runtime hands the message
back, and the consumer that claims it starts the wait again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from printery.envelope import Event
from printery.message import Message
from printery.pipeline.deployment import Dependency, Deployment
from printery.pipeline.targets import range_satisfied
from printery.pipeline.timeline import timeline_writes
from printery.pipeline.validator import deployment_fields, read_deployment, rules_from, successor
from printery.redis.writes import Write
from printery.worker import StreamWorker, WorkerDeps

__all__ = ["DependencyCheckerWorker", "describe_unmet"]

_SOURCE = "printery/dependency-checker"
RECHECK_FIRST_S = 0.5
RECHECK_MAX_S = 5.0


def describe_unmet(dependency: Dependency, found: str | None) -> str:
    """``auth-api ^2.1.0: found 1.9.0`` or ``postgres >=14: not deployed``."""
    where = f"found {found}" if found is not None else "not deployed"
    return f"{dependency.service} {dependency.range}: {where}"


class DependencyCheckerWorker(StreamWorker):
    """Checks dependencies against the registry, waiting a bounded time for unmet ones."""

    name = "dependency-checker"
    depends_on = ("validator",)
    default_concurrency = 5

    def __init__(
        self,
        deps: WorkerDeps,
        *,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(deps)
        self.check_limit = self.concurrency  # DEPENDENCY_CHECKER_CONCURRENCY: reads in flight
        self.concurrency = self.settings.dependency_checker_max_waits
        self.rules = rules_from(self.settings)
        self.wait_timeout = self.settings.dependency_wait_timeout
        self.sleep = self.pause if sleep is None else sleep  # pause hands back on drain
        self.clock = clock
        self._checks: anyio.Semaphore | None = None

    @property
    def stream(self) -> str:
        return self.keys.validated

    async def handle(self, message: Message) -> Sequence[Write]:
        event, deployment = read_deployment(message, self.rules, "deployment.validated")
        deadline = self.clock() + self.wait_timeout
        delay = RECHECK_FIRST_S
        checks = 0
        while True:
            found = await self._registry(deployment)
            checks += 1
            unmet = [
                (d, found.get(d.service))
                for d in deployment.dependencies
                if not range_satisfied(d.range, found.get(d.service) or "")
            ]
            if not unmet:
                return self._satisfied(event, deployment, found, checks)
            remaining = deadline - self.clock()
            if remaining <= 0:
                return self._blocked(event, deployment, unmet, checks)
            self.beat()
            await self.sleep(min(delay, remaining))
            delay = min(delay * 2, RECHECK_MAX_S)

    async def _registry(self, deployment: Deployment) -> dict[str, str | None]:
        if not deployment.dependencies:
            return {}
        if self._checks is None:
            self._checks = anyio.Semaphore(self.check_limit)
        async with self._checks:
            return await self.deps.adapter.hash_get(
                self.keys.registry(deployment.environment),
                [d.service for d in deployment.dependencies],
            )

    def _satisfied(
        self, event: Event, deployment: Deployment, found: dict[str, str | None], checks: int
    ) -> list[Write]:
        out = successor(
            event, "deployment.dependencies_satisfied", deployment.to_data(), source=_SOURCE
        )
        met = [
            f"{d.service} {d.range}: found {found.get(d.service)}" for d in deployment.dependencies
        ]
        summary = "; ".join(met) if met else "no dependencies"
        if checks > 1:
            summary += f" (after {checks} checks)"
        return [
            Write.xadd(self.keys.dependencies_satisfied, out.to_fields()),
            *self._timeline(deployment, "satisfied", summary),
        ]

    def _blocked(
        self,
        event: Event,
        deployment: Deployment,
        unmet: list[tuple[Dependency, str | None]],
        checks: int,
    ) -> list[Write]:
        reasons = [describe_unmet(d, found) for d, found in unmet]
        data = {
            "deployment_id": deployment.deployment_id,
            "service": deployment.service,
            "version": deployment.version,
            "environment": deployment.environment,
            "reasons": reasons,
            "unmet": [{"service": d.service, "range": d.range, "found": f} for d, f in unmet],
            "waited_s": self.wait_timeout,
            "checks": checks,
        }
        out = successor(event, "deployment.blocked", data, source=_SOURCE)
        summary = f"blocked after {self.wait_timeout:g} s ({checks} checks): " + "; ".join(reasons)
        return [
            Write.xadd(self.keys.notifications, out.to_fields()),
            *self._timeline(deployment, "blocked", summary),
        ]

    def _timeline(self, deployment: Deployment, status: str, message: str) -> list[Write]:
        return timeline_writes(
            self.keys,
            deployment.deployment_id,
            "dependencies",
            status,
            message,
            deployment_fields(deployment),
            ttl_s=self.settings.timeline_ttl,
        )
