"""Faults of children in their own processes, against real daemons and real children.

A child that crashes mid-message, hangs, floods stderr, writes a 5 MB line,
exits 2 before ``ready``, leaks memory past ``max_rss_mb``, names a stream
outside its outputs, or ignores ``shutdown``; and the daemon killed with
``-9``. Each test ends with where every message went.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.daemon import Daemon, metric_value
from tests.e2e.ledger import publish
from tests.e2e.processes import descendants, fates, is_alive, pool_worker, task, write_workers_file
from tests.support.redis_server import RedisServer


def _env(
    redis_server: RedisServer, prefix: str, workers_file: Path, **extra: str
) -> dict[str, str]:
    return {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "WORKERS_FILE": str(workers_file),
        "WORKER_MODE": "proc",
        "BLOCK_MS": "200",
        "RETRY_BACKOFF_MS": "20",
        "RETRY_BACKOFF_MAX_MS": "50",
        "RESTART_BACKOFF_MS": "20",
        "MAX_DELIVERIES": "2",
        **extra,
    }


Pool = Callable[..., AbstractContextManager[tuple[Daemon, list[bytes], dict[bytes, str]]]]


@pytest.fixture
def run_pool(tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str) -> Pool:
    """``with run_pool(tasks, worker, **env) as (daemon, ids, found)``: a ready daemon running
    ``worker`` (default: two pool children), the tasks published, and where each went once
    every one has an output or a dead letter."""

    @contextmanager
    def run(
        tasks: list[dict[str | bytes, str | bytes]],
        worker: dict[str, Any] | None = None,
        **env: str,
    ) -> Iterator[tuple[Daemon, list[bytes], dict[bytes, str]]]:
        file = write_workers_file(tmp_path / "w.toml", {"proc": worker or pool_worker()})
        with Daemon(tmp_path, _env(redis_server, prefix, file, **env)) as daemon:
            daemon.wait_ready()
            ids = publish(client, f"{prefix}:proc:in", tasks)
            daemon.wait_until(
                "all settled", lambda: _settled(client, prefix, len(tasks)), timeout=30
            )
            yield daemon, ids, fates(client, prefix, ids)

    return run


def _kills(daemon: Daemon, reason: str) -> float:
    found = metric_value(
        daemon.metrics(), "printery_worker_child_kills_total", worker="proc", reason=reason
    )
    return found or 0.0


def _metric(daemon: Daemon, sample: str) -> float:
    return metric_value(daemon.metrics(), sample, worker="proc") or 0.0


def _settled(client: redis.Redis, prefix: str, total: int) -> bool:
    """Every message has an output or a dead letter."""
    return client.xlen(f"{prefix}:proc:out") + client.xlen(f"{prefix}:proc:in:dead") >= total


@pytest.mark.timeout(60)
def test_a_child_that_crashes_mid_message_is_replaced_and_the_message_spends_a_delivery(
    run_pool: Pool,
) -> None:
    """The crashing message is retried then dead-lettered; the others are acked by new children."""
    with run_pool([task(0, "crash"), *(task(n) for n in range(1, 20))]) as (daemon, ids, found):
        assert found[ids[0]].startswith(
            "dead: the child exited while handling the message (exit status 3) (after 2 deliveries)"
        )
        assert ["acked"] * 19 == [found[i] for i in ids[1:]]
        daemon.wait_until(
            "the second crashed child replaced",
            lambda: _metric(daemon, "printery_worker_child_spawns_total") == 4.0,
        )
        assert 2.0 == _metric(daemon, "printery_worker_children")
        assert {"proc": "running"} == daemon.worker_states()


@pytest.mark.timeout(60)
def test_a_child_that_hangs_is_killed_at_task_timeout_and_its_message_retried(
    run_pool: Pool, client: redis.Redis, prefix: str
) -> None:
    """Past ``task_timeout_s`` the child's group is killed; two deliveries, then dead letters."""
    with run_pool(
        [task(0, "hang"), *(task(n) for n in range(1, 6))], pool_worker(task_timeout_s=0.5)
    ) as (daemon, ids, found):
        assert found[ids[0]].startswith(
            "dead: task_timeout_s (0.5 s) exceeded: the child was killed"
        )
        assert ["acked"] * 5 == [found[i] for i in ids[1:]]
        daemon.wait_until("both children killed", lambda: _kills(daemon, "timeout") == 2.0)
        record = client.hgetall(f"{prefix}:task:{task_id(client, prefix, ids[0])}")
        assert b"dead" == record[b"status"]


def task_id(client: redis.Redis, prefix: str, entry_id: bytes) -> str:
    """The event id of a published entry."""
    ((_, fields),) = client.xrange(f"{prefix}:proc:in", entry_id, entry_id)
    return fields[b"id"].decode()


