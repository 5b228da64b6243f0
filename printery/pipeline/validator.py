"""The validator: ``deployment.started`` in; ``deployment.validated`` or ``.rejected`` out.

::

    started entry ─► size ─► fields decode ─► CloudEvents attributes ─► data: JSON object,
                     every rule of printery.pipeline.deployment
        all good ──────────────► deployment.validated  (keys.validated; the normalised request)
        any reason, id known ──► deployment.rejected   (keys.notifications; every reason at once)
        any reason, no id ─────► Permanent: dead letter (no one to tell, nowhere to file it)

Every check runs, so one rejection lists everything to fix. The id comes from
the data's ``deployment_id`` when well formed, else from the ``subject``.

The later stages read their input through :func:`read_deployment`, which
validates the deployment again under this process's settings: a request is
never acted on (a health URL never called) on another replica's word alone.
:func:`successor` derives each stage's output event from its input: same
subject, ``traceparent`` carried, and an id derived from the input's, so an
input handled twice yields the same output id and webhooks dedupe it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from printery.envelope import SPECVERSION, Event, MalformedEvent, compact_json, now_rfc3339
from printery.errors import Permanent
from printery.message import Message
from printery.pipeline.deployment import Deployment, Invalid, ValidationRules, parse_data
from printery.pipeline.rules import validate_deployment
from printery.pipeline.timeline import timeline_writes
from printery.redis.keys import Keys
from printery.redis.writes import Write
from printery.settings import Settings
from printery.worker import StreamWorker, WorkerDeps

__all__ = [
    "ValidatorWorker",
    "deployment_fields",
    "read_deployment",
    "rules_from",
    "successor",
]

STARTED = "deployment.started"
_SOURCE = "printery/validator"
_REQUIRED = ("specversion", "id", "source", "type")
# The shape printery.pipeline.deployment accepts for deployment_id: it becomes a subject, a key.
_DEPLOYMENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TRACEPARENT = re.compile(
    r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
)
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
_NAMESPACE = uuid.UUID("6f1c3c4e-9a51-4d52-8d0e-2b7c1f7a9d10")
_NAMESPACE_BYTES = _NAMESPACE.bytes
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
_PARTIAL = ("service", "version", "environment", "requested_by")


def rules_from(settings: Settings) -> ValidationRules:
    """The validation rules this process enforces, from its settings."""
    return ValidationRules(
        allowed_environments=frozenset(settings.allowed_environment_list),
        allowed_host_globs=tuple(settings.allowed_host_globs),
        max_message_bytes=settings.max_message_bytes,
    )


def successor(
    event: Event, type: str, data: Mapping[str, Any], *, source: str, at: str | None = None
) -> Event:
    """The next event about the same deployment; its id is derived from ``event``'s.

    Like ``event.follow``, but built once with the derived id (no throw-away
    uuid4, no copy); ``at`` is its time, now unless given.
    """
    return Event(
        type=type,
        subject=event.subject,
        data=compact_json(data),
        source=source,
        id=derived_id(f"{event.source}\n{event.id}\n{type}"),
        time=at or now_rfc3339(),
        traceparent=event.traceparent,
    )


def derived_id(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))``, without building the UUID object on the way."""
    h = hashlib.sha1(_NAMESPACE_BYTES + name.encode()).hexdigest()  # noqa: S324 - RFC 4122 UUIDv5 is SHA-1 by definition
    # Version 5 in the 13th digit, the RFC 4122 variant in the top bits of the 17th.
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def deployment_fields(deployment: Deployment) -> dict[str, str]:
    """What a timeline hash says about the deployment itself."""
    fields = {
        "service": deployment.service,
        "version": deployment.version,
        "environment": deployment.environment,
    }
    if deployment.requested_by:
        fields["requested_by"] = deployment.requested_by
    return fields


