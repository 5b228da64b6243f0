"""Who may act: the token, the session cookie it buys, and the CSRF token bound to that session.

::

    POST (an action) ──► read-only dashboard (no DASHBOARD_TOKEN)?  ──► 405
                    ──► Authorization: Bearer <token>, token right? ──► allowed, no CSRF needed
                                                      token wrong?  ──► 401
                    ──► session cookie, signature and age right?
                          Origin (or Sec-Fetch-Site) from elsewhere? ──► 403
                          form field csrf ≠ HMAC(session id)?        ──► 403
                          otherwise                                  ──► allowed
                    ──► nothing                                       ──► 401

The sign-in form takes the token once and sets ``printery_session``
(``HttpOnly``, ``SameSite=Strict``, ``Secure`` over TLS): ``<issued>.<session
id>.<HMAC>``, valid for :data:`SESSION_S`. The HMAC keys are derived from the
token and a secret drawn at start, so a restart or a new token ends every
session. Nothing is kept per session on the server. Every comparison of a
secret is :func:`hmac.compare_digest`; the token is never echoed, logged or
put in a page. An address that presented ten wrong tokens within a minute
gets ``429`` before its next token is even compared
(:mod:`printery.dashboard.throttle`). (This is a dozen lines of the standard library: a signing
library would add a dependency for one function.)
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from printery.dashboard.config import Token
from printery.dashboard.throttle import Throttle

__all__ = ["COOKIE", "SESSION_S", "Auth", "Identity"]

COOKIE: Final = "printery_session"
SESSION_S: Final = 12 * 3600
# One request's token is judged (and counted) once, though identify and check_action both ask.
_VERDICT: Final = web.RequestKey("printery_token_verdict", tuple)


@dataclass(frozen=True, slots=True)
class Identity:
    """What a request presented: ``bearer``, ``session`` (with its CSRF token) or nothing."""

    kind: str | None = None
    csrf: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.kind is not None


class Auth:
    """Checks requests against the token; ``None`` token means read-only."""

    def __init__(
        self,
        token: Token | None,
        *,
        clock: Callable[[], float] = time.time,
        throttle: Throttle | None = None,
    ) -> None:
        self.token = token
        self.clock = clock
        self.throttle = throttle or Throttle()
        salt = secrets.token_bytes(32)
        self._session_key = token.key(b"session" + salt) if token else b""
        self._csrf_key = token.key(b"csrf" + salt) if token else b""

    @property
    def read_only(self) -> bool:
        return self.token is None

    # -- sessions ----------------------------------------------------------------------

    def new_session(self) -> str:
        issued = str(int(self.clock()))
        sid = secrets.token_urlsafe(24)
        return f"{issued}.{sid}.{self._sign(self._session_key, f'{issued}.{sid}')}"

    def session_id(self, cookie: str | None) -> str | None:
        """The session id of a valid, unexpired cookie; None otherwise."""
        if self.token is None or not cookie or cookie.count(".") != 2:
            return None
        issued, sid, signature = cookie.split(".")
        expected = self._sign(self._session_key, f"{issued}.{sid}")
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return None
        try:
            age = self.clock() - int(issued)
        except ValueError:
            return None
        return sid if 0 <= age <= SESSION_S else None

    def matches(self, request: web.Request, offered: str) -> bool:
        """Whether ``offered`` is the token; 429 first for an address that guessed too often."""
        if self.token is None:
            return False
        seen = request.get(_VERDICT)
        if seen is not None and seen[0] == offered:
            return bool(seen[1])
        self.throttle.check(request)
        right = bool(offered) and self.token.matches(offered)
        if not right:
            self.throttle.wrong(request)
        request[_VERDICT] = (offered, right)
        return right

    def csrf_for(self, sid: str) -> str:
        return self._sign(self._csrf_key, sid)

    def identify(self, request: web.Request) -> Identity:
        """What the request presents (not yet whether it may act: see :meth:`check_action`)."""
        if self.token is None:
            return Identity()
        bearer = _bearer(request)
        if bearer is not None:
            return Identity("bearer") if self.matches(request, bearer) else Identity()
        sid = self.session_id(request.cookies.get(COOKIE))
        return Identity("session", self.csrf_for(sid)) if sid else Identity()

    # -- the gate of every POST --------------------------------------------------------

    def check_action(self, request: web.Request, form_csrf: str | None) -> None:
        """Raise the HTTP error a POST deserves, or return when it may go ahead."""
        if self.token is None:
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        bearer = _bearer(request)
        if bearer is not None:
            if self.matches(request, bearer):
                return
            raise _unauthorized()
        if "Authorization" in request.headers:
            raise _unauthorized()
        sid = self.session_id(request.cookies.get(COOKIE))
        if sid is None:
            raise _unauthorized()
        check_origin(request)
        if not form_csrf or not hmac.compare_digest(
            self.csrf_for(sid).encode(), form_csrf.encode()
        ):
            raise web.HTTPForbidden(reason="missing or wrong CSRF token")

    def _sign(self, key: bytes, text: str) -> str:
        return hmac.new(key, text.encode(), "sha256").hexdigest()


def check_origin(request: web.Request) -> None:
    """403 for a request a browser says came from another site.

    Browsers send ``Sec-Fetch-Site``; with ``Referrer-Policy: no-referrer``
    Chromium sends ``Origin: null`` on our own form posts, so there the fetch
    metadata decides. Without it (older browsers, scripts), a present
    ``Origin`` must be ours.
    """
    expected = f"{request.scheme}://{request.host}"
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site != "same-origin" or origin not in {None, "null", expected}:
            raise web.HTTPForbidden(reason="request from another site")
    elif origin is not None and origin != expected:
        raise web.HTTPForbidden(reason="request from another origin")


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _unauthorized() -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(
        reason="sign in or send Authorization: Bearer <token>",
        headers={"WWW-Authenticate": 'Bearer realm="printery dashboard"'},
    )
