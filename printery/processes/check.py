"""``printery worker-check``: the pool protocol's cases, run against a worker without Redis.

For a worker author's CI: ``printery worker-check NAME`` (from the workers
file) or ``printery worker-check -- COMMAND…`` (pool mode unless
``--oneshot``). One line per case, ``ok`` or ``FAIL`` with why; exit 0 only
if every case passed. Pool cases run on one child, in order:

- **ready**: ``{"op": "ready", "protocol": 1}`` within ``start_timeout_s``
- **valid task**: a result for its id
- **task without an id**: any answer, or none, and the child still answers ``ping``
- **unknown type**: a result for its id (a refusal is fine)
- **empty params**: a result for its id
- **malformed input**: a line that is not JSON; the child still answers ``ping``
- **slow reply**: a ping answered while idle, within ``heartbeat_timeout_s``
- **shutdown**: the child exits after ``shutdown`` and stdin's end

Oneshot cases run one process each, and pass when it ends with 0, 1 or 2
within ``task_timeout_s`` (the malformed one: 1 or 2) with stdout empty or one JSON object.
A oneshot command that cannot start fails as the daemon would find it: one
``start`` case when the check made before reading finds it (a program not on
``PATH``, a Python script that is not there), and a case's own failure when a
run ends in CPython's exit 2 for a script it cannot open, which would
otherwise pass for the task's "failed for good".
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio

from printery.envelope import Event
from printery.errors import ConfigError, HandlerError
from printery.processes.child import (
    Child,
    ChildExited,
    cannot_open_script,
    describe_exit,
    start_problem,
)
from printery.processes.oneshot import verdict
from printery.processes.protocol import (
    ProtocolError,
    encode,
    oneshot_input,
    parse_result,
    task_message,
)
from printery.processes.workers_file import WorkerDefinition, load_workers_file

__all__ = ["check_worker", "run_check", "worker_check_command"]

_LINE_LIMIT = 1_048_576 + 65536
_Case = tuple[str, Callable[[], Awaitable[str]]]


def _task(kind: str, params: Any, *, with_id: bool = True) -> tuple[str, dict[str, Any]]:
    entry_id = f"{int(time.time() * 1000)}-{uuid.uuid4().int % 1000}"
    event = Event.create(kind, "worker-check", {}, source="printery/worker-check")
    deadline = int((time.time() + 60) * 1000)
    message = task_message(entry_id, event, params, 1, deadline)
    message["params"] = params
    if not with_id:
        del message["id"]
    return entry_id, message


class _PoolCheck:
    def __init__(self, definition: WorkerDefinition, stderr: Callable[[int, str], None]) -> None:
        d = definition
        self.d = d
        self.child = Child(
            d.command,
            env=d.child_environment(),
            cwd=d.cwd,
            line_limit=_LINE_LIMIT,
            on_stderr=stderr,
        )

    async def answer(self, entry_id: str | None, within: float) -> dict[str, Any]:
        """The next result (skipping progress and log lines); TimeoutError past ``within``."""
        with anyio.fail_after(within):
            while True:
                message = await self.child.receive()
                if message.get("op") == "result" and (
                    entry_id is None or message.get("id") == entry_id
                ):
                    return message

    async def ready(self) -> str:
        try:
            await self.child.start()
        except OSError as exc:
            return f"cannot start: {exc}"
        try:
            with anyio.fail_after(self.d.start_timeout_s):
                first = await self.child.receive()
        except TimeoutError:
            return f"no ready within start_timeout_s ({self.d.start_timeout_s:g} s)"
        except (ChildExited, ProtocolError) as exc:
            return str(exc)
        if first != {"op": "ready", "protocol": 1}:
            return f'first line was {json.dumps(first)[:120]}, not {{"op": "ready", "protocol": 1}}'
        return ""

    async def result_for(self, kind: str, params: Any) -> str:
        entry_id, message = _task(kind, params)
        await self.child.send(message)
        try:
            parse_result(await self.answer(entry_id, self.d.task_timeout_s))
        except TimeoutError:
            return f"no result within task_timeout_s ({self.d.task_timeout_s:g} s)"
        except (ChildExited, ProtocolError) as exc:
            return str(exc)
        return ""

    async def still_answers(self, within: float) -> str:
        try:
            await self.child.send({"op": "ping"})
            with anyio.fail_after(within):
                while (await self.child.receive()).get("op") != "pong":
                    pass
        except TimeoutError:
            return f"no pong within {within:g} s"
        except (ChildExited, ProtocolError) as exc:
            return str(exc)
        return ""

    async def without_id(self) -> str:
        _, message = _task("worker.check", {"n": 1}, with_id=False)
        await self.child.send(message)
        with anyio.move_on_after(min(2.0, self.d.task_timeout_s)):
            try:
                await self.answer(None, self.d.task_timeout_s)
            except (ChildExited, ProtocolError) as exc:
                return str(exc)
        return await self.still_answers(self.d.heartbeat_timeout_s)

    async def malformed(self) -> str:
        stdin = self.child.process.stdin if self.child.process is not None else None
        if stdin is None:
            return "not running"
        stdin.write(b"{this is not json\n")
        await stdin.drain()
        return await self.still_answers(self.d.heartbeat_timeout_s)

    async def shutdown(self) -> str:
        try:
            await self.child.send({"op": "shutdown"})
        except ChildExited:
            return ""
        self.child.close_stdin()
        with anyio.move_on_after(5.0):
            await self.child.wait()
            return ""
        return "still running 5 s after shutdown and the end of stdin"

    def cases(self) -> list[_Case]:
        return [
            ("ready", self.ready),
            ("valid task", lambda: self.result_for("worker.check", {"n": 1})),
            ("task without an id", self.without_id),
            ("unknown type", lambda: self.result_for("worker.check.unknown-type", {"n": 1})),
            ("empty params", lambda: self.result_for("worker.check", {})),
            ("malformed input", self.malformed),
            ("slow reply", lambda: self.still_answers(self.d.heartbeat_timeout_s)),
            ("shutdown", self.shutdown),
        ]


async def _oneshot_case(
    d: WorkerDefinition, stderr: Callable[[int, str], None], stdin: bytes, *, malformed: bool
) -> str:
    tail: deque[str] = deque(maxlen=1)

    def kept(pid: int, line: str) -> None:
        tail.append(line)
        stderr(pid, line)

    child = Child(
        d.command, env=d.child_environment(), cwd=d.cwd, line_limit=_LINE_LIMIT, on_stderr=kept
    )
    try:
        await child.start()
    except OSError as exc:
        return f"cannot start: {exc}"
    try:
        with anyio.fail_after(d.task_timeout_s):
            await child.write_all(stdin)
            out = await child.read_stdout(_LINE_LIMIT)
            code = await child.wait()
    except TimeoutError:
        return f"still running after task_timeout_s ({d.task_timeout_s:g} s)"
    except ProtocolError as exc:
        return str(exc)
    finally:
        await child.stop()
    if cannot_open_script(code, out, list(tail)):
        return f"cannot start: {tail[-1]}"  # CPython's exit 2, not the task's verdict
    if code not in (0, 1, 2) or (malformed and code == 0):
        return f"ended with {describe_exit(code)}" + (", expected 1 or 2" if malformed else "")
    try:
        verdict(code, out, [])
    except HandlerError as exc:
        if "protocol error" in exc.reason:
            return exc.reason
    return ""


def _oneshot_cases(d: WorkerDefinition, stderr: Callable[[int, str], None]) -> list[_Case]:
    def payload(kind: str, params: Any, *, with_id: bool = True) -> bytes:
        event = Event.create(kind, "worker-check", {}, source="printery/worker-check")
        body = oneshot_input("0-1", event, params, 1)
        if not with_id:
            del body["id"]
        return encode(body)

    def case(stdin: bytes, *, malformed: bool = False) -> Callable[[], Awaitable[str]]:
        return lambda: _oneshot_case(d, stderr, stdin, malformed=malformed)

    return [
        ("valid task", case(payload("worker.check", {"n": 1}))),
        ("task without an id", case(payload("worker.check", {"n": 1}, with_id=False))),
        ("unknown type", case(payload("worker.check.unknown-type", {"n": 1}))),
        ("empty params", case(payload("worker.check", {}))),
        ("malformed input", case(b"{this is not json\n", malformed=True)),
        ("slow reply", case(payload("worker.check", {"n": 2}))),
    ]


async def check_worker(
    definition: WorkerDefinition, *, verbose: bool = False
) -> list[tuple[str, str]]:
    """Each case's name and problem (empty when it passed)."""
    logged: list[str] = []

    def stderr(pid: int, line: str) -> None:
        if verbose:
            print(f"  [stderr {pid}] {line}", file=sys.stderr)
        logged.append(line)

    results: list[tuple[str, str]] = []
    if definition.mode == "oneshot":
        # As the worker does before it reads: a command that cannot start would end
        # every case in the same exit, and CPython's 2 would pass for "failed for good".
        path = definition.child_environment().get("PATH")
        if (
            problem := start_problem(definition.command, cwd=definition.cwd, path=path)
        ) is not None:
            return [("start", problem)]
        for name, run in _oneshot_cases(definition, stderr):
            results.append((name, await run()))
        return results
    check = _PoolCheck(definition, stderr)
    try:
        for name, run in check.cases():
            try:
                problem = await run()
            except (ChildExited, ProtocolError, OSError) as exc:  # died in an earlier case
                problem = str(exc) or type(exc).__name__
            results.append((name, problem))
            if name == "ready" and problem:
                break
    finally:
        await check.child.stop() if check.child.process is not None else None
    return results


