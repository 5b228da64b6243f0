"""``printery status``: every live daemon, its workers, and every stream, read from Redis.

::

    <prefix>:heartbeat:* ─► live daemons, and stale ones (updated_at older than
                            2 × interval_s; the key outlives it by one interval)
    the pipeline's streams, plus any stream a live or stale worker reads
                         ─► length, dead letters, groups: lag, pending, oldest
                            pending age, consumers and their idle time
    the groups' consumers ─► a consumer holding pending messages without a
                            heartbeat is a stale daemon too, until they are claimed
                            (printery.admin.readers)
    ─► a table (or ``--json``); exit 0 when every worker of every live daemon is
       ``running``, 1 when one is not, a daemon is stale, a stage's group has a
       backlog that no live daemon reads, or no daemon is live

The JSON document (``--json``; one compact line per refresh with ``--watch``)::

    {"checked_at": str, "prefix": str, "healthy": bool, "problems": [str],
     "daemons": [DAEMON], "stale_daemons": [DAEMON], "streams": [STREAM]}
    DAEMON  = {"consumer", "host", "pid", "version", "started_at", "uptime_s",
               "updated_at", "heartbeat_age_s", "interval_s", "stale", "pending",
               "workers": {name: {"state", "restarts", "uptime_s", "processed",
                                  "failed", "in_flight", "reason", "stream", "group",
                                  "children"}}}
    STREAM  = {"stream", "exists", "length", "dead_letters", "groups": [GROUP]}
    GROUP   = {"group", "lag", "pending", "oldest_pending_age_s",
               "consumers": [{"name", "pending", "idle_s"}]}

``in_flight``, ``stream`` and ``group`` are null for workers that are not
stream workers (or daemons too old to report them); ``children`` is null but
for workers in their own processes, a list of ``{"pid", "current",
"handled", "rss_mb", "last_heartbeat_age_s"}``; ``lag`` is null when Redis
cannot tell. ``pending`` counts the messages the daemon's consumer holds in
the groups shown. A stale daemon known only from the groups (no heartbeat
record left) has null host, pid, times and interval, no workers, and
``"holds": [{"stream", "group", "pending"}]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import anyio

from printery.admin.partitions import aggregate
from printery.admin.readers import held_by, unread_backlogs, vanished_holders
from printery.admin.status_table import format_status
from printery.admin.tables import format_duration
from printery.envelope import now_rfc3339
from printery.errors import RedisPermanent, RedisUnavailable
from printery.redis.adapter import StreamAdapter
from printery.redis.cluster import partitions_of
from printery.redis.keys import Keys
from printery.redis.replies import StreamInfo
from printery.settings import Settings

__all__ = ["STALE_AFTER_INTERVALS", "add_status_parser", "collect_status", "format_status", "run"]

STALE_AFTER_INTERVALS = 2  # a heartbeat older than this many intervals is stale
_WORKER_FIELDS = ("state", "restarts", "uptime_s", "processed", "failed", "in_flight", "reason")
_CLEAR = "\x1b[H\x1b[2J"


def add_status_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``status`` under the ``printery`` parser's subcommands."""
    status = sub.add_parser(
        "status",
        parents=[common],
        help="every live daemon, worker and stream, from Redis",
        description="Show every live daemon (from its heartbeat) and each of its workers, "
        "then every stream: length, dead letters, and per group the lag, pending "
        "messages, oldest pending age and consumers. Exit 0 when every worker is "
        "running, 1 when something is degraded, failed or stale (or no daemon is "
        "live), 2 when Redis cannot be reached.",
        epilog="examples:\n"
        "  printery status\n"
        "  printery status --json | jq '.daemons[].workers'\n"
        "  printery status --watch 5\n"
        "  printery status >/dev/null || page-the-on-call",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("--json", action="store_true", help="print JSON (see the README)")
    status.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=2.0,
        default=None,
        metavar="SECONDS",
        help="redraw every SECONDS (default 2) until Ctrl-C",
    )
    # Bounds --watch, for tests and scripts that want N samples.
    status.add_argument("--count", type=int, default=None, help=argparse.SUPPRESS)