@pytest.mark.timeout(60)
def test_a_child_that_floods_stderr_keeps_working_and_its_lines_are_logged(run_pool: Pool) -> None:
    """300 KB on stderr never blocks the child: read continuously, logged line by line."""
    child = pool_worker(processes=1)
    with run_pool([task(0, "flood"), task(1, "flood"), task(2)], child) as (daemon, _, found):
        assert {"acked"} == set(found.values())
        lines = [e["line"] for e in daemon.events("printery.child_stderr")]
        assert 6000 == sum(1 for line in lines if line.startswith("flood line "))
        assert {"proc"} == {e["worker"] for e in daemon.events("printery.child_stderr")}
        assert 0.0 == _kills(daemon, "protocol")


@pytest.mark.timeout(60)
def test_a_5_mb_line_is_a_protocol_error_the_child_replaced_and_the_message_retried(
    run_pool: Pool,
) -> None:
    """A line over MAX_MESSAGE_BYTES kills the child (reason protocol); the others go on."""
    with run_pool([task(0, "bigline"), *(task(n) for n in range(1, 6))]) as (daemon, ids, found):
        assert found[ids[0]].startswith(
            "dead: protocol error, child replaced: a line longer than MAX_MESSAGE_BYTES"
        )
        assert ["acked"] * 5 == [found[i] for i in ids[1:]]
        daemon.wait_until("both children killed", lambda: _kills(daemon, "protocol") == 2.0)


