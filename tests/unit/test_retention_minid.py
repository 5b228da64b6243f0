"""Retention's cut, on fakeredis and on a real redis-server, unchanged.

Entries are added with explicit ids a known number of milliseconds before the
server's clock, so "older than the retention" needs no waiting.
"""

from __future__ import annotations

from typing import Any

import pytest

from printery.errors import RedisError
from printery.redis.adapter import StreamAdapter, Trim

pytestmark = pytest.mark.timeout(20)

HOUR_MS = 3_600_000


async def aged(adapter: StreamAdapter, stream: str, ages_ms: list[int]) -> list[str]:
    """One entry per age (oldest first), each with an id that many ms before Redis's clock."""
    now = await adapter.server_time_ms()
    ids = []
    for n, age in enumerate(ages_ms):
        entry_id = f"{now - age}-{n}"
        await adapter.client.xadd(stream, {"n": str(n)}, id=entry_id)
        ids.append(entry_id)
    return ids


async def read(adapter: StreamAdapter, stream: str, group: str, count: int) -> list[str]:
    found: Any = await adapter.client.xreadgroup(group, "c", {stream: ">"}, count=count)
    return [i.decode() for i, _ in found[0][1]] if found else []


async def kept(adapter: StreamAdapter, stream: str) -> list[str]:
    return [e.id for e in await adapter.entries(stream)]


async def test_a_stream_with_no_group_is_not_trimmed_by_acknowledgement(
    adapter: StreamAdapter, prefix: str
) -> None:
    """Old entries of a stream nobody reads yet stay: its readers may not have started."""
    stream = f"{prefix}:s"
    ids = await aged(adapter, stream, [5 * HOUR_MS, 4 * HOUR_MS])
    assert Trim(0, 2, None) == await adapter.trim_acknowledged(stream, HOUR_MS, needs_group=True)
    assert ids == await kept(adapter, stream)


async def test_by_age_alone_trims_what_is_older_than_the_retention(
    adapter: StreamAdapter, prefix: str
) -> None:
    """Without a group and by age, exactly the entries older than the retention go."""
    stream = f"{prefix}:audit"
    ids = await aged(adapter, stream, [3 * HOUR_MS, 2 * HOUR_MS, HOUR_MS // 2, 0])
    done = await adapter.trim_acknowledged(stream, HOUR_MS, needs_group=False)
    assert (2, 2) == (done.trimmed, done.length)
    assert ids[2:] == await kept(adapter, stream)


async def test_acknowledged_old_entries_go_and_young_ones_stay(
    adapter: StreamAdapter, prefix: str
) -> None:
    """Every entry acknowledged: the cut is the age cutoff, so the young ones are kept."""
    stream = f"{prefix}:s"
    ids = await aged(adapter, stream, [3 * HOUR_MS, 2 * HOUR_MS, 60_000, 0])
    await adapter.ensure_group(stream, "g")
    await adapter.client.xack(stream, "g", *await read(adapter, stream, "g", 10))
    done = await adapter.trim_acknowledged(stream, HOUR_MS, needs_group=True)
    assert 2 == done.trimmed
    assert ids[2:] == await kept(adapter, stream)


async def test_the_cut_stops_at_the_lowest_pending_and_the_first_unread_of_every_group(
    adapter: StreamAdapter, prefix: str
) -> None:
    """MINID = min(age cutoff, each group's lowest pending id, each group's first unread id)."""
    stream = f"{prefix}:s"
    ids = await aged(adapter, stream, [10 * HOUR_MS - n for n in range(8)])
    await adapter.ensure_group(stream, "fast")
    await adapter.ensure_group(stream, "slow")
    fast = await read(adapter, stream, "fast", 8)
    await adapter.client.xack(stream, "fast", *fast[:3], *fast[4:])  # ids[3] still pending
    slow = await read(adapter, stream, "slow", 6)  # ids[6:] unread by slow
    await adapter.client.xack(stream, "slow", *slow)
    done = await adapter.trim_acknowledged(stream, HOUR_MS, needs_group=True)
    assert Trim(3, 5, ids[3]) == done
    assert ids[3:] == await kept(adapter, stream)

    await adapter.client.xack(stream, "fast", ids[3])  # now only slow's unread bound the cut
    done = await adapter.trim_acknowledged(stream, HOUR_MS, needs_group=True)
    after_last_read = f"{ids[5].split('-')[0]}-{int(ids[5].split('-')[1]) + 1}"
    assert Trim(3, 2, after_last_read) == done
    assert ids[6:] == await kept(adapter, stream)


async def test_a_group_that_read_nothing_keeps_everything(
    adapter: StreamAdapter, prefix: str
) -> None:
    """A new group (last-delivered 0-0) holds the whole stream, however old, even by age."""
    stream = f"{prefix}:s"
    ids = await aged(adapter, stream, [5 * HOUR_MS, 4 * HOUR_MS])
    await adapter.ensure_group(stream, "new")
    for needs_group in (True, False):
        done = await adapter.trim_acknowledged(stream, HOUR_MS, needs_group=needs_group)
        assert (0, 2) == (done.trimmed, done.length)
    assert ids == await kept(adapter, stream)


async def test_a_last_delivered_id_at_the_largest_sequence_is_followed_by_the_next_millisecond(
    adapter: StreamAdapter, prefix: str
) -> None:
    """Ids compare as digit strings: a 64-bit sequence number is neither rounded nor wrapped."""
    stream = f"{prefix}:s"
    top = "5-18446744073709551615"
    for entry_id in ("5-9007199254740993", top, "6-0"):
        await adapter.client.xadd(stream, {"n": "x"}, id=entry_id)
    await adapter.client.xgroup_create(stream, "g", id="5-9007199254740993")
    done = await adapter.trim_acknowledged(stream, HOUR_MS, needs_group=True)
    assert Trim(1, 2, "5-9007199254740994") == done
    await adapter.client.xgroup_setid(stream, "g", id=top)
    done = await adapter.trim_acknowledged(stream, HOUR_MS, needs_group=True)
    assert Trim(1, 1, "6-0") == done
    assert ["6-0"] == await kept(adapter, stream)


async def test_a_missing_stream_is_nothing_to_trim_and_another_type_is_an_error(
    adapter: StreamAdapter, prefix: str
) -> None:
    """No key: nothing done. A key of another type: a named error, the key untouched."""
    assert Trim(0, 0, None) == await adapter.trim_acknowledged(
        f"{prefix}:none", HOUR_MS, needs_group=False
    )
    await adapter.client.set(f"{prefix}:str", "v")
    with pytest.raises(RedisError, match=r"WRONGTYPE .*:str holds a string"):
        await adapter.trim_acknowledged(f"{prefix}:str", HOUR_MS, needs_group=False)
    assert b"v" == await adapter.client.get(f"{prefix}:str")


async def test_the_lock_is_taken_once_and_released_only_by_its_token(
    adapter: StreamAdapter, prefix: str
) -> None:
    """SET NX PX: a second taker is refused; unlock with another token leaves the lock."""
    key = f"{prefix}:lock"
    assert (True, False) == (
        await adapter.try_lock(key, "a", 10_000),
        await adapter.try_lock(key, "b", 10_000),
    )
    await adapter.unlock(key, "b")
    assert b"a" == await adapter.client.get(key)
    await adapter.unlock(key, "a")
    assert await adapter.try_lock(key, "b", 10_000)