async def run(adapter: StreamAdapter, settings: Settings, args: argparse.Namespace) -> int:
    """Print the status once, or every ``--watch`` seconds; returns the exit code."""
    keys = Keys(settings.stream_prefix)
    partitions = partitions_of(settings).all if settings.cluster else ()
    if args.watch is None:
        doc = await collect_status(adapter, keys, partitions=partitions)
        print(json.dumps(doc, indent=2) if args.json else format_status(doc, settings))
        return 0 if doc["healthy"] else 1
    interval = max(0.1, args.watch)
    code = 0
    async with anyio.create_task_group() as tg:
        if threading.current_thread() is threading.main_thread():
            tg.start_soon(_stop_on_signal, tg.cancel_scope)
        refreshes = 0
        while args.count is None or refreshes < args.count:
            refreshes += 1
            code = await _refresh(adapter, keys, settings, args.json, interval)
            if args.count is None or refreshes < args.count:
                await anyio.sleep(interval)
        tg.cancel_scope.cancel()
    return code


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _refresh(
    adapter: StreamAdapter, keys: Keys, settings: Settings, as_json: bool, interval: float
) -> int:
    """One frame of ``--watch``: an unreachable Redis is shown, and tried again next time."""
    try:
        partitions = partitions_of(settings).all if settings.cluster else ()
        doc = await collect_status(adapter, keys, partitions=partitions)
    except (RedisUnavailable, RedisPermanent) as exc:
        line = (
            f"printery: REDIS_URL ({settings.redis_url_redacted}): {exc}"
            if isinstance(exc, RedisPermanent)
            else f"printery: cannot reach Redis at {settings.redis_url_redacted}: {exc}"
        )
        if as_json:
            print(json.dumps({"checked_at": now_rfc3339(), "error": line}), flush=True)
        else:
            print(_frame(f"{line} (trying again every {interval:g}s)"), flush=True)
        return 2
    if as_json:
        print(json.dumps(doc, separators=(",", ":")), flush=True)
    else:
        head = f"every {interval:g}s, Ctrl-C to stop\n"
        print(_frame(head + format_status(doc, settings)), flush=True)
    return 0 if doc["healthy"] else 1


def _frame(text: str) -> str:
    return _CLEAR + text if sys.stdout.isatty() else text + "\n"


# -- collecting ------------------------------------------------------------------------


async def collect_status(
    adapter: StreamAdapter,
    keys: Keys,
    *,
    now: float | None = None,
    partitions: Sequence[Keys] = (),
) -> dict[str, Any]:
    """The status document (see the module docstring); ``now`` is a Unix time, for tests.

    ``partitions`` (cluster mode): each pipeline stream is the sum of its
    partitions' streams, every partition kept under ``partitions``.
    """
    wall = time.time() if now is None else now
    live: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    problems: list[str] = []
    for raw in await adapter.heartbeats(keys.heartbeat_pattern):
        daemon = _daemon(raw, wall)
        if daemon is None:
            problems.append("an unreadable heartbeat record (not printery's JSON)")
        elif daemon["stale"]:
            stale.append(daemon)
        else:
            live.append(daemon)
    live.sort(key=lambda d: str(d["consumer"]))
    stale.sort(key=lambda d: str(d["consumer"]))

    server_ms = await adapter.server_time_ms()
    shown = _streams_to_show(keys, [*live, *stale])
    streams = [await _stream(adapter, s, server_ms) for s in shown]
    if partitions:
        streams = [
            await _partitioned(adapter, d["stream"], keys, partitions, server_ms) for d in streams
        ]
    held = held_by(streams)
    for daemon in (*live, *stale):
        daemon["pending"] = sum(p for _, _, p in held.get(daemon["consumer"], ()))
    stale += vanished_holders(held, {d["consumer"] for d in (*live, *stale)})

    if not live:
        problems.append(f"no live daemon (no fresh heartbeat at {keys.heartbeat_pattern})")
    for daemon in live:
        for name, worker in daemon["workers"].items():
            if worker["state"] != "running":
                reason = f": {worker['reason']}" if worker["reason"] else ""
                problems.append(f"{daemon['consumer']}: {name} is {worker['state']}{reason}")
    for daemon in stale:
        holds = f", holds {daemon['pending']} pending" if daemon["pending"] else ""
        if daemon["heartbeat_age_s"] is None:
            problems.append(
                f"{daemon['consumer']}: no heartbeat, holds {daemon['pending']} pending "
                "(a live consumer claims them after CLAIM_IDLE_MS)"
            )
        else:
            age = format_duration(daemon["heartbeat_age_s"])
            problems.append(f"{daemon['consumer']}: heartbeat is stale (last {age} ago){holds}")
    declared = {
        (w["stream"], w["group"])
        for d in (*live, *stale)
        for w in d["workers"].values()
        if isinstance(w["stream"], str) and isinstance(w["group"], str)
    }
    problems += unread_backlogs(keys, streams, live, declared)
    return {
        "checked_at": now_rfc3339(),
        "prefix": keys.prefix,
        "healthy": not problems,
        "problems": problems,
        "daemons": live,
        "stale_daemons": stale,
        "streams": streams,
    }


