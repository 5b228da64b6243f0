"""Pool protocol 1 and oneshot's verdicts, alone: each message shape and each refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest

from printery.envelope import Event
from printery.errors import Permanent, RetryLater
from printery.processes.oneshot import verdict
from printery.processes.protocol import (
    ChildResult,
    Output,
    ProtocolError,
    decode_line,
    encode,
    oneshot_input,
    parse_result,
    task_message,
)

pytestmark = pytest.mark.timeout(10)

EVENT = Event(
    type="media.uploaded",
    subject="img-1",
    data='{"path": "a.png"}',
    source="uploader",
    id="ev-1",
    time="2026-12-03T10:00:00.000Z",
    traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
)


def test_a_task_line_carries_the_fields_of_section_7() -> None:
    """id, type, params, the event's attributes (no data), delivery, deadline; one line."""
    line = encode(task_message("1-0", EVENT, {"path": "a.png"}, 2, 1_800_000_000_000))
    assert line.endswith(b"\n")
    assert 1 == line.count(b"\n")
    expected = {
        "op": "task",
        "id": "1-0",
        "type": "media.uploaded",
        "params": {"path": "a.png"},
        "event": {
            "specversion": "1.0",
            "id": "ev-1",
            "source": "uploader",
            "type": "media.uploaded",
            "time": "2026-12-03T10:00:00.000Z",
            "subject": "img-1",
            "datacontenttype": "application/json",
            "traceparent": EVENT.traceparent,
        },
        "delivery": 2,
        "deadline_ms": 1_800_000_000_000,
    }
    assert expected == json.loads(line)


def test_a_newline_inside_a_value_never_splits_the_line() -> None:
    """JSON escapes it: still one line."""
    assert b'{"op":"task","x":"a\\nb"}\n' == encode({"op": "task", "x": "a\nb"})


def test_the_oneshot_input_is_the_seeds_shape_and_more() -> None:
    """{"id", "type", "params"} as the seed wrote them, plus event and delivery."""
    found = oneshot_input("1-0", EVENT, {"n": 1}, 1)
    assert ("1-0", "media.uploaded", {"n": 1}, 1) == (
        found["id"],
        found["type"],
        found["params"],
        found["delivery"],
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "not a JSON line: b'not json'"),
        (b"[1, 2]", "not a JSON object: b'[1, 2]'"),
        (b'{"op": "explode"}', "unknown op 'explode'"),
        (b'{"no": "op"}', "unknown op 'None'"),
    ],
)
def test_a_line_that_is_no_message_is_a_protocol_error(line: bytes, reason: str) -> None:
    """Each refusal says why."""
    with pytest.raises(ProtocolError) as caught:
        decode_line(line)
    assert reason == str(caught.value)


@pytest.mark.parametrize("op", ["ready", "progress", "log", "result", "pong"])
def test_the_childs_ops_decode(op: str) -> None:
    """Every child → daemon op of the table."""
    assert {"op": op, "id": "1"} == decode_line(json.dumps({"op": op, "id": "1"}).encode())


def test_a_result_is_read_with_its_outputs_and_defaults() -> None:
    """success, result, outputs (data defaults to {}), retriable defaults to true."""
    found = parse_result(
        {
            "op": "result",
            "id": "1",
            "success": True,
            "result": {"w": 1},
            "outputs": [{"stream": "media:thumbnailed", "type": "media.thumbnailed"}],
        }
    )
    expected = ChildResult(True, {"w": 1}, (Output("media:thumbnailed", "media.thumbnailed", {}),))
    assert expected == found
    assert ChildResult(False, error="boom", retriable=False) == parse_result(
        {"success": False, "retriable": False, "error": "boom"}
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"success": "yes"}, "result: success must be true or false"),
        ({"success": False, "retriable": "no"}, "result: retriable must be true or false"),
        ({"success": True, "outputs": {}}, "result: outputs must be a list"),
        ({"success": True, "outputs": [1]}, "result: outputs[0] must be an object"),
        ({"success": True, "outputs": [{"stream": "s"}]}, "result: outputs[0] needs a stream"),
    ],
)
def test_a_malformed_result_is_a_protocol_error(message: dict[str, Any], reason: str) -> None:
    """The child is replaced and the message retried, saying what was wrong."""
    with pytest.raises(ProtocolError) as caught:
        parse_result(message)
    assert str(caught.value).startswith(reason)


def test_oneshot_exit_0_is_success_with_or_without_stdout() -> None:
    """Empty stdout is a success without result; the seed's {"success", "result"} is read."""
    assert ChildResult(True) == verdict(0, b"", [])
    assert ChildResult(True, {"x": 1}) == verdict(0, b'{"success": true, "result": {"x": 1}}', [])


def test_oneshot_exit_1_retries_2_dead_letters_others_are_crashes() -> None:
    """The error is stdout's, else stderr's last line."""
    with pytest.raises(RetryLater) as retry:
        verdict(1, b'{"success": false, "error": "busy"}', ["ignored"])
    assert "exit status 1: busy" == retry.value.reason
    with pytest.raises(Permanent) as permanent:
        verdict(2, b"", ["bad input"])
    assert "exit status 2: bad input" == permanent.value.reason
    with pytest.raises(RetryLater) as crash:
        verdict(-11, b"", [])
    assert "crashed (killed by SIGSEGV)" == crash.value.reason


def test_oneshot_stdout_that_is_not_one_object_is_a_protocol_error_on_success() -> None:
    """Exit 0 with garbage on stdout is retried, not acked."""
    with pytest.raises(RetryLater) as caught:
        verdict(0, b"hello", [])
    assert "protocol error: stdout is not one JSON object" == caught.value.reason
