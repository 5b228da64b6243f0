"""How often one address may present a wrong token: guessing the token takes forever, not minutes.

Every wrong token (sign-in form or ``Authorization: Bearer``) counts
against the client's address in a moving one-minute window; past
``WRONG_TOKENS_PER_MINUTE`` the address gets ``429`` with ``Retry-After``
*before* its token is compared, so a right guess inside the lock-out is
worth nothing. A right token never counts. The window lives in this
process's memory (``limits``' moving-window strategy): a restart forgets
it, as it forgets every session.
"""

from __future__ import annotations

import math
import time
from typing import Final

from aiohttp import web
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from structlog import get_logger

__all__ = ["WRONG_TOKENS_PER_MINUTE", "Throttle"]

WRONG_TOKENS_PER_MINUTE: Final = 10

_log = get_logger()


class Throttle:
    """Counts wrong tokens per client address; refuses an address that had too many."""

    def __init__(self, per_minute: int = WRONG_TOKENS_PER_MINUTE) -> None:
        self._limit = RateLimitItemPerMinute(per_minute)
        self._window = MovingWindowRateLimiter(MemoryStorage())

    def check(self, request: web.Request) -> None:
        """429 for an address past its wrong tokens this minute; return otherwise."""
        address = _address(request)
        if self._window.test(self._limit, address):
            return
        reset_at, _remaining = self._window.get_window_stats(self._limit, address)
        retry_after = max(1, math.ceil(reset_at - time.time()))
        _log.warning("printery.dashboard_throttled", remote=address, retry_after_s=retry_after)
        raise web.HTTPTooManyRequests(
            reason="too many wrong tokens from this address; try again later",
            headers={"Retry-After": str(retry_after)},
        )

    def wrong(self, request: web.Request) -> None:
        """Count one wrong token against the request's address."""
        self._window.hit(self._limit, _address(request))


def _address(request: web.Request) -> str:
    return request.remote or "unknown"
