"""One child process of a worker: spawned in its own process group, never outliving the daemon.

- **Its own group** (``start_new_session``): a kill reaches whatever the
  child started too (a shell's children, a worker's helpers).
- **No orphan**: the child gets ``PR_SET_PDEATHSIG`` = SIGKILL before it
  execs, so even ``kill -9`` of the daemon takes it down; a child that
  watches its stdin sees it close as well.
- **stdout is the protocol, stderr the child's log.** stderr is read in its
  own task from the moment the child starts, in chunks, and re-logged line by
  line under the worker's name: a child that writes 200 KB to a pipe nobody
  reads blocks for ever (Apache Storm's STORM-733). stdout's line limit is
  raised from asyncio's 64 KiB to the message size bound; a longer line is a
  :class:`~printery.processes.protocol.ProtocolError`.
- **Lines as they arrive** (``on_stdout``, the pool's way): stdout is split
  into lines in the pipe's own callback and each is handed over decoded,
  with no reader task and no stream buffer between the pipe and the waiting
  handler; the end of stdout is handed over as :class:`ChildExited`.
- **Any line is life**: ``last_seen`` moves with stdout and stderr alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from printery.processes.protocol import ProtocolError, decode_line, encode

__all__ = ["Child", "ChildExited", "cannot_open_script", "describe_exit", "rss_mb", "start_problem"]

T = TypeVar("T")

_STDERR_LINE_CHARS = 8192  # longer stderr lines are logged cut, never buffered without bound
_PR_SET_PDEATHSIG = 1
_LIBC: Any = None
with contextlib.suppress(OSError):  # not Linux: the stdin EOF still ends a well-behaved child
    _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


class ChildExited(Exception):
    """The child's stdout closed: it exited (or is exiting), with ``returncode`` if known."""

    def __init__(self, returncode: int | None) -> None:
        super().__init__(f"child exited ({describe_exit(returncode)})")
        self.returncode = returncode


def _need(value: T | None) -> T:
    if value is None:
        raise RuntimeError("the child was not started")
    return value


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")  # python, python3, python3.11: not pythonw
# CPython's own line for a script it cannot open (it then exits 2):
# "python3: can't open file '/srv/missing.py': [Errno 2] No such file or directory"
_CANNOT_OPEN = re.compile(r"^\S+: can't open file .+: \[Errno \d+\] ")


def start_problem(command: Sequence[str], *, cwd: str | None, path: str | None) -> str | None:
    """Why ``command`` cannot start at all, found without running it; None when it looks fine.

    The program must be an executable file (a bare name: on the child's
    ``path``); for a Python interpreter, the script it is given must exist,
    relative to ``cwd``: CPython exits 2 for a missing one, which a oneshot
    worker would otherwise take for the message's verdict.
    """
    program, base = command[0], Path(cwd or os.getcwd())
    if cwd is not None and not Path(cwd).is_dir():
        return f"cwd {cwd!r} is not a directory"
    if os.sep in program:
        found = base / program  # an absolute program stays as it is
        if not (found.is_file() and os.access(found, os.X_OK)):
            return f"{program!r} is not an executable file"
    elif shutil.which(program, path=path) is None:
        return f"{program!r} is not on the child's PATH"
    if _PYTHON.fullmatch(Path(program).name):
        script = _python_script(command[1:])
        if script is not None and not (base / script).is_file():
            return f"{program} cannot open its script {script!r}: no such file in {str(base)!r}"
    return None


def _python_script(args: Sequence[str]) -> str | None:
    """The script a Python command line runs, or None (``-c``, ``-m``, stdin, none given)."""
    skip = False
    for at, arg in enumerate(args):
        if skip:
            skip = False
        elif arg == "--":
            return args[at + 1] if at + 1 < len(args) else None
        elif arg == "-":
            return None
        elif arg.startswith("--"):
            skip = arg == "--check-hash-based-pycs"
        elif arg.startswith("-"):
            for place, flag in enumerate(arg[1:], start=2):
                if flag in "cm":
                    return None  # a command or a module follows
                if flag in "WX":  # its value is the rest of the argument, or the next one
                    skip = place == len(arg)
                    break
        else:
            return arg
    return None


