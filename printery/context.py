"""What one run of a worker is given, by the manager and by the daemon.

Both sit below the engine and the supervisor, which meet through them: the
manager makes a context per run and watches it; the engine beats it and
reports states on it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from printery.lifecycle import Emit, WorkerState
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from printery.settings import Settings

__all__ = ["WorkerContext", "WorkerDeps"]


@dataclass(slots=True)
class WorkerContext:
    """What a worker run gets from the manager: its stop signal, beacon and state."""

    name: str
    emit: Emit
    on_state: Callable[[WorkerState, str], None]
    clock: Callable[[], float] = time.monotonic
    stopping: anyio.Event = field(default_factory=anyio.Event)
    last_beat: float = field(default=0.0)
    # The last progress of the stalest handler still running (a consumer's), or
    # None: read by the hang check, so the busy path never scans the handlers.
    stalest_handler: Callable[[], float | None] = field(default=lambda: None)
    # Set by the manager's drain (anyio time): shielded cleanup gives up at it,
    # so a stalled Redis cannot stretch the drain past SHUTDOWN_TIMEOUT.
    cleanup_deadline: float = math.inf

    def __post_init__(self) -> None:
        self.last_beat = self.clock()

    def beat(self, within: float = 0.0) -> None:
        """Record progress now; ``within`` > 0 promises the next within that many seconds."""
        self.last_beat = self.clock() + within

    def last_progress(self) -> float:
        """When the worker last made progress: a running handler's stalest, else the loop's.

        A handler that makes none for the hang timeout marks the worker hung
        however busy the read loop and the other handlers are, and it is found
        one hang timeout after its last progress, not two.
        """
        stalest = self.stalest_handler()
        return self.last_beat if stalest is None else stalest

    def running(self) -> None:
        self.on_state(WorkerState.RUNNING, "")

    def degraded(self, reason: str) -> None:
        self.on_state(WorkerState.DEGRADED, reason)


@dataclass(frozen=True, slots=True)
class WorkerDeps:
    """What the daemon hands a worker factory."""

    settings: Settings
    adapter: StreamAdapter
    keys: Keys
    consumer: str
