"""The dashboard's aiohttp application: routes, the shared sampler, and the middlewares.

::

    request ─► security_headers (nonce, CSP, nosniff, no-referrer, no-store)
            ─► identify (request["auth"]: bearer, session + CSRF token, or nobody)
            ─► GET  /                         views.overview     (from the sampler)
                    /api/status               views.api_status   (from the sampler)
                    /timeline, /timeline/<id> views.timeline     (reads one record)
                    /streams/<key>            pages.stream       (pending + newest, paged)
                    /dead/<key>               pages.dead         (dead letters, paged)
                    (a stage's key on a cluster: its partitions merged, printery.dashboard.layout)
                    /signin                   actions.signin_form
                    /static/dashboard.{js,css}
               POST /dead/<key>/replay|purge  actions.act        (405 / 401 / 403 / done)
                    /signin, /signout

Everything it reads comes through :class:`~printery.adapter.StreamAdapter`;
it writes only what an operator asks for (replay, purge).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Final

from aiohttp import web

from printery.dashboard import actions, pages, views
from printery.dashboard.appkeys import ADAPTER, AUTH, IDENTITY, KEYS, LAYOUT, READ_ONLY, SAMPLER
from printery.dashboard.auth import Auth
from printery.dashboard.config import Token
from printery.dashboard.layout import Layout
from printery.dashboard.sampler import Sampler
from printery.dashboard.security import security_headers
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys

__all__ = ["create_app"]

_STOP_S: Final = 10.0  # the longest the sampler's reading in progress may hold up a stop
_STATIC: Final = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _identify(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[IDENTITY] = request.app[AUTH].identify(request)
    request[READ_ONLY] = request.app[AUTH].read_only
    return await handler(request)


def create_app(
    adapter: StreamAdapter,
    keys: Keys,
    token: Token | None,
    *,
    interval: float = 2.0,
    sampler: Sampler | None = None,
    partitions: Sequence[Keys] = (),
) -> web.Application:
    """The application; the sampler runs from startup to cleanup."""
    app = web.Application(middlewares=[security_headers, _identify], client_max_size=256 * 1024)
    app[ADAPTER] = adapter
    app[KEYS] = keys
    app[LAYOUT] = Layout(keys, tuple(partitions))
    app[SAMPLER] = sampler or Sampler(adapter, keys, interval=interval, partitions=partitions)
    app[AUTH] = Auth(token)
    app.cleanup_ctx.append(_run_sampler)
    app.router.add_get("/", views.overview)
    app.router.add_get("/api/status", views.api_status)
    app.router.add_get("/timeline", views.timeline_search)
    app.router.add_get("/timeline/{id:.+}", views.timeline)
    app.router.add_get("/streams/{key:.+}", pages.stream)
    app.router.add_post("/dead/{key:.+}/replay", actions.replay)
    app.router.add_post("/dead/{key:.+}/purge", actions.purge)
    app.router.add_get("/dead/{key:.+}", pages.dead)
    app.router.add_get("/signin", actions.signin_form)
    app.router.add_post("/signin", actions.signin)
    app.router.add_post("/signout", actions.signout)
    app.router.add_get("/static/{name}", _static)
    return app


async def _run_sampler(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[SAMPLER].run(), name="printery.dashboard.sampler")
    yield
    app[SAMPLER].stop()
    try:
        await asyncio.wait_for(task, _STOP_S)
    except TimeoutError:
        pass  # wait_for cancelled it: Redis did not answer within the time
    except asyncio.CancelledError:
        task.cancel()
        raise


async def _static(request: web.Request) -> web.Response:
    """The stylesheet and the script, from the package itself: no CDN, works offline."""
    name = request.match_info["name"]
    kind = _STATIC.get(name)
    if kind is None:
        raise web.HTTPNotFound
    body = resources.files("printery.dashboard").joinpath("static", name).read_bytes()
    return web.Response(body=body, content_type=kind, charset="utf-8")