def cannot_open_script(code: int | None, stdout: bytes, stderr_tail: Sequence[str]) -> bool:
    """Whether an exit is CPython's own for a script it cannot open: 2, no stdout, its line."""
    return (
        code == 2
        and not stdout.strip()
        and bool(stderr_tail)
        and _CANNOT_OPEN.match(stderr_tail[-1]) is not None
    )


def _die_with_parent(parent: int) -> Callable[[], None]:
    def before_exec() -> None:
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the daemon died between fork and prctl
            os._exit(1)

    return before_exec


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB, from /proc/<pid>/status; None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


StdoutItem = dict[str, Any] | ProtocolError | ChildExited  # what ``on_stdout`` is handed


class _LineProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's subprocess protocol, with stdout split into protocol lines in the callback.

    A line over ``limit`` bytes (or one that does not parse) is handed over as
    a :class:`ProtocolError`, and whatever follows it is dropped: the pool
    kills such a child. The end of stdout is handed over as ChildExited.
    """

    def __init__(
        self,
        limit: int,
        loop: asyncio.AbstractEventLoop,
        child: Child,
        on_stdout: Callable[[StdoutItem], None],
    ) -> None:
        super().__init__(limit=limit, loop=loop)
        self._line_limit = limit
        self._child = child
        self._on_stdout = on_stdout
        self._partial = b""
        self._spoilt = False

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if fd != 1:
            super().pipe_data_received(fd, data)
            return
        if self._spoilt or isinstance(data, str):
            return
        self._child.last_seen = time.monotonic()
        if self._partial:
            data = self._partial + data
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if end - start > self._line_limit:
                self._spoil()
                return
            try:
                message = decode_line(data[start:end])
            except ProtocolError as exc:
                self._spoilt = True
                self._on_stdout(exc)
                return
            start = end + 1
            self._on_stdout(message)
            if self._spoilt:
                return
        self._partial = data[start:] if start else data
        if len(self._partial) > self._line_limit:
            self._spoil()

    def _spoil(self) -> None:
        self._spoilt, self._partial = True, b""
        self._on_stdout(
            ProtocolError(f"a line longer than MAX_MESSAGE_BYTES ({self._line_limit} bytes)")
        )

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        super().pipe_connection_lost(fd, exc)
        if fd == 1 and not self._spoilt:
            self._spoilt = True
            self._on_stdout(ChildExited(self._child.returncode))


class Child:
    """One running child; ``start`` it, then ``send`` and ``receive`` protocol lines.

    With ``on_stdout`` every stdout line goes there as it arrives instead
    (``receive`` and ``read_stdout`` are then not for use).
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None,
        line_limit: int,
        on_stderr: Callable[[int, str], None],
        on_stdout: Callable[[StdoutItem], None] | None = None,
    ) -> None:
        self.command = tuple(command)
        self.on_stdout = on_stdout
        self.env = dict(env)
        self.cwd = cwd
        self.line_limit = line_limit
        self.on_stderr = on_stderr
        self.process: asyncio.subprocess.Process | None = None
        self.last_seen = time.monotonic()
        self.started_at = time.monotonic()
        self.handled = 0
        self.current: str | None = None  # the entry id it holds
        self._stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return _need(self.process).pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def start(self, *, stdin: bool = True) -> None:
        """Spawn it; OSError (not executable, cwd gone) propagates for the caller to classify."""
        loop = asyncio.get_running_loop()
        on_stdout = self.on_stdout

        def protocol() -> asyncio.subprocess.SubprocessStreamProtocol:
            if on_stdout is None:
                return asyncio.subprocess.SubprocessStreamProtocol(limit=self.line_limit, loop=loop)
            return _LineProtocol(self.line_limit, loop, self, on_stdout)

        transport, made = await loop.subprocess_exec(
            protocol,
            *self.command,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.cwd,
            env=self.env,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        self.process = asyncio.subprocess.Process(transport, made, loop)
        self.started_at = self.last_seen = time.monotonic()
        self._stderr_task = asyncio.get_running_loop().create_task(self._read_stderr())

    async def _read_stderr(self) -> None:
        stream = _need(_need(self.process).stderr)
        pending = b""
        while chunk := await stream.read(65536):
            self.last_seen = time.monotonic()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._log(line)
            if len(pending) > _STDERR_LINE_CHARS:
                self._log(pending)
                pending = b""
        if pending:
            self._log(pending)

    def _log(self, line: bytes) -> None:
        text = line[:_STDERR_LINE_CHARS].decode(errors="replace").rstrip("\r")
        if len(line) > _STDERR_LINE_CHARS:
            text += "…"
        if text:
            self.on_stderr(self.pid, text)

    async def send(self, message: Mapping[str, Any]) -> None:
        """Write one line; a child that closed its stdin is reported as exited."""
        await self.send_line(encode(message))

    async def send_line(self, line: bytes) -> None:
        """Write one encoded line (``\\n`` included); ChildExited as ``send``."""
        stdin = _need(_need(self.process).stdin)
        try:
            stdin.write(line)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise ChildExited(self.returncode) from None

    async def write_all(self, data: bytes) -> None:
        """Oneshot's stdin: write it whole, then close; a child that will not read is fine."""
        stdin = _need(_need(self.process).stdin)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.write(data)
            await stdin.drain()
        self.close_stdin()

    async def receive(self) -> dict[str, Any]:
        """The next protocol message; ChildExited at EOF, ProtocolError for a bad or long line."""
        stdout = _need(_need(self.process).stdout)
        try:
            line = await stdout.readline()
        except ValueError:  # asyncio's LimitOverrunError, re-raised by readline
            raise ProtocolError(
                f"a line longer than MAX_MESSAGE_BYTES ({self.line_limit} bytes)"
            ) from None
        if not line:
            raise ChildExited(await self._returncode_soon())
        self.last_seen = time.monotonic()
        return decode_line(line)

    async def read_stdout(self, limit: int) -> bytes:
        """All of stdout (oneshot), at most ``limit`` bytes; ProtocolError beyond."""
        stdout = _need(_need(self.process).stdout)
        data = await stdout.read(limit + 1)
        if len(data) > limit:
            raise ProtocolError(f"stdout longer than MAX_MESSAGE_BYTES ({limit} bytes)")
        rest = await stdout.read(1)
        if rest:
            raise ProtocolError(f"stdout longer than MAX_MESSAGE_BYTES ({limit} bytes)")
        return data

    async def _returncode_soon(self) -> int | None:
        """stdout closed: most children have exited by now; wait a moment for the status."""
        process = _need(self.process)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(process.wait()), 0.5)
        return None

    def close_stdin(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self.process.stdin.close()

    def kill(self) -> None:
        """SIGKILL the whole group; a group already gone is fine."""
        if self.process is None:
            return
        # Even after the leader exited: what it started may still hold the group (the
        # kernel reuses no pid while a group of that id lives). Not Popen.kill(): it
        # polls first, and a poll that reaps the child races asyncio's own watcher,
        # which then reports exit status 255.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    async def wait(self) -> int:
        """Wait for the exit and for stderr to be read to its end; the exit status."""
        code = await _need(self.process).wait()
        task = self._stderr_task
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 1.0)
            task.cancel()  # a grandchild holding the pipe open: stop reading it
        return code

    async def stop(self) -> int:
        """Kill and reap it; safe to call more than once."""
        self.kill()
        self.close_stdin()
        return await self.wait()

    def rss_mb(self) -> float | None:
        return None if self.process is None else rss_mb(self.process.pid)
