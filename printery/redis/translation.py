"""The translation boundary: redis-py's exceptions become printery's, here and only here.

The rest of printery sees two conditions: :class:`RedisUnavailable` (degraded,
reconnect) and :class:`RedisPermanent` (credentials, ACL: stop, don't loop).
"""

from __future__ import annotations

import contextlib
import os
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
    rex.MasterDownError: "MASTERDOWN",  # before its base class, ClusterDownError
    rex.ClusterDownError: "CLUSTERDOWN",
    rex.MovedError: "MOVED",  # before its base class, AskError
    rex.AskError: "ASK",
    rex.ClusterCrossSlotError: "CROSSSLOT",
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
    # A Redis Cluster in a failover or a resharding: redis-py follows MOVED and
    # ASK itself and re-reads the slot map; what still reaches us passes.
    rex.ClusterDownError,  # and MasterDownError
    rex.AskError,  # and MovedError
    rex.ClusterError,  # "TTL exhausted": redirected too often in one call
)
# The cluster client's own errors about reaching the cluster (not Redis replies).
_CLUSTER_UNREACHABLE: Final = (
    "Redis Cluster cannot be connected",
    "All slots are not covered",
    "startup_nodes could not agree",
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
    except (rex.NoPermissionError, rex.ClusterCrossSlotError) as exc:
        raise RedisPermanent(_with_code(exc)) from exc
    except rex.SlotNotCoveredError as exc:
        raise RedisUnavailable(str(exc)) from exc
    except rex.RedisClusterException as exc:
        message = str(exc)
        if message.startswith(_CLUSTER_UNREACHABLE):
            raise RedisUnavailable(message) from exc
        if "Cluster mode is not enabled" in message:
            raise RedisPermanent(f"{message} (REDIS_MODE=cluster)") from exc
        raise RedisError(message) from exc
    except rex.ResponseError as exc:
        message = str(exc)
        # NOGROUP: the group is gone. UNBLOCKED: the stream was deleted under a
        # blocked XREADGROUP (Redis 7). Either way: recreate the group.
        if message.startswith(("NOGROUP", "UNBLOCKED")) or "no such key" in message:
            raise GroupMissing(message) from exc
        if message.startswith("OOM"):
            raise RedisOutOfMemory(message) from exc
        if message.startswith(
            ("LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "MOVED", "ASK ")
        ):
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
    except AttributeError as exc:
        # redis-py's cluster client closes every node's connections when it
        # re-reads the slot map (a failover); a task of ours half-way through
        # connecting on one of them then finds its writer gone (None). That is
        # a connection lost, not a bug of ours: only when raised inside redis-py.
        if not _raised_in_redis_connection(exc):
            raise
        raise RedisUnavailable(f"connection closed during a reconnect: {exc}") from exc


def _raised_in_redis_connection(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(_REDIS_CONNECTION_FILES)


_REDIS_CONNECTION_FILES: Final = (
    os.path.join("redis", "asyncio", "connection.py"),
    os.path.join("redis", "connection.py"),
)


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
