"""Redis's error replies, as redis-py parses them, translated into printery's errors."""

from __future__ import annotations

import pytest
from redis._parsers import _RESP2Parser

from printery.errors import (
    GroupMissing,
    RedisError,
    RedisOutOfMemory,
    RedisPermanent,
    RedisUnavailable,
)
from printery.redis.adapter import translated

pytestmark = pytest.mark.timeout(10)

REPLIES = [
    ("OOM command not allowed when used memory > 'maxmemory'.", RedisOutOfMemory, "OOM "),
    ("READONLY You can't write against a read only replica.", RedisUnavailable, "READONLY "),
    ("TRYAGAIN Multiple keys request during rehashing of slot", RedisUnavailable, "TRYAGAIN "),
    ("MASTERDOWN Link with MASTER is down", RedisUnavailable, "MASTERDOWN "),
    ("LOADING Redis is loading the dataset in memory", RedisUnavailable, ""),
    ("BUSY Redis is busy running a script.", RedisUnavailable, "BUSY "),
    ("NOPERM User app has no permissions to run the 'xadd' command", RedisPermanent, "NOPERM "),
    ("WRONGPASS invalid username-password pair or user is disabled.", RedisPermanent, ""),
    ("NOAUTH Authentication required.", RedisPermanent, ""),
    ("NOGROUP No such key 'in' or consumer group 'echo'", GroupMissing, "NOGROUP "),
    ("UNBLOCKED the stream key no longer exists", GroupMissing, "UNBLOCKED "),
    ("ERR something printery never expected", RedisError, ""),
]


@pytest.mark.parametrize(
    ("reply", "kind", "starts"), REPLIES, ids=[r[0].split()[0] for r in REPLIES]
)
def test_each_reply_is_translated_by_what_it_means(
    reply: str, kind: type[RedisError], starts: str
) -> None:
    """Classified by redis-py's class where it has one (it strips the code), else by the code."""
    error = _RESP2Parser(socket_read_size=65536).parse_error(reply)
    with pytest.raises(RedisError) as raised, translated():
        raise error
    assert kind is type(raised.value)
    assert str(raised.value).startswith(starts)
