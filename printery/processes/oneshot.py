"""Oneshot mode: one process per message; the task JSON on stdin, the exit code deciding.

=============  ==========================================================
exit status    verdict
=============  ==========================================================
0              success: stdout's ``result`` and ``outputs`` (stdout may be empty)
1              failed, retriable: retried with backoff, spends a delivery
2              failed for good: dead-lettered with stdout's ``error``
other, signal  a crash: retried, spends a delivery
=============  ==========================================================

The seed's workers (``{"id", "type", "params"}`` in, ``{"success",
"result"}`` out) run unchanged. stderr is re-logged line by line under the
worker's name, and its last line is the error when stdout names none. A
process over ``task_timeout_s`` has its group killed, and the message is retried.

A command that cannot start is a broken definition, never a message's
verdict: the worker checks it before it reads (:func:`start_problem`), and
a run that shows it later (the program gone, or CPython's exit 2 with
"can't open file" and nothing on stdout: the script gone) hands its message
back uncounted and sets :attr:`OneshotRunner.broken`, which fails the worker.
"""

from __future__ import annotations

import errno
import json
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from printery.errors import Drained, Permanent, RetryLater
from printery.lifecycle import ChildSpawned, ChildStopped, Emit
from printery.processes.child import Child, cannot_open_script, describe_exit
from printery.processes.protocol import ChildResult, ProtocolError, encode, parse_result
from printery.processes.workers_file import WorkerDefinition

__all__ = ["OneshotRunner", "verdict"]


_NEVER_STARTS = frozenset({errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ENOTDIR})


class OneshotRunner:
    """Runs one definition's command once per message."""

    def __init__(
        self,
        definition: WorkerDefinition,
        *,
        line_limit: int,
        emit: Emit,
        on_stderr: Callable[[int, str], None],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.definition = definition
        self.line_limit = line_limit
        self.emit = emit
        self.on_stderr = on_stderr
        self.env = definition.child_environment(environ)
        self.running: dict[int, Child] = {}
        self.broken: str | None = None  # why the command cannot start, once a run showed it
        self.broke = anyio.Event()

    def _break(self, reason: str) -> Drained:
        if self.broken is None:
            self.broken = f"worker {self.definition.name!r}: {reason}"
            self.broke.set()
        return Drained(self.broken)

    async def run(self, payload: Mapping[str, Any]) -> ChildResult:
        """The verdict of one run; RetryLater or Permanent when it failed."""
        d = self.definition
        if self.broken is not None:
            raise Drained(self.broken)  # handed back uncounted; the worker is failing
        tail: deque[str] = deque(maxlen=3)

        def on_stderr(pid: int, line: str) -> None:
            tail.append(line)
            self.on_stderr(pid, line)

        child = Child(
            d.command, env=self.env, cwd=d.cwd, line_limit=self.line_limit, on_stderr=on_stderr
        )
        child.current = str(payload.get("id"))
        try:
            await child.start()
        except OSError as exc:
            if exc.errno in _NEVER_STARTS:
                raise self._break(f"cannot start {d.command[0]!r}: {exc}") from None
            raise RetryLater(f"cannot start {d.command[0]!r}: {exc}") from None
        self.emit(ChildSpawned(d.name, child.pid))
        self.running[child.pid] = child
        killed: str | None = None
        detail = ""
        out = b""
        try:
            with anyio.move_on_after(d.task_timeout_s):
                try:
                    await child.write_all(encode(payload))
                    out = await child.read_stdout(self.line_limit)
                    await child.wait()
                except ProtocolError as exc:
                    killed, detail = "protocol", str(exc)
            if killed is None and child.returncode is None:
                killed, detail = "timeout", f"over task_timeout_s ({d.task_timeout_s:g} s)"
        finally:
            del self.running[child.pid]
            with anyio.CancelScope(shield=True):
                code = await child.stop() if child.returncode is None else await child.wait()
            if killed is None and child.returncode is None:
                killed = "shutdown"  # pragma: no cover - cancelled before the verdict
            unopened = killed is None and cannot_open_script(code, out, list(tail))
            self.emit(
                ChildStopped(
                    d.name,
                    child.pid,
                    killed or ("start" if unopened else "exited"),
                    killed is not None,
                    tail[-1] if unopened else detail or describe_exit(code),
                )
            )
        if unopened:
            raise self._break(tail[-1])
        if killed == "timeout":
            raise RetryLater(
                f"task_timeout_s ({d.task_timeout_s:g} s) exceeded: the process was killed"
            )
        if killed == "protocol":
            raise RetryLater(f"protocol error: {detail}")
        return verdict(code, out, list(tail))


def verdict(code: int, stdout: bytes, stderr_tail: list[str]) -> ChildResult:
    """Exit status and stdout as a result; RetryLater (1, crash) or Permanent (2)."""
    answer: dict[str, Any] = {}
    if stdout.strip():
        try:
            parsed = json.loads(stdout)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            if code == 0:
                raise RetryLater("protocol error: stdout is not one JSON object")
            parsed = {}
        answer = parsed
    error = answer.get("error") or (stderr_tail[-1] if stderr_tail else "")
    if not isinstance(error, str):
        error = json.dumps(error)
    if code == 0:
        try:
            result = parse_result({**answer, "success": True, "retriable": True})
        except ProtocolError as exc:
            raise RetryLater(f"protocol error: {exc}") from None
        return result
    if code == 1:
        raise RetryLater(f"exit status 1: {error}" if error else "exit status 1")
    if code == 2:
        raise Permanent(f"exit status 2: {error}" if error else "exit status 2")
    raise RetryLater(f"crashed ({describe_exit(code)})" + (f": {error}" if error else ""))
