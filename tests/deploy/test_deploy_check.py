"""deploy/check and scripts/test: the deploy tier runs once, and a pass is one line per check."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy import support

pytestmark = pytest.mark.timeout(30)

SCRIPTS_TEST = support.REPO / "scripts" / "test"


def _fake_tools(tmp_path: Path) -> dict[str, str]:
    """A PATH whose ruff, mypy and lint-imports only record how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ruff", "mypy", "lint-imports"):
        (bin_dir / tool).write_text(
            f'#!/bin/sh\necho "{tool} $*" >> {tmp_path / "calls"}\n', encoding="utf-8"
        )
        (bin_dir / tool).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def _pytest_call(tmp_path: Path, *args: str) -> str:
    """The pytest command line scripts/test runs, with deploy/check and the tools stubbed."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "deploy").mkdir()
    (repo / "scripts" / "test").write_text(SCRIPTS_TEST.read_text(encoding="utf-8"))
    (repo / "scripts" / "test").chmod(0o755)
    (repo / "deploy" / "check").write_text(f'echo "deploy/check" >> {tmp_path / "calls"}\n')
    venv_python = repo / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    # The .venv's python records its calls too: pip installs, and the pytest run.
    venv_python.write_text(
        f'#!/bin/sh\necho "python $*" >> {tmp_path / "calls"}\n', encoding="utf-8"
    )
    venv_python.chmod(0o755)
    done = subprocess.run(
        ["bash", str(repo / "scripts" / "test"), *args],
        env=_fake_tools(tmp_path),
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    calls = (tmp_path / "calls").read_text(encoding="utf-8").splitlines()
    assert 1 == calls.count("deploy/check")
    [pytest_call] = [c for c in calls if c.startswith("python -m pytest")]
    return pytest_call


def test_scripts_test_leaves_tests_deploy_to_deploy_check(tmp_path: Path) -> None:
    """After deploy/check ran the deploy tier, pytest is told to ignore tests/deploy."""
    assert "python -m pytest -q -p no:cacheprovider --ignore=tests/deploy" == _pytest_call(tmp_path)


def test_scripts_test_runs_tests_deploy_when_asked_for_it(tmp_path: Path) -> None:
    """`scripts/test tests/deploy -x` runs what it names: no --ignore of it."""
    assert "python -m pytest -q -p no:cacheprovider tests/deploy -x" == _pytest_call(
        tmp_path, "tests/deploy", "-x"
    )


def test_deploy_check_runs_the_deploy_tier() -> None:
    """deploy/check's own pytest run is the one that covers tests/deploy."""
    check = (support.DEPLOY / "check").read_text(encoding="utf-8")
    assert "pytest -q -p no:cacheprovider tests/deploy" in check


def _run_function(*command: str) -> subprocess.CompletedProcess[str]:
    """deploy/check's own run() on ``command``, without the rest of the script."""
    check = (support.DEPLOY / "check").read_text(encoding="utf-8")
    start = check.index("\nrun() {")
    function = check[start : check.index("\n}\n", start) + 3]
    script = "\n".join(
        ["failed=(); passed=0", function, 'run "a validator" "$@"', 'echo "failed=${#failed[@]}"']
    )
    return subprocess.run(
        ["bash", "-c", script, "bash", *command],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "VERBOSE"},
    )


def test_a_passing_validator_is_one_line_without_its_info_and_warn_lines() -> None:
    """A pass prints one line with its closing line; routine INFO/WARN lines are not shown."""
    noisy = "echo 'INFO a.yaml passed'; echo 'WARN b.yaml no schema'; echo '3 files checked'"
    done = _run_function("sh", "-c", noisy)
    lines = done.stdout.splitlines()
    assert ["failed=0"] == lines[1:]
    assert lines[0].startswith("ok    a validator")
    assert lines[0].endswith("3 files checked")


def test_a_failing_validator_shows_everything_it_said() -> None:
    """A failure prints FAIL, the command, and every line of its output."""
    done = _run_function("sh", "-c", "echo 'WARN b.yaml no schema'; echo 'ERROR c.yaml'; exit 3")
    assert done.stdout.startswith("FAIL  a validator (exit 3)")
    assert "WARN b.yaml no schema" in done.stdout
    assert "ERROR c.yaml" in done.stdout
    assert done.stdout.endswith("failed=1\n")
