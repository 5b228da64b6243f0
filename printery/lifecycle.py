"""Typed events the core emits; logging and metrics subscribe to them as sinks.

The manager and the stream runtime never log or count anything themselves:
they call ``emit(event)`` and each sink decides what it means. A sink that
raises is logged once and otherwise ignored: observability never crashes a worker.
"""

from __future__ import annotations

import enum
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "ChildSpawned",
    "ChildStopped",
    "ConsumersReaped",
    "Emit",
    "HandlerHung",
    "HandlerRaised",
    "Hub",
    "LifecycleEvent",
    "MessageHandled",
    "MessagesClaimed",
    "MessagesHandedBack",
    "Outcome",
    "RedisConnectivity",
    "StreamTrimmed",
    "TrimFailed",
    "WorkerCrashed",
    "WorkerFailed",
    "WorkerRestartScheduled",
    "WorkerState",
    "WorkerStateChanged",
]


class WorkerState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Outcome(enum.StrEnum):
    ACKED = "acked"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True, slots=True)
class WorkerStateChanged:
    worker: str
    old: WorkerState
    new: WorkerState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class WorkerCrashed:
    worker: str
    kind: str  # "crash", "hang", "returned", "permanent"
    error: str
    traceback: str = ""  # a crash's, formatted


@dataclass(frozen=True, slots=True)
class WorkerRestartScheduled:
    worker: str
    attempt: int
    delay_s: float


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    worker: str
    reason: str


@dataclass(frozen=True, slots=True)
class MessageHandled:
    worker: str
    stream: str
    message_id: str
    outcome: Outcome
    duration_s: float
    deliveries: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HandlerHung:
    """A handler made no progress for its hang timeout: cut alone, its message retried."""

    worker: str
    stream: str
    message_id: str
    subject: str
    silent_s: float


@dataclass(frozen=True, slots=True)
class HandlerRaised:
    """A handler raised something other than RetryLater/Permanent: a bug, retried."""

    worker: str
    stream: str
    message_id: str
    error: str
    traceback: str


@dataclass(frozen=True, slots=True)
class MessagesClaimed:
    worker: str
    stream: str
    count: int
    deleted_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MessagesHandedBack:
    worker: str
    stream: str
    count: int


@dataclass(frozen=True, slots=True)
class ConsumersReaped:
    worker: str
    stream: str
    consumers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RedisConnectivity:
    worker: str
    up: bool
    error: str = ""
    attempt: int = 0
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ChildSpawned:
    """A worker in its own processes (printery.processes) started a child."""

    worker: str
    pid: int


@dataclass(frozen=True, slots=True)
class ChildStopped:
    """A child is gone; ``killed`` by the daemon for ``reason`` (timeout, rss, tasks,
    protocol, heartbeat, start, shutdown), or it exited on its own (``exited``)."""

    worker: str
    pid: int
    reason: str
    killed: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StreamTrimmed:
    """A retention pass over one stream: entries removed (0: none due, or another daemon's turn)."""

    stream: str
    trimmed: int
    length: int


@dataclass(frozen=True, slots=True)
class TrimFailed:
    """A retention pass could not trim a stream; the next pass tries again."""

    stream: str
    error: str


LifecycleEvent = (
    WorkerStateChanged
    | WorkerCrashed
    | WorkerRestartScheduled
    | WorkerFailed
    | MessageHandled
    | HandlerHung
    | HandlerRaised
    | MessagesClaimed
    | MessagesHandedBack
    | ConsumersReaped
    | RedisConnectivity
    | ChildSpawned
    | ChildStopped
    | StreamTrimmed
    | TrimFailed
)

Emit = Callable[[LifecycleEvent], None]


class Hub:
    """Fans each event out to every sink; a failing sink never reaches the emitter."""

    def __init__(self, sinks: Sequence[Emit] = ()) -> None:
        self._sinks = list(sinks)
        self._broken: set[int] = set()

    def subscribe(self, sink: Emit) -> None:
        self._sinks.append(sink)

    def __call__(self, event: LifecycleEvent) -> None:
        for index, sink in enumerate(self._sinks):
            try:
                sink(event)
            except Exception:  # noqa: BLE001 - a sink must not break the core
                if index not in self._broken:
                    self._broken.add(index)
                    traceback.print_exc()
