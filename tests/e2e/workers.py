"""Tiny workers only the end-to-end tests need, named in ``WORKER_MODE`` by module path."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from anyio.abc import TaskStatus

from printery.message import Message
from printery.redis.writes import Write
from printery.worker import StreamWorker, WorkerContext, WorkerDeps
from tests.support.workers import EchoWorker

ECHO = "tests.support.workers:EchoWorker"
CRASHER = "tests.support.workers:CrashingWorker"
HERE = "tests.e2e.workers"


class PromptEcho(EchoWorker):
    """``echo``, but ``sleep`` holds only once: a message handed on is handled at once.

    With a ``sleeper`` field, ``sleep`` holds only in the daemon of that
    consumer name (a drain hands messages back without counting a delivery);
    without one, only the first delivery sleeps. A message abandoned at the
    drain deadline, or after a hang, is then quick for whoever takes it over.
    """

    async def handle(self, message: Message) -> Sequence[Write]:
        sleeper = message.fields.get("sleeper")
        if (message.deliveries > 1) if sleeper is None else (sleeper != self.deps.consumer):
            message.fields.pop("sleep", None)
        return await super().handle(message)


class LateCrasher:
    """Starts after ``echo`` has, runs a moment, then crashes: a crash while echo is busy."""

    name = "late-crasher"
    depends_on: tuple[str, ...] = ("echo",)
    crash_after_s = 1.0

    def __init__(self, deps: WorkerDeps | None = None) -> None:
        self.deps = deps

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        await anyio.sleep(self.crash_after_s)
        raise RuntimeError("crashed while echo was busy")


class _Idle:
    name: str
    depends_on: tuple[str, ...]

    def __init__(self, deps: WorkerDeps | None = None) -> None:
        self.deps = deps

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        task_status.started()
        await ctx.stopping.wait()


class Ping(_Idle):
    """Depends on ``pong``, which depends on it: a cycle."""

    name = "ping"
    depends_on = ("pong",)


class Pong(_Idle):
    """Depends on ``ping``: the other half of the cycle."""

    name = "pong"
    depends_on = ("ping",)


class Orphan(_Idle):
    """Depends on a worker nobody knows."""

    name = "orphan"
    depends_on = ("no-such-worker",)


class Abstract(StreamWorker):
    """A stream worker that forgot its ``stream``: abstract, so it cannot be built."""

    name = "abstract"

    async def handle(self, message: Message) -> Sequence[Write]:
        return []


def no_arguments() -> None:
    """A callable of the wrong kind: it takes no WorkerDeps."""


def raises_type_error(deps: WorkerDeps) -> None:
    """A factory whose own code raises TypeError."""
    raise TypeError("expected a str, got WorkerDeps")


def not_a_worker(deps: WorkerDeps) -> str:
    """A factory that returns something other than a worker."""
    return "oops"
