"""A pool child's stdout split into protocol lines in the pipe's callback, alone."""

from __future__ import annotations

import asyncio
import sys

import pytest

from printery.processes.child import Child, ChildExited, StdoutItem, _LineProtocol
from printery.processes.protocol import ProtocolError, decode_line, encode, loads

pytestmark = pytest.mark.timeout(10)


def _protocol(limit: int = 64) -> tuple[_LineProtocol, list[StdoutItem]]:
    got: list[StdoutItem] = []
    child = Child(("true",), env={}, cwd=None, line_limit=limit, on_stderr=lambda p, t: None)
    loop = asyncio.new_event_loop()
    try:
        protocol = _LineProtocol(limit, loop, child, got.append)
    finally:
        loop.close()
    return protocol, got


def test_lines_split_across_chunks_arrive_whole_and_in_order() -> None:
    """Two lines in three chunks, one cut mid-way: both decoded, nothing before its newline."""
    protocol, got = _protocol()
    protocol.pipe_data_received(1, b'{"op":"ready","protocol":1}\n{"op":"res')
    assert got == [{"op": "ready", "protocol": 1}]
    protocol.pipe_data_received(1, b'ult","id":"1-0",')
    protocol.pipe_data_received(1, b'"success":true}\n')
    assert got[1] == {"op": "result", "id": "1-0", "success": True}


def test_a_line_past_the_limit_is_one_protocol_error_and_the_rest_is_dropped() -> None:
    """Over the limit without a newline: ProtocolError once; later lines are not handed over."""
    protocol, got = _protocol(limit=32)
    protocol.pipe_data_received(1, b'{"op":"log","message":"' + b"x" * 40)
    protocol.pipe_data_received(1, b'"}\n{"op":"pong"}\n')
    assert len(got) == 1
    assert isinstance(got[0], ProtocolError)
    assert "longer than MAX_MESSAGE_BYTES" in str(got[0])


def test_a_line_that_is_not_json_is_a_protocol_error() -> None:
    """Not JSON: ProtocolError naming it; nothing after it is handed over."""
    protocol, got = _protocol()
    protocol.pipe_data_received(1, b'hello\n{"op":"pong"}\n')
    assert len(got) == 1
    assert isinstance(got[0], ProtocolError)


async def test_a_real_childs_lines_then_its_end_arrive_through_the_callback() -> None:
    """A child that writes two lines and exits: both lines, then ChildExited."""
    got: list[StdoutItem] = []
    ended = asyncio.Event()

    def on_stdout(item: StdoutItem) -> None:
        got.append(item)
        if isinstance(item, ChildExited):
            ended.set()

    script = 'print(\'{"op":"ready","protocol":1}\'); print(\'{"op":"pong"}\')'
    child = Child(
        (sys.executable, "-c", script),
        env={},
        cwd=None,
        line_limit=1024,
        on_stderr=lambda p, t: None,
        on_stdout=on_stdout,
    )
    await child.start()
    await ended.wait()
    assert await child.wait() == 0
    assert got[:2] == [{"op": "ready", "protocol": 1}, {"op": "pong"}]
    assert isinstance(got[2], ChildExited)


def test_what_orjson_refuses_is_read_and_written_as_the_standard_library_does() -> None:
    """NaN and an integer past 64 bits decode; a 2**70 encodes: the fallbacks keep the protocol."""
    assert decode_line(b'{"op":"log","n":NaN}\n')["op"] == "log"
    assert decode_line(b'{"op":"log","n":%d}' % 2**70)["n"] == 2**70
    assert loads("[1e400]") == [float("inf")]
    assert encode({"n": 2**70}) == b'{"n":1180591620717411303424}\n'
