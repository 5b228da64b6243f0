"""One sampler for every viewer: Redis is read once per interval, whatever the number of tabs.

::

    sampler task ──every interval──► collect_status()  (the ``printery status --json`` document)
         │                                │
         │                                ├─► Snapshot(doc, taken_at, error)   ◄── every page,
         │                                │                                        fragment and
         │                                └─► ring of processed-count deltas       /api/status
         ▼                                     (last hour, in this process only)
    a failed read keeps the last document and says why; the next interval tries again

Bull Board's tabs each poll every queue; here ten open overviews cost what one
does. Throughput comes from the ``processed`` counters the daemons already put
in their heartbeats: the sampler keeps the deltas between its own samples, so
no daemon writes anything more per message. The history starts when the
dashboard does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from printery.admin.status import collect_status
from printery.errors import RedisError
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys

__all__ = ["HISTORY_S", "Sampler", "Snapshot"]

HISTORY_S: Final = 3600
_MINUTE: Final = 60
_log = structlog.get_logger("printery.dashboard")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One reading of the whole installation, shared by every page until the next one."""

    doc: dict[str, Any]
    taken_at: float  # Unix time of the reading
    error: str | None = None  # why the latest reading failed (doc is then the one before)
    rates: dict[tuple[str, str], float] = field(default_factory=dict)  # per s, last minute
    per_minute: tuple[int, ...] = ()  # messages processed in each of the last 60 minutes
    samples: int = 0


def _counters(doc: dict[str, Any]) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for daemon in doc.get("daemons", ()):
        for name, worker in daemon["workers"].items():
            if isinstance(worker.get("processed"), int):
                found[(str(daemon["consumer"]), str(name))] = worker["processed"]
    return found


class Sampler:
    """Reads the status every ``interval`` seconds while the dashboard runs.

    ``clock`` gives Unix time (injected by tests). :meth:`current` waits for the
    first reading; after that it never touches Redis.
    """

    def __init__(
        self,
        adapter: StreamAdapter,
        keys: Keys,
        *,
        interval: float = 2.0,
        clock: Callable[[], float] = time.time,
        partitions: Sequence[Keys] = (),
    ) -> None:
        self.adapter = adapter
        self.keys = keys
        self.partitions = tuple(partitions)  # cluster mode: each stage summed over these
        self.interval = interval
        self.clock = clock
        self.reads = 0  # readings taken, for tests and the benchmark
        self._snapshot: Snapshot | None = None
        self._finished = 0
        self._previous: dict[tuple[str, str], int] | None = None
        # (time, consumer, worker, delta) per sample and worker, for the last hour
        self._ring: deque[tuple[float, tuple[str, str], int]] = deque()
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._first_at: float | None = None

    async def current(self) -> Snapshot:
        """The latest snapshot; the first call waits for (or shares) the first reading."""
        if self._snapshot is None:
            await self.sample()
        assert self._snapshot is not None  # noqa: S101 - sample() always sets one
        return self._snapshot

    async def run(self) -> None:
        """Sample once per interval until :meth:`stop`.

        Stopping waits for the reading in progress instead of cancelling it: a
        command cut off mid-reply leaves its connection unusable.
        """
        while not self._stopping.is_set():
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    def stop(self) -> None:
        self._stopping.set()

    async def sample(self) -> Snapshot:
        """Take one reading now; concurrent callers share it."""
        seen = self._finished
        async with self._lock:
            if self._finished != seen and self._snapshot is not None:
                return self._snapshot  # a reading finished while we waited for the lock
            self.reads += 1
            now = self.clock()
            try:
                doc = await collect_status(
                    self.adapter, self.keys, now=now, partitions=self.partitions
                )
            except RedisError as exc:
                _log.warning("printery.dashboard_sample_failed", error=str(exc))
                old = self._snapshot
                self._snapshot = Snapshot(
                    doc=old.doc if old is not None else _empty(self.keys),
                    taken_at=old.taken_at if old is not None else now,
                    error=f"cannot read Redis: {exc}",
                    rates=old.rates if old is not None else {},
                    per_minute=old.per_minute if old is not None else (),
                    samples=self.reads,
                )
            else:
                self._record(now, doc)
                self._snapshot = Snapshot(
                    doc=doc,
                    taken_at=now,
                    rates=self._rates(now),
                    per_minute=self._per_minute(now),
                    samples=self.reads,
                )
            self._finished += 1
            return self._snapshot

    def _record(self, now: float, doc: dict[str, Any]) -> None:
        if self._first_at is None:
            self._first_at = now
        counters = _counters(doc)
        if self._previous is not None:
            for worker, count in counters.items():
                before = self._previous.get(worker)
                # A daemon seen for the first time, or restarted (its counter went
                # back), adds nothing: what it counted before is not this interval's.
                if before is not None and count >= before:
                    self._ring.append((now, worker, count - before))
        self._previous = counters
        while self._ring and self._ring[0][0] < now - HISTORY_S:
            self._ring.popleft()

    def _rates(self, now: float) -> dict[tuple[str, str], float]:
        """Messages per second of each worker over the last minute (or since the first reading)."""
        span = min(float(_MINUTE), now - (self._first_at or now))
        if span <= 0:
            return {}
        totals: dict[tuple[str, str], int] = {}
        for at, worker, delta in reversed(self._ring):
            if at < now - _MINUTE:
                break
            totals[worker] = totals.get(worker, 0) + delta
        return {w: n / span for w, n in totals.items()}

    def _per_minute(self, now: float) -> tuple[int, ...]:
        buckets = [0] * (HISTORY_S // _MINUTE)
        for at, _, delta in self._ring:
            age = int((now - at) // _MINUTE)
            if 0 <= age < len(buckets):
                buckets[len(buckets) - 1 - age] += delta
        return tuple(buckets)


def _empty(keys: Keys) -> dict[str, Any]:
    return {
        "checked_at": None,
        "prefix": keys.prefix,
        "healthy": False,
        "problems": ["Redis has not answered yet"],
        "daemons": [],
        "stale_daemons": [],
        "streams": [],
    }
