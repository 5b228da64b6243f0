"""Deployments as an operator asks about them: which ended how, and waiting for one to end.

``printery deployments`` lists recent deployments and their outcomes without
scanning the keyspace (on a Redis Cluster, in each partition, then merged)::

    <prefix>:notifications, newest first (XREVRANGE, pages) ─► the outcomes:
        rejected, blocked, healthy, unhealthy; filtered, one per deployment,
        until --limit are found (or SCAN_CAP entries were read)
    <prefix>:deployment:started, newest first ─► those with no outcome yet:
        still in flight; the timeline says at which stage (HMGET, one per row)

Both streams are trimmed by ``STREAM_RETENTION``, so "recent" means that.

On a Redis Cluster (``REDIS_MODE=cluster``) both streams are one per
partition, and everything one deployment writes (its events, its timeline)
is in the partition its id hashes to. So each partition is listed as above,
up to ``--limit`` rows, and the lists are merged newest first: the newest
``--limit`` of the installation are the newest of the partitions' newest.
Each row then also names its ``partition`` (its hash tag), so its streams
(``printery dlq list printery:{<tag>}:deployment:started``) can be found.

``printery publish deployment … --wait`` follows one deployment's timeline
(:func:`follow`), woken by each stage's stream (XREAD BLOCK), and turns the
outcome into an exit code a CI job can gate on:

=========  ===================================================
``0``      healthy
``1``      rejected, blocked or unhealthy
``3``      no outcome within ``--wait-timeout`` (still running, or lost: look at
           ``printery deployment ID`` and ``printery dlq list``)
``2``      bad usage, or Redis unreachable (as every command)
=========  ===================================================
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from printery.admin.tables import render_table, shorten
from printery.pipeline.timeline import read_timeline
from printery.redis.adapter import StreamAdapter
from printery.redis.history import newest_entries, next_entries
from printery.redis.keys import Keys
from printery.redis.replies import Entry

__all__ = [
    "EXIT_TIMEOUT",
    "OUTCOME_EXIT",
    "add_deployments_parser",
    "follow",
    "format_deployments",
    "recent_deployments",
    "run",
]

OUTCOME_EXIT = {"healthy": 0, "rejected": 1, "blocked": 1, "unhealthy": 1}
EXIT_TIMEOUT = 3
SCAN_CAP = 10_000  # entries read back per stream at most: a filter that matches nothing stays cheap
_PAGE = 200
_BLOCK_MS = 1000  # each wait wakes at least this often to re-read the timeline


def add_deployments_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``deployments`` under the ``printery`` parser's subcommands."""
    parser = sub.add_parser(
        "deployments",
        parents=[common],
        help="list recent deployments and their outcomes",
        description="List recent deployments, newest first: their outcome (healthy, "
        "rejected, blocked, unhealthy) from the notifications stream, or the stage "
        "they are at while still in flight. Reads the two streams back from their "
        "newest entry; 'recent' is what STREAM_RETENTION keeps.",
        epilog="examples:\n"
        "  printery deployments\n"
        "  printery deployments --service billing-api --environment production --limit 5\n"
        "  printery deployments --json | jq '.[] | select(.outcome == \"blocked\")'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--service", metavar="NAME", help="only this service")
    parser.add_argument("--environment", metavar="ENV", help="only this environment")
    parser.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (20)")
    parser.add_argument("--json", action="store_true", help="print JSON")


async def run(
    adapter: StreamAdapter,
    keys: Keys,
    args: argparse.Namespace,
    *,
    partitions: Sequence[Keys] = (),
) -> int:
    """List (``partitions``: every one of them, in cluster mode); returns the exit code."""
    if args.limit < 1:
        print(f"printery: --limit must be at least 1 (got {args.limit})", file=sys.stderr)
        return 2
    rows = await recent_deployments(
        adapter,
        keys,
        service=args.service,
        environment=args.environment,
        limit=args.limit,
        partitions=partitions,
    )
    print(json.dumps(rows, indent=2) if args.json else format_deployments(rows))
    return 0


# -- listing -------------------------------------------------------------------------


def _text_fields(entry: Entry) -> dict[str, str]:
    return {
        k.decode(errors="replace"): v.decode(errors="replace")
        for k, v in (entry.fields or {}).items()
    }


def _data(fields: dict[str, str]) -> dict[str, Any]:
    try:
        data = json.loads(fields.get("data", ""))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _row(entry: Entry) -> dict[str, Any] | None:
    """A deployment as one event shows it; None for an entry that names none."""
    fields = _text_fields(entry)
    data = _data(fields)
    deployment_id = data.get("deployment_id") or fields.get("subject")
    if not isinstance(deployment_id, str) or not deployment_id:
        return None
    reasons = data.get("reasons")
    return {
        "deployment_id": deployment_id,
        "service": _str_or_none(data.get("service")),
        "version": _str_or_none(data.get("version")),
        "environment": _str_or_none(data.get("environment")),
        "outcome": fields.get("type", "").removeprefix("deployment."),
        "stage": None,
        "at": fields.get("time"),
        "detail": "; ".join(map(str, reasons)) if isinstance(reasons, list) else "",
        "_ms": _id_ms(entry.id),
    }


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _id_ms(entry_id: str) -> int:
    head = entry_id.partition("-")[0]
    return int(head) if head.isdigit() else 0


