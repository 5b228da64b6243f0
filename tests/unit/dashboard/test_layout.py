"""Where a key's entries are (printery.dashboard.layout): one stream, or a stage's partitions."""

from __future__ import annotations

import pytest

from printery.dashboard.layout import Cursor, Layout, Part, merge_groups, newest_across
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys, Partitions
from printery.redis.replies import ConsumerInfo, GroupInfo, StreamInfo

pytestmark = pytest.mark.timeout(10)


def test_a_stage_key_spreads_a_tagged_key_does_not() -> None:
    """Cluster: the untagged stage key is every partition; a tagged key, standalone: one."""
    parts = Partitions(Keys("p"), 12).all
    cluster, standalone = Layout(Keys("p"), parts), Layout(Keys("p"))
    spread = cluster.spread("p:deployment:started")
    assert [k.started for k in parts] == [s.stream for s in spread]
    assert [str(k.tag) for k in parts] == [s.tag for s in spread]
    assert () == cluster.spread(parts[3].started)
    assert () == cluster.spread("other:deployment:started")
    assert () == standalone.spread("p:deployment:started")
    assert Partitions(Keys("p"), 12).of("dep-1") == cluster.of("dep-1")
    assert Keys("p") == standalone.of("dep-1")


def test_groups_are_summed_over_partitions() -> None:
    """Lag and pending summed (an unknown lag stays unknown), the oldest pending, consumers."""
    a = StreamInfo("s1", 2, (GroupInfo("g", 1, 2, "5-0", (ConsumerInfo("c1", 2, 900),)),))
    b = StreamInfo(
        "s2",
        3,
        (
            GroupInfo("g", 4, 1, "3-7", (ConsumerInfo("c1", 1, 100), ConsumerInfo("c0", 0, 5))),
            GroupInfo("h", None, 0, None, ()),
        ),
    )
    merged = {g.name: g for g in merge_groups([a, None, b])}
    assert (
        GroupInfo("g", 5, 3, "3-7", (ConsumerInfo("c0", 0, 5), ConsumerInfo("c1", 3, 100)))
        == merged["g"]
    )
    assert (
        merge_groups([StreamInfo("s", 0, (GroupInfo("g", None, 0, None, ()),)), a])[0].lag is None
    )


async def test_paging_from_sequence_zero_and_equal_ids(
    own_fake_adapter: StreamAdapter,
) -> None:
    """A cursor at ``ms-0`` in the first partition still finds the other's equal id, then older."""
    parts = (Part(0, "a", "s:a"), Part(1, "b", "s:b"))
    for part in parts:
        for entry_id in ("9-5", "10-0"):
            await own_fake_adapter.client.xadd(part.stream, {"n": "1"}, id=entry_id)
    walked = []
    cursor = None
    while len(walked) < 10:
        page = await newest_across(own_fake_adapter, parts, before=cursor, count=1)
        if not page:
            break
        part, entry = page[0]
        walked.append((entry.id, part.tag))
        cursor = Cursor(entry.id, part.index)
    assert [("10-0", "a"), ("10-0", "b"), ("9-5", "a"), ("9-5", "b")] == walked
