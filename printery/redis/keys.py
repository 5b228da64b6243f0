"""Every Redis key printery owns, in one place, under one prefix.

On a Redis Cluster (README "Redis Cluster") every key one deployment or task touches in a
commit carries its partition's hash tag, so the commit stays one script in
one slot::

    standalone                               cluster, partition tag "p7.3"
    printery:deployment:started              printery:{p7.3}:deployment:started
    printery:deployment:started:dead         printery:{p7.3}:deployment:started:dead
    printery:deployment:dep-42 (+ :log)      printery:{p7.3}:deployment:dep-42 (+ :log)
    printery:notified:<event>:<url>          printery:{p7.3}:notified:<event>:<url>
    printery:registry:<environment>          printery:registry:{<environment>} (its own tag)
    printery:heartbeat:<consumer>            printery:heartbeat:<consumer>     (untagged)

A partitioned :class:`Keys` is the same class with a ``tag``: the streams,
timelines and markers move under ``<prefix>:{<tag>}``; the registry, read
across every deployment of an environment, gets that environment as its own
tag (its order hash shares it); heartbeats, one per process, stay untagged.

The tags are chosen, not numbered: naive ``{p0}…{p11}`` land 3/3/6 on three
equal primaries, because CRC16 does not spread twelve short strings evenly.
:func:`partition_tags` picks, for partition ``p`` of ``n``, the first short
tag whose slot falls in the ``p``-th of ``n`` equal slices of 0..16383, so
``n`` partitions spread evenly over the slot ranges of any number of equal
primaries that divides ``n``.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass
from typing import Final

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = [
    "DEAD_SUFFIX",
    "META_TAG",
    "Keys",
    "Partitions",
    "naive_tags",
    "partition_of",
    "partition_tags",
    "slot_of_tag",
]

DEAD_SUFFIX = ":dead"
META_TAG: Final = "meta"
"""Hash tag of the installation's own records (its partition count)."""

_MAX_TRIES: Final = 1_000_000


def slot_of_tag(tag: str) -> int:
    """The cluster slot of every key tagged ``{tag}``: CRC16 of the tag, as Redis hashes it."""
    return key_slot(tag.encode())


