"""Poison in one batch: bombs and bad bytes rejected or dead-lettered fast, neighbours flow."""

from __future__ import annotations

import json

import pytest

from printery.envelope import Event
from printery.lifecycle import Outcome, WorkerRestartScheduled
from printery.pipeline.validator import ValidatorWorker
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from tests.support.events import Recorder, handled
from tests.support.harness import make_deps, running

pytestmark = pytest.mark.timeout(30)


def started(deployment_id: str, data: str | None = None) -> dict[str, str]:
    body = {
        "deployment_id": deployment_id,
        "service": "billing-api",
        "version": "1.4.2",
        "environment": "production",
    }
    fields = Event.create("deployment.started", deployment_id, body, source="tests").to_fields()
    if data is not None:
        fields["data"] = data
    return fields


async def test_poison_of_every_kind_mixed_with_good_entries(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """Each bad entry is rejected (id recoverable) or dead-lettered; good ones validate."""
    keys = Keys(prefix)
    recorder = Recorder()
    worker = ValidatorWorker(make_deps(real_adapter, prefix, "c1"))
    poison: dict[str, dict[str | bytes, str | bytes]] = {
        "deep nesting": started("dep-deep", "[" * 100_000 + "]" * 100_000),
        "2 MiB of data": started("dep-huge", json.dumps({"pad": "x" * (2 << 20)})),
        "huge array": started(
            "dep-array", json.dumps({"deployment_id": "dep-array", "a": list(range(50_000))})
        ),
        "a JSON array": started("dep-list", "[1, 2, 3]"),
        "invalid JSON": started("dep-json", "{not json"),
        "no data": {k: v for k, v in started("dep-nodata").items() if k != "data"},
        "unknown type": {**started("dep-type"), "type": "deployment.exploded"},
        "wrong field types": started(
            "dep-types",
            json.dumps(
                {"deployment_id": "dep-types", "service": 7, "version": ["1"], "environment": None}
            ),
        ),
        "non-UTF-8 value": {**started("dep-bytes"), "data": b"\xff\xfe\x00"},
        "non-UTF-8 field name": {**started("dep-name"), b"\xc3\x28": b"x"},
    }
    good = [await real_adapter.add(keys.started, started(f"dep-good-{i}")) for i in range(3)]
    ids = {name: await real_adapter.add(keys.started, fields) for name, fields in poison.items()}
    good += [await real_adapter.add(keys.started, started(f"dep-good-{i}")) for i in range(3, 6)]
    total = len(poison) + len(good)
    async with running(worker, recorder=recorder):
        await recorder.wait_for(lambda ev: len(handled(ev)) == total, timeout=20)
    outcome = {e.message_id: e.outcome for e in handled(recorder.events)}
    assert {outcome[i] for i in good} == {Outcome.ACKED}
    validated = [
        f[b"subject"].decode() for _, f in await real_adapter.client.xrange(keys.validated)
    ]
    assert validated == [f"dep-good-{i}" for i in range(6)]
    rejected = {
        f[b"subject"].decode() for _, f in await real_adapter.client.xrange(keys.notifications)
    }
    dead = {
        f[b"original_id"].decode(): f[b"error"].decode()
        for _, f in await real_adapter.client.xrange(f"{keys.started}:dead")
    }
    for name, entry_id in ids.items():
        deployment_id = poison[name].get("subject") or poison[name].get(b"subject")
        assert (deployment_id in rejected) != (entry_id in dead), name
        if entry_id in dead:
            assert dead[entry_id], name  # dead-lettered with a reason
    stats = await real_adapter.group_stats(keys.started, "validator")
    assert stats is not None
    assert stats.pending == 0
    assert [e for e in recorder.events if isinstance(e, WorkerRestartScheduled)] == []
