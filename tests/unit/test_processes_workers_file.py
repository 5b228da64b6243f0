"""The workers file: defaults, every mistake one ConfigError naming the file, worker and key."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from printery.cli.main import run as run_cli
from printery.daemon.serve import build_manager
from printery.errors import ConfigError
from printery.processes.workers_file import WorkerDefinition, load_workers_file
from printery.redis.keys import Keys
from printery.settings import load_settings
from printery.worker import WorkerDeps

pytestmark = pytest.mark.timeout(10)

PY = sys.executable


def _file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "workers.toml"
    path.write_text(body)
    return path


def _one(name: str, extra: str = "") -> str:
    return f'[workers.{name}]\ncommand = ["{PY}", "w.py"]\ninput = "media:uploaded"\n{extra}\n'


def test_a_minimal_worker_gets_the_documented_defaults(tmp_path: Path) -> None:
    """command and input only: pool mode, one process, the §7 timeouts, group = name."""
    found = load_workers_file(_file(tmp_path, _one("thumbs")))
    expected = WorkerDefinition(
        name="thumbs",
        command=(PY, "w.py"),
        input="media:uploaded",
        group="thumbs",
        cwd=str(tmp_path.resolve()),
        source=str(tmp_path / "workers.toml"),
    )
    assert {"thumbs": expected} == found


def test_every_key_is_read(tmp_path: Path) -> None:
    """All §7 keys, with cwd relative to the file and env values as strings."""
    (tmp_path / "app").mkdir()
    body = _one(
        "thumbs",
        'outputs = ["media:thumbnailed"]\ngroup = "g"\ndepends_on = ["validator"]\n'
        'mode = "oneshot"\nprocesses = 3\ntask_timeout_s = 5\nstart_timeout_s = 2.5\n'
        "heartbeat_timeout_s = 9\nmax_tasks_per_child = 100\nmax_rss_mb = 512\n"
        'cwd = "app"\nenv = { QUALITY = "85", LEVEL = 3 }',
    )
    d = load_workers_file(_file(tmp_path, body))["thumbs"]
    assert ("media:thumbnailed",) == d.outputs
    assert ("g", ("validator",), "oneshot", 3) == (d.group, d.depends_on, d.mode, d.processes)
    assert (5.0, 2.5, 9.0, 100, 512.0) == (
        d.task_timeout_s,
        d.start_timeout_s,
        d.heartbeat_timeout_s,
        d.max_tasks_per_child,
        d.max_rss_mb,
    )
    assert str((tmp_path / "app").resolve()) == d.cwd
    assert {"QUALITY": "85", "LEVEL": "3"} == dict(d.env)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[workers.a\n", "not valid TOML"),
        ("[other]\nx = 1\n", "other: unknown table (only [workers.<name>])"),
        ("x = 1\n", "x: unknown table"),
        ("[workers]\n", "workers: no [workers.<name>] table"),
        (_one("Bad_Name"), "workers.Bad_Name: a name is lowercase letters, digits and -"),
        (_one("validator"), "workers.validator: the name of a built-in worker"),
        (_one("all"), "workers.all: the name of a built-in worker"),
        (_one("a", "colour = 1"), "workers.a.colour: unknown key"),
        ('[workers.a]\ninput = "x"\n', "workers.a.command: is required"),
        ('[workers.a]\ncommand = []\ninput = "x"\n', "workers.a.command: is required"),
        (
            '[workers.a]\ncommand = "python w.py"\ninput = "x"\n',
            "workers.a.command: must be a list",
        ),
        (
            '[workers.a]\ncommand = ["/no/such/python"]\ninput = "x"\n',
            "workers.a.command: '/no/such/python' is not an executable file",
        ),
        (
            '[workers.a]\ncommand = ["no-such-program-xyz"]\ninput = "x"\n',
            "workers.a.command: 'no-such-program-xyz' is not on PATH",
        ),
        (f'[workers.a]\ncommand = ["{PY}"]\n', "workers.a.input: is required"),
        (_one("a").replace("media:uploaded", "has space"), "workers.a.input: 'has space' is not"),
        (_one("a", 'outputs = ["x:dead"]'), "workers.a.outputs: 'x:dead' is one of printery's"),
        (_one("a", 'outputs = ["registry:production"]'), "workers.a.outputs: 'registry:producti"),
        (_one("a", "outputs = [1]"), "workers.a.outputs: must be a list of non-empty strings"),
        (_one("a", 'mode = "fork"'), 'workers.a.mode: must be "pool" or "oneshot"'),
        (_one("a", "processes = 0"), "workers.a.processes: must be a whole number from 1 to 256"),
        (_one("a", "processes = 1.5"), "workers.a.processes: must be a whole number"),
        (_one("a", "task_timeout_s = 0"), "workers.a.task_timeout_s: must be a number"),
        (_one("a", 'task_timeout_s = "60"'), "workers.a.task_timeout_s: must be a number"),
        (_one("a", "max_rss_mb = -1"), "workers.a.max_rss_mb: must be a number from 0"),
        (_one("a", 'cwd = "nowhere"'), "workers.a.cwd: "),
        (_one("a", "env = { A = true }"), "workers.a.env.A: must be a string or a number"),
        (_one("a", 'depends_on = ["ghost"]'), "workers.a.depends_on: unknown worker 'ghost'"),
    ],
)
def test_each_mistake_is_one_line_naming_the_file_the_worker_and_the_key(
    tmp_path: Path, body: str, message: str
) -> None:
    """ConfigError(WORKERS_FILE, '<file>: workers.<name>.<key>: why')."""
    path = _file(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        load_workers_file(path)
    assert "WORKERS_FILE" == caught.value.setting
    assert caught.value.reason.startswith(f"{path}: ")
    assert message in caught.value.reason
    assert "\n" not in str(caught.value)


def test_a_relative_program_is_found_from_cwd_and_made_absolute(tmp_path: Path) -> None:
    """``.venv/bin/python`` with ``cwd = "app"`` is ``<file's folder>/app/.venv/bin/python``."""
    program = tmp_path / "app" / ".venv" / "bin" / "python"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    body = '[workers.a]\ncommand = [".venv/bin/python", "w.py"]\ninput = "x"\ncwd = "app"\n'
    d = load_workers_file(_file(tmp_path, body))["a"]
    assert (str(tmp_path.resolve() / "app" / ".venv" / "bin" / "python"), "w.py") == d.command


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    """An unreadable file: the path and why."""
    with pytest.raises(ConfigError) as caught:
        load_workers_file(tmp_path / "absent.toml")
    assert f"{tmp_path / 'absent.toml'}: cannot read it: No such file or directory" == (
        caught.value.reason
    )


