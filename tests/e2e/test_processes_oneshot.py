"""Oneshot mode against real ``printery-workers`` processes: one process per message."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import redis

from tests.e2e.daemon import Daemon, metric_value
from tests.e2e.ledger import publish
from tests.e2e.processes import ONESHOT_CHILD, fates, task, write_workers_file
from tests.support.redis_server import RedisServer


def _env(redis_server: RedisServer, prefix: str, workers_file: Path) -> dict[str, str]:
    return {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "WORKERS_FILE": str(workers_file),
        "WORKER_MODE": "proc",
        "BLOCK_MS": "200",
        "RETRY_BACKOFF_MS": "20",
        "RETRY_BACKOFF_MAX_MS": "50",
        "MAX_DELIVERIES": "3",
    }


def _oneshot(**overrides: object) -> dict[str, object]:
    return {
        "command": [sys.executable, str(ONESHOT_CHILD)],
        "input": "proc:in",
        "outputs": ["proc:out"],
        "mode": "oneshot",
        "processes": 2,
        **overrides,
    }


@pytest.mark.timeout(60)
def test_a_seed_style_oneshot_worker_runs_unchanged_and_its_exit_code_decides(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """Exit 0 acks (result in the record), 1 retries to the dead letters, 2 and 3 as §7 says."""
    file = write_workers_file(tmp_path / "workers.toml", {"proc": _oneshot()})
    with Daemon(tmp_path, _env(redis_server, prefix, file)) as daemon:
        daemon.wait_ready()
        events = [task(1, out=True), task(2), task(3, exit=1), task(4, exit=2), task(5, exit=3)]
        ids = publish(client, f"{prefix}:proc:in", events)
        dead = f"{prefix}:proc:in:dead"
        daemon.wait_until("the failures dead-lettered", lambda: client.xlen(dead) == 3, timeout=30)
        daemon.wait_until(
            "nothing pending",
            lambda: client.xpending(f"{prefix}:proc:in", "proc")["pending"] == 0,
            timeout=15,
        )
        found = fates(client, prefix, ids[:1] + ids[2:])
        assert "acked" == found[ids[0]]
        assert found[ids[2]].startswith("dead: exit status 1: asked to exit 1 (after 3 deliveries)")
        assert found[ids[3]].startswith("dead: exit status 2: asked to exit 2")
        assert found[ids[4]].startswith("dead: crashed (exit status 3): asked to exit 3")
        seed = client.hgetall(f"{prefix}:task:{events[1]['id']}")
        assert b"succeeded" == seed[b"status"]
        assert {"doubled": 4, "type": "proc.run"} == json.loads(seed[b"result"])
        assert 0 == client.xpending(f"{prefix}:proc:in", "proc")["pending"]
        metrics = daemon.metrics()
        # 1 + 1 + 3 deliveries + 1 + 3 deliveries: one process each
        assert 9.0 == metric_value(metrics, "printery_worker_child_spawns_total", worker="proc")
        assert 0.0 == metric_value(metrics, "printery_worker_children", worker="proc")
        assert b"dead" == client.hget(f"{prefix}:task:{events[2]['id']}", "status")
        assert b"failed" == client.hget(f"{prefix}:task:{events[3]['id']}", "status")


@pytest.mark.timeout(60)
def test_a_oneshot_process_over_task_timeout_is_killed_and_retried(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """A process over ``task_timeout_s`` is killed (reason timeout) and its message retried."""
    file = write_workers_file(
        tmp_path / "workers.toml", {"proc": _oneshot(task_timeout_s=0.5, processes=1)}
    )
    env = {**_env(redis_server, prefix, file), "MAX_DELIVERIES": "2"}
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready()
        ids = publish(client, f"{prefix}:proc:in", [task(1, sleep=30), task(2, out=True)])
        daemon.wait_until(
            "the slow one dead-lettered",
            lambda: client.xlen(f"{prefix}:proc:in:dead") == 1,
            timeout=20,
        )
        daemon.wait_until(
            "the quick one acked", lambda: client.xlen(f"{prefix}:proc:out") == 1, timeout=10
        )
        found = fates(client, prefix, ids)
        assert found[ids[0]].startswith("dead: task_timeout_s (0.5 s) exceeded")
        assert "acked" == found[ids[1]]
        kills = metric_value(
            daemon.metrics(), "printery_worker_child_kills_total", worker="proc", reason="timeout"
        )
        assert 2.0 == kills


def _failing_env(redis_server: RedisServer, prefix: str, file: Path) -> dict[str, str]:
    return {
        **_env(redis_server, prefix, file),
        "WORKER_MODE": "proc,other",
        "SUPERVISED_MODE": "true",
        "MAX_RESTART_ATTEMPTS": "1",
        "RESTART_BACKOFF_MS": "20",
    }


def _deliveries(client: redis.Redis, stream: str) -> dict[bytes, int]:
    rows = client.xpending_range(stream, "proc", min="-", max="+", count=100)
    return {bytes(r["message_id"]): int(r["times_delivered"]) for r in rows}


@pytest.mark.timeout(60)
def test_a_oneshot_worker_whose_script_is_missing_fails_and_touches_no_message(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """``python missing.py``: the worker fails at start with one line naming the script.

    No process is spawned and no message is read, so none is dead-lettered for
    Python's exit 2; the other worker of the file runs on.
    """
    file = write_workers_file(
        tmp_path / "workers.toml",
        {
            "proc": _oneshot(command=[sys.executable, "missing.py"]),
            "other": _oneshot(input="other:in"),
        },
    )
    publish(client, f"{prefix}:proc:in", [task(n) for n in range(3)])
    client.xgroup_create(f"{prefix}:proc:in", "proc", id="0")
    with Daemon(tmp_path, _failing_env(redis_server, prefix, file)) as daemon:
        daemon.wait_until(
            "the worker failed", lambda: daemon.worker_states().get("proc") == "failed", timeout=30
        )
        assert "running" == daemon.worker_states()["other"]
        crashed = [e for e in daemon.events("printery.worker_crashed") if e["worker"] == "proc"]
        assert crashed
        error = crashed[0]["error"]
        assert "\n" not in error
        assert "cannot open its script 'missing.py'" in error
        assert str(tmp_path) in error
        spawns = metric_value(daemon.metrics(), "printery_worker_child_spawns_total", worker="proc")
        assert not spawns
    assert 0 == client.xpending(f"{prefix}:proc:in", "proc")["pending"]
    assert 3 == client.xinfo_groups(f"{prefix}:proc:in")[0]["lag"]
    assert 0 == client.exists(f"{prefix}:proc:in:dead")


@pytest.mark.timeout(60)
def test_a_oneshot_script_gone_after_start_hands_its_messages_back_uncounted(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """The script vanishes while the worker runs: Python's exit 2 is no verdict.

    The run that shows it (exit 2, nothing on stdout, "can't open file") hands
    its message back without spending a delivery and fails the worker; nothing
    is dead-lettered and no task record says failed.
    """
    script = tmp_path / "child.py"
    script.write_text(ONESHOT_CHILD.read_text())
    file = write_workers_file(
        tmp_path / "workers.toml",
        {
            "proc": _oneshot(command=[sys.executable, "child.py"], processes=1),
            "other": _oneshot(input="other:in"),
        },
    )
    with Daemon(tmp_path, _failing_env(redis_server, prefix, file)) as daemon:
        daemon.wait_ready()
        script.unlink()
        events = [task(n) for n in range(3)]
        publish(client, f"{prefix}:proc:in", events)
        daemon.wait_until(
            "the worker failed", lambda: daemon.worker_states().get("proc") == "failed", timeout=30
        )
        assert "running" == daemon.worker_states()["other"]
        stopped = [e for e in daemon.events("printery.child_stopped") if e["worker"] == "proc"]
        assert stopped
        assert {("start", False)} == {(e["reason"], e["killed"]) for e in stopped}
        assert "can't open file" in stopped[0]["detail"]
        crashed = [e for e in daemon.events("printery.worker_crashed") if e["worker"] == "proc"]
        assert any("can't open file" in e["error"] for e in crashed)
    assert 0 == client.exists(f"{prefix}:proc:in:dead")
    assert all(n == 0 for n in _deliveries(client, f"{prefix}:proc:in").values())
    for event in events:
        assert b"failed" != client.hget(f"{prefix}:task:{event['id']}", "status")
