"""Headers every response carries, and the nonce of the page's one script.

The policy allows the dashboard's own stylesheet, its one script (by the
nonce of this response, so a script tag that got into the page some other way
does not run), and requests back to itself; nothing inline, no frames, no
other origin::

    default-src 'none'; script-src 'nonce-…'; style-src 'self'; img-src 'self';
    connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'

Error responses get the same headers, and a plain-text body that names no
secret (aiohttp's default error pages echo nothing either, but are HTML).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Final

import structlog
from aiohttp import web

__all__ = ["NONCE", "csp", "security_headers"]

NONCE: Final = web.RequestKey("csp_nonce", str)

_STATIC_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_log = structlog.get_logger("printery.dashboard")


def csp(nonce: str) -> str:
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; "
        "style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A fresh nonce for the request; the headers on whatever the handler answers."""
    nonce = secrets.token_urlsafe(18)
    request[NONCE] = nonce
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            _harden(exc, nonce)
            raise
        response = web.Response(
            status=exc.status,
            text=f"{exc.status} {exc.reason}\n",
            content_type="text/plain",
            headers={
                k: v
                for k, v in exc.headers.items()
                if k in {"Allow", "WWW-Authenticate", "Retry-After"}
            },
        )
    except Exception:  # noqa: BLE001 - a bug answers 500 with the same headers, and is logged
        _log.exception("printery.dashboard_error", path=request.path)
        response = web.Response(status=500, text="500 Internal Server Error\n")
    _harden(response, nonce)
    return response


def _harden(response: web.StreamResponse, nonce: str) -> None:
    response.headers.update(_STATIC_HEADERS)
    response.headers["Content-Security-Policy"] = csp(nonce)
