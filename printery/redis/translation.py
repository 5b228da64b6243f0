"""The translation boundary: redis-py's exceptions become printery's, here and only here.

The rest of printery sees two conditions: :class:`RedisUnavailable` (degraded,
reconnect) and :class:`RedisPermanent` (credentials, ACL: stop, don't loop).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Final

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from printery.errors import (
    GroupMissing,
    RedisError,
    RedisOutOfMemory,
    RedisPermanent,
    RedisUnavailable,
)

__all__ = ["DatabaseOutOfRange", "connect", "ident", "text", "translated"]


# redis-py strips the error code from the replies it has a class for ("OOM
# command not allowed…" arrives as OutOfMemoryError("command not allowed…")):
# those are classified by class, and the code is put back for the logs.
_STRIPPED_CODES: Final[dict[type[Exception], str]] = {
    rex.OutOfMemoryError: "OOM",
    rex.ReadOnlyError: "READONLY",
    rex.TryAgainError: "TRYAGAIN",
    rex.MasterDownError: "MASTERDOWN",
    rex.NoPermissionError: "NOPERM",
}
_STRIPPED_UNAVAILABLE: Final = (
    rex.OutOfMemoryError,
    rex.ReadOnlyError,
    rex.TryAgainError,
    rex.MasterDownError,
)


class DatabaseOutOfRange(RedisPermanent):
    """The URL's database index is past the server's ``databases``: ``ping`` names the count."""


def _refused(message: str) -> str:
    """A refusal of the credentials, said as one: never "cannot reach"."""
    if message.startswith("HELLO must be called with the client already authenticated"):
        return "refused: the server wants a password, and the URL gives none"
    if message.startswith("NOAUTH"):
        return f"refused: the server wants a password, and the URL gives none ({message})"
    if message.startswith("NOPERM"):
        return f"refused by the ACL: {message}"
    return f"refused the user or password: {message}"


def _with_code(exc: Exception) -> str:
    code = next((c for kind, c in _STRIPPED_CODES.items() if isinstance(exc, kind)), "")
    message = str(exc)
    return message if not code or message.startswith(code) else f"{code} {message}"


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Translate redis-py's exceptions into printery's; the one boundary that does it."""
    try:
        yield
    except rex.OutOfMemoryError as exc:
        raise RedisOutOfMemory(_with_code(exc)) from exc
    except _STRIPPED_UNAVAILABLE as exc:
        raise RedisUnavailable(_with_code(exc)) from exc
    except rex.NoPermissionError as exc:
        raise RedisPermanent(_with_code(exc)) from exc
    except rex.ResponseError as exc:
        message = str(exc)
        # NOGROUP: the group is gone. UNBLOCKED: the stream was deleted under a
        # blocked XREADGROUP (Redis 7). Either way: recreate the group.
        if message.startswith(("NOGROUP", "UNBLOCKED")) or "no such key" in message:
            raise GroupMissing(message) from exc
        if message.startswith("OOM"):
            raise RedisOutOfMemory(message) from exc
        if message.startswith(("LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN")):
            raise RedisUnavailable(message) from exc
        if message.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            raise RedisPermanent(_refused(message)) from exc
        if "DB index is out of range" in message:
            raise DatabaseOutOfRange(message) from exc
        raise RedisError(message) from exc  # unexpected: the supervisor counts a crash
    except (rex.AuthenticationError, rex.AuthorizationError) as exc:
        raise RedisPermanent(_refused(str(exc) or type(exc).__name__)) from exc
    except (rex.ConnectionError, rex.TimeoutError, OSError, TimeoutError) as exc:
        raise RedisUnavailable(str(exc) or type(exc).__name__) from exc


def connect(
    url: str, *, socket_timeout: float, connect_timeout: float, client_name: str | None = None
) -> aioredis.Redis:
    """A client that fails fast: one socket timeout, raw bytes.

    The only retry is one immediate reconnect on a closed connection (a pooled
    socket the server dropped, say after a restart). Timeouts are never retried
    here, so a stalled Redis is noticed within one socket timeout; the runtime
    reconnects with backoff, and its commit script is safe to send twice.
    """
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(rex.ConnectionError,)),
        retry_on_timeout=False,
        health_check_interval=0,
        client_name=client_name,
    )


def text(value: bytes | str) -> str:
    """Values written by others may hold any bytes: never fail a read on decoding."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def ident(value: bytes | str) -> str:
    """An id or name Redis made (entry ids, group names): always ASCII, decoded strictly."""
    return value.decode() if isinstance(value, bytes) else value
