"""Reading streams as history, outside any consumer group: the newest entries, what comes next.

``printery deployments`` pages back from the newest entry (XREVRANGE), so the
cost is bounded by what it shows, never by the keyspace (no SCAN) or by the
length of a stream. ``printery publish … --wait`` blocks on the pipeline's
streams (XREAD BLOCK) to wake up when a stage writes, instead of polling.
``printery dlq list`` without a stream finds every dead-letter stream with
one SCAN for its pattern, restricted to streams (an operator's command, like
``printery status``'s heartbeat scan).

Both go through the adapter's translation boundary, like every other read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from printery.redis.adapter import StreamAdapter, translated
from printery.redis.replies import Entry

__all__ = ["newest_entries", "next_entries", "stream_keys"]


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def newest_entries(
    adapter: StreamAdapter, stream: str, *, before: str = "+", count: int
) -> list[Entry]:
    """Up to ``count`` entries, newest first, from ``before`` (``(id`` excludes it) back."""
    with translated():
        raw: Any = await adapter.client.xrevrange(stream, max=before, min="-", count=count)
    return [Entry(_str(i), dict(f)) for i, f in raw]


async def next_entries(
    adapter: StreamAdapter, after: Mapping[str, str], *, block_ms: int, count: int = 100
) -> dict[str, list[Entry]]:
    """Entries after each stream's id (XREAD BLOCK); empty when ``block_ms`` passed first."""
    if not after:
        return {}
    streams: dict[Any, Any] = dict(after)
    with translated():
        raw: Any = await adapter.client.xread(streams, count=count, block=max(1, block_ms))
    found: dict[str, list[Entry]] = {}
    # RESP2: [[stream, entries], ...]; RESP3: {stream: [entries]}.
    items = raw.items() if isinstance(raw, dict) else (raw or [])
    for stream, entries in items:
        found[_str(stream)] = [Entry(_str(i), dict(f)) for i, f in entries]
    return found


async def stream_keys(adapter: StreamAdapter, pattern: str) -> list[str]:
    """Every stream whose key matches ``pattern`` (SCAN … TYPE stream), sorted."""
    with translated():
        found = {
            _str(k)
            async for k in adapter.client.scan_iter(match=pattern, count=500, _type="stream")
        }
    return sorted(found)
