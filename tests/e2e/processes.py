"""Helpers of the own-process worker tests: a workers file, tasks, each message's fate."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from printery.envelope import Event
from tests.e2e.daemon import ROOT

__all__ = ["POOL_CHILD", "fates", "is_alive", "task", "write_workers_file"]

POOL_CHILD = ROOT / "tests" / "e2e" / "children" / "pool_child.py"
ONESHOT_CHILD = ROOT / "tests" / "e2e" / "children" / "oneshot_child.py"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def write_workers_file(path: Path, workers: Mapping[str, Mapping[str, Any]]) -> Path:
    """A TOML workers file with one ``[workers.<name>]`` table per entry."""
    lines = []
    for name, table in workers.items():
        lines.append(f"[workers.{name}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in table.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def pool_worker(**overrides: Any) -> dict[str, Any]:
    """The test pool child under this interpreter, reading ``proc:in``, writing ``proc:out``."""
    return {
        "command": [sys.executable, str(POOL_CHILD)],
        "input": "proc:in",
        "outputs": ["proc:out"],
        "processes": 2,
        **overrides,
    }


def task(n: int, do: str = "echo", **params: Any) -> dict[str | bytes, str | bytes]:
    """One input event; the child does ``do`` with it."""
    event = Event.create("proc.run", f"subject-{n}", {"n": n, "do": do, **params}, source="e2e")
    return dict(event.to_fields())


def fates(
    client: redis.Redis,
    prefix: str,
    published: Sequence[bytes],
    *,
    stream: str = "proc:in",
    group: str = "proc",
    out: str = "proc:out",
) -> dict[bytes, str]:
    """Each published id's fate: ``acked`` (an output names it), ``dead: <reason>``, ``pending``.

    Fails if one has none (lost) or two (an output and a dead letter).
    """
    key = f"{prefix}:{stream}"
    outputs: dict[bytes, int] = {}
    for _, fields in client.xrange(f"{prefix}:{out}"):
        in_id = json.loads(fields[b"data"]).get("in_id", "").encode()
        outputs[in_id] = outputs.get(in_id, 0) + 1
    dead = {
        bytes(f[b"original_id"]): f[b"error"].decode()
        for _, f in client.xrange(f"{key}:dead")
        if b"original_id" in f
    }
    pending: set[bytes] = set()
    if client.exists(key):
        rows = client.xpending_range(key, group, min="-", max="+", count=100_000)
        pending = {bytes(r["message_id"]) for r in rows}
    found: dict[bytes, str] = {}
    for entry in published:
        fate = [
            *(["acked"] * outputs.get(entry, 0)),
            *([f"dead: {dead[entry]}"] if entry in dead else []),
            *(["pending"] if entry in pending else []),
        ]
        assert len(fate) == 1, f"{entry!r}: {fate or 'lost'}"
        found[entry] = fate[0]
    return found


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, from /proc."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for task_dir in Path(f"/proc/{parent}/task").glob("*"):
            children = task_dir / "children"
            try:
                kids = {int(c) for c in children.read_text().split()}
            except OSError:
                continue
            frontier.extend(kids - found)
            found |= kids
    return found