def test_the_child_environment_is_env_plus_four_names_and_nothing_else(tmp_path: Path) -> None:
    """REDIS_URL and the webhook secret of the daemon never reach a child."""
    d = load_workers_file(_file(tmp_path, _one("a", 'env = { QUALITY = "85" }')))["a"]
    daemon_env = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "REDIS_URL": "redis://:pw@redis/0",
        "NOTIFY_WEBHOOK_SECRET": "s3cr3t",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    expected = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "QUALITY": "85",
    }
    assert expected == d.child_environment(daemon_env)


def test_file_workers_join_all_and_depend_on_built_in_ones(tmp_path: Path) -> None:
    """``all`` is the four plus the file's; a file worker after ``validator`` starts after it."""
    path = _file(
        tmp_path,
        _one("thumbs", 'depends_on = ["validator"]')
        + _one("resize", 'depends_on = ["thumbs", "health"]'),
    )
    settings = load_settings({"workers_file": str(path)}, environ={})
    deps = WorkerDeps(settings, adapter=None, keys=None, consumer="c")  # type: ignore[arg-type]
    manager = build_manager(settings, deps, emit=lambda _: None)
    levels = [[w.name for w in level] for level in manager.levels]
    assert ["validator", "notifier"] == levels[0]
    assert ["dependency-checker", "thumbs"] == levels[1]
    assert ["health-monitor"] == levels[2]
    assert ["resize"] == levels[3]


def test_a_file_worker_is_selected_by_name_with_its_dependency_left_out(tmp_path: Path) -> None:
    """``--worker thumbs`` runs only it; its built-in dependency may run in another process."""
    path = _file(tmp_path, _one("thumbs", 'depends_on = ["validator"]'))
    settings = load_settings({"workers_file": str(path), "worker_mode": "thumbs"}, environ={})
    deps = WorkerDeps(settings, adapter=None, keys=Keys("pfx"), consumer="c")  # type: ignore[arg-type]
    manager = build_manager(settings, deps, emit=lambda _: None)
    assert ["thumbs"] == [w.name for w in manager.workers()]
    (worker,) = manager.workers()
    assert "pfx:media:uploaded" == worker.stream  # type: ignore[attr-defined]
    assert 1 == worker.max_in_flight  # type: ignore[attr-defined]


def test_printery_config_refuses_a_bad_workers_file_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``printery config`` checks WORKERS_FILE too: exit 2, the file, worker and key."""
    path = _file(tmp_path, _one("a", "processes = 0"))
    monkeypatch.setenv("WORKERS_FILE", str(path))
    assert 2 == run_cli(["config"])
    expected = (
        f"printery: WORKERS_FILE: {path}: workers.a.processes: "
        "must be a whole number from 1 to 256 (got 0)\n"
    )
    assert expected == capsys.readouterr().err
