"""Retention: printery trims its own streams, so Redis memory stays bounded.

Redis keeps an entry after every group has acknowledged it (XACK deletes
nothing), so an untrimmed stream grows until a ``noeviction`` Redis refuses
every write and the pipeline stops. Each daemon runs a :class:`Trimmer` beside
its workers; every ``STREAM_TRIM_INTERVAL`` it trims each stream its prefix
owns, and the streams its workers name::

    stream                                 retention               with no group yet
    stage streams; a worker's input and    STREAM_RETENTION        left whole
      the outputs it names
    printery:notifications:delivered       STREAM_RETENTION        trimmed by age alone
    <stream>:dead                          DEAD_LETTER_RETENTION   trimmed by age alone

Whatever the stream, an entry some group has not read or still holds pending
is kept, and so is one younger than the retention.

The cut is one MINID: the lowest of the age cutoff (Redis's ``TIME`` less the
retention: entry ids carry Redis's clock, so no daemon's clock matters) and,
for each group, its lowest pending id and the id after its last-delivered
one. Everything below it was read by every group and is no longer pending.

Why one script (``scripts.TRIM_ACKNOWLEDGED``): the MINID is safe only for the
state it was computed from. Read apart, a group that reads between the
pending check and the last-delivered check has its new pending entries below
the cut, and a group created between the check and the trim loses the
entries it was created to read. In the script nothing happens in between.

Why a lock (``<prefix>:trim-lock:<stream>``, SET NX PX with this trimmer's
token, released by compare-and-delete): so many replicas do not all trim the
same stream at once; a daemon that finds it held skips that stream for one
pass. The lock saves work and never guards correctness: each trim computes its
own safe cut atomically, so two trims at once (after a lock expired under a
stalled holder) remove nothing either alone would keep.

Exact trims, not ``~``: a pass removes an interval's entries (1,200 at 20 a
second and the 60 s default), well under a millisecond; the first pass over a
761,000-entry backlog took 76 ms on the CI machine. ``XTRIM`` frees memory, so
Redis runs the script even while out of memory: trimming is what ends it.

A group created after entries were trimmed starts from what is kept; a group
nobody reads any more holds its stream's entries for ever (``XGROUP DESTROY``
it). A Redis outage ends the pass, is reported (``TrimFailed``), and the next
interval tries again: never a crash.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import anyio

from printery.engine.partitioned import PARTITION_KEYS
from printery.errors import RedisError, RedisOutOfMemory, RedisUnavailable
from printery.lifecycle import Emit, StreamTrimmed, TrimFailed
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import DEAD_SUFFIX, Keys
from printery.settings import Settings
from printery.worker import StreamWorker, Worker

__all__ = ["LOCK_TTL_S", "Target", "Trimmer", "targets"]

# Long enough for the slowest trim; a holder that died frees the stream after it.
LOCK_TTL_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Target:
    """One stream to trim, how long its entries are kept, and whether age alone may trim it."""

    stream: str
    retention_s: float
    by_age: bool = False


def targets(settings: Settings, keys: Keys, workers: Iterable[Worker] = ()) -> list[Target]:
    """Every stream the daemon trims, each once; none for a retention of ``none``.

    A stream that some worker reads is never trimmed by age alone, even if it
    is also the audit stream or a dead-letter stream.
    """
    read = [keys.started, keys.validated, keys.dependencies_satisfied, keys.notifications]
    for worker in workers:
        if isinstance(worker, StreamWorker):
            read += [worker.stream, *worker.output_streams]
    found: dict[str, Target] = {}

    def add(stream: str, retention_s: float | None, *, by_age: bool) -> None:
        known = found.get(stream)
        if retention_s is not None and (known is None or (known.by_age and not by_age)):
            found[stream] = Target(stream, retention_s, by_age)

    for stream in read:
        add(stream, settings.stream_retention, by_age=False)
    add(keys.delivered, settings.stream_retention, by_age=True)
    for stream in read:
        if not stream.endswith(DEAD_SUFFIX):
            add(Keys.dead(stream), settings.dead_letter_retention, by_age=True)
    return list(found.values())


def partitioned_targets(
    settings: Settings, partitions: Sequence[Keys], workers: Iterable[Worker] = ()
) -> list[Target]:
    """:func:`targets` for every partition (cluster mode): each worker's streams as it reads them.

    A worker names its streams from its keys, which are its partition's while
    :data:`~printery.engine.partitioned.PARTITION_KEYS` says so.
    """
    workers = list(workers)
    found: list[Target] = []
    for keys in partitions:
        token = PARTITION_KEYS.set(keys)
        try:
            found += targets(settings, keys, workers)
        finally:
            PARTITION_KEYS.reset(token)
    return found


class Trimmer:
    """Trims its targets every ``interval`` seconds, one daemon per stream at a time."""

    def __init__(
        self,
        adapter: StreamAdapter,
        keys: Keys,
        streams: Sequence[Target],
        *,
        interval: float,
        emit: Emit,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.adapter = adapter
        self.keys = keys
        self.streams = list(streams)
        self.interval = interval
        self.emit = emit
        self.sleep = sleep
        self.token = secrets.token_hex(8)

    async def run(self) -> None:
        """A pass now, then one every interval, until cancelled."""
        while True:
            await self.trim_once()
            await self.sleep(self.interval)

    async def trim_once(self) -> int:
        """One pass over every target; the entries it removed. Never raises a Redis error."""
        total = 0
        for target in self.streams:
            try:
                total += await self._trim(target)
            except RedisUnavailable as exc:
                # Each further stream would wait out its own timeout: the next pass retries.
                self.emit(TrimFailed(target.stream, str(exc)))
                break
            except RedisError as exc:  # a key of the wrong type, a refused command: this one only
                self.emit(TrimFailed(target.stream, str(exc)))
        return total

    async def _trim(self, target: Target) -> int:
        lock = self.keys.trim_lock(target.stream)
        try:
            locked = await self.adapter.try_lock(lock, self.token, int(LOCK_TTL_S * 1000))
        except RedisOutOfMemory:
            # No lock can be written, and trimming is what frees memory: trim unlocked
            # (safe; the lock only saves work).
            locked = None
        if locked is False:
            # Another daemon trims it right now; this one only reports its length.
            self.emit(StreamTrimmed(target.stream, 0, await self.adapter.length(target.stream)))
            return 0
        try:
            done = await self.adapter.trim_acknowledged(
                target.stream,
                max(1, round(target.retention_s * 1000)),
                needs_group=not target.by_age,
            )
        finally:
            if locked:
                with contextlib.suppress(RedisError):  # unreleased, it expires with its TTL
                    await self.adapter.unlock(lock, self.token)
        self.emit(StreamTrimmed(target.stream, done.trimmed, done.length))
        return done.trimmed
