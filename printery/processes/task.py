"""What each message did: the task record, kept like a deployment's timeline.

::

    <prefix>:task:<event id>      hash  worker, status, percent, step, started_at, completed_at,
                                        duration_ms, result, error, deliveries, stream, entry_id
    <prefix>:task:<event id>:log  list  the last 100 progress and log lines,
                                        JSON {"at", "kind", "level", "message", "percent", "step"}

Status: ``running`` (written on the first progress or log line, directly:
nothing is acked yet), then ``succeeded`` (in the same atomic commit as the
ack and the outputs), or ``retrying`` / ``failed`` / ``dead`` (written when
the verdict is reached; the dead letter itself is the runtime's). Both keys
expire ``TIMELINE_TTL`` after the last write, as a timeline does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from printery.envelope import compact_json, now_rfc3339
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from printery.redis.writes import Write

__all__ = [
    "LOG_CAP",
    "TaskRecord",
    "format_task",
    "line_writes",
    "outcome_fields",
    "read_task",
    "record_writes",
    "run_task_command",
]

LOG_CAP = 100
_TEXT_CHARS = 4000


def record_writes(
    keys: Keys, event_id: str, fields: Mapping[str, str], ttl_s: int, *, log: bool = True
) -> list[Write]:
    """Set fields of the record and renew its expiry, and the log's when it may have one.

    ``log=False`` when no progress or log line was kept for the message: no
    log key to renew (a write saved on every message of a quiet worker).
    """
    key = keys.task(event_id)
    writes = [Write.hset(key, dict(fields)), Write.expire(key, ttl_s)]
    if log:
        writes.append(Write.expire(keys.task_log(event_id), ttl_s))
    return writes


def line_writes(
    keys: Keys, event_id: str, message: Mapping[str, Any], ttl_s: int, *, worker: str
) -> list[Write]:
    """A child's ``progress`` or ``log`` line: the log entry, and the record's percent and step."""
    at = now_rfc3339()
    kind = str(message.get("op"))
    entry: dict[str, Any] = {"at": at, "kind": kind}
    fields = {"worker": worker, "status": "running", "updated_at": at}
    if kind == "progress":
        for name in ("percent", "step"):
            if name in message:
                entry[name] = message[name]
                fields[name] = _text(message[name])
    else:
        entry["level"] = str(message.get("level", "info"))[:20]
        entry["message"] = _text(message.get("message", ""))
        if isinstance(message.get("data"), dict):
            entry["data"] = message["data"]
    pushed = compact_json(entry)
    if len(pushed) > _TEXT_CHARS:
        pushed = compact_json({**entry, "data": None, "message": entry.get("message", "")[:500]})
    return [
        Write.capped_push(keys.task_log(event_id), pushed, LOG_CAP),
        *record_writes(keys, event_id, fields, ttl_s),
    ]


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else compact_json(value)
    return text[:_TEXT_CHARS]


def outcome_fields(
    *,
    worker: str,
    status: str,
    started_at: str,
    duration_ms: float,
    deliveries: int,
    result: Any = None,
    error: str = "",
    stream: str = "",
    entry_id: str = "",
) -> dict[str, str]:
    now = now_rfc3339()
    fields = {
        "worker": worker,
        "status": status,
        "started_at": started_at,
        "completed_at": now,
        "updated_at": now,
        "duration_ms": str(round(duration_ms, 1)),
        "deliveries": str(deliveries),
        "stream": stream,
        "entry_id": entry_id,
        "error": error[:_TEXT_CHARS],
    }
    if status == "succeeded":
        fields["percent"] = "100"
    if result is not None:
        fields["result"] = _text(result)
    return fields


@dataclass(frozen=True, slots=True)
class TaskRecord:
    event_id: str
    fields: dict[str, str]
    log: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "fields": self.fields, "log": self.log}


async def read_task(adapter: StreamAdapter, keys: Keys, event_id: str) -> TaskRecord | None:
    fields, log = await adapter.record(keys.task(event_id), keys.task_log(event_id))
    if not fields and not log:
        return None
    return TaskRecord(event_id, fields, log)


def format_task(record: TaskRecord) -> str:
    f = record.fields
    lines = [
        f"{record.event_id}  {f.get('worker', '?')}  [{f.get('status', 'unknown')}]"
        + (f"  {f['percent']}%" if f.get("percent") else "")
        + (f"  {f['step']}" if f.get("step") else "")
    ]
    for name in ("started_at", "completed_at", "duration_ms", "deliveries", "result", "error"):
        if f.get(name):
            lines.append(f"  {name:<13} {f[name]}")
    for entry in record.log:
        at = str(entry.get("at", ""))
        clock = at[11:23] if len(at) >= 23 else at
        if entry.get("kind") == "progress":
            what = " ".join(
                x
                for x in (
                    f"{entry['percent']}%" if "percent" in entry else "",
                    str(entry.get("step", "")),
                )
                if x
            )
        else:
            what = f"{entry.get('level', '')}: {entry.get('message', '')}"
        lines.append(f"  {clock:<12}  {entry.get('kind', '?'):<8}  {what}")
    return "\n".join(lines)


async def run_task_command(
    adapter: StreamAdapter,
    keys: Keys,
    event_id: str,
    *,
    as_json: bool,
    partitions: Sequence[Keys] = (),
) -> int:
    """``printery task <event id> [--json]``: 0 when found, 1 when nothing is kept.

    On a cluster the record is in the partition its message was read from,
    which its id does not tell: each of ``partitions`` is looked in.
    """
    record = None
    for where in partitions or (keys,):
        record = await read_task(adapter, where, event_id)
        if record is not None:
            break
    if record is None:
        print(
            f"printery: no task record for event {event_id!r} "
            "(unknown, or expired after TIMELINE_TTL)",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(record.to_json(), indent=2) if as_json else format_task(record))
    return 0
