"""The messages between the daemon and a worker's process, and nothing else.

Pool protocol, version 1: one JSON object per line, UTF-8, each way::

    child → daemon   {"op": "ready", "protocol": 1}                       first, once
    daemon → child   {"op": "task", "id", "type", "params", "event", "delivery", "deadline_ms"}
    child → daemon   {"op": "progress", "id", "percent"?, "step"?}
    child → daemon   {"op": "log", "id", "level", "message", "data"?}
    child → daemon   {"op": "result", "id", "success": true, "result"?, "outputs"?: [...]}
    child → daemon   {"op": "result", "id", "success": false, "retriable"?: true, "error"}
    daemon → child   {"op": "ping"} → {"op": "pong"};  {"op": "shutdown"}, then stdin closes

Oneshot: stdin gets ``{"id", "type", "params", "event", "delivery"}`` and
closes; stdout may carry one ``{"success", "result", "outputs", "error"}``;
the exit code decides. Anything that does not parse is a
:class:`ProtocolError`: the child is replaced and the message retried.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from printery.envelope import Event, compact_json
from printery.errors import PrinteryError

__all__ = [
    "PROTOCOL_VERSION",
    "ChildResult",
    "Output",
    "ProtocolError",
    "decode_line",
    "encode",
    "loads",
    "oneshot_input",
    "parse_result",
    "task_message",
]

PROTOCOL_VERSION = 1
CHILD_OPS = frozenset({"ready", "progress", "log", "result", "pong"})


class ProtocolError(PrinteryError):
    """A line from a child that is not a message of the protocol: kill, replace, retry."""


@dataclass(frozen=True, slots=True)
class Output:
    """One event a result asks the daemon to write; ``stream`` under ``STREAM_PREFIX``."""

    stream: str
    type: str
    data: Any


@dataclass(frozen=True, slots=True)
class ChildResult:
    """A child's verdict on one message."""

    success: bool
    result: Any = None
    outputs: tuple[Output, ...] = ()
    error: str = ""
    retriable: bool = True


def encode(message: Mapping[str, Any]) -> bytes:
    """One protocol line: compact JSON (which never holds a raw newline) and ``\\n``."""
    try:
        return orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:  # integers past 64 bits, keys that are not text
        return compact_json(message).encode() + b"\n"


def decode_line(line: bytes) -> dict[str, Any]:
    """A child's line as a message with a known ``op``; ProtocolError otherwise."""
    try:
        message = orjson.loads(line)  # a third of the standard library's time
    except orjson.JSONDecodeError:
        message = _stdlib_decode(line)  # what orjson refuses: NaN, integers past 64 bits
    if not isinstance(message, dict):
        raise ProtocolError(f"not a JSON object: {_preview(line)}")
    op = message.get("op")
    if op not in CHILD_OPS:
        raise ProtocolError(f"unknown op {str(op)[:40]!r}")
    return message


def loads(text: str | bytes) -> Any:
    """JSON as the standard library reads it, by orjson when it can; ValueError otherwise."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _stdlib_decode(line: bytes) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise ProtocolError(f"not a JSON line: {_preview(line)}") from None


def task_message(
    entry_id: str, event: Event, params: Any, delivery: int, deadline_ms: int
) -> dict[str, Any]:
    return {
        "op": "task",
        **oneshot_input(entry_id, event, params, delivery),
        "deadline_ms": deadline_ms,
    }


def oneshot_input(entry_id: str, event: Event, params: Any, delivery: int) -> dict[str, Any]:
    """What a oneshot child reads on stdin; the seed's ``{"id", "type", "params"}`` and more."""
    attributes = {k: v for k, v in event.to_fields().items() if k != "data"}
    return {
        "id": entry_id,
        "type": event.type,
        "params": params,
        "event": attributes,
        "delivery": delivery,
    }


def parse_result(message: Mapping[str, Any]) -> ChildResult:
    """A ``result`` message (or a oneshot's stdout object) checked field by field."""
    success = message.get("success")
    if not isinstance(success, bool):
        raise ProtocolError(f"result: success must be true or false (got {success!r})")
    error = message.get("error", "")
    if error is None:
        error = ""
    if not isinstance(error, str):
        error = compact_json(error)
    retriable = message.get("retriable", True)
    if not isinstance(retriable, bool):
        raise ProtocolError(f"result: retriable must be true or false (got {retriable!r})")
    raw_outputs = message.get("outputs")
    if raw_outputs is None:
        raw_outputs = []
    if not isinstance(raw_outputs, list):
        raise ProtocolError("result: outputs must be a list")
    outputs = []
    for index, raw in enumerate(raw_outputs):
        if not isinstance(raw, dict):
            raise ProtocolError(f"result: outputs[{index}] must be an object")
        stream, kind = raw.get("stream"), raw.get("type")
        if not isinstance(stream, str) or not stream or not isinstance(kind, str) or not kind:
            raise ProtocolError(f"result: outputs[{index}] needs a stream and a type (strings)")
        outputs.append(Output(stream, kind, raw.get("data", {})))
    return ChildResult(success, message.get("result"), tuple(outputs), error, retriable)


def _preview(line: bytes) -> str:
    return repr(line[:80]) + ("…" if len(line) > 80 else "")