@pytest.mark.timeout(60)
def test_children_that_exit_2_before_ready_fail_the_worker_and_touch_no_message(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """A broken definition: restarts, then ``failed``; the waiting messages keep every delivery."""
    file = write_workers_file(
        tmp_path / "w.toml",
        {
            "proc": pool_worker(env={"CHILD_START": "exit2"}),
            "other": pool_worker(input="other:in", processes=1),
        },
    )
    publish(client, f"{prefix}:proc:in", [task(n) for n in range(5)])
    client.xgroup_create(f"{prefix}:proc:in", "proc", id="0")
    env = _env(
        redis_server,
        prefix,
        file,
        SUPERVISED_MODE="true",
        MAX_RESTART_ATTEMPTS="2",
        WORKER_MODE="all",
    )
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_until(
            "the worker failed", lambda: daemon.worker_states().get("proc") == "failed", timeout=30
        )
        states = daemon.worker_states()
        assert "running" == states["other"]
        assert {"validator", "dependency-checker", "health-monitor", "notifier"} < set(states)
        assert 503 == daemon.get("/health")[0]
        crashed = [e for e in daemon.events("printery.worker_crashed") if e["worker"] == "proc"]
        assert 3 == len(crashed)
        stopped = [e for e in daemon.events("printery.child_stopped") if e["worker"] == "proc"]
        assert {("start", False)} == {(e["reason"], e["killed"]) for e in stopped}
        assert "exited before it said ready (exit status 2)" == stopped[0]["detail"]
        logged = daemon.events("printery.child_stderr")
        assert any("broken on purpose" == e["line"] for e in logged)
    assert 0 == client.xpending(f"{prefix}:proc:in", "proc")["pending"]
    assert 5 == client.xinfo_groups(f"{prefix}:proc:in")[0]["lag"]
    assert 0 == client.exists(f"{prefix}:proc:in:dead")


@pytest.mark.timeout(60)
def test_a_child_past_max_rss_mb_is_replaced_after_its_message(
    run_pool: Pool, client: redis.Redis, prefix: str
) -> None:
    """The leaking message is acked, then its child recycled (reason rss) and replaced."""
    child = pool_worker(processes=1, max_rss_mb=50)
    with run_pool([task(0, "leak"), task(1), task(2)], child) as (daemon, _, found):
        assert {"acked"} == set(found.values())
        pids = [json.loads(f[b"data"])["pid"] for _, f in client.xrange(f"{prefix}:proc:out")]
        assert pids[0] != pids[1]
        assert pids[1] == pids[2]
        daemon.wait_until("the child recycled", lambda: _kills(daemon, "rss") == 1.0)


@pytest.mark.timeout(60)
def test_max_tasks_per_child_recycles_children_between_messages(
    run_pool: Pool, client: redis.Redis, prefix: str
) -> None:
    """With ``max_tasks_per_child = 2`` each child handles two messages, then is replaced."""
    child = pool_worker(processes=1, max_tasks_per_child=2)
    with run_pool([task(n) for n in range(6)], child) as (daemon, _, found):
        assert {"acked"} == set(found.values())
        pids = [json.loads(f[b"data"])["pid"] for _, f in client.xrange(f"{prefix}:proc:out")]
        assert 3 == len(set(pids))
        daemon.wait_until("three recycled", lambda: _kills(daemon, "tasks") == 3.0)


@pytest.mark.timeout(60)
def test_an_output_outside_the_allow_list_dead_letters_the_message_with_the_reason(
    run_pool: Pool, client: redis.Redis, prefix: str
) -> None:
    """Nothing reaches the forbidden stream; the dead letter names it and the allow-list."""
    with run_pool([task(0, "forbidden"), task(1)]) as (_, ids, found):
        assert (
            "dead: output to stream 'secret:stream' is outside worker 'proc''s outputs (proc:out)"
            == found[ids[0]]
        )
        assert "acked" == found[ids[1]]
        assert 0 == client.exists(f"{prefix}:secret:stream")


@pytest.mark.timeout(60)
def test_a_child_that_ignores_shutdown_is_killed_within_the_shutdown_timeout(
    run_pool: Pool, client: redis.Redis, prefix: str
) -> None:
    """SIGTERM: shutdown is sent, ignored; at SHUTDOWN_TIMEOUT the group is killed, exit 0."""
    with run_pool(
        [task(n) for n in range(4)],
        pool_worker(env={"CHILD_SHUTDOWN": "ignore"}),
        SHUTDOWN_TIMEOUT="2",
    ) as (daemon, ids, _):
        children = descendants(daemon.pid)
        assert 2 == len(children)
        daemon.send(signal.SIGTERM)
        assert 0 == daemon.wait_exit(timeout=10)
        assert daemon.seconds_since_signal() < 4
        stopped = daemon.events("printery.child_stopped")
        assert ["shutdown", "shutdown"] == [e["reason"] for e in stopped]
    deadline = time.monotonic() + 5
    while any(is_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [] == [pid for pid in children if is_alive(pid)]
    assert {"acked"} == set(fates(client, prefix, ids).values())


@pytest.mark.timeout(60)
def test_kill_9_of_the_daemon_leaves_no_child_behind(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """Children that ignore stdin's end still die with the daemon (parent-death signal)."""
    file = write_workers_file(
        tmp_path / "w.toml", {"proc": pool_worker(env={"CHILD_SHUTDOWN": "ignore"})}
    )
    with Daemon(tmp_path, _env(redis_server, prefix, file)) as daemon:
        daemon.wait_ready()
        ids = publish(client, f"{prefix}:proc:in", [task(0, "hang"), task(1)])
        daemon.wait_until(
            "the quick one acked", lambda: client.xlen(f"{prefix}:proc:out") == 1, timeout=15
        )
        children = descendants(daemon.pid)
        assert 2 == len(children)
        daemon.send(signal.SIGKILL)
        assert -9 == daemon.wait_exit(timeout=10)
    deadline = time.monotonic() + 5
    while any(is_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [] == [pid for pid in children if is_alive(pid)]
    found = fates(client, prefix, ids)
    assert "pending" == found[ids[0]]
    assert "acked" == found[ids[1]]


@pytest.mark.timeout(60)
def test_replacements_that_exit_2_before_ready_hand_the_waiting_messages_back_uncounted(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """The first child crashes on a message; its replacements never start: no dead letters.

    Only the crash spent a delivery: the retry that waited for a child which never came
    is handed back uncounted, and the worker ends ``failed`` after its restarts.
    """
    marker = tmp_path / "started-once"
    file = write_workers_file(
        tmp_path / "w.toml",
        {
            "proc": pool_worker(processes=1, env={"CHILD_START": f"once:{marker}"}),
            "other": pool_worker(input="other:in", processes=1),
        },
    )
    env = _env(
        redis_server,
        prefix,
        file,
        SUPERVISED_MODE="true",
        MAX_RESTART_ATTEMPTS="1",
        WORKER_MODE="proc,other",
        MAX_DELIVERIES="5",
    )
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready()
        ids = publish(client, f"{prefix}:proc:in", [task(0, "crash"), task(1), task(2)])
        daemon.wait_until(
            "the worker failed", lambda: daemon.worker_states().get("proc") == "failed", timeout=30
        )
        assert "running" == daemon.worker_states()["other"]
    assert 0 == client.exists(f"{prefix}:proc:in:dead")
    rows = client.xpending_range(f"{prefix}:proc:in", "proc", min="-", max="+", count=10)
    deliveries = {bytes(r["message_id"]): int(r["times_delivered"]) for r in rows}
    assert {ids[0]: 1} == {i: n for i, n in deliveries.items() if i == ids[0]}
    assert all(n <= 1 for n in deliveries.values())
    assert 0 == client.xlen(f"{prefix}:proc:out")


@pytest.mark.timeout(60)
def test_an_idle_child_that_stops_answering_pings_is_replaced(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """Silent past ``heartbeat_timeout_s`` while idle: killed (reason heartbeat), replaced."""
    file = write_workers_file(
        tmp_path / "w.toml",
        {"proc": pool_worker(processes=1, heartbeat_timeout_s=0.6, env={"CHILD_PING": "ignore"})},
    )
    with Daemon(tmp_path, _env(redis_server, prefix, file)) as daemon:
        daemon.wait_ready()
        daemon.wait_until("a silent child killed", lambda: _kills(daemon, "heartbeat") >= 1.0)
        ids = publish(client, f"{prefix}:proc:in", [task(1), task(2)])
        daemon.wait_until("both settled", lambda: _settled(client, prefix, 2), timeout=20)
        assert {"acked"} == set(fates(client, prefix, ids).values())
        assert 2.0 <= _metric(daemon, "printery_worker_child_spawns_total")
