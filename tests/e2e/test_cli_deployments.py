"""``printery publish deployment --wait`` and ``printery deployments`` against real daemons."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from printery.cli.main import run
from tests.e2e.daemon import ROOT, Daemon
from tests.e2e.health_endpoint import HealthEndpoint
from tests.support.redis_server import RedisServer, free_port

CLI = [sys.executable, "-c", "from printery.cli.main import main; main()"]


def cli(server: RedisServer, prefix: str, *argv: str) -> subprocess.Popen[str]:
    """The printery command as a process of its own, as CI runs it."""
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": server.url, "STREAM_PREFIX": prefix}
    return subprocess.Popen(
        [*CLI, *argv],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def publish(server: RedisServer, prefix: str, dep_id: str, *flags: str) -> subprocess.Popen[str]:
    return cli(
        server, prefix, "publish", "deployment", "--id", dep_id, "--environment", "staging",
        "--service", dep_id, *flags,
    )  # fmt: skip


@pytest.fixture
def pipeline(tmp_path: Path, redis_server: RedisServer, prefix: str) -> Iterator[Daemon]:
    """One daemon running the four pipeline workers; blocked deployments give up after 1 s."""
    env = {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": "all",
        "BLOCK_MS": "200",
        "DEPENDENCY_WAIT_TIMEOUT": "1",
    }
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready()
        yield daemon
        daemon.send(signal.SIGTERM)
        assert 0 == daemon.wait_exit(timeout=20)


@pytest.mark.timeout(60)
def test_publish_wait_exits_by_each_outcome_and_deployments_lists_them(
    pipeline: Daemon, redis_server: RedisServer, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--wait exits 0 healthy, 1 rejected/blocked/unhealthy; `deployments` lists all four."""
    with HealthEndpoint() as health:
        health.up.set()
        wait = ["--wait-timeout", "30"]
        quick = ["--interval", "0.2", "--healthy-threshold", "1", *wait]
        processes = {
            "ok": publish(
                redis_server, prefix, "ok", "--version", "1.0.0",
                "--health-url", f"{health.base}/health/ok", *quick,
            ),
            "down": publish(
                redis_server, prefix, "down", "--version", "1.0.0",
                "--deadline", "1", "--timeout", "0.5",
                "--health-url", f"http://127.0.0.1:{free_port()}/healthz", *quick,
            ),
            "bad": publish(
                redis_server, prefix, "bad", "--version", "not-semver", "--no-validate", *wait
            ),
            "orphan": publish(
                redis_server, prefix, "orphan", "--version", "1.0.0",
                "--depends-on", "nobody@^1.0.0", *wait,
            ),
        }  # fmt: skip
        results = {name: p.communicate(timeout=40) for name, p in processes.items()}
    codes = {name: p.returncode for name, p in processes.items()}
    assert {"ok": 0, "down": 1, "bad": 1, "orphan": 1} == codes, results
    assert {name: f"{name}\n" for name in processes} == {n: r[0] for n, r in results.items()}
    last_lines = {name: err.strip().splitlines()[-1] for name, (_, err) in results.items()}
    assert {
        "ok": "ok: healthy",
        "down": "down: unhealthy",
        "bad": "bad: rejected",
        "orphan": "orphan: blocked",
    } == last_lines

    assert 0 == run(["deployments", "--json", "--redis-url", redis_server.url,
                     "--stream-prefix", prefix])  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert {"ok": "healthy", "down": "unhealthy", "bad": "rejected", "orphan": "blocked"} == {
        r["deployment_id"]: r["outcome"] for r in rows
    }
    assert 0 == run(["deployments", "--service", "orphan", "--redis-url", redis_server.url,
                     "--stream-prefix", prefix])  # fmt: skip
    table = capsys.readouterr().out.splitlines()
    assert (2, ["orphan", "orphan", "1.0.0", "staging", "blocked"]) == (
        len(table),
        table[1].split()[:5],
    ), table


@pytest.mark.timeout(30)
def test_publish_wait_without_a_daemon_times_out_with_exit_3_and_lists_in_progress(
    redis_server: RedisServer, prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """No daemon: --wait gives up after --wait-timeout, exit 3; `deployments` shows it in flight."""
    process = publish(redis_server, prefix, "lonely", "--version", "1.0.0", "--wait-timeout", "1")
    out, err = process.communicate(timeout=20)
    assert (3, "lonely\n") == (process.returncode, out), err
    assert "lonely: no outcome within 1 s (at: not started)" in err, err
    assert 0 == run(["deployments", "--json", "--redis-url", redis_server.url,
                     "--stream-prefix", prefix, "--limit", "5"])  # fmt: skip
    [row] = json.loads(capsys.readouterr().out)
    expected = {"deployment_id": "lonely", "service": "lonely", "version": "1.0.0"}
    assert (expected, "in progress") == ({k: row[k] for k in expected}, row["outcome"])
