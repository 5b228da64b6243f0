"""CoalescedGets: the GETs of handlers running at once in one read, each asker its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from printery.errors import RedisUnavailable
from printery.redis.coalesced import CoalescedGets

pytestmark = pytest.mark.timeout(10)


class Store:
    """get and get_many over a dict, recording each read's keys."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.calls: list[list[str]] = []
        self.failure: Exception | None = None

    async def get(self, key: str) -> str | None:
        return (await self.get_many([key]))[0]

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        self.calls.append(list(keys))
        found = [self.values.get(k) for k in keys]  # what the server had when asked
        await asyncio.sleep(0)  # a round trip: later askers must not join this one
        if self.failure is not None:
            raise self.failure
        return found


async def test_gets_of_handlers_running_at_once_share_one_read() -> None:
    """Five handlers asking at once: one read of the distinct keys, each gets its own value."""
    store = Store({"a": "1", "b": "2"})
    gets = CoalescedGets(store, lambda: 5)
    found = await asyncio.gather(*(gets.get(k) for k in ["a", "b", "a", "missing", "b"]))
    assert ["1", "2", "1", None, "2"] == found
    assert [["a", "b", "missing"]] == store.calls


async def test_a_handler_running_alone_reads_at_once() -> None:
    """One handler running: its read goes out in the turn it asks, with no wait for company."""
    store = Store({"a": "1"})
    gets = CoalescedGets(store, lambda: 1)
    asking = asyncio.ensure_future(gets.get("a"))
    await asyncio.sleep(0)  # the asker's first step
    assert [["a"]] == store.calls
    assert "1" == await asking


async def test_the_read_waits_no_longer_than_two_turns_for_handlers_that_never_ask() -> None:
    """Three running, only two asking (the third is past its marker): both answered, one read."""
    store = Store({"a": "1", "b": "2"})
    gets = CoalescedGets(store, lambda: 3)
    assert ["1", "2"] == await asyncio.gather(gets.get("a"), gets.get("b"))
    assert [["a", "b"]] == store.calls


async def test_a_get_asked_during_a_read_goes_in_the_next_one() -> None:
    """Nothing is cached: a key asked once the read is under way is read again."""
    store = Store({"a": "1"})
    gets = CoalescedGets(store, lambda: 2)
    first = asyncio.ensure_future(gets.get("a"))
    while not store.calls:
        await asyncio.sleep(0)
    store.values["a"] = "2"
    assert ["1", "2"] == await asyncio.gather(first, gets.get("a"))
    assert [["a"], ["a"]] == store.calls


async def test_a_failed_read_raises_in_every_asker() -> None:
    """Redis away: each asker raises what its own GET would have, and the next read tries again."""
    store = Store({"a": "1"})
    store.failure = RedisUnavailable("Connection refused")
    gets = CoalescedGets(store, lambda: 2)
    found = await asyncio.gather(gets.get("a"), gets.get("b"), return_exceptions=True)
    assert all(isinstance(f, RedisUnavailable) for f in found)
    store.failure = None
    assert "1" == await gets.get("a")


async def test_a_cancelled_follower_leaves_the_others_their_answers() -> None:
    """A handler cancelled while the read is out: the others still get their values."""
    store = Store({"a": "1", "b": "2"})
    gets = CoalescedGets(store, lambda: 2)
    kept = asyncio.ensure_future(gets.get("a"))
    doomed = asyncio.ensure_future(gets.get("b"))
    while not store.calls:
        await asyncio.sleep(0)
    doomed.cancel()
    assert "1" == await kept
    with pytest.raises(asyncio.CancelledError):
        await doomed


@pytest.mark.parametrize("reading", [False, True], ids=["while-gathering", "while-reading"])
async def test_a_cancelled_first_asker_leaves_the_others_to_read_for_themselves(
    reading: bool,
) -> None:
    """The asker reading for the others cancelled, gathering or reading: they ask again."""
    store = Store({"a": "1", "b": "2"})
    gets = CoalescedGets(store, lambda: 3)
    leader = asyncio.ensure_future(gets.get("a"))
    await asyncio.sleep(0)  # the leader is gathering
    follower = asyncio.ensure_future(gets.get("b"))
    await asyncio.sleep(0)  # the follower has asked
    while reading and not store.calls:
        await asyncio.sleep(0)
    assert bool(store.calls) is reading
    leader.cancel()
    assert "2" == await follower
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert ["b"] == store.calls[-1]