def read_deployment(
    message: Message, rules: ValidationRules, expected_type: str
) -> tuple[Event, Deployment]:
    """A later stage's input, validated again; Permanent (dead letter) when it is not one."""
    event = message.event()  # MalformedEvent is dead-lettered by the runtime
    if event.type != expected_type:
        raise Permanent(f"type: expected {expected_type} (got {_shown(event.type)})")
    try:
        deployment = validate_deployment(parse_data(event.data, rules.max_message_bytes), rules)
    except Invalid as exc:
        raise Permanent(f"invalid {expected_type}: {exc}") from None
    if event.subject != deployment.deployment_id:
        event = dataclasses.replace(event, subject=deployment.deployment_id)
    return event, deployment


@dataclasses.dataclass(slots=True)
class _Verdict:
    reasons: list[str] = dataclasses.field(default_factory=list)
    deployment: Deployment | None = None
    deployment_id: str | None = None
    partial: dict[str, str] = dataclasses.field(default_factory=dict)
    event: Event | None = None


class ValidatorWorker(StreamWorker):
    """Judges every ``deployment.started`` entry; see the module docstring."""

    name = "validator"
    depends_on = ()
    default_concurrency = 1

    def __init__(self, deps: WorkerDeps) -> None:
        super().__init__(deps)
        self.rules = rules_from(self.settings)

    @property
    def stream(self) -> str:
        return self.keys.started

    async def handle(self, message: Message) -> Sequence[Write]:
        verdict = judge(message, self.rules, self.keys)
        if verdict.deployment is not None and verdict.event is not None:
            return self._validated(verdict.event, verdict.deployment)
        if verdict.deployment_id is None:
            raise Permanent(
                "no deployment id could be recovered to file the rejection under: "
                + "; ".join(verdict.reasons)
            )
        return self._rejected(message, verdict, verdict.deployment_id)

    def _validated(self, event: Event, deployment: Deployment) -> list[Write]:
        at = now_rfc3339()  # the event's time and the timeline's: one clock reading
        out = successor(event, "deployment.validated", deployment.to_data(), source=_SOURCE, at=at)
        check = deployment.health_check
        needs = ", ".join(f"{d.service} {d.range}" for d in deployment.dependencies)
        summary = (
            f"valid: {deployment.service} {deployment.version} → {deployment.environment}; "
            f"needs {needs or 'nothing'}; "
            + (f"health check {check.url}" if check else "no health check")
        )
        return [
            Write("XADD", self.keys.validated, out.to_args()),  # text only: no check needed
            *self._timeline(
                deployment.deployment_id, "validated", summary, deployment_fields(deployment), at
            ),
        ]

    def _rejected(self, message: Message, verdict: _Verdict, deployment_id: str) -> list[Write]:
        data: dict[str, Any] = {
            "deployment_id": deployment_id,
            **verdict.partial,
            "reasons": verdict.reasons,
        }
        parent = verdict.event or _stand_in(message.fields, deployment_id)
        parent = dataclasses.replace(parent, subject=deployment_id)
        out = successor(parent, "deployment.rejected", data, source=_SOURCE)
        summary = f"rejected: {'; '.join(verdict.reasons)}"
        return [
            Write.xadd(self.keys.notifications, out.to_fields()),
            *self._timeline(deployment_id, "rejected", summary, verdict.partial),
        ]

    def _timeline(
        self,
        deployment_id: str,
        status: str,
        message: str,
        fields: Mapping[str, str],
        at: str | None = None,
    ) -> list[Write]:
        return timeline_writes(
            self.keys,
            deployment_id,
            "validation",
            status,
            message,
            fields,
            ttl_s=self.settings.timeline_ttl,
            at=at,
        )


