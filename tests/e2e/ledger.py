"""The accounting every end-to-end test ends with: where did each published message go?"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import redis

__all__ = ["Ledger", "account", "publish"]


def _id(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq)


def publish(client: redis.Redis, stream: str, entries: Sequence[dict[str, str]]) -> list[bytes]:
    """XADD every entry in one MULTI/EXEC: a blocked reader sees all of them at once."""
    pipe = client.pipeline(transaction=True)
    for fields in entries:
        pipe.xadd(stream, fields)  # type: ignore[arg-type]  # redis-py's field type is too narrow
    return [bytes(i) for i in pipe.execute()]


@dataclass(frozen=True)
class Ledger:
    """Published ids split by fate; ``outputs`` counts outputs per input id."""

    acked: frozenset[bytes]
    pending: frozenset[bytes]
    undelivered: frozenset[bytes]
    outputs: Counter[bytes]
    idle_ms: dict[bytes, int]

    @property
    def duplicates(self) -> dict[bytes, int]:
        return {i: n for i, n in self.outputs.items() if n > 1}


def account(
    client: redis.Redis, prefix: str, published: Sequence[bytes], group: str = "echo"
) -> Ledger:
    """Split ``published`` into acked (an output names it), pending, and never delivered.

    Fails if an id is in none of them (lost) or in two (acked yet pending).
    """
    stream = f"{prefix}:test:in"
    outputs = Counter(bytes(f[b"in_id"]) for _, f in client.xrange(f"{prefix}:test:out"))
    pending: dict[bytes, int] = {}
    last = (0, 0)
    if client.exists(stream):
        groups = {g["name"]: g for g in client.xinfo_groups(stream)}
        if group.encode() in groups:
            rows = client.xpending_range(stream, group, min="-", max="+", count=100_000)
            pending = {bytes(r["message_id"]): int(r["time_since_delivered"]) for r in rows}
            last = _id(groups[group.encode()]["last-delivered-id"])
    acked = set(outputs) & set(published)
    undelivered = {i for i in published if _id(i) > last}
    assert acked.isdisjoint(pending), "acked with outputs, yet still pending"
    lost = set(published) - acked - set(pending) - undelivered
    assert lost == set(), f"{len(lost)} messages neither acked, pending nor undelivered"
    return Ledger(
        acked=frozenset(acked),
        pending=frozenset(pending),
        undelivered=frozenset(undelivered),
        outputs=outputs,
        idle_ms=pending,
    )
