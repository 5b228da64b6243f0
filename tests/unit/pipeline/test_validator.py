"""The validator's handler: every rejection path, the dead-letter split, and what it carries on."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from printery.envelope import Event
from printery.errors import Permanent
from printery.message import Message
from printery.pipeline.validator import ValidatorWorker, derived_id
from printery.redis.adapter import StreamAdapter
from printery.redis.writes import Write
from tests.support.harness import make_deps

pytestmark = pytest.mark.timeout(10)

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
DATA: dict[str, Any] = {
    "deployment_id": "dep-42",
    "service": "billing-api",
    "version": "1.4.2",
    "environment": "production",
    "dependencies": [{"service": "auth-api", "version": "^2.1.0"}],
    "health_check": {"url": "http://billing-api.prod.svc:8080/healthz"},
}
DROP = object()


def started(data: Any = None, **attributes: Any) -> dict[str, str | bytes]:
    """The fields of a good deployment.started entry; DROP removes an attribute."""
    body = DATA if data is None else data
    fields: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "ci/pipeline",
        "type": "deployment.started",
        "time": "2026-01-02T03:04:05.678Z",
        "subject": "dep-42",
        "datacontenttype": "application/json",
        "data": body if isinstance(body, str | bytes) or body is DROP else json.dumps(body),
        "traceparent": TRACE,
    }
    fields.update(attributes)
    return {k: v for k, v in fields.items() if v is not DROP}


def message(fields: Mapping[str, str | bytes], deliveries: int = 1) -> Message:
    raw = {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in fields.items()}
    return Message("s", "1-0", raw, deliveries)


def xadds(writes: Sequence[Write], stream: str) -> list[dict[str, str]]:
    return [
        dict(zip(map(str, w.args[::2]), map(str, w.args[1::2]), strict=True))
        for w in writes
        if w.op == "XADD" and w.key == stream
    ]


@pytest.fixture
def worker(fake_adapter: StreamAdapter, prefix: str) -> ValidatorWorker:
    return ValidatorWorker(make_deps(fake_adapter, prefix, MAX_MESSAGE_BYTES="2048"))


async def rejection(worker: ValidatorWorker, fields: Mapping[str, str | bytes]) -> dict[str, Any]:
    writes = await worker.handle(message(fields))
    assert xadds(writes, worker.keys.validated) == []
    [notice] = xadds(writes, worker.keys.notifications)
    assert notice["type"] == "deployment.rejected"
    data: dict[str, Any] = json.loads(notice["data"])
    assert notice["subject"] == data["deployment_id"]
    return data


REJECTIONS = [
    (
        "too large",
        started(data={**DATA, "requested_by": "x" * 3000}),
        "dep-42",
        "message: too large",
    ),
    ("field not UTF-8", started(source=b"\xff\xfe"), "dep-42", "field 'source' is not UTF-8"),
    ("data not UTF-8", started(data=b'{"a": "\xff"}'), "dep-42", "field 'data' is not UTF-8"),
    ("missing id", started(id=DROP), "dep-42", "id: is required (a CloudEvents attribute)"),
    (
        "missing source",
        started(source=""),
        "dep-42",
        "source: is required (a CloudEvents attribute)",
    ),
    ("wrong specversion", started(specversion="0.3"), "dep-42", "specversion: must be 1.0"),
    (
        "unknown type",
        started(type="deployment.finished"),
        "dep-42",
        "type: must be deployment.started",
    ),
    ("not JSON content", started(datacontenttype="text/xml"), "dep-42", "datacontenttype: must be"),
    ("bad time", started(time="yesterday"), "dep-42", "time: must be an RFC 3339 timestamp"),
    ("no data", started(data=DROP), "dep-42", "data: is required"),
    ("data not JSON", started(data="{nope"), "dep-42", "data: not valid JSON"),
    ("data an array", started(data="[1, 2]"), "dep-42", "data: must be an object (got array)"),
    (
        "data invalid",
        started(data={**DATA, "version": "1.4"}),
        "dep-42",
        "version: must be a semantic",
    ),
    ("subject differs", started(subject="dep-43"), "dep-42", "subject: must be the deployment id"),
    (
        "id from data",
        started(subject=DROP, data={**DATA, "service": "Bad_Name"}),
        "dep-42",
        "service",
    ),
    (
        "id collides with a stream",
        started(subject="started", data={**DATA, "deployment_id": "started"}),
        "started",
        "deployment_id: 'started' would collide",
    ),
]


@pytest.mark.parametrize(
    ("fields", "deployment_id", "reason"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
async def test_each_rejection_path_notifies_with_its_reason(
    worker: ValidatorWorker, fields: dict[str, str | bytes], deployment_id: str, reason: str
) -> None:
    """Each broken entry with a recoverable id is rejected to notifications, naming the fault."""
    data = await rejection(worker, fields)
    assert data["deployment_id"] == deployment_id
    assert any(r.startswith(reason) for r in data["reasons"]), data["reasons"]


DEAD_LETTERS = [
    ("too large, no subject", started(data={**DATA, "requested_by": "x" * 3000}, subject=DROP)),
    ("not JSON, no subject", started(data="{nope", subject=DROP)),
    ("data an array, no subject", started(data="[]", subject=DROP)),
    ("bad id and subject", started(data={**DATA, "deployment_id": "a b"}, subject="a b")),
    ("data not UTF-8, no subject", started(data=b"\xff", subject=DROP)),
]


@pytest.mark.parametrize(
    "fields", [case[1] for case in DEAD_LETTERS], ids=[case[0] for case in DEAD_LETTERS]
)
async def test_no_recoverable_id_dead_letters(
    worker: ValidatorWorker, fields: dict[str, str | bytes]
) -> None:
    """Without a deployment id to file it under, the entry is dead-lettered with its reasons."""
    with pytest.raises(Permanent, match="no deployment id could be recovered"):
        await worker.handle(message(fields))


async def test_every_reason_is_listed_at_once(worker: ValidatorWorker) -> None:
    """Envelope and data faults are reported together, so one round fixes them all."""
    fields = started(type="x.y", time="nope", data={**DATA, "version": "1", "environment": "moon"})
    data = await rejection(worker, fields)
    assert [r.split(":")[0] for r in data["reasons"]] == [
        "type",
        "time",
        "version",
        "environment",
    ]


async def test_rejection_carries_what_the_request_said(worker: ValidatorWorker) -> None:
    """The rejection names the service, version and environment the request gave, and its trace."""
    writes = await worker.handle(message(started(data={**DATA, "version": "one"})))
    [notice] = xadds(writes, worker.keys.notifications)
    data = json.loads(notice["data"])
    assert (data["service"], data["version"], data["environment"]) == (
        "billing-api",
        "one",
        "production",
    )
    assert notice["traceparent"] == TRACE


async def test_valid_request_is_validated_and_normalised(worker: ValidatorWorker) -> None:
    """A good request goes to the validated stream as the normalised deployment, trace carried."""
    writes = await worker.handle(message(started()))
    assert xadds(writes, worker.keys.notifications) == []
    [out] = xadds(writes, worker.keys.validated)
    event = Event.from_fields(out)
    assert event.type == "deployment.validated"
    assert event.subject == "dep-42"
    assert event.traceparent == TRACE
    assert event.source == "printery/validator"
    check = event.data_object()["health_check"]
    assert check == {
        "url": "http://billing-api.prod.svc:8080/healthz",
        "expect_status": 200,
        "timeout_s": 2.0,
        "interval_s": 5.0,
        "healthy_threshold": 2,
        "deadline_s": 300.0,
    }


async def test_output_id_is_derived_from_the_input(worker: ValidatorWorker) -> None:
    """Handling the same event twice yields the same output id, so later stages can dedupe."""
    first = xadds(await worker.handle(message(started())), worker.keys.validated)
    second = xadds(await worker.handle(message(started())), worker.keys.validated)
    other = xadds(await worker.handle(message(started(id="evt-2"))), worker.keys.validated)
    assert first[0]["id"] == second[0]["id"] != other[0]["id"]


@pytest.mark.parametrize(
    ("given", "carried"),
    [(TRACE, TRACE), ("not-a-trace", None), (DROP, None)],
    ids=["valid", "malformed", "absent"],
)
async def test_traceparent_is_carried_only_when_well_formed(
    worker: ValidatorWorker, given: Any, carried: str | None
) -> None:
    """A W3C traceparent goes forward; a malformed one is dropped, as W3C asks."""
    [out] = xadds(await worker.handle(message(started(traceparent=given))), worker.keys.validated)
    assert out.get("traceparent") == carried


async def test_unknown_extra_fields_are_accepted(worker: ValidatorWorker) -> None:
    """Extension attributes are no reason to reject (docs/events.md)."""
    writes = await worker.handle(message(started(partition="7", tenant="acme")))
    assert len(xadds(writes, worker.keys.validated)) == 1


async def test_timeline_records_the_verdict(
    worker: ValidatorWorker, fake_adapter: StreamAdapter
) -> None:
    """Both verdicts write the deployment's timeline in the same commit as the event."""
    good = await worker.handle(message(started()))
    bad = await worker.handle(
        message(started(data={**DATA, "deployment_id": "dep-7", "version": "x"}, subject="dep-7"))
    )
    hashes = {w.key: w for w in [*good, *bad] if w.op == "HSET"}
    assert set(hashes) == {worker.keys.deployment("dep-42"), worker.keys.deployment("dep-7")}
    good_fields = dict(
        zip(
            hashes[worker.keys.deployment("dep-42")].args[::2],
            hashes[worker.keys.deployment("dep-42")].args[1::2],
            strict=True,
        )
    )
    assert (good_fields["stage"], good_fields["status"]) == ("validation", "validated")
    assert good_fields["service"] == "billing-api"
    bad_fields = dict(
        zip(
            hashes[worker.keys.deployment("dep-7")].args[::2],
            hashes[worker.keys.deployment("dep-7")].args[1::2],
            strict=True,
        )
    )
    assert bad_fields["status"] == "rejected"


