"""A stream's page and its dead letters' page: what Redis holds, paged with cursors.

Both read Redis per request, a bounded amount: one page of entries (at most
:data:`MAX_COUNT`), the groups of one stream, and the pending entries of one
group. Cursors are entry ids (``before`` pages back from the newest,
``pending_after`` forward from the oldest pending); anything that is not an
entry id is refused with 400. Only keys under the stream prefix are shown.

On a Redis Cluster a stage's key (``printery:deployment:started``) stands for
its partitions' streams: the page sums and merges them and lists the
partitions, each linking to its own page (printery.dashboard.layout). The
cursors then also name the partition of the last row (``before_in``,
``pending_in``), since two partitions can hold the same entry id.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any, Final

from aiohttp import web

from printery.dashboard.appkeys import ADAPTER, KEYS, LAYOUT
from printery.dashboard.layout import (
    Cursor,
    Part,
    cursor_of,
    merge_groups,
    newest_across,
    pending_across,
)
from printery.dashboard.render import page
from printery.errors import RedisError
from printery.redis.adapter import DEAD_LETTER_FIELDS, StreamAdapter
from printery.redis.keys import DEAD_SUFFIX, Keys
from printery.redis.replies import Entry, StreamInfo

__all__ = ["DEFAULT_COUNT", "MAX_COUNT", "dead", "fields_of", "stream", "stream_key"]

DEFAULT_COUNT: Final = 50
MAX_COUNT: Final = 200
GROUP_CAP: Final = 20
_ID: Final = re.compile(r"^\d{1,20}-\d{1,20}$")


def stream_key(request: web.Request) -> str:
    """The stream the path names (``…:dead`` means its stream); 404 outside the prefix."""
    keys: Keys = request.app[KEYS]
    key = request.match_info["key"].removesuffix(DEAD_SUFFIX)
    if not key.startswith(f"{keys.prefix}:") or len(key) > 512:
        raise web.HTTPNotFound(reason="not a stream of this installation")
    return key


def cursor(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if not _ID.match(value):
        raise web.HTTPBadRequest(reason=f"{name} must be a stream entry id (like 1717171717171-0)")
    return value


def count(request: web.Request) -> int:
    raw = request.query.get("count", str(DEFAULT_COUNT))
    try:
        return max(1, min(int(raw), MAX_COUNT))
    except ValueError:
        raise web.HTTPBadRequest(reason="count must be a number") from None


def fields_of(entry: Entry) -> dict[str, str]:
    return {
        k.decode(errors="replace"): v.decode(errors="replace")
        for k, v in (entry.fields or {}).items()
    }


async def _kind(adapter: StreamAdapter, key: str) -> str:
    kind = await adapter.key_type(key)
    if kind not in {"stream", "none"}:
        raise web.HTTPNotFound(reason="that key is not a stream")
    return kind


def _parts(request: web.Request, key: str) -> tuple[tuple[Part, ...], bool]:
    """The streams ``key`` stands for, and whether they are a stage's partitions."""
    spread = request.app[LAYOUT].spread(key)
    return (spread, True) if spread else ((Part(0, "", key),), False)


def _cursor(request: web.Request, parts: Sequence[Part], name: str, tag: str) -> Cursor | None:
    return cursor_of(parts, cursor(request, name), request.query.get(tag))