@functools.cache
def partition_tags(count: int, slots: int = REDIS_CLUSTER_HASH_SLOTS) -> tuple[str, ...]:
    """One hash tag per partition, partition ``p``'s slot in the ``p``-th equal slice of slots.

    Pure and stable: the same count gives the same tags on every machine and
    in every release, since a deployment's keys are found again by them.
    Candidates for partition ``p`` are ``p<p>``, ``p<p>.1``, ``p<p>.2``, …: the
    first whose slot is in the slice wins, and the tag still reads as its number.
    """
    if not 1 <= count <= slots:
        raise ValueError(f"partitions must be from 1 to {slots}, not {count}")
    bounds = [slots * p // count for p in range(count + 1)]
    tags: list[str] = []
    for p in range(count):
        low, high = bounds[p], bounds[p + 1]
        candidates = (f"p{p}.{n}" if n else f"p{p}" for n in range(_MAX_TRIES))
        tag = next((t for t in candidates if low <= slot_of_tag(t) < high), None)
        if tag is None:  # pragma: no cover - every slice of a 16384-slot space is hit far sooner
            raise ValueError(f"no tag found for slots {low}..{high - 1}")
        tags.append(tag)
    return tuple(tags)


def naive_tags(count: int) -> tuple[str, ...]:
    """``p0``…``p<count-1>``: what numbering the partitions would give (for comparison only)."""
    return tuple(f"p{p}" for p in range(count))


def partition_of(deployment_id: str, count: int) -> int:
    """The partition of a deployment (or task): CRC32 of its id modulo ``count``; stable."""
    return zlib.crc32(deployment_id.encode(errors="surrogatepass")) % count


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names derived from ``STREAM_PREFIX``; see docs/events.md and README "Redis Cluster".

    ``tag`` is the partition's hash tag in cluster mode, None in standalone
    mode (today's names, unchanged).
    """

    prefix: str = "printery"
    tag: str | None = None

    @property
    def root(self) -> str:
        """Where a deployment's keys live: the prefix, with the partition's tag in cluster mode."""
        return self.prefix if self.tag is None else f"{self.prefix}:{{{self.tag}}}"

    def partition(self, tag: str) -> Keys:
        """The keys of one cluster partition (same prefix, its hash tag)."""
        return Keys(self.prefix, tag)

    @property
    def started(self) -> str:
        return f"{self.root}:deployment:started"

    @property
    def validated(self) -> str:
        return f"{self.root}:deployment:validated"

    @property
    def dependencies_satisfied(self) -> str:
        return f"{self.root}:deployment:dependencies-satisfied"

    @property
    def notifications(self) -> str:
        return f"{self.root}:notifications"

    @property
    def delivered(self) -> str:
        return f"{self.root}:notifications:delivered"

    @staticmethod
    def dead(stream: str) -> str:
        return f"{stream}{DEAD_SUFFIX}"

    def registry(self, environment: str) -> str:
        """The environment's registry; on a cluster its own hash tag, shared with its order.

        Read across every deployment of the environment, it cannot carry a
        partition's tag: on a cluster it is written in a step of its own
        (``StreamAdapter.set_latest``), with its order hash in its slot.
        """
        if self.tag is None:
            return f"{self.prefix}:registry:{environment}"
        return f"{self.prefix}:registry:{{{environment}}}"

    def registry_requested(self, environment: str) -> str:
        """When the version in the registry was requested, per service: the latest wins."""
        return f"{self.registry(environment)}:requested_at"

    def deployment(self, deployment_id: str) -> str:
        return f"{self.root}:deployment:{deployment_id}"

    def heartbeat(self, consumer: str) -> str:
        return f"{self.prefix}:heartbeat:{consumer}"

    @property
    def heartbeat_pattern(self) -> str:
        return f"{self.prefix}:heartbeat:*"

    @property
    def partitions_record(self) -> str:
        """The installation's partition count, set once at first start (cluster mode)."""
        return f"{self.prefix}:{{{META_TAG}}}:partitions"

    def trim_lock(self, stream: str) -> str:
        """Held by the one daemon trimming ``stream`` right now."""
        return f"{self.prefix}:trim-lock:{stream}"

    def delivery_marker(self, event_id: str, url_digest: str) -> str:
        """Remembers that a webhook took an event, so a redelivery is not sent twice."""
        return f"{self.root}:notified:{event_id}:{url_digest}"

    def deployment_log(self, deployment_id: str) -> str:
        """The deployment's capped timeline log (a list of JSON entries)."""
        return f"{self.deployment(deployment_id)}:log"

    def task(self, event_id: str) -> str:
        """What one message of an own-process worker did (a hash), under the partition tag."""
        return f"{self.root}:task:{event_id}"

    def task_log(self, event_id: str) -> str:
        """That task's capped log of progress and log lines (a list of JSON entries)."""
        return f"{self.task(event_id)}:log"

    def timeline_collides(self, deployment_id: str) -> bool:
        """Whether this id's timeline keys would land on one of printery's own keys.

        ``<root>:deployment:<id>`` shares its namespace with the streams
        (``started``, ``validated``, ``dependencies-satisfied`` and their
        ``:dead`` letters), and ``<id>:log`` with another id's log.
        """
        first = deployment_id.split(":", 1)[0]
        return first in _STREAM_NAMES or deployment_id.endswith(":log")


def _stream_names() -> frozenset[str]:
    """The stream names under ``<prefix>:deployment:``; the same under every prefix."""
    keys = Keys()
    streams = (keys.started, keys.validated, keys.dependencies_satisfied)
    return frozenset(s.removeprefix(keys.deployment("")) for s in streams)


# Computed once: the validator asks for every message, twice.
_STREAM_NAMES: Final = _stream_names()


@dataclass(frozen=True, slots=True)
class Partitions:
    """The installation's partitions: one :class:`Keys` each, and which one a deployment is in.

    Standalone (``count`` None): one partition, today's untagged names.
    Cluster: ``count`` partitions, tagged by :func:`partition_tags`.
    """

    base: Keys
    count: int | None = None

    @property
    def all(self) -> tuple[Keys, ...]:
        if self.count is None:
            return (self.base,)
        return tuple(self.base.partition(t) for t in partition_tags(self.count))

    def of(self, deployment_id: str) -> Keys:
        """The keys of the partition ``deployment_id`` belongs to."""
        if self.count is None:
            return self.base
        return self.base.partition(
            partition_tags(self.count)[partition_of(deployment_id, self.count)]
        )
