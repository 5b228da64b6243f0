"""``printery dlq list`` without a stream: one line per dead-letter stream.

Every ``<prefix>:…:dead`` stream (one SCAN, streams only), and the pipeline's
four even when they are empty, so "no dead letters" is said, not implied:
how many each holds, when the oldest and the newest failed, and the newest
one's error. ``printery dlq list STREAM`` then lists one stream's letters.
"""

from __future__ import annotations

import json
from typing import Any

from printery.admin.tables import render_table, shorten
from printery.redis.adapter import StreamAdapter
from printery.redis.history import newest_entries, stream_keys
from printery.redis.keys import DEAD_SUFFIX, Keys
from printery.redis.replies import Entry

__all__ = ["dead_letter_summary", "summarise"]


def _field(entry: Entry | None, name: str) -> str | None:
    if entry is None or entry.fields is None:
        return None
    value = entry.fields.get(name.encode())
    return None if value is None else value.decode(errors="replace")


async def dead_letter_summary(adapter: StreamAdapter, prefix: str) -> list[dict[str, Any]]:
    """One record per dead-letter stream: the pipeline's four first, then the others by name."""
    keys = Keys(prefix)
    pipeline = [
        Keys.dead(s)
        for s in (keys.started, keys.validated, keys.dependencies_satisfied, keys.notifications)
    ]
    found = await stream_keys(adapter, f"{prefix}:*{DEAD_SUFFIX}")
    rows = []
    for dead in [*pipeline, *(k for k in found if k not in pipeline)]:
        count = await adapter.length(dead)
        oldest = next(iter(await adapter.entries(dead, count=1)), None) if count else None
        newest = next(iter(await newest_entries(adapter, dead, count=1)), None) if count else None
        rows.append(
            {
                "dead_stream": dead,
                "stream": dead.removesuffix(DEAD_SUFFIX),
                "count": count,
                "oldest_failed_at": _field(oldest, "failed_at"),
                "newest_failed_at": _field(newest, "failed_at"),
                "newest_error": _field(newest, "error"),
            }
        )
    return rows


async def summarise(adapter: StreamAdapter, prefix: str, *, as_json: bool) -> int:
    rows = await dead_letter_summary(adapter, prefix)
    if as_json:
        print(json.dumps({"dead_letter_streams": rows}, indent=2))
        return 0
    total = sum(r["count"] for r in rows)
    print(f"{total} dead letter(s) in {sum(1 for r in rows if r['count'])} stream(s)")
    table = [
        [
            r["dead_stream"],
            str(r["count"]),
            r["oldest_failed_at"] or "-",
            r["newest_failed_at"] or "-",
            shorten(r["newest_error"] or "", 60),
        ]
        for r in rows
    ]
    headers = ["DEAD-LETTER STREAM", "COUNT", "OLDEST", "NEWEST", "NEWEST ERROR"]
    print("\n".join(render_table(headers, table)))
    if total:
        print("`printery dlq list STREAM` lists one stream's dead letters")
    return 0