async def stream(request: web.Request) -> web.Response:
    """Groups, one group's pending entries, and the newest entries, each paged.

    A stage's key on a cluster: every partition, summed and merged
    (printery.dashboard.layout), and a table of the partitions.
    """
    key = stream_key(request)
    parts, spread = _parts(request, key)
    before = _cursor(request, parts, "before", "before_in")
    pending_after = _cursor(request, parts, "pending_after", "pending_in")
    n = count(request)
    adapter: StreamAdapter = request.app[ADAPTER]
    try:
        kinds = [await _kind(adapter, p.stream) for p in parts]
        if all(k == "none" for k in kinds):
            raise web.HTTPNotFound(reason="no such stream")
        infos = list(await asyncio.gather(*(adapter.stream_info(p.stream) for p in parts)))
        groups = merge_groups(infos)[:GROUP_CAP]
        chosen = request.query.get("group") or (groups[0].name if groups else None)
        if chosen is not None and chosen not in {g.name for g in groups}:
            raise web.HTTPNotFound(reason="no such group on this stream")
        pending = (
            await pending_across(adapter, parts, chosen, after=pending_after, count=n + 1)
            if chosen is not None
            else []
        )
        newest = await newest_across(adapter, parts, before=before, count=n + 1)
        dead_counts = [await adapter.length(Keys.dead(p.stream)) for p in parts]
        last_ids = [await adapter.last_entry_id(p.stream) for p in parts] if spread else []
        server_ms = await adapter.server_time_ms()
    except RedisError as exc:
        return _unavailable(request, exc)
    context: dict[str, Any] = {
        "key": key,
        "length": sum(i.length for i in infos if i is not None),
        "groups": groups,
        "group": chosen,
        "pending": [(p, part if spread else None) for part, p in pending[:n]],
        "next_pending": _next(pending, n, spread),
        "entries": [(e.id, fields_of(e), part if spread else None) for part, e in newest[:n]],
        "next_before": _next(newest, n, spread),
        "count": n,
        "paged": before is not None or pending_after is not None,
        "dead_count": sum(dead_counts),
        "server_ms": server_ms,
        "partitions": [
            _partition_row(part, info, dead, last, chosen)
            for part, info, dead, last in zip(parts, infos, dead_counts, last_ids, strict=False)
        ],
    }
    return page(request, "stream.html", context)


def _next(rows: Sequence[tuple[Part, Any]], n: int, spread: bool) -> tuple[str, str] | None:
    """The cursor past a full page: the id of its last row, and that row's partition."""
    if len(rows) <= n:
        return None
    part, last = rows[n - 1]
    return last.id, part.tag if spread else ""


def _partition_row(
    part: Part, info: StreamInfo | None, dead: int, last: str | None, group: str | None
) -> dict[str, Any]:
    chosen = next((g for g in info.groups if g.name == group), None) if info else None
    return {
        "tag": part.tag,
        "stream": part.stream,
        "length": info.length if info is not None else None,
        "dead": dead,
        "lag": chosen.lag if chosen is not None else None,
        "pending": chosen.pending if chosen is not None else None,
        "newest_id": last,
    }


async def dead(request: web.Request) -> web.Response:
    """Dead letters, newest first, with their error and original fields.

    A stage's key on a cluster: every partition's dead letters, merged; each
    row's own buttons act on its partition, the selection names its partition.
    """
    key = stream_key(request)
    parts, spread = _parts(request, key)
    dead_parts = tuple(Part(p.index, p.tag, Keys.dead(p.stream)) for p in parts)
    before, n = _cursor(request, parts, "before", "before_in"), count(request)
    adapter: StreamAdapter = request.app[ADAPTER]
    try:
        for part in (*parts, *dead_parts):
            await _kind(adapter, part.stream)
        counts = [await adapter.length(p.stream) for p in dead_parts]
        found = await newest_across(adapter, dead_parts, before=before, count=n + 1)
        server_ms = await adapter.server_time_ms()
    except RedisError as exc:
        return _unavailable(request, exc)
    letters = []
    for part, entry in found[:n]:
        f = fields_of(entry)
        stream_of = parts[part.index].stream
        letters.append(
            {
                "id": entry.id,
                "meta": {k: f[k] for k in DEAD_LETTER_FIELDS if k in f},
                "original": {k: v for k, v in f.items() if k not in DEAD_LETTER_FIELDS},
                "part": part.tag if spread else None,
                "stream": stream_of,
                "value": f"{part.tag}/{entry.id}" if spread else entry.id,
            }
        )
    context: dict[str, Any] = {
        "key": key,
        "dead_key": Keys.dead(key),
        "total": sum(counts),
        "letters": letters,
        "next_before": _next(found, n, spread),
        "count": n,
        "paged": before is not None,
        "server_ms": server_ms,
        "done": _done(request),
        "partitions": [
            {"tag": p.tag, "stream": p.stream, "count": c}
            for p, c in zip(parts, counts, strict=True)
            if spread and c
        ],
        "spread": len(parts) if spread else 0,
    }
    return page(request, "dead.html", context)


def _done(request: web.Request) -> dict[str, int] | None:
    """What the last action did, from the redirect's numbers (never text: a link can't spoof)."""
    found = {}
    for name in ("replayed", "kept", "purged"):
        raw = request.query.get(name)
        if raw is not None and raw.isdigit() and len(raw) < 10:
            found[name] = int(raw)
    return found or None


def _unavailable(request: web.Request, exc: RedisError) -> web.Response:
    return page(request, "error.html", {"message": f"cannot read Redis: {exc}"}, status=503)