def _daemon(raw: bytes, wall: float) -> dict[str, Any] | None:
    """A heartbeat record as the status shows it; None when it is not one."""
    try:
        record = json.loads(raw)
        updated = datetime.fromisoformat(str(record["updated_at"])).timestamp()
        interval = float(record["interval_s"])
        workers = dict(record.get("workers") or {})
    except (ValueError, KeyError, TypeError):
        return None
    age = round(max(0.0, wall - updated), 1)
    return {
        "consumer": str(record.get("consumer", "?")),
        "host": record.get("host"),
        "pid": record.get("pid"),
        "version": record.get("version"),
        "started_at": record.get("started_at"),
        "uptime_s": record.get("uptime_s"),
        "updated_at": record["updated_at"],
        "heartbeat_age_s": age,
        "interval_s": interval,
        "stale": age > STALE_AFTER_INTERVALS * interval,
        "workers": {
            str(name): {
                **{f: (w or {}).get(f) for f in _WORKER_FIELDS},
                "stream": (w or {}).get("stream"),
                "group": (w or {}).get("group"),
                # Workers in their own processes: pid, current, handled, rss_mb, heartbeat age.
                "children": (w or {}).get("children"),
            }
            for name, w in workers.items()
        },
    }


def _streams_to_show(keys: Keys, live: list[dict[str, Any]]) -> list[str]:
    """The pipeline's streams in pipeline order, then any other stream these daemons read."""
    builtin = [
        keys.started,
        keys.validated,
        keys.dependencies_satisfied,
        keys.notifications,
        keys.delivered,
    ]
    read = {
        w["stream"] for d in live for w in d["workers"].values() if isinstance(w["stream"], str)
    }
    return builtin + sorted(read - set(builtin))


async def _stream(adapter: StreamAdapter, stream: str, server_ms: int) -> dict[str, Any]:
    info: StreamInfo | None = await adapter.stream_info(stream)
    dead_key = Keys.dead(stream)
    dead = await adapter.length(dead_key) if await adapter.key_type(dead_key) == "stream" else 0
    groups = []
    for group in info.groups if info is not None else ():
        oldest = None
        if group.oldest_pending_id is not None:
            oldest = round(max(0, server_ms - _id_ms(group.oldest_pending_id)) / 1000, 1)
        groups.append(
            {
                "group": group.name,
                "lag": group.lag,
                "pending": group.pending,
                "oldest_pending_age_s": oldest,
                "consumers": [
                    {"name": c.name, "pending": c.pending, "idle_s": round(c.idle_ms / 1000, 1)}
                    for c in group.consumers
                ],
            }
        )
    return {
        "stream": stream,
        "exists": info is not None,
        "length": info.length if info is not None else 0,
        "dead_letters": dead,
        "groups": groups,
    }


async def _partitioned(
    adapter: StreamAdapter, stream: str, keys: Keys, partitions: Sequence[Keys], server_ms: int
) -> dict[str, Any]:
    """A pipeline stream summed over its partitions; any other stream as it is."""
    suffix = stream.removeprefix(keys.root)
    if suffix == stream:
        return await _stream(adapter, stream, server_ms)
    parts = [await _stream(adapter, p.root + suffix, server_ms) for p in partitions]
    return aggregate(stream, parts)


def _id_ms(entry_id: str) -> int:
    with contextlib.suppress(ValueError):
        return int(entry_id.partition("-")[0])
    return 0


# -- the table -------------------------------------------------------------------------
