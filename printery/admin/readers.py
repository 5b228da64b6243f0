"""Who reads each group, and who holds its messages: the status's view from the consumer groups.

Heartbeats tell which daemons are alive; the groups tell what they leave
behind. Two things are problems even when every live worker is ``running``:

- **a backlog nobody reads**: a stage's group has messages waiting (lag) or
  pending, and no live daemon runs a worker on that stream and group. Work is
  piling up and nothing will take it (the validator's daemons all gone, a
  ``WORKER_MODE`` that leaves a stage out). The pairs checked are the
  pipeline's stages, plus each stream and group a daemon's heartbeat declares.
- **a dead consumer's pending messages**: a consumer that holds pending
  messages and has no heartbeat record (its daemon was killed, and the record
  expired after three intervals) is shown as a stale daemon until a live
  consumer claims them (after ``CLAIM_IDLE_MS``), not only while the record
  lasts. Only streams the status shows are looked at: the pipeline's, and
  those a live or stale daemon declares.
"""

from __future__ import annotations

from typing import Any

from printery.redis.keys import Keys

__all__ = ["held_by", "stage_groups", "unread_backlogs", "vanished_holders"]

_NOT_READING = frozenset({"failed", "stopped"})


def stage_groups(keys: Keys) -> dict[str, str]:
    """The pipeline's input streams and the group that reads each."""
    return {
        keys.started: "validator",
        keys.validated: "dependency-checker",
        keys.dependencies_satisfied: "health-monitor",
        keys.notifications: "notifier",
    }


def held_by(streams: list[dict[str, Any]]) -> dict[str, list[tuple[str, str, int]]]:
    """Consumer name → (stream, group, pending) for each group it holds messages in."""
    held: dict[str, list[tuple[str, str, int]]] = {}
    for stream in streams:
        for group in stream["groups"]:
            for consumer in group["consumers"]:
                if consumer["pending"]:
                    held.setdefault(consumer["name"], []).append(
                        (stream["stream"], group["group"], int(consumer["pending"]))
                    )
    return held


def vanished_holders(
    held: dict[str, list[tuple[str, str, int]]], known: set[str]
) -> list[dict[str, Any]]:
    """A stale-daemon record for each consumer that holds messages and has no heartbeat."""
    return [
        {
            "consumer": name,
            "host": None,
            "pid": None,
            "version": None,
            "started_at": None,
            "uptime_s": None,
            "updated_at": None,
            "heartbeat_age_s": None,
            "interval_s": None,
            "stale": True,
            "pending": sum(p for _, _, p in holds),
            "holds": [{"stream": s, "group": g, "pending": p} for s, g, p in holds],
            "workers": {},
        }
        for name, holds in sorted(held.items())
        if name not in known
    ]


def unread_backlogs(
    keys: Keys,
    streams: list[dict[str, Any]],
    live: list[dict[str, Any]],
    declared: set[tuple[str, str]],
) -> list[str]:
    """One problem line per (stream, group) with messages waiting and no live reader."""
    pairs = set(stage_groups(keys).items()) | declared
    readers = {
        (w["stream"], w["group"])
        for d in live
        for w in d["workers"].values()
        if w.get("stream") and w.get("state") not in _NOT_READING
    }
    problems = []
    for stream in streams:
        if not stream["exists"]:
            continue
        groups = {g["group"]: g for g in stream["groups"]}
        for name in sorted(g for s, g in pairs if s == stream["stream"]):
            if (stream["stream"], name) in readers:
                continue
            group = groups.get(name)
            if group is None:
                waiting, pending = stream["length"], 0
            else:
                # An unknown lag (entries deleted under the group) is not guessed at.
                waiting, pending = group["lag"] or 0, group["pending"]
            if waiting + pending:
                problems.append(
                    f"{stream['stream']}: {waiting} waiting and {pending} pending for group "
                    f"{name}, and no live daemon reads it"
                )
    return problems
