"""Why a first connection failed, told as the fix: for mistakes in ``REDIS_URL``.

The adapter's :func:`~printery.redis.adapter.translated` classifies an error by
what redis-py raised; some mistakes look like something else from there:

- ``rediss://`` at a plain-TCP Redis: the TLS handshake waits for an answer
  that never comes (a timeout, "unreachable"), or fails on a plain-text reply.
  A plain ``PING`` on a new TCP connection to the same address tells: if it
  is answered, the server speaks plain RESP and the URL should be ``redis://``.
  That is a configuration error (exit 2), not an outage to wait out.
- ``redis://`` at a TLS port: the server closes the connection; a hint, since
  a closed connection has other causes too.
- a database index (``/N`` in the URL) past the server's ``databases``: the
  line names how many the server has, when ``CONFIG GET`` is allowed.

Only the daemon's and the CLI's first ``ping`` run these probes, after it failed.
"""

from __future__ import annotations

import anyio
import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

__all__ = ["databases_hint", "tls_hint"]

_PROBE_S = 2.0


def _address(client: aioredis.Redis) -> tuple[str, int] | None:
    kwargs = client.connection_pool.connection_kwargs
    host, port = kwargs.get("host"), kwargs.get("port")
    return (host, int(port)) if isinstance(host, str) and port is not None else None


async def _answers_plain_resp(host: str, port: int) -> bool:
    """True when ``host:port`` answers a plain-text ``PING`` as Redis does."""
    try:
        with anyio.fail_after(_PROBE_S):
            async with await anyio.connect_tcp(host, port) as stream:
                await stream.send(b"PING\r\n")
                reply = await stream.receive(64)
    except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError):
        return False
    # +PONG, or -NOAUTH / -ERR from a server that wants a password first.
    return reply.startswith((b"+PONG", b"-NOAUTH", b"-ERR", b"-WRONGPASS"))


async def tls_hint(client: aioredis.Redis, error: str) -> tuple[bool, str] | None:
    """(permanent, message) when a TLS mismatch explains ``error``; None otherwise."""
    pool = client.connection_pool
    if issubclass(pool.connection_class, UnixDomainSocketConnection):
        return None
    address = _address(client)
    if address is None:
        return None
    host, port = address
    if issubclass(pool.connection_class, SSLConnection):
        if await _answers_plain_resp(host, port):
            return True, (
                f"the URL is rediss:// (TLS), but the server at {host}:{port} speaks plain TCP: "
                "use redis://, or give the URL the server's TLS port"
            )
        return None
    if "closed" in error.lower() or "reset" in error.lower():
        return False, f"{error} (if {host}:{port} is a TLS port, the URL should be rediss://)"
    return None


async def databases_hint(client: aioredis.Redis) -> str:
    """The line for a database index out of range, with the server's count when it tells."""
    kwargs = client.connection_pool.connection_kwargs
    db = kwargs.get("db", 0)
    count: int | None = None
    try:
        connection = client.connection_pool.connection_class(**{**kwargs, "db": 0})
        try:
            with anyio.fail_after(_PROBE_S):
                await connection.connect()  # type: ignore[no-untyped-call]  # redis-py leaves it bare
                await connection.send_command("CONFIG", "GET", "databases")
                reply = await connection.read_response()
        finally:
            await connection.disconnect()
        # RESP2 answers a flat list, RESP3 a map.
        if isinstance(reply, list):
            reply = dict(zip(reply[::2], reply[1::2], strict=True))
        count = int(reply[b"databases"])
    except (rex.RedisError, OSError, TimeoutError, TypeError, ValueError, KeyError):
        count = None  # CONFIG refused (ACL, managed Redis) or renamed: say what is known
    if count is None:
        return (
            f"database {db} is out of range: the URL's /{db} must be below the server's "
            "`databases` setting (16 by default)"
        )
    return (
        f"database {db} is out of range: the server has {count} databases "
        f"(0 to {count - 1}, its `databases` setting)"
    )
