"""A deployment's timeline: what each stage did, kept beside the deployment's id.

::

    <prefix>:deployment:<id>      hash  service, version, environment, stage, status,
                                        updated_at, and <stage>_at per stage reached
    <prefix>:deployment:<id>:log  list  the last 100 entries,
                                        JSON {"at", "stage", "status", "message"}

Every pipeline worker returns :func:`timeline_writes` with its outputs, so the
timeline moves in the same atomic commit as the ack: a timeline never shows a
stage whose event was not written, nor misses one that was. Both keys expire
``TIMELINE_TTL`` (7 days) after the last write.

Stages and their statuses, in pipeline order:

=============  ===========================
validation     ``validated``, ``rejected``
dependencies   ``satisfied``, ``blocked``
health         ``healthy``, ``unhealthy``
notification   ``delivered``, ``failed``, ``logged`` (leaves ``status`` alone)
=============  ===========================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from printery.envelope import compact_json, now_rfc3339
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from printery.redis.writes import Write

__all__ = [
    "DEFAULT_TTL_S",
    "LOG_CAP",
    "Timeline",
    "format_timeline",
    "read_timeline",
    "timeline_writes",
]

LOG_CAP = 100
DEFAULT_TTL_S = 7 * 86400
_MESSAGE_CHARS = 2000


def timeline_writes(  # noqa: PLR0917 - the pipeline's agreed signature: a stage's record
    keys: Keys,
    deployment_id: str,
    stage: str,
    status: str,
    message: str,
    extra_fields: Mapping[str, str] | None = None,
    *,
    ttl_s: int = DEFAULT_TTL_S,
    record_status: bool = True,
    at: str | None = None,
) -> list[Write]:
    """The writes that record one stage's result; none for an id that would collide.

    ``record_status=False`` logs the entry and stamps ``<stage>_at`` but keeps
    the deployment's ``stage`` and ``status``: the notifier reports on an
    outcome, it is not one.
    """
    if not deployment_id or keys.timeline_collides(deployment_id):
        return []
    at = at or now_rfc3339()
    fields: dict[str, str] = {"deployment_id": deployment_id, **(extra_fields or {})}
    fields["updated_at"] = fields[f"{stage}_at"] = at
    if record_status:
        fields["stage"], fields["status"] = stage, status
    entry = {"at": at, "stage": stage, "status": status, "message": message[:_MESSAGE_CHARS]}
    hash_key, log_key = keys.deployment(deployment_id), keys.deployment_log(deployment_id)
    return [
        Write.hset(hash_key, fields),
        Write.capped_push(log_key, compact_json(entry), LOG_CAP),
        Write.expire(hash_key, ttl_s),
        Write.expire(log_key, ttl_s),
    ]


@dataclass(frozen=True, slots=True)
class Timeline:
    """A deployment's timeline as read back: the hash and the log, oldest entry first."""

    deployment_id: str
    fields: dict[str, str]
    log: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"deployment_id": self.deployment_id, "fields": self.fields, "log": self.log}


async def read_timeline(adapter: StreamAdapter, keys: Keys, deployment_id: str) -> Timeline | None:
    """The timeline of ``deployment_id``, or None when nothing (or nothing unexpired) is kept."""
    if keys.timeline_collides(deployment_id):
        return None
    fields, log = await adapter.record(
        keys.deployment(deployment_id), keys.deployment_log(deployment_id)
    )
    if not fields and not log:
        return None
    return Timeline(deployment_id, fields, log)


def format_timeline(timeline: Timeline) -> str:
    """A few readable lines: a header with the current status, then one line per log entry."""
    f = timeline.fields
    what = " ".join(x for x in (f.get("service"), f.get("version")) if x)
    if f.get("environment"):
        what = f"{what} → {f['environment']}" if what else f["environment"]
    status = f.get("status", "unknown")
    header = (
        f"{timeline.deployment_id}  {what}  [{status}]"
        if what
        else (f"{timeline.deployment_id}  [{status}]")
    )
    lines = [header]
    for entry in timeline.log:
        at = str(entry.get("at", ""))
        clock = at[11:23] if len(at) >= 23 else at
        lines.append(
            f"  {clock:<12}  {entry.get('stage', '?'):<12}  {entry.get('status', '?'):<10}  "
            f"{entry.get('message', '')}"
        )
    return "\n".join(lines)
