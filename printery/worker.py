"""The worker contract, and the base class that turns a message handler into a worker.

A worker is one coroutine, ``serve(ctx, task_status=...)``, plus its name and
``depends_on``. Its rules, in the manner of suture's ``Service``:

- ``serve`` MUST call ``task_status.started()`` exactly once, when the worker
  is ready: for a stream worker, once its group exists and its first read is
  issued. The manager starts dependants only after that.
- ``serve`` MUST run until ``ctx.stopping`` is set, then stop taking new
  work, finish what it holds, and return. Returning earlier is a crash.
- ``serve`` MUST return promptly when cancelled: cancellation is the hard
  stop at the drain deadline and after a hang. A worker that ignores it is
  marked ``failed`` and never replaced, since one instance per worker is the rule.
- ``serve`` SHOULD call ``ctx.beat()`` whenever its loop makes progress, at
  least once per hang timeout; silence past the timeout counts as a hang.
- ``serve`` MUST NOT raise for a Redis outage: report ``ctx.degraded()`` and
  reconnect with backoff, then ``ctx.running()``. It raises
  :class:`~printery.errors.RedisPermanent` or
  :class:`~printery.errors.ConfigError` for faults a restart cannot fix, and
  anything else is a crash that spends restart budget.
- ``serve`` MUST NOT leave tasks behind: everything it spawns lives in its
  own task group.

Workers beyond the built-in four come from the ``printery.workers``
entry-point group, or a ``module:attribute`` given to ``--worker``; either
names a callable taking :class:`WorkerDeps` and returning a :class:`Worker`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import ClassVar, Protocol, runtime_checkable

import anyio
from anyio.abc import TaskStatus

from printery.context import WorkerContext, WorkerDeps
from printery.engine.consumer import StreamConsumer
from printery.engine.partitioned import PARTITION_KEYS, run_partitions
from printery.engine.state import handler_progress
from printery.errors import Drained
from printery.message import Message
from printery.redis.keys import Keys, Partitions
from printery.redis.writes import Write

__all__ = [
    "Message",
    "StreamWorker",
    "Worker",
    "WorkerContext",
    "WorkerDeps",
    "WorkerFactory",
]


@runtime_checkable
class Worker(Protocol):
    """A supervised unit of work; see the module docstring for its rules."""

    name: str
    depends_on: tuple[str, ...]

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None: ...


WorkerFactory = Callable[[WorkerDeps], Worker]


class StreamWorker(abc.ABC):
    """A worker that consumes one stream through a consumer group, one handler call per message.

    Subclasses set ``name``, ``stream_of`` and ``depends_on``, and implement
    :meth:`handle`, which returns the writes (output events, registry and
    timeline updates) to commit together with the ack. It raises
    :class:`~printery.errors.RetryLater` for a transient failure or
    :class:`~printery.errors.Permanent` to dead-letter; any other exception
    is treated as transient and counted toward ``MAX_DELIVERIES``.
    """

    name: ClassVar[str]
    depends_on: tuple[str, ...] = ()
    default_concurrency: ClassVar[int] = 1
    # Whether a message whose result is with the committer frees its handler for the next
    # read at once (a worker whose handlers are scarce child processes); otherwise a
    # message counts against max_in_flight until its ack is written.
    reads_past_commits: ClassVar[bool] = False

    def __init__(self, deps: WorkerDeps) -> None:
        self.deps = deps
        self.settings = deps.settings
        self.concurrency = deps.settings.concurrency_for(self.name, self.default_concurrency)
        self.hang_timeout = deps.settings.hang_timeout_for(self.name)
        self.consumer: StreamConsumer | None = None
        self.consumers: list[StreamConsumer] = []  # cluster mode: one per partition
        self.ctx: WorkerContext | None = None

    @property
    def keys(self) -> Keys:
        """The keys this message's partition writes to; ``deps.keys`` in standalone mode.

        In cluster mode each partition's consumer (and every handler it runs)
        sees its own partition's keys here, so what a handler writes shares the
        hash tag of the message it handles (printery.engine.partitioned).
        """
        return PARTITION_KEYS.get() or self.deps.keys

    @property
    def partition_streams(self) -> tuple[str, ...]:
        """The input stream of every partition (one, :attr:`stream`, in standalone mode)."""
        if not self.settings.cluster:
            return (self.stream,)
        found = []
        for keys in self.partitions:
            token = PARTITION_KEYS.set(keys)
            try:
                found.append(self.stream)
            finally:
                PARTITION_KEYS.reset(token)
        return tuple(found)

    @property
    def partitions(self) -> tuple[Keys, ...]:
        """The partitions this worker reads: one (``deps.keys``) unless REDIS_MODE=cluster."""
        if not self.settings.cluster:
            return (self.deps.keys,)
        return Partitions(self.deps.keys, self.settings.partitions).all

    @property
    def group(self) -> str:
        return self.name

    @property
    @abc.abstractmethod
    def stream(self) -> str:
        """The input stream."""

    @property
    def output_streams(self) -> tuple[str, ...]:
        """The streams this worker writes to, which the daemon also trims.

        None by default; a worker of one's own names its outputs here so that
        they are kept only as long as ``STREAM_RETENTION`` says.
        """
        return ()

    @property
    def max_in_flight(self) -> int:
        """Messages read but not yet acked: running handlers plus two batches of read-ahead.

        The runtime reads only when a whole batch fits (or it holds nothing), so
        reads stay full-sized: one round trip per ``BATCH_SIZE`` messages.
        """
        return self.concurrency + 2 * self.settings.batch_size

    @property
    def in_flight(self) -> int:
        """Messages this worker's current run has read and not yet acked (0 between runs)."""
        return sum(c.in_flight for c in self._run_consumers())

    @property
    def handlers_running(self) -> int:
        """Handlers of this worker running now: those that may share a round trip."""
        return sum(len(c.running) for c in self._run_consumers())

    def _run_consumers(self) -> list[StreamConsumer]:
        """The current run's consumers: one per partition on a cluster, else the one (or none)."""
        if self.consumers:
            return self.consumers
        return [] if self.consumer is None else [self.consumer]

    def beat(self, within: float = 0.0) -> None:
        """Report progress from a long handler (a health poll, a re-check) to the hang detector.

        A handler that never beats and outlives its hang timeout marks the worker
        hung, even while the read loop itself keeps reading. ``within`` > 0
        promises the next beat within that many seconds: a bounded wait (a slow
        webhook's retries) is not a hang, and costs no task beating through it.
        """
        if not handler_progress(within) and self.ctx is not None:
            self.ctx.beat(within)

    async def pause(self, seconds: float) -> None:
        """Wait between attempts inside a handler; on drain, hand the message back at once.

        Raises :class:`~printery.errors.RetryLater` as soon as the drain starts,
        so a long wait (a dependency, a health deadline) never holds up the
        shutdown: a live consumer takes the message over right away.
        """
        if self.ctx is None:
            await anyio.sleep(seconds)
            return
        # A deliberate wait is alive: beat at least every half hang timeout meanwhile.
        deadline = anyio.current_time() + seconds
        while (remaining := deadline - anyio.current_time()) > 0:
            self.beat()
            with anyio.move_on_after(min(remaining, self.hang_timeout / 2)):
                await self.ctx.stopping.wait()
                raise Drained("draining: handed back to a live consumer")

    @abc.abstractmethod
    async def handle(self, message: Message) -> Sequence[Write]:
        """Handle one message; return what to write atomically with its ack."""

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        self.ctx = ctx
        if not self.settings.cluster:
            self.consumer = StreamConsumer(self, self.deps, ctx)
            await self.consumer.run(task_status=task_status)
            return
        self.consumers = []
        await run_partitions(
            self, self.deps, ctx, self.partitions, self.consumers, task_status=task_status
        )