def run_check(definition: WorkerDefinition, *, verbose: bool = False) -> int:
    """Print one line per case; 0 only if all passed."""
    shown = replace(definition, start_timeout_s=min(definition.start_timeout_s, 30.0))
    results = anyio.run(lambda: check_worker(shown, verbose=verbose))
    for name, problem in results:
        print(f"{'ok  ' if not problem else 'FAIL'}  {name}" + (f": {problem}" if problem else ""))
    failed = sum(1 for _, problem in results if problem)
    print(f"{len(results) - failed} of {len(results)} cases passed ({definition.mode} mode)")
    return 0 if failed == 0 and results else 1


def worker_check_command(
    target: list[str],
    *,
    workers_file: str | None,
    oneshot: bool,
    task_timeout_s: float | None,
    verbose: bool,
) -> int:
    """``printery worker-check NAME | -- COMMAND…``: 0 all passed, 1 a case failed, 2 bad usage."""
    if target and target[0] == "--":
        target = target[1:]
        if not target:
            print("printery: worker-check --: name the command to run", file=sys.stderr)
            return 2
        definition = WorkerDefinition(
            name="worker-check",
            command=tuple(target),
            input="worker-check",
            mode="oneshot" if oneshot else "pool",
        )
    elif len(target) == 1:
        if not workers_file:
            print(
                "printery: WORKERS_FILE: worker-check NAME reads the workers file; "
                "set WORKERS_FILE or --workers-file (or give -- COMMAND…)",
                file=sys.stderr,
            )
            return 2
        try:
            declared = load_workers_file(workers_file)
        except ConfigError as exc:
            print(f"printery: {exc}", file=sys.stderr)
            return 2
        if target[0] not in declared:
            known = ", ".join(declared)
            print(
                f"printery: WORKERS_FILE: {workers_file}: no worker {target[0]!r} (known: {known})",
                file=sys.stderr,
            )
            return 2
        definition = declared[target[0]]
    else:
        print("printery: worker-check takes NAME, or -- COMMAND…", file=sys.stderr)
        return 2
    if task_timeout_s is not None:
        definition = replace(definition, task_timeout_s=task_timeout_s)
    return run_check(definition, verbose=verbose)
