"""The deployment timeline: the writes each stage commits, and reading them back."""

from __future__ import annotations

import json

import pytest

from printery.pipeline.timeline import LOG_CAP, format_timeline, read_timeline, timeline_writes
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys

pytestmark = pytest.mark.timeout(10)

AT = "2026-01-02T03:04:05.678Z"


def test_writes_update_the_hash_push_the_log_and_expire_both() -> None:
    """One stage's record: hash fields, a capped JSON log entry, and a TTL on both keys."""
    keys = Keys("p")
    writes = timeline_writes(
        keys, "dep-1", "health", "healthy", "2 × 200", {"service": "api"}, ttl_s=60, at=AT
    )
    assert [(w.op, w.key) for w in writes] == [
        ("HSET", "p:deployment:dep-1"),
        ("RPUSH", "p:deployment:dep-1:log"),
        ("EXPIRE", "p:deployment:dep-1"),
        ("EXPIRE", "p:deployment:dep-1:log"),
    ]
    fields = dict(zip(writes[0].args[::2], writes[0].args[1::2], strict=True))
    assert fields == {
        "deployment_id": "dep-1",
        "service": "api",
        "updated_at": AT,
        "health_at": AT,
        "stage": "health",
        "status": "healthy",
    }
    entry, cap = writes[1].args
    assert json.loads(entry) == {
        "at": AT,
        "stage": "health",
        "status": "healthy",
        "message": "2 × 200",
    }
    assert cap == str(LOG_CAP)
    assert writes[2].args == writes[3].args == ("60",)


def test_a_report_leaves_stage_and_status_alone() -> None:
    """record_status=False stamps <stage>_at and logs, but keeps the deployment's status."""
    [hset, *_] = timeline_writes(
        Keys("p"), "d", "notification", "delivered", "m", record_status=False, at=AT
    )
    fields = dict(zip(hset.args[::2], hset.args[1::2], strict=True))
    assert fields == {"deployment_id": "d", "updated_at": AT, "notification_at": AT}


@pytest.mark.parametrize(
    ("deployment_id", "collides"),
    [
        ("dep-1", False),
        ("started", True),
        ("validated", True),
        ("dependencies-satisfied", True),
        ("started:dead", True),
        ("x:log", True),
        ("a:b", False),
        ("started-2", False),
    ],
)
def test_ids_that_would_land_on_printery_keys_get_no_timeline(
    deployment_id: str, collides: bool
) -> None:
    """An id whose timeline key is a stream (or another id's log) writes nothing at all."""
    writes = timeline_writes(Keys("p"), deployment_id, "validation", "rejected", "m")
    assert (writes == []) is collides


async def test_read_back_keeps_the_last_hundred_entries(fake_adapter: StreamAdapter) -> None:
    """Committed through the adapter, the log is capped and the timeline reads back in order."""
    keys = Keys("p")
    await fake_adapter.ensure_group("in", "g")
    batch = []
    for i in range(LOG_CAP + 20):
        entry_id = await fake_adapter.add("in", {"n": str(i)})
        writes = timeline_writes(
            keys,
            "dep-1",
            "dependencies",
            "waiting",
            f"check {i}",
            {"service": "api", "version": "1.0.0", "environment": "staging"},
        )
        batch.append((entry_id, writes))
    await fake_adapter.read("in", "g", "c", count=1000, block_ms=None)
    await fake_adapter.commit("in", "g", batch)
    timeline = await read_timeline(fake_adapter, keys, "dep-1")
    assert timeline is not None
    assert len(timeline.log) == LOG_CAP
    assert [e["message"] for e in timeline.log[:2]] == ["check 20", "check 21"]
    assert timeline.fields["status"] == "waiting"
    assert 0 < await fake_adapter.client.ttl(keys.deployment_log("dep-1")) <= 7 * 86400
    text = format_timeline(timeline)
    assert text.splitlines()[0] == "dep-1  api 1.0.0 → staging  [waiting]"
    assert text.splitlines()[-1].endswith("dependencies  waiting     check 119")


async def test_unknown_deployment_reads_as_none(fake_adapter: StreamAdapter) -> None:
    """Nothing kept (never seen, or expired) is None, not an empty timeline."""
    assert await read_timeline(fake_adapter, Keys("p"), "nope") is None
    assert await read_timeline(fake_adapter, Keys("p"), "started") is None
