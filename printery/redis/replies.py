"""What the adapter reads back from Redis, as plain values the rest of printery can hold."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConsumerInfo",
    "Entry",
    "GroupInfo",
    "GroupStats",
    "PendingEntry",
    "Replayed",
    "StreamInfo",
    "Trim",
]


@dataclass(frozen=True, slots=True)
class Entry:
    """A stream entry as read: raw fields (``None`` when trimmed away) and its delivery count."""

    id: str
    fields: dict[bytes, bytes] | None
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
class GroupStats:
    stream: str
    group: str
    length: int
    lag: int | None
    pending: int
    consumers: int


@dataclass(frozen=True, slots=True)
class ConsumerInfo:
    """One consumer of a group: what it holds, and how long since it last read."""

    name: str
    pending: int
    idle_ms: int


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """One consumer group; ``lag`` is None when Redis cannot tell (entries deleted)."""

    name: str
    lag: int | None
    pending: int
    oldest_pending_id: str | None
    consumers: tuple[ConsumerInfo, ...]


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """One entry a group's consumer holds: who, how long since delivered, how many times."""

    id: str
    consumer: str
    idle_ms: int
    deliveries: int


@dataclass(frozen=True, slots=True)
class StreamInfo:
    stream: str
    length: int
    groups: tuple[GroupInfo, ...]


@dataclass(frozen=True, slots=True)
class Replayed:
    """One dead letter's replay: the new entry's id, or why it stayed where it was."""

    dead_id: str
    new_id: str | None
    problem: str = ""


@dataclass(frozen=True, slots=True)
class Trim:
    """One retention trim: entries removed, entries left, the MINID used (None: none was due)."""

    trimmed: int
    length: int
    min_id: str | None
