"""What the dashboard does to Redis when asked: replay and purge dead letters; signing in and out.

Each action goes through :meth:`Auth.check_action` first (405 read-only, 401
nobody, 403 cross-origin or without the session's CSRF token), then runs the
same server-side operations as ``printery dlq``: the atomic replay script
(:meth:`~printery.adapter.StreamAdapter.replay_dead`, in the batches of
:func:`printery.dlq.replay_batches`), an exact XTRIM for "purge all", XDEL for
chosen ids. "All" means the dead letters present when the request arrived.

On a Redis Cluster a stage's key stands for its partitions' dead-letter
streams (printery.dashboard.layout): "all" is every partition's, and an id
names its partition (``p3.23/1717171717171-0``, as the page sends them) or is
looked for in each (two partitions may hold the same id: then it must be named).

A form post is answered with a redirect to the dead-letter page carrying the
counts; a Bearer request with JSON.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

import structlog
from aiohttp import web

from printery.admin.dlq import DlqRequest, purge_all, replay_batches
from printery.dashboard.appkeys import ADAPTER, AUTH, IDENTITY, LAYOUT
from printery.dashboard.auth import COOKIE, SESSION_S, check_origin
from printery.dashboard.layout import Part
from printery.dashboard.pages import stream_key
from printery.dashboard.render import page, path_part
from printery.errors import RedisError
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys

__all__ = ["MAX_IDS", "purge", "replay", "signin", "signin_form", "signout"]

MAX_IDS: Final = 1000  # ids one request may name
_ID: Final = re.compile(r"^(?:[a-z0-9.]{1,32}/)?\d{1,20}-\d{1,20}$")
_log = structlog.get_logger("printery.dashboard")


async def _form(request: web.Request) -> dict[str, list[str]]:
    data = await request.post()
    found: dict[str, list[str]] = {}
    for name, value in data.items():
        if isinstance(value, str):
            found.setdefault(name, []).append(value)
    return found


def _ids(form: dict[str, list[str]]) -> tuple[tuple[str, ...], bool]:
    """``ids=a,b`` (repeatable) or ``all=1``; 400 for anything else.

    An id may name its partition (``p3.23/1717171717171-0``), as the page of a
    stage's dead letters on a cluster sends them.
    """
    every = form.get("all", [""])[0] in {"1", "true", "yes"}
    ids = tuple(
        dict.fromkeys(i.strip() for v in form.get("ids", ()) for i in v.split(",") if i.strip())
    )
    if every == bool(ids):
        raise web.HTTPBadRequest(reason="give ids=<id>,… or all=1 (not both)")
    if len(ids) > MAX_IDS:
        raise web.HTTPBadRequest(reason=f"at most {MAX_IDS} ids per request")
    if any(not _ID.match(i) for i in ids):
        raise web.HTTPBadRequest(reason="ids must be stream entry ids (like 1717171717171-0)")
    return ids, every


async def _targets(
    adapter: StreamAdapter, parts: Sequence[Part], ids: tuple[str, ...], every: bool
) -> tuple[list[tuple[str, tuple[str, ...]]], list[str]]:
    """Which stream's dead letters each id is, and the ids found in no partition.

    ``parts`` is one stream (standalone, or a partition's key), or a stage's
    partitions: there an id names its partition (``<tag>/<id>``), or is looked
    for in each; one found in two partitions must name which (409).
    """
    if every:
        return [(p.stream, ()) for p in parts], []
    by_tag = {p.tag: p for p in parts}
    chosen: dict[str, list[str]] = {}
    missing = []
    for raw in ids:
        tag, _, entry_id = raw.rpartition("/")
        if tag or len(parts) == 1:
            part = by_tag.get(tag) if len(parts) > 1 else None if tag else parts[0]
            if part is None:
                raise web.HTTPBadRequest(reason=f"{tag!r} is not a partition of this stream")
            chosen.setdefault(part.stream, []).append(entry_id)
            continue
        holders = [
            p
            for p in parts
            if await adapter.entries(Keys.dead(p.stream), start=entry_id, end=entry_id)
        ]
        if len(holders) > 1:
            raise web.HTTPConflict(
                reason=f"{entry_id} is a dead letter in {len(holders)} partitions: "
                "name one as <partition>/<id>"
            )
        if holders:
            chosen.setdefault(holders[0].stream, []).append(entry_id)
        else:
            missing.append(entry_id)
    return [(stream, tuple(found)) for stream, found in chosen.items()], missing


async def replay(request: web.Request) -> web.StreamResponse:
    return await _act(request, "replay")


async def purge(request: web.Request) -> web.StreamResponse:
    return await _act(request, "purge")


async def _act(request: web.Request, action: str) -> web.StreamResponse:
    if request.app[AUTH].read_only:
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
    form = await _form(request)
    request.app[AUTH].check_action(request, form.get("csrf", [None])[0])
    key = stream_key(request)
    ids, every = _ids(form)
    adapter: StreamAdapter = request.app[ADAPTER]
    spread = request.app[LAYOUT].spread(key)
    parts = spread or (Part(0, "", key),)
    for part in parts:
        for k in (part.stream, Keys.dead(part.stream)):
            if await adapter.key_type(k) not in {"stream", "none"}:
                raise web.HTTPConflict(reason="that key is not a stream")
    result: dict[str, Any] = {"stream": key, "dead_stream": Keys.dead(key)}
    try:
        targets, missing = await _targets(adapter, parts, ids, every)
        if action == "replay":
            replayed: list[dict[str, str]] = []
            kept = [{"id": i, "problem": "no such dead letter in any partition"} for i in missing]
            for stream, chosen in targets:
                where = {"stream": stream} if spread else {}
                request_ = DlqRequest("replay", stream, chosen, every)
                async for batch in replay_batches(adapter, request_):
                    for r in await adapter.replay_dead(Keys.dead(stream), stream, batch):
                        if r.new_id is not None:
                            replayed.append({"id": r.dead_id, "new_id": r.new_id, **where})
                        else:
                            kept.append({"id": r.dead_id, "problem": r.problem, **where})
            result.update(replayed=replayed, not_replayed=kept)
            counts = {"replayed": len(replayed), "kept": len(kept)}
        else:
            purged = 0
            for stream, chosen in targets:
                dead_key = Keys.dead(stream)
                purged += (
                    await purge_all(adapter, dead_key)
                    if every
                    else await adapter.delete_entries(dead_key, chosen)
                )
            result.update(purged=purged)
            counts = {"purged": purged}
    except RedisError as exc:
        raise web.HTTPServiceUnavailable(reason="cannot reach Redis") from exc
    _log.info(f"printery.dashboard_{action}", stream=key, by=request[IDENTITY].kind, **counts)
    if request[IDENTITY].kind == "bearer":
        return web.json_response(result)
    query = "&".join(f"{k}={v}" for k, v in counts.items())
    raise web.HTTPSeeOther(f"/dead/{path_part(key)}?{query}")


# -- signing in ----------------------------------------------------------------------


def _next(raw: str | None) -> str:
    """Where to go after signing in: a path on this site, never another host."""
    if raw and raw.startswith("/") and not raw.startswith(("//", "/\\")) and len(raw) < 2000:
        return raw
    return "/"


async def signin_form(request: web.Request) -> web.Response:
    if request.app[AUTH].read_only:
        context = {"read_only": True, "next": "/", "wrong": False}
        return page(request, "signin.html", context)
    return page(
        request,
        "signin.html",
        {"read_only": False, "next": _next(request.query.get("next")), "wrong": False},
    )


async def signin(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH]
    if auth.read_only or auth.token is None:
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
    check_origin(request)
    form = await _form(request)
    target = _next(form.get("next", [None])[0])
    offered = form.get("token", [""])[0]
    if not auth.matches(request, offered):
        _log.warning("printery.dashboard_signin_refused", remote=request.remote)
        context = {"read_only": False, "next": target, "wrong": True}
        return page(request, "signin.html", context, status=401)
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        COOKIE,
        auth.new_session(),
        max_age=SESSION_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    _log.info("printery.dashboard_signed_in", remote=request.remote)
    raise response


async def signout(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    request.app[AUTH].check_action(request, form.get("csrf", [None])[0])
    response = web.HTTPSeeOther("/")
    response.del_cookie(COOKIE, path="/")
    raise response
