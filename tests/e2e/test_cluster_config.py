"""REDIS_MODE and PARTITIONS that disagree with the server: exit 2, one line naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.daemon import ROOT, Daemon
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer

CLI = [sys.executable, "-c", "from printery.cli.main import main; main()"]
ECHO = "tests.support.workers:EchoWorker"


def _one_line(text: str, starts: str, named: str) -> str:
    lines = text.strip().splitlines()
    assert 1 == len(lines), text
    assert lines[0].startswith(starts), lines[0]
    assert named in lines[0], lines[0]
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.timeout(30)
def test_daemon_in_cluster_mode_against_standalone_exits_2(
    tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    """REDIS_MODE=cluster, a standalone server: exit 2, one line naming REDIS_MODE."""
    env = {
        "REDIS_URL": redis_server.url,
        "REDIS_MODE": "cluster",
        "WORKER_MODE": ECHO,
        "STREAM_PREFIX": prefix,
    }
    with Daemon(tmp_path, env) as daemon:
        code = daemon.wait_exit(timeout=20)
    assert 2 == code, daemon.stderr()
    assert "cluster_enabled:0" in _one_line(daemon.stderr(), "printery-workers: ", "REDIS_MODE")


@pytest.mark.timeout(30)
def test_daemon_in_standalone_mode_against_a_cluster_exits_2(
    tmp_path: Path, redis_cluster: RedisCluster, prefix: str
) -> None:
    """REDIS_MODE unset, a cluster node: exit 2 naming REDIS_MODE, before any MOVED reply."""
    env = {"REDIS_URL": redis_cluster.url, "WORKER_MODE": ECHO, "STREAM_PREFIX": prefix}
    with Daemon(tmp_path, env) as daemon:
        code = daemon.wait_exit(timeout=20)
    assert 2 == code, daemon.stderr()
    line = _one_line(daemon.stderr(), "printery-workers: ", "REDIS_MODE")
    assert "set REDIS_MODE=cluster" in line


@pytest.mark.timeout(30)
def test_daemon_with_a_database_index_in_cluster_mode_exits_2(tmp_path: Path) -> None:
    """REDIS_MODE=cluster with /3 in REDIS_URL: exit 2 naming REDIS_URL, no connection tried."""
    env = {"REDIS_URL": "redis://127.0.0.1:1/3", "REDIS_MODE": "cluster", "WORKER_MODE": ECHO}
    with Daemon(tmp_path, env) as daemon:
        code = daemon.wait_exit(timeout=20)
    assert 2 == code, daemon.stderr()
    _one_line(daemon.stderr(), "printery-workers: ", "REDIS_URL")


@pytest.mark.timeout(30)
def test_cli_with_another_partition_count_exits_2(redis_cluster: RedisCluster, prefix: str) -> None:
    """The first CLI call records PARTITIONS=12; a later one with PARTITIONS=6 exits 2 naming it."""
    base = {
        k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "REDIS_MODE", "PARTITIONS"}
    }
    env = {
        **base,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_cluster.url,
        "REDIS_MODE": "cluster",
        "STREAM_PREFIX": prefix,
    }
    first = subprocess.run(
        [*CLI, "status", "--json"], env=env, capture_output=True, text=True, timeout=20, check=False
    )
    assert first.returncode in {0, 1}, first.stderr  # 1: no live daemon, still a status
    again = subprocess.run(
        [*CLI, "status"],
        env={**env, "PARTITIONS": "6"},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert 2 == again.returncode, again.stderr
    assert "PARTITIONS=12" in _one_line(again.stderr, "printery: ", "PARTITIONS")
