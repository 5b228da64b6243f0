"""What tells a command that cannot start from a message's failure, alone."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from printery.processes.child import _python_script, cannot_open_script, start_problem

pytestmark = pytest.mark.timeout(10)

PATH = os.environ.get("PATH", "")


def test_a_python_script_missing_relative_to_cwd_is_named_with_the_cwd(tmp_path: Path) -> None:
    """``python missing.py``: the problem names the script and the directory it was looked in."""
    problem = start_problem((sys.executable, "missing.py"), cwd=str(tmp_path), path=PATH)
    assert problem is not None
    assert "'missing.py'" in problem
    assert str(tmp_path) in problem


def test_a_present_script_a_command_and_a_module_are_fine(tmp_path: Path) -> None:
    """The script exists; ``-c`` and ``-m`` run no script file: no problem."""
    (tmp_path / "child.py").write_text("pass\n")
    for args in (
        ("-u", "child.py"),
        ("-c", "pass"),
        ("-m", "json.tool"),
        ("-X", "dev", "child.py"),
    ):
        assert start_problem((sys.executable, *args), cwd=str(tmp_path), path=PATH) is None


def test_a_program_not_on_path_or_not_executable_is_a_problem(tmp_path: Path) -> None:
    """A bare name looked up on the child's PATH; a relative path under cwd must be executable."""
    (tmp_path / "plain").write_text("#!/bin/sh\n")
    assert "not on the child's PATH" in (
        start_problem(("no-such-program",), cwd=None, path=PATH) or ""
    )
    assert "not an executable file" in (
        start_problem(("./plain",), cwd=str(tmp_path), path=PATH) or ""
    )


def test_the_script_of_a_python_command_line_is_found_past_its_options() -> None:
    """Options (and their values) are skipped; ``-c``, ``-m`` and ``-`` run no script file."""
    assert _python_script(["-W", "ignore", "-Bu", "a.py", "x"]) == "a.py"
    assert _python_script(["--", "b.py"]) == "b.py"
    assert _python_script(["-Bc", "pass"]) is None
    assert _python_script(["-"]) is None
    assert _python_script([]) is None


def test_only_pythons_own_exit_2_for_an_unopened_script_counts_as_a_start_failure() -> None:
    """Exit 2, empty stdout, CPython's line last: yes; any other exit, stdout or line: no."""
    line = "python3: can't open file '/srv/missing.py': [Errno 2] No such file or directory"
    assert cannot_open_script(2, b"", [line])
    assert not cannot_open_script(1, b"", [line])
    assert not cannot_open_script(2, b'{"error": "bad input"}', [line])
    assert not cannot_open_script(2, b"", ["bad input"])
    assert not cannot_open_script(2, b"", [])
