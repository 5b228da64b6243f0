"""Test workers, run under the same supervision as the built-in four.

``EchoWorker`` reads ``<prefix>:test:in`` and writes ``<prefix>:test:out``;
each input's fields script its handling: ``sleep`` (seconds, awaited), ``busy``
(seconds of CPU work that never yields), ``fail``
(``retry``, ``retry-once``, ``permanent``, ``raise``, ``return-none``), so a
test says what should happen in the message it publishes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import anyio
from anyio.abc import TaskStatus

from printery.errors import Permanent, RetryLater
from printery.message import Message
from printery.redis.writes import Write
from printery.worker import StreamWorker, WorkerContext, WorkerDeps


class EchoWorker(StreamWorker):
    name = "echo"
    default_concurrency = 4

    def __init__(self, deps: WorkerDeps) -> None:
        super().__init__(deps)
        self.calls: list[tuple[str, int]] = []
        self.handling = anyio.Event() if _in_loop() else None

    @property
    def stream(self) -> str:
        return f"{self.keys.prefix}:test:in"

    @property
    def out(self) -> str:
        return f"{self.keys.prefix}:test:out"

    @property
    def output_streams(self) -> tuple[str, ...]:
        return (self.out,)

    async def handle(self, message: Message) -> Sequence[Write]:
        self.calls.append((message.id, message.deliveries))
        if self.handling is not None:
            self.handling.set()
        if message.problems:
            raise Permanent("; ".join(message.problems))
        fields = message.fields
        if "sleep" in fields:
            await anyio.sleep(float(fields["sleep"]))
        if "busy" in fields:
            until = time.monotonic() + float(fields["busy"])
            while time.monotonic() < until:
                pass
        fail = fields.get("fail", "")
        if fail == "retry" or (fail == "retry-once" and message.deliveries == 1):
            raise RetryLater("asked to retry")
        if fail == "permanent":
            raise Permanent("asked to dead-letter")
        if fail == "raise":
            raise ValueError("asked to raise")
        if fail == "return-none":  # a handler's bug: a forgotten return
            return None  # type: ignore[return-value]
        return [
            Write.xadd(
                self.out,
                {
                    "in_id": message.id,
                    "consumer": self.deps.consumer,
                    "deliveries": str(message.deliveries),
                    "pid": str(os.getpid()),
                },
            )
        ]


def _in_loop() -> bool:
    try:
        anyio.get_current_task()
    except RuntimeError:
        return False
    return True


class CrashingWorker:
    """Crashes at every start: the supervisor's budget and backoff are what is under test."""

    name = "crasher"
    depends_on: tuple[str, ...] = ()

    def __init__(self, deps: WorkerDeps | None = None) -> None:
        self.starts = 0

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        self.starts += 1
        raise RuntimeError(f"crash number {self.starts}")


class HangingWorker:
    """Starts, then stops making progress: the health pass must find it."""

    name = "hanger"
    depends_on: tuple[str, ...] = ()

    def __init__(self, deps: WorkerDeps | None = None) -> None:
        self.starts = 0

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        self.starts += 1
        task_status.started()
        await ctx.stopping.wait() if self.starts > 1 else await anyio.sleep_forever()
