"""The StreamWorker of a worker in its own processes: a message in, a child's verdict, Writes out.

::

    read loop (never more than ``processes`` messages held) ─► handle ─► a child (pool: an idle
    one; oneshot: a new process) ─► result ─┬─ success: outputs as CloudEvents + task record,
                                            │           committed with the ack
                                            ├─ output outside ``outputs``: Permanent (dead letter)
                                            ├─ success false, retriable: RetryLater
                                            └─ success false, not retriable: Permanent

The child never sees Redis: each output becomes a CloudEvent with ``source``
``printery/<worker>`` and the input's ``subject`` and ``traceparent``, in the
same atomic step as the ack. One class per definition is made by
:func:`process_worker_factory`, so each worker keeps a class-level ``name``
like the built-in four.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import anyio
from anyio.abc import TaskStatus
from structlog import get_logger

from printery.envelope import Event, compact_json, now_rfc3339
from printery.errors import Drained, Permanent, RedisUnavailable, RetryLater
from printery.message import Message
from printery.processes.child import start_problem
from printery.processes.oneshot import OneshotRunner
from printery.processes.pool import ChildStartFailed, Pool
from printery.processes.protocol import ChildResult, loads, oneshot_input, task_message
from printery.processes.task import line_writes, outcome_fields, record_writes
from printery.processes.workers_file import WorkerDefinition
from printery.redis.writes import Write
from printery.worker import StreamWorker, WorkerContext, WorkerDeps, WorkerFactory

__all__ = ["ProcessWorker", "process_worker_factory"]

_BEAT_GRACE_S = 5.0  # beyond task_timeout_s: the pool answers (or kills) by then
_CLOSE_AT_MOST_S = 10.0  # the children's shutdown outside a drain (a crash of the worker)
_CLOSE_AHEAD_S = 1.0


class ProcessWorker(StreamWorker):
    """Consumes ``input``; every message goes to a child of ``definition``."""

    definition: ClassVar[WorkerDefinition]

    def __init__(self, deps: WorkerDeps) -> None:
        super().__init__(deps)
        d = self.definition
        self.concurrency = d.processes  # one message per child: never more handlers than children
        self.line_limit = max(self.settings.max_message_bytes, 65536) + 1024
        self.log = get_logger(worker=self.name)
        self.pool: Pool | None = None
        self.oneshot: OneshotRunner | None = None

    @property
    def stream(self) -> str:
        return f"{self.keys.root}:{self.definition.input}"  # root: the partition's, on a cluster

    @property
    def group(self) -> str:
        return self.definition.group

    # A child is free once its result is with the committer: the engine reads the
    # next message for it then, while that commit is on its way.
    reads_past_commits: ClassVar[bool] = True

    @property
    def max_in_flight(self) -> int:
        """As many messages as there are children (plus ``prefetch`` each): no more are read.

        Results on their way to Redis hold no child and are not counted
        (``reads_past_commits``): the engine reads a message for a child as soon as
        it is free. Messages read ahead wait for a child; a drain hands them back
        uncounted.
        """
        return self.concurrency * (1 + self.definition.prefetch)

    def _on_stderr(self, pid: int, line: str) -> None:
        self.log.info("printery.child_stderr", worker=self.name, pid=pid, line=line)

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        self.ctx = ctx
        backoff = (
            self.settings.restart_backoff_ms / 1000,
            self.settings.restart_backoff_max_ms / 1000,
        )
        if self.definition.mode == "oneshot":
            runner = OneshotRunner(
                self.definition,
                line_limit=self.line_limit,
                emit=ctx.emit,
                on_stderr=self._on_stderr,
            )
            d = self.definition
            # A command that cannot start fails the worker before it reads a message:
            # every run would end in the same exit, which is no message's verdict.
            problem = start_problem(d.command, cwd=d.cwd, path=runner.env.get("PATH"))
            if problem is not None:
                raise ChildStartFailed(f"worker {self.name!r}: {problem}")
            self.oneshot = runner
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._fail_when_broken, runner)
                await super().serve(ctx, task_status=task_status)
                tg.cancel_scope.cancel()
            return
        pool = Pool(
            self.definition,
            line_limit=self.line_limit,
            emit=ctx.emit,
            on_stderr=self._on_stderr,
            backoff_s=backoff,
        )
        self.pool = pool
        async with anyio.create_task_group() as tg:
            await tg.start(pool.run)  # every child ready, or ChildStartFailed: a crash
            await super().serve(ctx, task_status=task_status)
            # Ahead of the manager's own deadline (which it sets a second or less before
            # cleanup_deadline), so the children's kill is ours, not a cancellation.
            deadline = ctx.cleanup_deadline - _CLOSE_AHEAD_S
            await pool.close(min(deadline, anyio.current_time() + _CLOSE_AT_MOST_S))
            tg.cancel_scope.cancel()

    @staticmethod
    async def _fail_when_broken(runner: OneshotRunner) -> None:
        """A run showed the command cannot start: fail the worker (its message went back)."""
        await runner.broke.wait()
        raise ChildStartFailed(runner.broken or "the command cannot start")

    def children_status(self) -> list[dict[str, Any]]:
        """Each child: pid, current message, messages handled, RSS, last heartbeat."""
        if self.pool is not None:
            return self.pool.statuses()
        if self.oneshot is not None:
            return [
                {"pid": c.pid, "current": c.current, "handled": 0, "rss_mb": None}
                for c in list(self.oneshot.running.values())
            ]
        return []

    async def handle(self, message: Message) -> Sequence[Write]:
        event = message.event()  # MalformedEvent: dead-lettered by the runtime
        try:
            params = loads(event.data)
        except ValueError:
            raise Permanent("data is not JSON") from None
        d = self.definition
        started, started_at = time.perf_counter(), now_rfc3339()
        self.beat(within=d.task_timeout_s + _BEAT_GRACE_S)
        # This message's partition's keys (cluster mode), taken once.
        keys = self.keys
        # Whether a log may be kept for this event: an earlier delivery's lines, or this one's.
        logged = message.deliveries > 1

        async def on_lines(lines: list[dict[str, Any]]) -> None:
            """The child's progress and log lines that came in together: one write to Redis."""
            nonlocal logged
            logged = True
            self.beat(within=d.task_timeout_s + _BEAT_GRACE_S)
            ttl = self.settings.timeline_ttl
            writes: list[Write] = []
            for line in lines:
                if line.get("op") == "log":
                    self.log.info(
                        "printery.child_log",
                        worker=self.name,
                        message_id=message.id,
                        level=str(line.get("level", "info")),
                        text=str(line.get("message", ""))[:2000],
                    )
                writes += line_writes(keys, event.id, line, ttl, worker=self.name)
            with contextlib.suppress(RedisUnavailable):  # the record is for people; never stalls
                await self.deps.adapter.apply(writes)

        def record(status: str, **extra: Any) -> list[Write]:
            fields = outcome_fields(
                worker=self.name,
                status=status,
                started_at=started_at,
                duration_ms=(time.perf_counter() - started) * 1000,
                deliveries=message.deliveries,
                stream=self.stream,
                entry_id=message.id,
                **extra,
            )
            return record_writes(keys, event.id, fields, self.settings.timeline_ttl, log=logged)

        try:
            result = await self._run(message, event, params, on_lines)
            writes = self._outputs(event, result)
        except Drained:
            raise
        except Permanent as exc:
            await self._record_now(record("failed", error=exc.reason))
            raise
        except RetryLater as exc:
            dead = message.deliveries >= self.settings.max_deliveries
            await self._record_now(record("dead" if dead else "retrying", error=exc.reason))
            raise
        return [*writes, *record("succeeded", result=result.result)]

    async def _run(self, message: Message, event: Event, params: Any, on_lines: Any) -> ChildResult:
        if self.pool is not None:
            deadline_ms = int((time.time() + self.definition.task_timeout_s) * 1000)
            task = task_message(message.id, event, params, message.deliveries, deadline_ms)
            result = await self.pool.request(task, on_message=on_lines)
        elif self.oneshot is not None:
            result = await self.oneshot.run(
                oneshot_input(message.id, event, params, message.deliveries)
            )
        else:
            raise Drained("the worker is not serving")  # pragma: no cover - serve() sets it up
        if not result.success:
            error = result.error or "the worker reported a failure"
            if result.retriable:
                raise RetryLater(error)
            raise Permanent(error)
        return result

    def _outputs(self, event: Event, result: ChildResult) -> list[Write]:
        allowed = self.definition.outputs
        writes = []
        for output in result.outputs:
            if output.stream not in allowed:
                raise Permanent(
                    f"output to stream {output.stream!r} is outside worker {self.name!r}'s "
                    f"outputs ({', '.join(allowed) or 'none'})"
                )
            follow = Event(
                type=output.type,
                subject=event.subject,
                data=compact_json(output.data),
                source=f"printery/{self.name}",
                traceparent=event.traceparent,
            )
            writes.append(Write.xadd(f"{self.keys.root}:{output.stream}", follow.to_fields()))
        return writes

    async def _record_now(self, writes: list[Write]) -> None:
        with contextlib.suppress(RedisUnavailable):
            await self.deps.adapter.apply(writes)


def process_worker_factory(definition: WorkerDefinition) -> WorkerFactory:
    """A ProcessWorker class for ``definition``: called with WorkerDeps, it builds the worker."""
    return type(
        f"ProcessWorker_{definition.name.replace('-', '_')}",
        (ProcessWorker,),
        {
            "name": definition.name,
            "definition": definition,
            "depends_on": definition.depends_on,
            "default_concurrency": definition.processes,
        },
    )
