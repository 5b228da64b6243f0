"""The pages that show the whole installation: the overview, ``/api/status``, a timeline.

The overview and ``/api/status`` are served from the sampler's snapshot and
never read Redis themselves. A timeline is one record (a deployment's, or a
task's), read when asked for: two commands.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from printery.dashboard.appkeys import ADAPTER, LAYOUT, SAMPLER
from printery.dashboard.render import page
from printery.dashboard.sampler import Snapshot
from printery.errors import RedisError
from printery.pipeline.timeline import read_timeline

__all__ = ["DAEMON_PAGE", "STREAM_PAGE", "TASK_LOG_CAP", "api_status", "overview", "timeline"]

DAEMON_PAGE: Final = 25  # daemons per overview page (each with its workers)
STREAM_PAGE: Final = 50
TASK_LOG_CAP: Final = 200  # newest log lines of a task shown
PROBLEM_CAP: Final = 20
_STAGES: Final = ("validation", "dependencies", "health", "notification")


async def api_status(request: web.Request) -> web.Response:
    """The ``printery status --json`` document, as of the latest sample."""
    snap = await request.app[SAMPLER].current()
    return web.json_response(snap.doc, dumps=lambda d: json.dumps(d, indent=2))


async def overview(request: web.Request) -> web.Response:
    snap = await request.app[SAMPLER].current()
    after = request.query.get("after", "")
    offset = _offset(request.query.get("streams", "0"))
    daemons = [
        *(dict(d, stale=False) for d in snap.doc["daemons"]),
        *(dict(d, stale=True) for d in snap.doc["stale_daemons"]),
    ]
    daemons.sort(key=lambda d: str(d["consumer"]))
    shown = [d for d in daemons if str(d["consumer"]) > after][:DAEMON_PAGE]
    more_daemons = len([d for d in daemons if str(d["consumer"]) > after]) > DAEMON_PAGE
    streams = snap.doc["streams"][offset : offset + STREAM_PAGE]
    context = {
        "snap": snap,
        "error": snap.error,
        "age": max(0.0, request.app[SAMPLER].clock() - snap.taken_at),
        "problems": snap.doc["problems"][:PROBLEM_CAP],
        "more_problems": max(0, len(snap.doc["problems"]) - PROBLEM_CAP),
        "totals": _totals(snap),
        "daemons": shown,
        "rates": _nested(snap.rates),
        "after": after,
        "next_after": str(shown[-1]["consumer"]) if more_daemons and shown else None,
        "streams": streams,
        "streams_offset": offset,
        "streams_total": len(snap.doc["streams"]),
        "next_streams": offset + STREAM_PAGE
        if len(snap.doc["streams"]) > offset + STREAM_PAGE
        else None,
        "daemons_total": len(daemons),
    }
    name = "_overview.html" if "fragment" in request.query else "overview.html"
    return page(request, name, context)


def _nested(rates: dict[tuple[str, str], float]) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for (consumer, worker), rate in rates.items():
        found.setdefault(consumer, {})[worker] = rate
    return found


def _offset(raw: str) -> int:
    try:
        return max(0, min(int(raw), 1_000_000))
    except ValueError:
        raise web.HTTPBadRequest(reason="streams= takes a number") from None


def _totals(snap: Snapshot) -> dict[str, Any]:
    workers = [w for d in snap.doc["daemons"] for w in d["workers"].values()]
    groups = [g for s in snap.doc["streams"] for g in s["groups"]]
    return {
        "daemons": len(snap.doc["daemons"]),
        "stale": len(snap.doc["stale_daemons"]),
        "workers": len(workers),
        "running": sum(1 for w in workers if w["state"] == "running"),
        "in_flight": sum(w["in_flight"] or 0 for w in workers),
        "processed": sum(w["processed"] or 0 for w in workers),
        "per_minute": round(sum(snap.rates.values()) * 60),
        "pending": sum(g["pending"] or 0 for g in groups),
        "lag": sum(g["lag"] or 0 for g in groups),
        "dead_letters": sum(s["dead_letters"] for s in snap.doc["streams"]),
        "last_hour": sum(snap.per_minute),
    }


async def timeline_search(request: web.Request) -> web.Response:
    """``/timeline?id=…``: the search box's target."""
    wanted = request.query.get("id", "").strip()
    if not wanted:
        return page(request, "timeline.html", {"kind": None, "id": "", "record": None})
    from printery.dashboard.render import path_part  # noqa: PLC0415 - one use

    raise web.HTTPSeeOther(f"/timeline/{path_part(wanted)}")


async def timeline(request: web.Request) -> web.Response:
    """A deployment's timeline, else a task's record, else 404."""
    wanted = request.match_info["id"]
    adapter, layout = request.app[ADAPTER], request.app[LAYOUT]
    try:
        # On a cluster a deployment's timeline is in its id's partition; a task's
        # record in the partition its message was read from, which is looked for.
        found = await read_timeline(adapter, layout.of(wanted), wanted)
        context: dict[str, Any]
        if found is not None:
            context = {"kind": "deployment", "id": wanted, "record": _deployment(found.fields)}
            context["log"] = found.log[-TASK_LOG_CAP:]
        else:
            fields: dict[str, str] = {}
            log: list[dict[str, Any]] = []
            for keys in layout.everywhere():
                fields, log = await adapter.record(
                    keys.task(wanted), keys.task_log(wanted), tail=TASK_LOG_CAP
                )
                if fields or log:
                    break
            if not fields and not log:
                context = {"kind": None, "id": wanted, "record": None}
                return page(request, "timeline.html", context, status=404)
            context = {"kind": "task", "id": wanted, "record": _task(fields), "log": log}
    except RedisError as exc:
        context = {"kind": None, "id": wanted, "record": None, "error": f"cannot read Redis: {exc}"}
        return page(request, "timeline.html", context, status=503)
    name = "_timeline.html" if "fragment" in request.query else "timeline.html"
    return page(request, name, context)


def _deployment(fields: dict[str, str]) -> dict[str, Any]:
    reached = [s for s in _STAGES if f"{s}_at" in fields]
    return {
        "fields": fields,
        "status": fields.get("status", "unknown"),
        "stages": [
            {"name": s, "at": fields.get(f"{s}_at"), "current": fields.get("stage") == s}
            for s in _STAGES
        ],
        "percent": round(100 * len(reached) / len(_STAGES)),
    }


def _task(fields: dict[str, str]) -> dict[str, Any]:
    try:
        percent = max(0.0, min(100.0, float(fields.get("percent", "0"))))
    except ValueError:
        percent = 0.0
    if fields.get("status") == "succeeded":
        percent = 100.0
    return {"fields": fields, "status": fields.get("status", "unknown"), "percent": percent}
