"""Slot audit, no server: every commit of every built-in worker names keys of one cluster slot.

The workers that run in their own processes are audited as well: a
ProcessWorker whose pool is a fake (the child's verdict given, no process
started) handles a message of every partition with every kind of verdict.

All four pipeline workers run in REDIS_MODE=cluster on fakeredis, behind an
adapter that records the KEYS of every commit as the script is sent them
(the input stream, then each output key). Deployments take every path
(validated and healthy, rejected, blocked, a malformed entry dead-lettered),
in every partition; each commit's keys must hash to one slot, or on a real
cluster the commit would be refused (CROSSSLOT) or fail after its ack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import fakeredis
import pytest
from redis.crc import key_slot

from printery.engine.partitioned import PARTITION_KEYS
from printery.envelope import Event
from printery.errors import Permanent, RetryLater
from printery.lifecycle import MessageHandled, Outcome
from printery.message import Message
from printery.pipeline.dependency_checker import DependencyCheckerWorker
from printery.pipeline.health_monitor import HealthMonitorWorker
from printery.pipeline.notifier import NotifierWorker
from printery.pipeline.publish import started_event
from printery.pipeline.validator import ValidatorWorker
from printery.processes.protocol import ChildResult, Output
from printery.processes.worker import ProcessWorker, process_worker_factory
from printery.processes.workers_file import WorkerDefinition
from printery.redis.adapter import StreamAdapter, Write
from printery.redis.keys import Keys, Partitions
from printery.redis.writes import commit_payload
from tests.support.events import Recorder
from tests.support.harness import make_deps, running

pytestmark = pytest.mark.timeout(60)


class AuditingAdapter(StreamAdapter):
    """A StreamAdapter that records the keys of every commit before sending it."""

    def __init__(self) -> None:
        super().__init__(fakeredis.FakeAsyncRedis())
        self.commits: list[tuple[str, ...]] = []

    async def commit(
        self, stream: str, group: str, batch: Sequence[tuple[str, Sequence[Write]]]
    ) -> list[bool | str]:
        for entry in batch:
            # The KEYS the commit script is sent with (the stream, then each output key).
            keys, _, _ = commit_payload(stream, [entry])
            self.commits.append(tuple(k if isinstance(k, str) else k.decode() for k in keys))
        return await super().commit(stream, group, batch)


def deployment(n: int, kind: str) -> dict[str, object]:
    data: dict[str, object] = {
        "deployment_id": f"dep-{kind}-{n}",
        "service": f"svc-{n}",
        "version": "1.0.0",
        "environment": "staging",
        "requested_by": "audit@example.com",
        "dependencies": [],
    }
    if kind == "rejected":
        data["version"] = "not-a-version"
    if kind == "blocked":
        data["dependencies"] = [{"service": "nowhere", "version": "^1.0.0"}]
    return data


@pytest.mark.parametrize("partitions", [1, 12])
async def test_every_commit_names_keys_of_one_slot(partitions: int, prefix: str) -> None:
    """PARTITIONS=1 and 12: each commit of the four workers, on every path, is in one slot."""
    adapter = AuditingAdapter()
    deps = make_deps(
        adapter,
        prefix,
        REDIS_MODE="cluster",
        PARTITIONS=str(partitions),
        DEPENDENCY_WAIT_TIMEOUT="0",
    )
    parts = Partitions(Keys(prefix), partitions)
    kinds = ("healthy", "rejected", "blocked")
    count = 8
    inputs = {parts.all[-1].started}
    for n in range(count):
        for kind in kinds:
            data = deployment(n, kind)
            keys = parts.of(str(data["deployment_id"]))
            inputs.add(keys.started)
            await adapter.add(keys.started, started_event(data).to_fields())
    await adapter.add(parts.all[-1].started, {"garbage": "not an event"})
    recorder = Recorder()
    workers = [
        ValidatorWorker(deps),
        DependencyCheckerWorker(deps),
        HealthMonitorWorker(deps),
        NotifierWorker(deps),
    ]

    def notified(events: object) -> bool:
        done = [
            e
            for e in recorder.of(MessageHandled)
            if e.worker == "notifier" and e.outcome is Outcome.ACKED
        ]
        return len(done) >= count * len(kinds)

    async with running(*workers, recorder=recorder):
        await recorder.wait_for(notified, timeout=45)

    crossing = [keys for keys in adapter.commits if len({key_slot(k.encode()) for k in keys}) > 1]
    assert [] == crossing
    # Every path was taken: a dead letter, the registry step, every partition's streams.
    dead = [keys for keys in adapter.commits if keys[-1].endswith(":dead")]
    assert 1 == len(dead)
    registry = await adapter.hash_all(parts.all[0].registry("staging"))
    assert {f"svc-{n}": "1.0.0" for n in range(count)} == registry
    used = {keys[0] for keys in adapter.commits}
    assert inputs <= used
    assert min(partitions, 8) <= len(inputs)  # the deployments spread over the partitions
    await adapter.close()


class FakePool:
    """A pool whose child reports a progress and a log line, then gives ``verdict``."""

    def __init__(self, verdict: ChildResult) -> None:
        self.verdict = verdict

    async def request(
        self, task: object, *, on_message: Callable[[list[dict[str, Any]]], Awaitable[None]]
    ) -> ChildResult:
        await on_message([{"op": "progress", "percent": 50, "step": "half"}])
        await on_message([{"op": "log", "level": "info", "message": "working"}])
        return self.verdict


class RecordingAdapter(AuditingAdapter):
    """Also records the keys of each set of records written outside a commit (progress, failure)."""

    def __init__(self) -> None:
        super().__init__()
        self.applied: list[tuple[str, ...]] = []

    async def apply(self, writes: Sequence[Write]) -> None:
        self.applied.append(tuple(w.key for w in writes))
        await super().apply(writes)


VERDICTS = {
    "succeeded": ChildResult(
        True,
        {"ok": 1},
        (Output("images:resized", "image.resized", {"n": 1}), Output("audit", "audited", {})),
    ),
    "retrying": ChildResult(False, error="busy", retriable=True),
    "failed": ChildResult(False, error="bad input", retriable=False),
    "outside": ChildResult(True, outputs=(Output("elsewhere", "x", {}),)),
}


@pytest.mark.parametrize("partitions", [1, 12])
async def test_every_process_worker_commit_names_keys_of_one_slot(
    partitions: int, prefix: str
) -> None:
    """PARTITIONS=1 and 12: a worker in its own processes commits and records in one slot.

    For a message in every partition and every verdict of its child (outputs
    to two streams, retriable and permanent failures, an output outside its
    ``outputs``), the commit (input stream, outputs routed by the partition,
    the task record under ``<partition>:task:<event id>``) and each record
    written beside it (progress, log, the failure) hash to the input's slot.
    """
    adapter = RecordingAdapter()
    deps = make_deps(adapter, prefix, REDIS_MODE="cluster", PARTITIONS=str(partitions))
    definition = WorkerDefinition(
        name="resizer",
        command=("true",),
        input="images:uploaded",
        outputs=("images:resized", "audit"),
        group="resizer",
    )
    worker = process_worker_factory(definition)(deps)
    assert isinstance(worker, ProcessWorker)
    parts = Partitions(Keys(prefix), partitions).all
    committed, raised = [], []
    for keys in parts:
        token = PARTITION_KEYS.set(keys)  # as each partition's consumer runs its handlers
        try:
            stream = worker.stream
            for name, verdict in VERDICTS.items():
                worker.pool = FakePool(verdict)  # type: ignore[assignment]
                event = Event.create("image.uploaded", f"img-{name}", {"path": "/x.png"})
                raw = {k.encode(): v.encode() for k, v in event.to_fields().items()}
                message = Message(stream, f"1-{len(committed)}", raw, deliveries=1)
                try:
                    writes = await worker.handle(message)
                except (RetryLater, Permanent) as exc:
                    raised.append(type(exc))
                    continue
                keys_sent, _, _ = commit_payload(stream, [(message.id, writes)])
                committed.append(tuple(k if isinstance(k, str) else k.decode() for k in keys_sent))
        finally:
            PARTITION_KEYS.reset(token)

    assert len(parts) == len(committed)
    assert [RetryLater, Permanent, Permanent] * len(parts) == raised
    for keys_sent in [*committed, *adapter.applied]:
        assert 1 == len({key_slot(k.encode()) for k in keys_sent}), keys_sent
    inputs = {c[0] for c in committed}
    assert {p.root + ":images:uploaded" for p in parts} == inputs
    # The outputs and the record are the partition's own, each commit in its input's slot.
    for keys_sent in committed:
        root = keys_sent[0].removesuffix(":images:uploaded")
        assert {f"{root}:images:resized", f"{root}:audit"} <= set(keys_sent)
        assert any(k.startswith(f"{root}:task:") for k in keys_sent)
    # Progress and log lines on every message, and the three failures recorded.
    assert (2 * len(VERDICTS) + 3) * len(parts) == len(adapter.applied)
    await adapter.close()
