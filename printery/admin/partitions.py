"""A stage's partitions (REDIS_MODE=cluster) shown as one stream, with each partition kept.

``printery status`` lists the pipeline's five streams in both modes: on a
cluster each row adds up its stage's partition streams (length, dead letters,
lag and pending per group, consumers by name), and the document keeps every
partition's own figures under ``partitions``, so one slow partition (a node
in trouble) is still visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["aggregate"]


def aggregate(stream: str, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One stream document over ``parts`` (as ``status._stream`` makes them), named ``stream``."""
    groups: dict[str, dict[str, Any]] = {}
    for part in parts:
        for group in part["groups"]:
            into = groups.setdefault(
                group["group"],
                {
                    "group": group["group"],
                    "lag": 0,
                    "pending": 0,
                    "oldest_pending_age_s": None,
                    "consumers": {},
                },
            )
            # A lag Redis cannot tell for one partition is unknown for the sum.
            into["lag"] = (
                None if into["lag"] is None or group["lag"] is None else into["lag"] + group["lag"]
            )
            into["pending"] += group["pending"]
            into["oldest_pending_age_s"] = _oldest(
                into["oldest_pending_age_s"], group["oldest_pending_age_s"]
            )
            for consumer in group["consumers"]:
                seen = into["consumers"].setdefault(
                    consumer["name"],
                    {"name": consumer["name"], "pending": 0, "idle_s": consumer["idle_s"]},
                )
                seen["pending"] += consumer["pending"]
                seen["idle_s"] = min(seen["idle_s"], consumer["idle_s"])
    return {
        "stream": stream,
        "exists": any(p["exists"] for p in parts),
        "length": sum(p["length"] for p in parts),
        "dead_letters": sum(p["dead_letters"] for p in parts),
        "groups": [
            {**g, "consumers": sorted(g["consumers"].values(), key=lambda c: str(c["name"]))}
            for g in groups.values()
        ],
        "partitions": list(parts),
    }


def _oldest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)
