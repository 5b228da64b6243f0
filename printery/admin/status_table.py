"""``printery status`` as a person reads it: the status document rendered as tables."""

from __future__ import annotations

from typing import Any

from printery.admin.tables import format_duration, render_table, shorten
from printery.settings import Settings

__all__ = ["format_status"]


def format_status(doc: dict[str, Any], settings: Settings | None = None) -> str:
    """The status document as the terminal shows it."""
    where = f"  {settings.redis_url_redacted}" if settings is not None else ""
    lines = [f"printery status{where}  prefix {doc['prefix']}  {doc['checked_at']}", ""]
    daemons = [*doc["daemons"], *doc["stale_daemons"]]
    lines.append(f"DAEMONS  {len(doc['daemons'])} live, {len(doc['stale_daemons'])} stale")
    if daemons:
        rows = [
            [
                str(d["consumer"]),
                _n(d["host"]),
                _n(d["pid"]),
                _n(d["version"]),
                format_duration(d["uptime_s"]),
                str(d["pending"]),
                (
                    "none"
                    if d["heartbeat_age_s"] is None
                    else f"{format_duration(d['heartbeat_age_s'])} ago"
                )
                + ("  STALE" if d["stale"] else ""),
            ]
            for d in daemons
        ]
        lines += render_table(
            ["CONSUMER", "HOST", "PID", "VERSION", "UPTIME", "PENDING", "HEARTBEAT"], rows
        )
    else:
        lines.append("(none)")
    worker_rows = [
        [
            str(d["consumer"]),
            name,
            str(w["state"]),
            _n(w["restarts"]),
            _n(w["processed"]),
            _n(w["failed"]),
            _n(w["in_flight"]),
            format_duration(w["uptime_s"]),
            "" if w["state"] == "running" else shorten(str(w["reason"] or ""), 60),
        ]
        for d in doc["daemons"]
        for name, w in d["workers"].items()
    ]
    if worker_rows:
        lines += ["", "WORKERS"]
        lines += render_table(
            [
                "CONSUMER",
                "WORKER",
                "STATE",
                "RESTARTS",
                "PROCESSED",
                "FAILED",
                "IN FLIGHT",
                "UPTIME",
                "REASON",
            ],
            worker_rows,
        )
    child_rows = [
        [
            str(d["consumer"]),
            name,
            _n(c.get("pid")),
            str(c.get("current") or "-"),
            _n(c.get("handled")),
            "-" if c.get("rss_mb") is None else f"{c['rss_mb']:g} MiB",
            "-"
            if c.get("last_heartbeat_age_s") is None
            else f"{format_duration(c['last_heartbeat_age_s'])} ago",
        ]
        for d in doc["daemons"]
        for name, w in d["workers"].items()
        for c in (w.get("children") or [])
        if isinstance(c, dict)
    ]
    if child_rows:
        lines += ["", "CHILDREN"]
        lines += render_table(
            ["CONSUMER", "WORKER", "PID", "CURRENT", "HANDLED", "RSS", "HEARTBEAT"], child_rows
        )
    lines += ["", "STREAMS"]
    lines += render_table(
        ["STREAM", "LENGTH", "DEAD LETTERS"],
        [
            [s["stream"], str(s["length"]) if s["exists"] else "(none)", str(s["dead_letters"])]
            for s in doc["streams"]
        ],
    )
    group_rows = [row for s in doc["streams"] for g in s["groups"] for row in _group_rows(s, g)]
    if group_rows:
        lines += ["", "GROUPS"]
        lines += render_table(
            ["STREAM", "GROUP", "LAG", "PENDING", "OLDEST PENDING", "CONSUMER", "IDLE", "HOLDS"],
            group_rows,
        )
    lines.append("")
    if doc["healthy"]:
        workers = sum(len(d["workers"]) for d in doc["daemons"])
        daemons_live = len(doc["daemons"])
        lines.append(f"OK: {workers} worker(s) running in {daemons_live} live daemon(s)")
    else:
        lines.append(f"NOT OK: {len(doc['problems'])} problem(s)")
        lines += [f"  - {p}" for p in doc["problems"]]
    return "\n".join(lines)


def _group_rows(stream: dict[str, Any], group: dict[str, Any]) -> list[list[str]]:
    head = [
        stream["stream"],
        group["group"],
        _n(group["lag"], unknown="?"),
        str(group["pending"]),
        format_duration(group["oldest_pending_age_s"]),
    ]
    consumers = group["consumers"] or [{"name": "-", "idle_s": None, "pending": None}]
    return [
        [
            *(head if i == 0 else [""] * len(head)),
            c["name"],
            format_duration(c["idle_s"]),
            _n(c["pending"]),
        ]
        for i, c in enumerate(consumers)
    ]


def _n(value: object, unknown: str = "-") -> str:
    return unknown if value is None else str(value)
