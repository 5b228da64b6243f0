"""The examples: a Python worker in its own virtualenv, a Node worker after it, one daemon."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from printery.envelope import Event
from tests.e2e.daemon import ROOT, Daemon
from tests.e2e.ledger import publish
from tests.e2e.processes import write_workers_file
from tests.support.redis_server import RedisServer

EXAMPLES = ROOT / "examples"
CLI = [sys.executable, "-c", "from printery.cli.main import main; main()"]


def _venv(where: Path) -> Path:
    """A virtualenv with the example's pinned structlog 21 (printery itself needs >= 24.1)."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    pip = subprocess.run(
        [
            str(where / "bin" / "pip"),
            "install",
            "-q",
            "-r",
            str(EXAMPLES / "python-venv-worker" / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert 0 == pip.returncode, pip.stderr
    return where / "bin" / "python"


def _node() -> str:
    found = shutil.which("node")
    assert found is not None, "node is not installed (the Node example needs it)"
    return found


@pytest.mark.timeout(240)
def test_a_venv_python_worker_and_a_node_worker_run_beside_the_built_in_four(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """word-count (structlog 21, own venv), then reverser (Node); ``all`` adds them to the four."""
    python = _venv(tmp_path / "venv")
    file = write_workers_file(
        tmp_path / "workers.toml",
        {
            "word-count": {
                "command": [str(python), str(EXAMPLES / "python-venv-worker" / "worker.py")],
                "input": "text:submitted",
                "outputs": ["text:counted"],
                "processes": 2,
            },
            "reverser": {
                "command": [_node(), str(EXAMPLES / "node-worker" / "worker.js")],
                "input": "text:counted",
                "outputs": ["text:reversed"],
                "depends_on": ["word-count"],
            },
        },
    )
    env = {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "WORKERS_FILE": str(file),
        "BLOCK_MS": "200",
    }
    texts = [f"the quick brown fox number {n}" for n in range(10)]
    events = [
        Event.create("text.submitted", f"doc-{n}", {"text": t}, source="e2e")
        for n, t in enumerate(texts)
    ]
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready(timeout=30)
        states = daemon.worker_states()
        assert {
            "validator",
            "dependency-checker",
            "health-monitor",
            "notifier",
            "word-count",
            "reverser",
        } == set(states)
        publish(client, f"{prefix}:text:submitted", [dict(e.to_fields()) for e in events])
        daemon.wait_until(
            "every text reversed",
            lambda: client.xlen(f"{prefix}:text:reversed") == 10,
            timeout=30,
        )
        counted = [json.loads(f[b"data"]) for _, f in client.xrange(f"{prefix}:text:counted")]
        assert {"21.5.0"} == {c["structlog"] for c in counted}
        assert {6} == {c["words"] for c in counted}
        reversed_ = {
            f[b"subject"].decode(): json.loads(f[b"data"])
            for _, f in client.xrange(f"{prefix}:text:reversed")
        }
        assert "3 number fox brown quick the" == reversed_["doc-3"]["reversed"]
        assert reversed_["doc-0"]["node"].startswith("v")
        assert {b"printery/reverser"} == {
            f[b"source"] for _, f in client.xrange(f"{prefix}:text:reversed")
        }
        logged = {(e["worker"], e["line"][:8]) for e in daemon.events("printery.child_stderr")}
        assert ("reverser", "reversed") in logged
        assert any(w == "word-count" for w, _ in logged)
    shown = subprocess.run(
        [*CLI, "--redis-url", redis_server.url, "--stream-prefix", prefix, "task", events[0].id],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert 0 == shown.returncode, shown.stderr
    assert (
        f"{events[0].id}  word-count  [succeeded]  100%  counting" == (shown.stdout.splitlines()[0])
    )


@pytest.mark.timeout(60)
def test_worker_check_passes_the_node_example_and_fails_a_broken_command(tmp_path: Path) -> None:
    """One line per case; 0 when all pass, 1 when one fails (a child that exits at once)."""
    good = subprocess.run(
        [*CLI, "worker-check", "--", _node(), str(EXAMPLES / "node-worker" / "worker.js")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=50,
        check=False,
    )
    assert 0 == good.returncode, good.stdout + good.stderr
    lines = good.stdout.splitlines()
    assert [
        "ok    ready",
        "ok    valid task",
        "ok    task without an id",
        "ok    unknown type",
        "ok    empty params",
        "ok    malformed input",
        "ok    slow reply",
        "ok    shutdown",
        "8 of 8 cases passed (pool mode)",
    ] == lines
    bad = subprocess.run(
        [*CLI, "worker-check", "--", sys.executable, "-c", "import sys; sys.exit(2)"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=50,
        check=False,
    )
    assert 1 == bad.returncode
    assert bad.stdout.startswith("FAIL  ready: child exited (exit status 2)")
