"""A Redis Cluster's replies and the cluster client's own errors, translated at the boundary."""

from __future__ import annotations

import pytest
import redis.exceptions as rex
from redis._parsers import _RESP2Parser

from printery.errors import RedisError, RedisPermanent, RedisUnavailable
from printery.redis.adapter import translated

pytestmark = pytest.mark.timeout(10)

REPLIES = [
    ("CLUSTERDOWN The cluster is down", RedisUnavailable, "CLUSTERDOWN "),
    ("MOVED 3999 127.0.0.1:6381", RedisUnavailable, "MOVED 3999"),
    ("ASK 3999 127.0.0.1:6381", RedisUnavailable, "ASK 3999"),
    ("TRYAGAIN Multiple keys request during rehashing of slot", RedisUnavailable, "TRYAGAIN "),
    ("CROSSSLOT Keys in request don't hash to the same slot", RedisPermanent, "CROSSSLOT "),
]


@pytest.mark.parametrize(
    ("reply", "kind", "starts"), REPLIES, ids=[r[0].split()[0] for r in REPLIES]
)
def test_each_cluster_reply_is_translated_by_what_it_means(
    reply: str, kind: type[RedisError], starts: str
) -> None:
    """A failover or resharding is RedisUnavailable (degraded); CROSSSLOT is permanent."""
    error = _RESP2Parser(socket_read_size=65536).parse_error(reply)
    with pytest.raises(RedisError) as raised, translated():
        raise error
    assert kind is type(raised.value)
    assert str(raised.value).startswith(starts)


CLIENT_ERRORS = [
    (rex.ClusterError("TTL exhausted."), RedisUnavailable),
    (rex.SlotNotCoveredError('Slot "7" is not covered by the cluster.'), RedisUnavailable),
    (
        rex.RedisClusterException("Redis Cluster cannot be connected. Please provide ..."),
        RedisUnavailable,
    ),
    (rex.RedisClusterException("All slots are not covered after query ..."), RedisUnavailable),
    (rex.RedisClusterException("Cluster mode is not enabled on this node"), RedisPermanent),
    (rex.RedisClusterException("MGET - all keys must map to the same key slot"), RedisError),
]


@pytest.mark.parametrize(
    ("error", "kind"), CLIENT_ERRORS, ids=[str(e).split(".")[0][:30] for e, _ in CLIENT_ERRORS]
)
def test_cluster_client_errors_are_translated(error: Exception, kind: type[RedisError]) -> None:
    """Not reaching the cluster is RedisUnavailable; a wrong server permanent; a misuse a crash."""
    with pytest.raises(RedisError) as raised, translated():
        raise error
    assert kind is type(raised.value)


async def test_a_connection_closed_under_redis_py_is_unavailable() -> None:
    """A write on a connection whose writer a reconnect closed is an outage, not a bug.

    redis-py before 8.2 raised AttributeError there (translated by us); 8.2 and
    later raise ConnectionError themselves: either way printery sees unavailable.
    """
    from redis.asyncio.connection import Connection

    conn = Connection()  # never connected: its writer is None, as after a cluster re-read
    with (
        pytest.raises(RedisUnavailable, match=r"(?i)connection closed"),
        translated(),
    ):
        await conn._send_packed_command([b"PING"])


def test_an_attribute_error_of_ours_stays_a_bug() -> None:
    """An AttributeError raised outside redis-py is not mistaken for an outage."""
    with pytest.raises(AttributeError), translated():
        None.missing  # type: ignore[attr-defined]  # noqa: B018 - the very failure