async def _scan(
    adapter: StreamAdapter, stream: str, keep: Callable[[dict[str, Any]], bool], want: int
) -> list[dict[str, Any]]:
    """Newest-first rows of ``stream`` that ``keep`` accepts, one per deployment."""
    found: dict[str, dict[str, Any]] = {}
    before, read = "+", 0
    while len(found) < want and read < SCAN_CAP:
        page = await newest_entries(adapter, stream, before=before, count=_PAGE)
        if not page:
            break
        read += len(page)
        for entry in page:
            row = _row(entry)
            if row is not None and row["deployment_id"] not in found and keep(row):
                found[row["deployment_id"]] = row
                if len(found) >= want:
                    break
        before = f"({page[-1].id}"
    return list(found.values())


async def recent_deployments(
    adapter: StreamAdapter,
    keys: Keys,
    *,
    service: str | None = None,
    environment: str | None = None,
    limit: int = 20,
    partitions: Sequence[Keys] = (),
) -> list[dict[str, Any]]:
    """Up to ``limit`` deployments, newest first, each with its outcome or current stage.

    ``partitions`` (cluster mode): each is listed, its rows named by its tag, and merged.
    """
    if not partitions:
        rows = await _recent(adapter, keys, service, environment, limit)
    else:
        rows = []
        for part in partitions:
            found = await _recent(adapter, part, service, environment, limit)
            rows += [{**r, "partition": part.tag} for r in found]
    # Newest first; ties (one millisecond, two partitions) in partition order, stable.
    rows = sorted(rows, key=lambda r: r["_ms"], reverse=True)[:limit]
    for row in rows:
        del row["_ms"]
    return rows


async def _recent(
    adapter: StreamAdapter,
    keys: Keys,
    service: str | None,
    environment: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """One partition's (or the standalone installation's) rows, each with its ``_ms``."""

    def matches(row: dict[str, Any]) -> bool:
        return (service is None or row["service"] == service) and (
            environment is None or row["environment"] == environment
        )

    outcomes = await _scan(
        adapter, keys.notifications, lambda r: matches(r) and r["outcome"] in OUTCOME_EXIT, limit
    )
    ended = {r["deployment_id"] for r in outcomes}
    # A full page of outcomes: only what started after the oldest of them can be newer.
    oldest_ms = min((r["_ms"] for r in outcomes), default=0) if len(outcomes) >= limit else 0
    started = await _scan(
        adapter,
        keys.started,
        lambda r: matches(r) and r["deployment_id"] not in ended and r["_ms"] >= oldest_ms,
        limit,
    )
    for row in started:
        timeline = await adapter.hash_get(
            keys.deployment(row["deployment_id"]), ["stage", "status", "updated_at"]
        )
        status = timeline.get("status")
        if status in OUTCOME_EXIT:  # its notification was trimmed away: the timeline knows
            row.update(outcome=status, at=timeline.get("updated_at") or row["at"])
        else:
            row.update(outcome="in progress", stage=timeline.get("stage"))
            if status:
                row["detail"] = f"{timeline.get('stage')}: {status}"
    return [*outcomes, *started]


def format_deployments(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no deployments (none in the notifications or started streams)"
    headers = ["DEPLOYMENT", "SERVICE", "VERSION", "ENVIRONMENT", "OUTCOME", "AT", "DETAIL"]
    table = [
        [
            r["deployment_id"],
            r["service"] or "-",
            r["version"] or "-",
            r["environment"] or "-",
            r["outcome"],
            r["at"] or "-",
            shorten(r["detail"] or "", 60),
        ]
        for r in rows
    ]
    return "\n".join(render_table(headers, table))


# -- waiting for one -----------------------------------------------------------------


async def follow(
    adapter: StreamAdapter,
    keys: Keys,
    deployment_id: str,
    after_id: str,
    *,
    timeout_s: float,
    say: Callable[[str], None],
) -> int:
    """Print the timeline as it grows until an outcome; returns the exit code (module docstring).

    ``after_id`` is the id of the published ``started`` entry: every later stage
    writes after it, so blocking on the stage streams from there misses nothing;
    the timeline is re-read on every wake-up, and at least every second.
    """
    deadline = anyio.current_time() + timeout_s
    stages = (keys.validated, keys.dependencies_satisfied, keys.notifications)
    cursors = dict.fromkeys(stages, after_id)
    shown = 0
    while True:
        timeline = await read_timeline(adapter, keys, deployment_id)
        if timeline is not None:
            if len(timeline.log) < shown:  # the capped log dropped its oldest entries
                shown = 0
            for entry in timeline.log[shown:]:
                at = str(entry.get("at", ""))
                say(
                    f"  {at[11:23] or at:<12}  {entry.get('stage', '?'):<12}  "
                    f"{entry.get('status', '?'):<10}  {entry.get('message', '')}"
                )
            shown = len(timeline.log)
            status = timeline.fields.get("status", "")
            if status in OUTCOME_EXIT:
                say(f"{deployment_id}: {status}")
                return OUTCOME_EXIT[status]
        remaining = deadline - anyio.current_time()
        if remaining <= 0:
            where = timeline.fields.get("stage", "not started") if timeline else "not started"
            say(
                f"{deployment_id}: no outcome within {timeout_s:g} s (at: {where}); "
                f"see printery deployment {deployment_id}"
            )
            return EXIT_TIMEOUT
        found = await next_entries(
            adapter, cursors, block_ms=int(min(_BLOCK_MS, remaining * 1000)) or 1
        )
        for stream, entries in found.items():
            if entries:
                cursors[stream] = entries[-1].id
