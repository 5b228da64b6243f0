"""The keys of a stream read, found in its arguments (no COMMAND GETKEYS to the seed node)."""

from __future__ import annotations

from typing import Any

import pytest

from printery.redis.cluster import stream_read_keys

pytestmark = pytest.mark.timeout(10)

READS: list[tuple[str, tuple[Any, ...], tuple[Any, ...] | None]] = [
    (
        "XREADGROUP",
        (b"GROUP", "g", "c", b"COUNT", "100", b"BLOCK", "2000", b"STREAMS", "a:{p1}:in", ">"),
        ("a:{p1}:in",),
    ),
    # A group or consumer called STREAMS is a name, not the keyword.
    ("XREADGROUP", (b"GROUP", "STREAMS", "streams", b"STREAMS", "s", "0"), ("s",)),
    ("xreadgroup", (b"GROUP", "g", "c", b"NOACK", b"STREAMS", "s", "t", ">", ">"), ("s", "t")),
    ("XREAD", (b"COUNT", "1", b"STREAMS", b"k", b"0-0"), (b"k",)),
    ("XREAD", (b"STREAMS", "STREAMS", "0-0"), ("STREAMS",)),  # a stream called STREAMS
    # Unusual: redis-py asks the server, as it did.
    ("XREADGROUP", (b"GROUP", "g", "c", b"LATER", "1", b"STREAMS", "s", ">"), None),
    ("XREAD", (b"STREAMS", "s"), None),
    ("XREAD", (b"COUNT", "1"), None),
    ("XADD", ("s", "*", "f", "v"), None),
]


@pytest.mark.parametrize(("command", "args", "keys"), READS)
def test_stream_read_keys_are_the_first_half_after_streams(
    command: str, args: tuple[Any, ...], keys: tuple[Any, ...] | None
) -> None:
    """The options are skipped by their arity; anything else is left to redis-py (None)."""
    assert keys == stream_read_keys(command, args)
