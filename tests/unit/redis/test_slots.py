"""Cluster hash slots and the one-slot check a cluster commit must pass before it is sent."""

from __future__ import annotations

import pytest

from printery.errors import CrossSlot, RedisPermanent
from printery.redis.adapter import StreamAdapter
from printery.redis.slots import SLOTS, one_slot_problem, slot_of
from printery.redis.writes import Write

pytestmark = pytest.mark.timeout(10)

# CLUSTER KEYSLOT answers, from the Redis Cluster specification and a redis-server 7.0.
KNOWN = [
    ("foo", 12182),
    ("bar", 5061),
    ("hello", 866),
    ("somekey", 11058),
    ("foo{hash_tag}", 2515),
    ("123456789", 12739),  # CRC16/XMODEM's check value 0x31C3, modulo 16384
    ("", 0),
]


@pytest.mark.parametrize(("key", "slot"), KNOWN)
def test_slot_of_a_key_is_the_one_redis_cluster_gives(key: str, slot: int) -> None:
    """slot_of agrees with CLUSTER KEYSLOT on keys whose slots are published."""
    assert slot == slot_of(key)


@pytest.mark.parametrize(
    ("key", "hashed"),
    [
        ("{user1000}.following", "user1000"),  # the hash tag alone is hashed
        ("foo{bar}{zap}", "bar"),  # only the first tag
        ("foo{{bar}}zap", "{bar"),  # the first { to the first } after it
        ("foo{}{bar}", "foo{}{bar}"),  # an empty tag: the whole key
        ("foo{bar", "foo{bar"),  # no closing brace: the whole key
    ],
)
def test_slot_of_follows_the_hash_tag_rules(key: str, hashed: str) -> None:
    """A key with a hash tag has the slot of its tag; an empty or open tag hashes the whole key."""
    assert slot_of(hashed) == slot_of(key)


def test_slot_of_takes_bytes_and_text_alike() -> None:
    """A key as bytes has the slot of the same key as text; every slot is in range."""
    assert slot_of("déploiement") == slot_of("déploiement".encode())
    assert all(0 <= slot_of(f"k{i}") < SLOTS for i in range(2000))


def test_one_slot_problem_accepts_keys_sharing_a_hash_tag() -> None:
    """Keys that share a hash tag (and an empty list, and one key) can live in one slot."""
    assert one_slot_problem(["{orders}:in", "{orders}:out", "{orders}:in:dead"]) is None
    assert one_slot_problem([]) is None
    assert one_slot_problem(["alone"]) is None


def test_one_slot_problem_names_the_first_key_in_another_slot() -> None:
    """The problem names the first key whose slot is not the first key's, and both slots."""
    problem = one_slot_problem(["{orders}:in", "{orders}:out", "audit", b"other"])
    expected = (
        f"'audit' hashes to slot {slot_of('audit')}, not to slot {slot_of('orders')} of "
        "'{orders}:in': on a Redis Cluster the keys of one commit must share a hash tag"
    )
    assert expected == problem


async def test_a_cluster_adapter_refuses_a_cross_slot_commit_before_sending() -> None:
    """With cluster=True a cross-slot commit raises CrossSlot naming the key, sending nothing."""
    sent: list[object] = []

    class Refusing:
        def register_script(self, source: str) -> object:
            return lambda **kw: sent.append(kw)

    adapter = StreamAdapter(Refusing(), cluster=True)  # type: ignore[arg-type]
    with pytest.raises(CrossSlot, match="'orders:out' hashes to slot") as raised:
        await adapter.commit("orders:in", "g", [("1-0", [Write.xadd("orders:out", {"a": "b"})])])
    assert isinstance(raised.value, RedisPermanent)
    assert [] == sent
