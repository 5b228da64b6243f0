"""``printery worker-check``: the protocol cases of §7 against real children, without Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from printery.processes.check import check_worker
from printery.processes.workers_file import WorkerDefinition
from tests.e2e.daemon import ROOT
from tests.e2e.processes import ONESHOT_CHILD, POOL_CHILD, write_workers_file

pytestmark = pytest.mark.timeout(60)
CLI = [sys.executable, "-c", "from printery.cli.main import main; main()"]

POOL_CASES = [
    "ready",
    "valid task",
    "task without an id",
    "unknown type",
    "empty params",
    "malformed input",
    "slow reply",
    "shutdown",
]
# Says ready, answers tasks that have an id, and dies on the first one without.
FRAGILE = """
import json, sys
print(json.dumps({"op": "ready", "protocol": 1}), flush=True)
for line in sys.stdin:
    m = json.loads(line)
    if m["op"] == "ping":
        print(json.dumps({"op": "pong"}), flush=True)
    elif m["op"] == "task":
        print(json.dumps({"op": "result", "id": m["id"], "success": True}), flush=True)
    elif m["op"] == "shutdown":
        break
"""


def _check(command: list[str], **fields: object) -> list[tuple[str, str]]:
    definition = WorkerDefinition(name="w", command=tuple(command), input="x", **fields)  # type: ignore[arg-type]
    return anyio.run(lambda: check_worker(definition))


def test_the_test_pool_child_passes_every_case() -> None:
    """The suite's own pool child is conformant: eight cases, no problem."""
    assert [(name, "") for name in POOL_CASES] == _check([sys.executable, str(POOL_CHILD)])


def test_a_seed_style_oneshot_worker_passes_the_oneshot_cases() -> None:
    """The oneshot cases: exits 0, 1 or 2 in time; malformed input is not a success."""
    found = _check([sys.executable, str(ONESHOT_CHILD)], mode="oneshot")
    assert [
        ("valid task", ""),
        ("task without an id", ""),
        ("unknown type", ""),
        ("empty params", ""),
        ("malformed input", ""),
        ("slow reply", ""),
    ] == found


def test_a_child_that_dies_on_a_task_without_an_id_fails_that_case() -> None:
    """KeyError on the missing id kills it: the case names why, and the run stops being clean."""
    found = dict(_check([sys.executable, "-c", FRAGILE], heartbeat_timeout_s=2.0))
    assert "" == found["valid task"]
    assert found["task without an id"].startswith("child exited (exit status 1)")


def test_a_child_that_never_says_ready_fails_at_ready_only() -> None:
    """No ready within start_timeout_s: one failing case, the rest not run."""
    found = _check([sys.executable, "-c", "import time; time.sleep(30)"], start_timeout_s=0.5)
    assert [("ready", "no ready within start_timeout_s (0.5 s)")] == found


def test_worker_check_by_name_reads_the_workers_file_and_exits_0(tmp_path: Path) -> None:
    """``printery worker-check --workers-file F NAME``: one line per case, then the tally."""
    file = write_workers_file(
        tmp_path / "w.toml",
        {
            "seed": {
                "command": [sys.executable, str(ONESHOT_CHILD)],
                "input": "x",
                "mode": "oneshot",
            }
        },
    )
    shown = subprocess.run(
        [*CLI, "worker-check", "--workers-file", str(file), "seed"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=50,
        check=False,
    )
    assert 0 == shown.returncode, shown.stdout + shown.stderr
    assert "6 of 6 cases passed (oneshot mode)" == shown.stdout.splitlines()[-1]


def test_worker_check_of_an_unknown_name_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    """A name not in the file: one line, exit 2."""
    file = write_workers_file(
        tmp_path / "w.toml", {"seed": {"command": [sys.executable], "input": "x"}}
    )
    shown = subprocess.run(
        [*CLI, "worker-check", "--workers-file", str(file), "ghost"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=50,
        check=False,
    )
    assert 2 == shown.returncode
    assert f"printery: WORKERS_FILE: {file}: no worker 'ghost' (known: seed)\n" == shown.stderr


def test_a_oneshot_worker_whose_script_is_missing_fails_at_start(tmp_path: Path) -> None:
    """A oneshot command that cannot start is one failed ``start`` case, not six passes.

    CPython exits 2 for a missing script, which a oneshot task may also mean
    ("failed for good"): without the start check every case would pass.
    """
    found = _check([sys.executable, str(tmp_path / "gone.py")], mode="oneshot")
    assert [name for name, _ in found] == ["start"]
    assert "cannot open its script" in found[0][1]


def test_a_oneshot_run_that_cannot_open_its_script_fails_its_case(tmp_path: Path) -> None:
    """Behind ``env`` the script is not checked before the run; CPython's own exit 2 then fails."""
    found = _check(["/usr/bin/env", sys.executable, str(tmp_path / "gone.py")], mode="oneshot")
    assert found[0][0] == "valid task"
    assert found[0][1].startswith("cannot start: ")
    assert all(problem for _, problem in found)
