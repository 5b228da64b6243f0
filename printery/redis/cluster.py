"""Redis Cluster mode (README "Redis Cluster"): the client, the server's mode, the partition count.

``REDIS_MODE`` must say what the server is. A standalone client pointed at a
cluster node works until the first key on another node (a MOVED reply, a
crash); a cluster client pointed at a standalone server cannot start. So at
start the server is asked (``INFO cluster``: ``cluster_enabled``), and a
disagreement is a configuration error naming REDIS_MODE, exit 2.

The cluster client is redis-py's asyncio ``RedisCluster``, initialised (the
slot map read) before any script runs. Scripts need nothing more:
``register_script`` sends EVALSHA to the node of the script's first key,
and a node that lacks the script (a replica just promoted, a node restarted)
answers NOSCRIPT, on which redis-py loads it on every primary and sends the
EVALSHA again. NOSCRIPT means nothing ran, so the second send is safe even
for the commit. MOVED and ASK are followed inside redis-py; what still
surfaces (CLUSTERDOWN during a failover, a node gone) is translated by
:func:`printery.redis.adapter.translated` into RedisUnavailable: degraded,
not a crash.

redis-py finds the keys of a command whose keys move (XREADGROUP, XREAD:
after ``STREAMS``) by asking the seed node (``COMMAND GETKEYS``) before every
call: a second round trip per read, and a connection to the seed node per
read in flight. :class:`StreamKeys` reads those keys from the arguments
instead, and leaves every other command to redis-py.

An installation's partition count is part of its key names: two daemons
that disagree would read and write different streams. The first process to
start records it (``SET NX`` on ``<prefix>:{meta}:partitions``); any later
one whose ``PARTITIONS`` differs refuses to start (exit 2).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis._parsers.commands import AsyncCommandsParser
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from printery.errors import ConfigError, RedisPermanent, RedisUnavailable
from printery.redis.adapter import StreamAdapter, connect, translated
from printery.redis.keys import Keys, Partitions
from printery.settings import Settings

__all__ = [
    "StreamKeys",
    "check_partitions",
    "check_server_mode",
    "connect_cluster",
    "open_adapter",
    "partitions_of",
    "start_adapter",
    "stream_read_keys",
]


# The options of XREADGROUP (after GROUP <group> <consumer>) and of XREAD before
# STREAMS, with how many values each takes. Another option: redis-py asks the server.
_READ_OPTIONS = {
    b"COUNT": 1,
    b"BLOCK": 1,
    b"NOACK": 0,
    b"MAXCOUNT": 1,
    b"MAXSIZE": 1,
    b"CLAIM": 1,
}
_READS = {b"XREADGROUP": 3, b"XREAD": 0}  # arguments before the options


def _word(arg: Any) -> bytes | None:
    if isinstance(arg, bytes):
        return arg.upper()
    if isinstance(arg, str):
        return arg.encode().upper()
    return None


def stream_read_keys(command: Any, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The stream keys of an XREADGROUP or XREAD, or None when it is neither (or unusual)."""
    skip = _READS.get(_word(command) or b"")
    if skip is None:
        return None
    at = skip
    while at < len(args):
        word = _word(args[at])
        if word == b"STREAMS":
            rest = args[at + 1 :]
            if not rest or len(rest) % 2:
                return None
            return tuple(rest[: len(rest) // 2])
        if word not in _READ_OPTIONS:
            return None
        at += 1 + _READ_OPTIONS[word]
    return None


class StreamKeys(AsyncCommandsParser):
    """redis-py's command parser, but the keys of a stream read are read from its arguments."""

    async def get_keys(self, *args: Any) -> Any:
        if args:
            keys = stream_read_keys(args[0], args[1:])
            if keys is not None:
                return keys
        return await super().get_keys(*args)


def connect_cluster(
    url: str, *, socket_timeout: float, connect_timeout: float, client_name: str | None = None
) -> aioredis.RedisCluster:
    """A cluster client that fails fast like :func:`connect`: one retry, no backoff.

    The retry (after a connection error, a timeout, CLUSTERDOWN) re-reads the
    slot map first, which is how a failover is followed; the commit script is
    safe to send twice. The seed URL's node is only where discovery starts.
    """
    client = aioredis.RedisCluster.from_url(
        url,
        decode_responses=False,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=0,
        client_name=client_name,
        # Blocking reads hold a connection each: one per partition stream of a
        # worker on that node; far below this, but a cap names the failure.
        max_connections=1000,
    )
    client.commands_parser = StreamKeys()  # initialised with the slot map
    return client


def open_adapter(settings: Settings, *, client_name: str) -> StreamAdapter:
    """The adapter for ``REDIS_MODE``: a plain client, or a cluster client (not yet started)."""
    opener = connect_cluster if settings.cluster else connect
    client: Any = opener(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout,
        connect_timeout=settings.redis_connect_timeout,
        client_name=client_name,
    )
    return StreamAdapter(client, cluster=settings.cluster)


async def check_server_mode(settings: Settings) -> None:
    """Raise ConfigError naming REDIS_MODE when the server at REDIS_URL is of the other kind.

    Asked on a connection of its own (a plain client works against both
    kinds), before the cluster client reads a slot map it could not have.
    RedisUnavailable when the server does not answer.
    """
    probe = StreamAdapter(
        connect(
            settings.redis_url,
            socket_timeout=settings.redis_socket_timeout,
            connect_timeout=settings.redis_connect_timeout,
        )
    )
    try:
        # PING first: a mistake in the URL (TLS at a plain port, a database past
        # the server's) is told as such (printery.redis.diagnose), as without a mode check.
        await probe.ping()
        try:
            with translated():
                info: dict[str, Any] = await probe.client.info("cluster")
        except RedisPermanent:
            return  # INFO refused by an ACL: the cluster client's start tells the kinds apart
    finally:
        await probe.close()
    enabled = int(info.get("cluster_enabled", 0)) == 1
    if enabled and not settings.cluster:
        raise ConfigError(
            "REDIS_MODE",
            f"is standalone, but the server at REDIS_URL ({settings.redis_url_redacted}) "
            "is a Redis Cluster node: set REDIS_MODE=cluster",
        )
    if settings.cluster and not enabled:
        raise ConfigError(
            "REDIS_MODE",
            f"is cluster, but the server at REDIS_URL ({settings.redis_url_redacted}) "
            "is not a Redis Cluster node (cluster_enabled:0): set REDIS_MODE=standalone",
        )


def partitions_of(settings: Settings) -> Partitions:
    """The installation's partitions: one, untagged, in standalone mode."""
    base = Keys(settings.stream_prefix)
    return Partitions(base, settings.partitions if settings.cluster else None)


async def check_partitions(adapter: StreamAdapter, settings: Settings) -> None:
    """Record PARTITIONS on first start; raise ConfigError naming it when it disagrees."""
    if not settings.cluster:
        return
    key = Keys(settings.stream_prefix).partitions_record
    wanted = str(settings.partitions)
    # No TTL: the count lives as long as the installation's streams do.
    await adapter.set_once(key, wanted, ttl_s=None)
    recorded = await adapter.get(key)
    if recorded is not None and recorded != wanted:
        raise ConfigError(
            "PARTITIONS",
            f"is {wanted}, but this installation's streams were created with "
            f"PARTITIONS={recorded} (recorded at {key}): every daemon and CLI must agree",
        )


async def start_adapter(adapter: StreamAdapter, settings: Settings) -> None:
    """Check the server's mode, read the slot map, check the partition count; in that order.

    ConfigError on a disagreement; RedisUnavailable when Redis does not
    answer (the daemon starts degraded and the cluster client reads its slot
    map on its first command; the checks are repeated by the next start).
    """
    await check_server_mode(settings)
    if settings.cluster:
        client: Any = adapter.client
        with translated():
            try:
                await client.initialize()
            except rex.RedisClusterException as exc:
                raise RedisUnavailable(str(exc)) from exc
    await check_partitions(adapter, settings)