async def test_collision_skips_the_timeline(worker: ValidatorWorker) -> None:
    """An id that would land on a stream key is rejected without touching that key."""
    fields = started(subject="validated", data={**DATA, "deployment_id": "validated"})
    writes = await worker.handle(message(fields))
    assert {w.key for w in writes} == {worker.keys.notifications}


@pytest.mark.parametrize(
    "name",
    ["", "ci/pipeline\nevt-1\ndeployment.validated", "ünïcode\n☃\nx" * 20, "a" * 1000],
)
def test_derived_ids_are_the_uuid5_of_the_name(name: str) -> None:
    """Every stage derives its event ids the same way: RFC 4122 UUIDv5 in printery's namespace."""
    namespace = uuid.UUID("6f1c3c4e-9a51-4d52-8d0e-2b7c1f7a9d10")
    assert derived_id(name) == str(uuid.uuid5(namespace, name))


@pytest.mark.parametrize("traceparent", [None, "00-" + "1" * 32 + "-" + "2" * 16 + "-01"])
def test_an_events_xadd_arguments_are_its_fields_flat(traceparent: str | None) -> None:
    """to_args() is to_fields() as name, value, ...: with or without traceparent and extensions."""
    plain = Event("t", "s", '{"a":1}', traceparent=traceparent)
    extended = Event("t", "s", extensions={"x": "1", "id": "not this one"})
    for event in (plain, extended):
        assert event.to_args() == tuple(x for kv in event.to_fields().items() for x in kv)
