"""MONITOR on a real redis-server: every command it runs, including those inside scripts.

Redis feeds a script call (``EVAL``/``EVALSHA``) to its monitors before the
commands the script runs, which appear as ``[db lua]`` lines: so each Lua
command can be attributed to the script call just before it, and its keys
asked of the server itself (``COMMAND GETKEYS``), which knows every command's
key positions better than any list kept here.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import anyio
import redis.asyncio as aioredis
import redis.exceptions as rex

__all__ = ["Monitor", "ScriptCall"]

_LINE = re.compile(rb"^\+?\d+\.\d+ \[\d+ (?P<who>[^\]]+)\] (?P<args>.*)$")
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


def _unquoted(text: bytes) -> bytes:
    """The bytes of one argument as MONITOR quotes it (sdscatrepr: ``\\xHH``, ``\\n``, ``\\"``)."""
    out, i = bytearray(), 0
    while i < len(text):
        if text[i : i + 1] == b"\\":
            nxt = text[i + 1 : i + 2]
            if nxt == b"x":
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
                continue
            out += _ESCAPES.get(nxt, nxt)
            i += 2
            continue
        out.append(text[i])
        i += 1
    return bytes(out)


@dataclass
class ScriptCall:
    """One EVAL/EVALSHA: its script's sha (or source), declared KEYS, and the commands it ran."""

    script: bytes
    declared: list[bytes]
    ran: list[list[bytes]] = field(default_factory=list)


class Monitor:
    """A raw MONITOR connection, read in the background until :meth:`stop`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.lines: list[tuple[bytes, list[bytes]]] = []
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._writer.write(b"MONITOR\r\n")
        await self._writer.drain()
        assert b"+OK\r\n" == await reader.readline()
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            found = _LINE.match(line.rstrip(b"\r\n"))
            if found:
                args = [_unquoted(a) for a in _ARG.findall(found["args"])]
                self.lines.append((found["who"], args))

    async def stop(self, client: aioredis.Redis) -> None:
        """Stop once every command sent before this call has been seen (an ECHO marks the end)."""
        marker = b"printery-monitor-end"
        await client.echo(marker)
        with anyio.fail_after(10):
            while not any(args[-1:] == [marker] for _, args in self.lines):
                await anyio.sleep(0.01)
        assert self._writer is not None
        assert self._task is not None
        self._writer.close()
        self._task.cancel()

    def script_calls(self) -> list[ScriptCall]:
        """Every script call seen, each with the commands its script ran.

        An EVALSHA refused with NOSCRIPT (redis-py's first try, before SCRIPT
        LOAD) is seen too, having run nothing.
        """
        calls: list[ScriptCall] = []
        for who, args in self.lines:
            name = args[0].lower() if args else b""
            if who == b"lua":
                assert calls, f"a script command with no script call before it: {args!r}"
                calls[-1].ran.append(args)
            elif name in {b"eval", b"evalsha", b"eval_ro", b"evalsha_ro"}:
                numkeys = int(args[2])
                calls.append(ScriptCall(args[1], args[3 : 3 + numkeys]))
        return calls


async def keys_of(client: aioredis.Redis, command: list[bytes]) -> list[bytes]:
    """The keys ``command`` touches, as the server itself finds them (COMMAND GETKEYS)."""
    if len(command) == 1:
        return []  # TIME, say: COMMAND GETKEYS wants a command with arguments
    try:
        found: Any = await client.command_getkeys(*command)
    except rex.ResponseError as exc:
        if "no key arguments" in str(exc):
            return []
        raise
    return [k if isinstance(k, bytes) else str(k).encode() for k in found]
