"""Key names: standalone unchanged, cluster partitions tagged and spread evenly over slots."""

from __future__ import annotations

from collections import Counter

import pytest

from printery.redis.keys import (
    Keys,
    Partitions,
    naive_tags,
    partition_of,
    partition_tags,
    slot_of_tag,
)

THREE_PRIMARIES = ((0, 5460), (5461, 10921), (10922, 16383))


def per_primary(tags: tuple[str, ...], ranges: tuple[tuple[int, int], ...]) -> list[int]:
    return [sum(1 for t in tags if low <= slot_of_tag(t) <= high) for low, high in ranges]


def test_standalone_names_are_unchanged() -> None:
    """Without a tag every key is the one the README names."""
    keys = Keys("printery")
    assert [
        "printery:deployment:started",
        "printery:deployment:validated",
        "printery:deployment:dependencies-satisfied",
        "printery:notifications",
        "printery:notifications:delivered",
        "printery:deployment:started:dead",
        "printery:deployment:dep-1",
        "printery:deployment:dep-1:log",
        "printery:notified:e1:abc",
        "printery:registry:production",
        "printery:heartbeat:c1",
    ] == [
        keys.started,
        keys.validated,
        keys.dependencies_satisfied,
        keys.notifications,
        keys.delivered,
        keys.dead(keys.started),
        keys.deployment("dep-1"),
        keys.deployment_log("dep-1"),
        keys.delivery_marker("e1", "abc"),
        keys.registry("production"),
        keys.heartbeat("c1"),
    ]


def test_a_partition_tags_everything_one_deployment_touches() -> None:
    """Streams, dead letters, timeline and markers carry the tag; the registry has its own."""
    keys = Keys("printery").partition("p3.23")
    tagged = [
        keys.started,
        keys.validated,
        keys.dependencies_satisfied,
        keys.notifications,
        keys.delivered,
        keys.dead(keys.validated),
        keys.deployment("dep-1"),
        keys.deployment_log("dep-1"),
        keys.delivery_marker("e1", "abc"),
    ]
    assert "printery:{p3.23}:deployment:started" == keys.started
    assert {slot_of_tag("p3.23")} == {
        slot_of_tag(k[k.index("{") + 1 : k.index("}")]) for k in tagged
    }
    assert "printery:registry:{production}" == keys.registry("production")
    assert "printery:registry:{production}:requested_at" == keys.registry_requested("production")
    assert "printery:heartbeat:c1" == keys.heartbeat("c1")


def test_chosen_tags_spread_twelve_partitions_four_per_primary() -> None:
    """PARTITIONS=12 over three equal primaries: chosen tags give 4/4/4, naive ones 3/3/6."""
    assert [4, 4, 4] == per_primary(partition_tags(12), THREE_PRIMARIES)
    assert [3, 3, 6] == per_primary(naive_tags(12), THREE_PRIMARIES)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 6, 12, 24, 64])
def test_partition_p_falls_in_the_pth_slice(count: int) -> None:
    """Each chosen tag's slot lies in its own equal slice of 0..16383, so the tags are distinct."""
    tags = partition_tags(count)
    slices = [slot_of_tag(t) * count // 16384 for t in tags]
    assert list(range(count)) == slices
    assert count == len(set(tags))


def test_tags_are_stable() -> None:
    """The tags are a pure function of the count: a deployment's keys are found again by them."""
    assert ("p0",) == partition_tags(1)
    assert ("p0.1", "p1.4", "p2.4") == partition_tags(3)


def test_partition_of_is_stable_and_spreads_ids() -> None:
    """A deployment's partition follows from its id alone, and ids spread over every partition."""
    assert partition_of("dep-42", 12) == partition_of("dep-42", 12)
    counts = Counter(partition_of(f"dep-{i}", 12) for i in range(12_000))
    assert set(range(12)) == set(counts)
    assert min(counts.values()) > 800


def test_partitions_standalone_is_one_untagged() -> None:
    """Standalone mode has one partition, with today's key names."""
    parts = Partitions(Keys("printery"))
    assert (Keys("printery"),) == parts.all
    assert Keys("printery") == parts.of("dep-42")


def test_partitions_cluster_routes_a_deployment_to_its_tag() -> None:
    """In cluster mode a deployment's keys are those of the partition its id hashes to."""
    parts = Partitions(Keys("printery"), 12)
    assert 12 == len(parts.all)
    expected = parts.all[partition_of("dep-42", 12)]
    assert expected == parts.of("dep-42")
    assert f"printery:{{{expected.tag}}}:deployment:dep-42" == parts.of("dep-42").deployment(
        "dep-42"
    )


def test_partition_count_out_of_range_is_refused() -> None:
    """Zero partitions, or more than there are slots, is a ValueError naming the bounds."""
    with pytest.raises(ValueError, match="from 1 to 16384"):
        partition_tags(0)
