"""Pool mode against real ``printery-workers`` processes and real children."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.e2e.daemon import ROOT, Daemon, metric_value
from tests.e2e.ledger import publish
from tests.e2e.processes import fates, pool_worker, task, write_workers_file
from tests.support.redis_server import RedisServer

CLI = [sys.executable, "-c", "from printery.cli.main import main; main()"]


def _env(redis_server: RedisServer, prefix: str, workers_file: Path) -> dict[str, str]:
    return {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "WORKERS_FILE": str(workers_file),
        "WORKER_MODE": "proc",
        "BLOCK_MS": "200",
        "RETRY_BACKOFF_MS": "50",
        "RESTART_BACKOFF_MS": "50",
    }


@pytest.mark.timeout(60)
def test_pool_outputs_are_cloudevents_committed_with_the_ack(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """Every message acked once with its output; source, subject and traceparent as §7 says."""
    file = write_workers_file(tmp_path / "workers.toml", {"proc": pool_worker()})
    with Daemon(tmp_path, _env(redis_server, prefix, file)) as daemon:
        daemon.wait_ready()
        traced = {
            **task(0),
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }
        published = publish(client, f"{prefix}:proc:in", [traced, *(task(n) for n in range(1, 40))])
        daemon.wait_until(
            "every output written", lambda: client.xlen(f"{prefix}:proc:out") == 40, timeout=20
        )
        assert {"acked"} == set(fates(client, prefix, published).values())
        outputs = {
            json.loads(f[b"data"])["in_id"]: f for _, f in client.xrange(f"{prefix}:proc:out")
        }
        first = outputs[published[0].decode()]
        assert b"printery/proc" == first[b"source"]
        assert b"subject-0" == first[b"subject"]
        assert traced["traceparent"].encode() == first[b"traceparent"]
        assert b"proc.done" == first[b"type"]
        pids = {json.loads(f[b"data"])["pid"] for f in outputs.values()}
        _, status = daemon.get_json("/status")
        children = status["workers"]["proc"]["children"]
        assert 2 == len(children)
        assert pids <= {c["pid"] for c in children}
        assert 40 == sum(c["handled"] for c in children)
        metrics = daemon.metrics()
        assert 2.0 == metric_value(metrics, "printery_worker_children", worker="proc")
        assert 2.0 == metric_value(metrics, "printery_worker_child_spawns_total", worker="proc")
        record = client.hgetall(f"{prefix}:task:{traced['id']}")
        assert b"succeeded" == record[b"status"]
        assert b"1" == record[b"deliveries"]


@pytest.mark.timeout(60)
def test_progress_and_log_lines_make_the_task_record_that_printery_task_prints(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """The child's progress and log lines, and the result, are in ``printery task <id> --json``."""
    file = write_workers_file(tmp_path / "workers.toml", {"proc": pool_worker(processes=1)})
    with Daemon(tmp_path, _env(redis_server, prefix, file)) as daemon:
        daemon.wait_ready()
        event = task(1, "progress")
        publish(client, f"{prefix}:proc:in", [event])
        daemon.wait_until(
            "the output written", lambda: client.xlen(f"{prefix}:proc:out") == 1, timeout=15
        )
    shown = subprocess.run(
        [
            *CLI,
            "--redis-url",
            redis_server.url,
            "--stream-prefix",
            prefix,
            "task",
            str(event["id"]),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    assert 0 == shown.returncode, shown.stderr
    record = json.loads(shown.stdout)
    assert "succeeded" == record["fields"]["status"]
    assert "100" == record["fields"]["percent"]
    assert "resizing" == record["fields"]["step"]
    assert ["progress", "log", "progress"] == [entry["kind"] for entry in record["log"]]
    assert "halfway" == record["log"][1]["message"]
    assert 0 < client.ttl(f"{prefix}:task:{event['id']}:log")


@pytest.mark.timeout(60)
def test_the_childs_environment_is_its_env_and_four_names_never_the_daemons_secrets(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """REDIS_URL and NOTIFY_WEBHOOK_SECRET are the daemon's; the child sees env, PATH, HOME…"""
    (tmp_path / "work").mkdir()
    file = write_workers_file(
        tmp_path / "workers.toml",
        {"proc": pool_worker(processes=1, env={"QUALITY": "85"}, cwd="work")},
    )
    env = {
        **_env(redis_server, prefix, file),
        "NOTIFY_WEBHOOK_SECRET": "s3cr3t-canary",
        "AWS_SECRET_ACCESS_KEY": "another-canary",
        "TZ": "UTC",
    }
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready()
        publish(client, f"{prefix}:proc:in", [task(1, "env")])
        daemon.wait_until(
            "the output written", lambda: client.xlen(f"{prefix}:proc:out") == 1, timeout=15
        )
        ((_, fields),) = client.xrange(f"{prefix}:proc:out")
        data = json.loads(fields[b"data"])
        # LC_CTYPE: Python's own locale coercion (PEP 538) under LANG=C, not the daemon's.
        assert set(data["env"]) - {"LC_CTYPE"} <= {"PATH", "HOME", "LANG", "TZ", "QUALITY"}
        assert {"PATH", "TZ", "QUALITY"} <= set(data["env"])
        assert str((tmp_path / "work").resolve()) == data["cwd"]
        assert "s3cr3t-canary" not in daemon.stderr()


@pytest.mark.timeout(30)
def test_a_bad_workers_file_is_exit_2_with_one_line_naming_file_worker_and_key(
    tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    """``--workers-file`` with an unknown mode: one line on stderr, exit 2, before any Redis."""
    file = write_workers_file(tmp_path / "workers.toml", {"proc": pool_worker(mode="fork")})
    env = {"REDIS_URL": redis_server.url, "STREAM_PREFIX": prefix, "WORKER_MODE": "all"}
    daemon = Daemon(tmp_path, env, args=["--workers-file", str(file)]).start()
    assert 2 == daemon.wait_exit(timeout=20)
    expected = (
        f"printery-workers: WORKERS_FILE: {file}: workers.proc.mode: "
        'must be "pool" or "oneshot" (got \'fork\')\n'
    )
    assert expected == daemon.stderr()


@pytest.mark.timeout(30)
def test_an_unknown_worker_name_lists_the_files_workers_among_the_known(
    tmp_path: Path, redis_server: RedisServer, prefix: str
) -> None:
    """``--worker ghost`` with a workers file: exit 2, one line."""
    file = write_workers_file(tmp_path / "workers.toml", {"proc": pool_worker()})
    env = {"REDIS_URL": redis_server.url, "STREAM_PREFIX": prefix, "WORKERS_FILE": str(file)}
    daemon = Daemon(tmp_path, env, args=["--worker", "ghost"]).start()
    assert 2 == daemon.wait_exit(timeout=20)
    assert daemon.stderr().startswith("printery-workers: WORKER_MODE: unknown worker 'ghost'")
    assert daemon.stderr().endswith("; WORKERS_FILE has proc\n")
    assert 1 == daemon.stderr().count("\n")


@pytest.mark.timeout(60)
def test_printery_status_shows_each_child_with_its_message_count_and_rss(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """``printery status --json`` and the table list each child: pid, current, handled, RSS."""
    file = write_workers_file(tmp_path / "workers.toml", {"proc": pool_worker()})
    env = {**_env(redis_server, prefix, file), "HEARTBEAT_INTERVAL": "0.2"}
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready()
        publish(client, f"{prefix}:proc:in", [task(n) for n in range(6)])
        daemon.wait_until(
            "every output written", lambda: client.xlen(f"{prefix}:proc:out") == 6, timeout=15
        )
        base = [*CLI, "--redis-url", redis_server.url, "--stream-prefix", prefix, "status"]

        def children() -> list[dict[str, object]]:
            shown = subprocess.run(
                [*base, "--json"], capture_output=True, text=True, timeout=30, check=False
            )
            doc = json.loads(shown.stdout)
            found = doc["daemons"][0]["workers"]["proc"]["children"] if doc["daemons"] else None
            return found or []

        daemon.wait_until(
            "the heartbeat counts six", lambda: sum(int(c["handled"]) for c in children()) == 6
        )
        listed = children()
        _, status = daemon.get_json("/status")
        assert {c["pid"] for c in status["workers"]["proc"]["children"]} == {
            c["pid"] for c in listed
        }
        assert all(c["current"] is None and float(c["rss_mb"]) > 1 for c in listed)
        table = subprocess.run(base, capture_output=True, text=True, timeout=30, check=False)
        assert "CHILDREN" in table.stdout
        rows = [line for line in table.stdout.splitlines() if f" {listed[0]['pid']} " in line]
        assert 1 == len(rows)
        assert "MiB" in rows[0]
