"""What one consumer run holds, shared by its parts: reading, handling, committing, maintenance.

The parts are mixins over one state, so each lives in a module of its own
while they share the bookkeeping of held messages without indirection on the
hot path (a message crosses every part once).
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from printery.lifecycle import Outcome
from printery.message import Message
from printery.redis.adapter import StreamAdapter
from printery.redis.replies import Entry
from printery.redis.writes import Write

if TYPE_CHECKING:
    from printery.context import WorkerContext

__all__ = ["COMMIT_BATCH", "HANDLING", "Commit", "ConsumerState", "Handled", "handler_progress"]

COMMIT_BATCH = 256  # results per commit script call, at most

T = TypeVar("T")


class Handled(Protocol):
    """What the engine needs of a worker: its names, its limits, and its handler."""

    @property
    def name(self) -> str: ...
    @property
    def stream(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def concurrency(self) -> int: ...
    @property
    def max_in_flight(self) -> int: ...
    @property
    def hang_timeout(self) -> float: ...
    @property
    def reads_past_commits(self) -> bool: ...

    async def handle(self, message: Message) -> Sequence[Write]: ...


@dataclass(slots=True)
class Commit:
    """A finished handler's result, waiting for the committer."""

    entry: Entry
    writes: Sequence[Write]
    outcome: Outcome
    started: float
    reason: str = ""


# Which consumer and message the current handler task is working on, so that
# StreamWorker.beat() inside a handler credits the right message.
HANDLING: contextvars.ContextVar[tuple[ConsumerState, str] | None] = contextvars.ContextVar(
    "printery_handling", default=None
)


def handler_progress(within: float = 0.0) -> bool:
    """Record progress of the handler running in this task; False outside a handler.

    ``within`` > 0 promises the next progress within that many seconds (a
    bounded wait ahead): the hang detector counts from then, not from now.
    """
    current = HANDLING.get()
    if current is None:
        return False
    consumer, entry_id = current
    if entry_id in consumer.running:
        consumer.running[entry_id] = consumer.ctx.clock() + within
    consumer.progress()
    return True


class ConsumerState(abc.ABC):
    """The state of one consumer run; see :class:`~printery.engine.consumer.StreamConsumer`."""

    worker: Handled
    adapter: StreamAdapter
    ctx: WorkerContext
    stream: str
    group: str
    consumer: str
    heartbeat_prefix: str
    batch_size: int
    claim_idle_ms: int
    claim_interval_s: float
    reap_idle_ms: int
    limit: int
    held: dict[str, Entry]  # read and not yet acked: buffered, running, or committing
    started: set[str]  # held messages whose handler has started
    running: dict[str, float]  # message id -> last progress of its running handler
    max_deliveries: int
    retry_backoff_s: tuple[float, float]
    hang_timeout: float
    _late_hand_back: list[str]
    _backing_off: set[str]  # failed, waiting for redelivery: their delivery is spent
    _interrupted: list[str]
    _space: anyio.Event  # set when the read loop may read (see _wake_reader)
    # A worker whose handlers are scarce (a child process each) reads for a handler
    # as soon as it has handed its result to the committer: ``_committing`` holds
    # those results' ids (always a subset of ``held``), which the read loop does not
    # count against its limit.
    _reads_past_commits: bool
    _committing: set[str]
    _commit_due: asyncio.Event | None  # set while the committer lingers for more results
    _buffer_send: MemoryObjectSendStream[Entry]
    _buffer_recv: MemoryObjectReceiveStream[Entry]
    _commit_send: MemoryObjectSendStream[Commit]
    _commit_recv: MemoryObjectReceiveStream[Commit]
    _side: TaskGroup
    _main: TaskGroup  # the handler tasks and the committer
    _handlers: int  # handler tasks started so far (see Handling._spawn_handlers)
    _scopes: dict[str, anyio.CancelScope]
    _cut: dict[str, float]
    _watch: anyio.Event

    @abc.abstractmethod
    def _spawn_handlers(self) -> None:
        """Start handler tasks for read messages that no idle one will take."""

    @abc.abstractmethod
    async def _reconnecting(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op`` until Redis answers; meanwhile the worker is degraded, never crashed."""

    @abc.abstractmethod
    def _dead_letter_commit(self, entry: Entry, reason: str, started: float) -> Commit:
        """The commit that acks ``entry`` and adds it, with the reason, to ``<stream>:dead``."""

    def progress(self) -> None:
        """Tell the hang detector the loop made progress (a running handler's is in ``running``)."""
        self.ctx.beat()

    def _cleanup_deadline(self, at_most_s: float) -> float:
        """When a cleanup step gives up: ``at_most_s`` from now, or the drain's deadline."""
        return min(anyio.current_time() + at_most_s, self.ctx.cleanup_deadline)

    def _accept(self, entry: Entry) -> None:
        if entry.id in self.held:
            return
        self.held[entry.id] = entry
        self._buffer_send.send_nowait(entry)
        self._spawn_handlers()

    def _release(self, entry_id: str) -> None:
        self.held.pop(entry_id, None)
        self.started.discard(entry_id)
        self._backing_off.discard(entry_id)
        self._committing.discard(entry_id)
        self._wake_reader()

    def _free(self) -> int:
        """How many more messages the read loop may take now."""
        return self.limit - len(self.held) + len(self._committing)

    def _must_wait(self) -> bool:
        """Whether the read loop waits for room: it reads full batches.

        It waits for room for one, unless nothing is held at all, or every held
        message has started (the handlers would idle while a commit frees room):
        then it reads what fits.
        """
        free = self._free()
        return (
            free < min(self.batch_size, self.limit)
            and bool(self.held)
            and (free <= 0 or len(self.started) < len(self.held))
        )

    def _reads_waiting(self) -> bool:
        """Whether read messages wait in the buffer for a handler."""
        return self._buffered() > 0

    def _buffered(self) -> int:
        """Read messages in the buffer, not yet taken by a handler task."""
        return self._buffer_send.statistics().current_buffer_used

    def _nudge_committer(self) -> None:
        """A result was handed over: wake a lingering committer once its batch should go.

        It goes when it is full, or when nothing read is left to wait for (the
        handlers that still run may take long: a webhook, a health endpoint).
        """
        due = self._commit_due
        if due is not None and not due.is_set():
            queued = self._commit_send.statistics().current_buffer_used
            if queued >= COMMIT_BATCH or not self._reads_waiting():
                due.set()

    def _wake_reader(self) -> None:
        """Wake the read loop only once it would read: a wake-up per message costs."""
        if not self._space.is_set() and not self._must_wait():
            self._space.set()
