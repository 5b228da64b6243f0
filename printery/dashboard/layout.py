"""Where a key's entries are: one stream, or (REDIS_MODE=cluster) one stream per partition.

On a cluster a stage's stream is ``PARTITIONS`` streams, one per hash tag
(README "Redis Cluster"). The pages read them as ``printery status`` and
``printery dlq`` do::

    /streams/printery:deployment:started          the stage: every partition,
    /dead/printery:deployment:started                 summed and merged
    /streams/printery:{p3.23}:deployment:started  that partition alone, as in
    /dead/printery:{p3.23}:deployment:started         standalone mode

Merged lists (the newest entries, a group's pending entries, the dead
letters) are ordered by entry id, and among equal ids (two partitions can
stamp the same millisecond and sequence) by partition. So a page's cursor
is an id and the partition of its last row (``before`` and ``before_in``):
the next page starts right after that row, and no row is skipped or shown
twice. Each partition is asked for one page at most, so a merged page costs
``PARTITIONS`` reads of one page each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys, partition_of
from printery.redis.replies import ConsumerInfo, Entry, GroupInfo, PendingEntry, StreamInfo

__all__ = [
    "Cursor",
    "Layout",
    "Part",
    "merge_groups",
    "newest_across",
    "pending_across",
]

_MAX_SEQ: Final = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Part:
    """One partition's stream of a stage: its index, its hash tag, its key."""

    index: int
    tag: str
    stream: str


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last row a merged page showed: its entry id and its partition's index."""

    id: str
    index: int


@dataclass(frozen=True, slots=True)
class Layout:
    """The installation's keys, and its partitions in cluster mode (none in standalone)."""

    keys: Keys
    partitions: tuple[Keys, ...] = ()

    def spread(self, key: str) -> tuple[Part, ...]:
        """The partition streams an untagged key under the prefix stands for; () for one stream.

        Standalone mode, or a key that carries a hash tag (a partition's own):
        the key is one stream, shown as it is.
        """
        suffix = key.removeprefix(self.keys.root)
        if not self.partitions or "{" in key or suffix == key:
            return ()
        return tuple(Part(i, str(p.tag), p.root + suffix) for i, p in enumerate(self.partitions))

    def of(self, deployment_id: str) -> Keys:
        """The keys of the partition a deployment's id hashes to (as publish routes it)."""
        if not self.partitions:
            return self.keys
        return self.partitions[partition_of(deployment_id, len(self.partitions))]

    def everywhere(self) -> tuple[Keys, ...]:
        """Every partition's keys: where a task record may be (its id does not tell which)."""
        return self.partitions or (self.keys,)


def cursor_of(parts: Sequence[Part], entry_id: str | None, tag: str | None) -> Cursor | None:
    """The cursor a query names; a tag that is no partition's pages on from the id alone."""
    if entry_id is None:
        return None
    index = next((p.index for p in parts if p.tag == tag), len(parts))
    return Cursor(entry_id, index)


def _parsed(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _after(entry_id: str) -> str:
    ms, seq = _parsed(entry_id)
    return f"{ms + 1}-0" if seq >= _MAX_SEQ else f"{ms}-{seq + 1}"


def _before(entry_id: str) -> str:
    ms, seq = _parsed(entry_id)
    if seq:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-{_MAX_SEQ}" if ms else "0-0"


async def newest_across(
    adapter: StreamAdapter, parts: Sequence[Part], *, before: Cursor | None, count: int
) -> list[tuple[Part, Entry]]:
    """Up to ``count`` entries of every partition, newest first, after the ``before`` row.

    Rows after ``(id, i)`` in this order: a smaller id anywhere, or the same id
    in a partition after ``i``.
    """

    async def one(part: Part) -> list[tuple[Part, Entry]]:
        bound = None
        if before is not None:
            bound = _after(before.id) if part.index > before.index else before.id
        found = await adapter.newest_entries(part.stream, before=bound, count=count)
        return [(part, e) for e in found]

    rows = [row for found in await asyncio.gather(*map(one, parts)) for row in found]
    rows.sort(key=lambda r: (_neg(r[1].id), r[0].index))
    return rows[:count]


async def pending_across(
    adapter: StreamAdapter,
    parts: Sequence[Part],
    group: str,
    *,
    after: Cursor | None,
    count: int,
) -> list[tuple[Part, PendingEntry]]:
    """Up to ``count`` pending entries of ``group`` in every partition, oldest first."""

    async def one(part: Part) -> list[tuple[Part, PendingEntry]]:
        bound = None
        if after is not None:
            bound = _before(after.id) if part.index > after.index else after.id
        found = await adapter.pending_entries(part.stream, group, after=bound, count=count)
        return [(part, p) for p in found]

    rows = [row for found in await asyncio.gather(*map(one, parts)) for row in found]
    rows.sort(key=lambda r: (_parsed(r[1].id), r[0].index))
    return rows[:count]


def _neg(entry_id: str) -> tuple[int, int]:
    ms, seq = _parsed(entry_id)
    return -ms, -seq


def merge_groups(infos: Sequence[StreamInfo | None]) -> list[GroupInfo]:
    """Each group over the partitions: lag and pending summed, the oldest pending, consumers.

    A lag Redis cannot tell for one partition is unknown for the sum; a
    consumer's pending is summed and its idle time is the shortest.
    """
    names: dict[str, list[GroupInfo]] = {}
    for info in infos:
        for group in info.groups if info is not None else ():
            names.setdefault(group.name, []).append(group)
    merged = []
    for name, groups in names.items():
        lags = [g.lag for g in groups]
        oldest = [g.oldest_pending_id for g in groups if g.oldest_pending_id is not None]
        consumers: dict[str, ConsumerInfo] = {}
        for c in (c for g in groups for c in g.consumers):
            seen = consumers.get(c.name)
            consumers[c.name] = (
                c
                if seen is None
                else ConsumerInfo(c.name, seen.pending + c.pending, min(seen.idle_ms, c.idle_ms))
            )
        merged.append(
            GroupInfo(
                name,
                None if None in lags else sum(lag or 0 for lag in lags),
                sum(g.pending for g in groups),
                min(oldest, key=_parsed) if oldest else None,
                tuple(sorted(consumers.values(), key=lambda c: c.name)),
            )
        )
    return merged
