"""A stream's page and its dead letters' page: what Redis holds, paged with cursors.

Both read Redis per request, a bounded amount: one page of entries (at most
:data:`MAX_COUNT`), the groups of one stream, and the pending entries of one
group. Cursors are entry ids (``before`` pages back from the newest,
``pending_after`` forward from the oldest pending); anything that is not an
entry id is refused with 400. Only keys under the stream prefix are shown.
"""

from __future__ import annotations

import re
from typing import Any, Final

from aiohttp import web

from printery.dashboard.appkeys import ADAPTER, KEYS
from printery.dashboard.render import page
from printery.errors import RedisError
from printery.redis.adapter import DEAD_LETTER_FIELDS, StreamAdapter
from printery.redis.keys import DEAD_SUFFIX, Keys
from printery.redis.replies import Entry

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


async def stream(request: web.Request) -> web.Response:
    """Groups, one group's pending entries, and the newest entries, each paged."""
    key = stream_key(request)
    before, pending_after, n = (
        cursor(request, "before"),
        cursor(request, "pending_after"),
        count(request),
    )
    adapter: StreamAdapter = request.app[ADAPTER]
    try:
        if await _kind(adapter, key) == "none":
            raise web.HTTPNotFound(reason="no such stream")
        info = await adapter.stream_info(key)
        groups = list(info.groups)[:GROUP_CAP] if info is not None else []
        chosen = request.query.get("group") or (groups[0].name if groups else None)
        if chosen is not None and chosen not in {g.name for g in groups}:
            raise web.HTTPNotFound(reason="no such group on this stream")
        pending = (
            await adapter.pending_entries(key, chosen, after=pending_after, count=n + 1)
            if chosen is not None
            else []
        )
        newest = await adapter.newest_entries(key, before=before, count=n + 1)
        dead_count = await adapter.length(Keys.dead(key))
        server_ms = await adapter.server_time_ms()
    except RedisError as exc:
        return _unavailable(request, exc)
    context: dict[str, Any] = {
        "key": key,
        "length": info.length if info is not None else 0,
        "groups": groups,
        "group": chosen,
        "pending": pending[:n],
        "next_pending": pending[n - 1].id if len(pending) > n else None,
        "entries": [(e.id, fields_of(e)) for e in newest[:n]],
        "next_before": newest[n - 1].id if len(newest) > n else None,
        "count": n,
        "paged": before is not None or pending_after is not None,
        "dead_count": dead_count,
        "server_ms": server_ms,
    }
    return page(request, "stream.html", context)


async def dead(request: web.Request) -> web.Response:
    """Dead letters, newest first, with their error and original fields."""
    key = stream_key(request)
    before, n = cursor(request, "before"), count(request)
    adapter: StreamAdapter = request.app[ADAPTER]
    dead_key = Keys.dead(key)
    try:
        await _kind(adapter, key)
        await _kind(adapter, dead_key)
        total = await adapter.length(dead_key)
        found = await adapter.newest_entries(dead_key, before=before, count=n + 1)
        server_ms = await adapter.server_time_ms()
    except RedisError as exc:
        return _unavailable(request, exc)
    letters = []
    for entry in found[:n]:
        f = fields_of(entry)
        letters.append(
            {
                "id": entry.id,
                "meta": {k: f[k] for k in DEAD_LETTER_FIELDS if k in f},
                "original": {k: v for k, v in f.items() if k not in DEAD_LETTER_FIELDS},
            }
        )
    context: dict[str, Any] = {
        "key": key,
        "dead_key": dead_key,
        "total": total,
        "letters": letters,
        "next_before": found[n - 1].id if len(found) > n else None,
        "count": n,
        "paged": before is not None,
        "server_ms": server_ms,
        "done": _done(request),
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