def judge(message: Message, rules: ValidationRules, keys: Keys) -> _Verdict:
    """Every reason to refuse ``message``, the deployment if there is none, and the id."""
    verdict = _Verdict()
    fields = message.fields
    subject = fields.get("subject") or None
    subject_id = subject if subject and _DEPLOYMENT_ID.fullmatch(subject) else None
    if message.size > rules.max_message_bytes:
        # Parsing an oversized entry is what the limit is there to prevent.
        verdict.reasons.append(
            f"message: too large ({message.size} bytes, the limit is {rules.max_message_bytes})"
        )
        verdict.deployment_id = subject_id
        return verdict
    verdict.reasons.extend(message.problems)
    verdict.reasons.extend(_attribute_problems(fields))
    data_id: str | None = None
    value: object = None
    if "data" in fields:
        try:
            value = parse_data(fields["data"], rules.max_message_bytes)
            verdict.deployment = validate_deployment(value, rules)
            data_id = verdict.deployment.deployment_id
        except Invalid as exc:
            verdict.reasons.extend(exc.reasons)
            data_id = exc.deployment_id
    elif not any("'data'" in p for p in message.problems):
        verdict.reasons.append("data: is required")
    if data_id is not None and subject is not None and subject != data_id:
        verdict.reasons.append(
            f"subject: must be the deployment id {_shown(data_id)} (got {_shown(subject)})"
        )
    verdict.deployment_id = data_id or subject_id
    if verdict.deployment_id is not None and keys.timeline_collides(verdict.deployment_id):
        verdict.reasons.append(
            f"deployment_id: {_shown(verdict.deployment_id)} would collide with printery's own "
            "keys (it starts with a stream name or ends in ':log')"
        )
    if verdict.reasons:
        verdict.deployment = None
        verdict.partial = _partial(value)  # only a rejection quotes the request's own words
        return verdict
    try:
        event = Event.from_fields(fields)
    except MalformedEvent as exc:  # pragma: no cover - the attribute checks above are a superset
        verdict.reasons.append(exc.reason)
        verdict.deployment = None
        verdict.partial = _partial(value)
        return verdict
    verdict.event = _with_valid_trace(event, fields)
    return verdict


def _attribute_problems(fields: Mapping[str, str]) -> list[str]:
    problems = [
        f"{name}: is required (a CloudEvents attribute)"
        for name in _REQUIRED
        if not fields.get(name)
    ]
    version = fields.get("specversion")
    if version and version != SPECVERSION:
        problems.append(f"specversion: must be {SPECVERSION} (got {_shown(version)})")
    kind = fields.get("type")
    if kind and kind != STARTED:
        problems.append(f"type: must be {STARTED} (got {_shown(kind)})")
    content_type = fields.get("datacontenttype")
    if content_type is not None and not _is_json(content_type):
        problems.append(f"datacontenttype: must be application/json (got {_shown(content_type)})")
    time = fields.get("time")
    if time is not None and not _is_rfc3339(time):
        problems.append(f"time: must be an RFC 3339 timestamp (got {_shown(time)})")
    return problems


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _is_rfc3339(text: str) -> bool:
    if not _RFC3339.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _with_valid_trace(event: Event, fields: Mapping[str, str]) -> Event:
    """W3C says to ignore a malformed traceparent, so it is dropped rather than carried on."""
    trace = fields.get("traceparent")
    if trace is not None and not _TRACEPARENT.fullmatch(trace):
        return dataclasses.replace(event, traceparent=None)
    return event


def _stand_in(fields: Mapping[str, str], deployment_id: str) -> Event:
    """The parent of a rejection when the entry is no CloudEvent: what could be read of it."""
    trace = fields.get("traceparent")
    return Event(
        type=STARTED,
        subject=deployment_id,
        source=fields.get("source") or "unknown",
        id=fields.get("id") or str(uuid.uuid4()),
        traceparent=trace if trace and _TRACEPARENT.fullmatch(trace) else None,
    )


def _partial(value: object) -> dict[str, str]:
    """The request's own words about itself, for the rejection and the timeline."""
    if not isinstance(value, Mapping):
        return {}
    return {
        key: value[key]
        for key in _PARTIAL
        if isinstance(value.get(key), str)
        and 0 < len(value[key]) <= 256
        and value[key].isprintable()
    }


def _shown(text: str) -> str:
    return repr(text if len(text) <= 64 else text[:61] + "...")
