"""``printery status`` against a real redis-server and real ``printery-workers`` processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from printery import __version__
from printery.cli.main import run
from tests.e2e.daemon import ROOT, Daemon
from tests.support.redis_server import RedisServer, free_port

ECHO = "tests.support.workers:EchoWorker"
CRASHER = "tests.support.workers:CrashingWorker"
DAEMON_KEYS = {
    "consumer", "host", "pid", "version", "started_at", "uptime_s", "updated_at",
    "heartbeat_age_s", "interval_s", "stale", "pending", "workers",
}  # fmt: skip
WORKER_KEYS = {
    "state", "restarts", "uptime_s", "processed", "failed", "in_flight", "reason",
    "stream", "group", "children",
}  # fmt: skip
CLI = [sys.executable, "-c", "from printery.cli.main import main; main()"]


@dataclass
class Cluster:
    """Real daemons on the session redis-server under this test's prefix, and the CLI on them."""

    tmp_path: Path
    server: RedisServer
    client: redis.Redis
    prefix: str
    capsys: pytest.CaptureFixture[str]
    daemons: list[Daemon] = field(default_factory=list)

    def start(self, consumer: str, **env: str) -> Daemon:
        """A daemon running the echo worker, heartbeating every 0.5 s; waits for its heartbeat."""
        daemon = Daemon(
            self.tmp_path,
            {
                "REDIS_URL": self.server.url,
                "STREAM_PREFIX": self.prefix,
                "WORKER_MODE": ECHO,
                "HTTP_PORT": "0",
                "HEARTBEAT_INTERVAL": "0.5",
                "CONSUMER_NAME": consumer,
                "BLOCK_MS": "200",
                **env,
            },
        ).start()
        self.daemons.append(daemon)
        daemon.wait_until("a heartbeat", lambda: self.heartbeat(consumer) is not None)
        return daemon

    def heartbeat(self, consumer: str) -> dict[str, Any] | None:
        raw = self.client.get(f"{self.prefix}:heartbeat:{consumer}")
        return None if raw is None else dict(json.loads(raw))

    def worker_field(self, consumer: str, worker: str, name: str) -> Any:
        """One field of one worker in a daemon's heartbeat record; None while there is none."""
        record = self.heartbeat(consumer)
        return None if record is None else record["workers"].get(worker, {}).get(name)

    def status(self, *argv: str) -> tuple[int, str, str]:
        """Exit code, stdout and stderr of ``printery status`` run in this process."""
        code = run(
            ["status", "--redis-url", self.server.url, "--stream-prefix", self.prefix, *argv]
        )
        out, err = self.capsys.readouterr()
        return code, out, err

    def status_json(self) -> tuple[int, dict[str, Any]]:
        code, out, err = self.status("--json")
        assert "" == err
        return code, dict(json.loads(out))


@pytest.fixture
def cluster(
    tmp_path: Path, redis_server: RedisServer, prefix: str, capsys: pytest.CaptureFixture[str]
) -> Iterator[Cluster]:
    """Daemons still running at the end (a failed test) are killed by their pid."""
    with redis.Redis.from_url(redis_server.url) as client:
        found = Cluster(tmp_path, redis_server, client, prefix, capsys)
        yield found
    for daemon in found.daemons:
        daemon.kill()


def stop(daemon: Daemon) -> None:
    """SIGTERM by pid: the daemon drains, releases its heartbeat and exits 0."""
    daemon.send(signal.SIGTERM)
    assert 0 == daemon.wait_exit(timeout=15)


@pytest.mark.timeout(60)
def test_json_shows_the_live_daemon_its_worker_and_streams(cluster: Cluster) -> None:
    """--json has the documented shape: daemon, worker counts, stream, group, consumer; exit 0."""
    prefix, client = cluster.prefix, cluster.client
    daemon = cluster.start("st-json")
    for _ in range(3):
        client.xadd(f"{prefix}:test:in", {"n": "1"})
    client.xadd(f"{prefix}:test:in", {"fail": "permanent"})
    daemon.wait_until(
        "3 processed, 1 failed in the heartbeat",
        lambda: (
            (
                cluster.worker_field("st-json", "echo", "processed"),
                cluster.worker_field("st-json", "echo", "failed"),
            )
            == (3, 1)
        ),
    )

    code, doc = cluster.status_json()

    assert 0 == code
    assert {
        "checked_at", "prefix", "healthy", "problems", "daemons", "stale_daemons", "streams",
    } == set(doc)  # fmt: skip
    assert (prefix, True, [], []) == (
        doc["prefix"],
        doc["healthy"],
        doc["problems"],
        doc["stale_daemons"],
    )
    [live] = doc["daemons"]
    assert DAEMON_KEYS == set(live)
    assert ("st-json", daemon.pid, __version__, False, 0.5) == (
        live["consumer"],
        live["pid"],
        live["version"],
        live["stale"],
        live["interval_s"],
    )
    assert live["heartbeat_age_s"] < 1.0
    echo = live["workers"]["echo"]
    assert WORKER_KEYS == set(echo)
    assert {
        "state": "running",
        "restarts": 0,
        "processed": 3,
        "failed": 1,
        "in_flight": 0,
        "reason": "started",
        "stream": f"{prefix}:test:in",
        "group": "echo",
        "children": None,
    } == {k: v for k, v in echo.items() if k != "uptime_s"}
    streams = {s["stream"]: s for s in doc["streams"]}
    builtin = [
        f"{prefix}:deployment:started",
        f"{prefix}:deployment:validated",
        f"{prefix}:deployment:dependencies-satisfied",
        f"{prefix}:notifications",
        f"{prefix}:notifications:delivered",
    ]
    assert [*builtin, f"{prefix}:test:in"] == [s["stream"] for s in doc["streams"]]
    assert {
        "stream": builtin[0],
        "exists": False,
        "length": 0,
        "dead_letters": 0,
        "groups": [],
    } == (streams[builtin[0]])
    echo_stream = streams[f"{prefix}:test:in"]
    [group] = echo_stream["groups"]
    [member] = group["consumers"]
    assert (True, 4, 1) == (
        echo_stream["exists"],
        echo_stream["length"],
        echo_stream["dead_letters"],
    )
    assert ("echo", 0, 0, None) == (
        group["group"],
        group["lag"],
        group["pending"],
        group["oldest_pending_age_s"],
    )
    assert ("st-json", 0) == (member["name"], member["pending"])
    assert {"stream", "exists", "length", "dead_letters", "groups"} == set(echo_stream)
    assert {"group", "lag", "pending", "oldest_pending_age_s", "consumers"} == set(group)
    assert {"name", "pending", "idle_s"} == set(member)
    stop(daemon)


@pytest.mark.timeout(60)
def test_table_lists_daemon_worker_stream_and_group(cluster: Cluster) -> None:
    """The terminal table has a row for the daemon, its worker, its stream and group, then OK."""
    prefix = cluster.prefix
    daemon = cluster.start("st-table")
    cluster.client.xadd(f"{prefix}:test:in", {"n": "1"})
    daemon.wait_until(
        "1 processed", lambda: cluster.worker_field("st-table", "echo", "processed") == 1
    )

    code, out, err = cluster.status()

    lines = out.splitlines()
    assert (0, "") == (code, err)
    assert lines[0].startswith(f"printery status  {cluster.server.url}  prefix {prefix}  ")
    assert "DAEMONS  1 live, 0 stale" in lines
    daemon_row = next(line.split() for line in lines if line.startswith("st-table "))
    assert ["st-table", str(daemon.pid), __version__] == [
        daemon_row[0],
        daemon_row[2],
        daemon_row[3],
    ]
    worker_row = next(r for r in (line.split() for line in lines) if r[:2] == ["st-table", "echo"])
    assert ["running", "0", "1", "0", "0"] == worker_row[2:7]
    stream_row = next(line.split() for line in lines if line.startswith(f"{prefix}:test:in "))
    assert [f"{prefix}:test:in", "1", "0"] == stream_row
    group_row = next(
        line.split() for line in lines if line.split()[:2] == [f"{prefix}:test:in", "echo"]
    )
    assert ["0", "0", "-", "st-table"] == group_row[2:6]
    assert "OK: 1 worker(s) running in 1 live daemon(s)" == lines[-1]
    stop(daemon)


@pytest.mark.timeout(60)
def test_a_started_or_failed_worker_shows_at_once_not_at_the_next_heartbeat(
    cluster: Cluster,
) -> None:
    """With a 60 s heartbeat, the record shows one worker running, another failed, within 5 s."""
    daemon = cluster.start(
        "st-prompt",
        HEARTBEAT_INTERVAL="60",
        WORKER_MODE=f"{ECHO},{CRASHER}",
        SUPERVISED_MODE="true",
        MAX_RESTART_ATTEMPTS="0",
    )
    daemon.wait_until(
        "echo running and the crasher failed in the record",
        lambda: (
            {"echo": "running", "crasher": "failed"}
            == {w: cluster.worker_field("st-prompt", w, "state") for w in ("echo", "crasher")}
        ),
        timeout=5,
    )
    code, _ = cluster.status_json()
    assert 1 == code
    stop(daemon)


@pytest.mark.timeout(60)
def test_killed_daemon_shows_as_stale_then_disappears(cluster: Cluster) -> None:
    """A SIGKILLed daemon's heartbeat is shown stale (exit 1), never live, until its key expires."""
    live = cluster.start("st-live")
    doomed = cluster.start("st-doomed", HEARTBEAT_INTERVAL="1.5")
    doomed.send(signal.SIGKILL)
    doomed.wait_exit(timeout=10)

    # Stale after 2 × 1.5 s without an update; the key expires at 3 × 1.5 s.
    deadline = time.monotonic() + 10
    code, doc = cluster.status_json()
    while not doc["stale_daemons"]:
        assert ["st-doomed", "st-live"] == sorted(d["consumer"] for d in doc["daemons"])
        assert time.monotonic() < deadline, "the killed daemon's heartbeat never turned stale"
        time.sleep(0.05)  # the record ages in Redis: nothing to await
        code, doc = cluster.status_json()

    [stale] = doc["stale_daemons"]
    assert (1, False) == (code, doc["healthy"])
    assert ["st-live"] == [d["consumer"] for d in doc["daemons"]]
    assert ("st-doomed", doomed.pid, True) == (stale["consumer"], stale["pid"], stale["stale"])
    assert stale["heartbeat_age_s"] > 3.0
    [problem] = doc["problems"]
    assert re.fullmatch(r"st-doomed: heartbeat is stale \(last \d\.\ds ago\)", problem)

    code, out, _ = cluster.status()
    assert 1 == code
    assert "DAEMONS  1 live, 1 stale" in out.splitlines()
    assert re.search(rf"^st-doomed .* {doomed.pid} .* ago  STALE$", out, re.MULTILINE)

    live.wait_until("the stale key expired", lambda: cluster.heartbeat("st-doomed") is None)
    code, doc = cluster.status_json()
    assert (0, [], ["st-live"]) == (
        code,
        doc["stale_daemons"],
        [d["consumer"] for d in doc["daemons"]],
    )
    stop(live)


@pytest.mark.timeout(60)
def test_failed_worker_makes_status_exit_1(cluster: Cluster) -> None:
    """A worker that failed (restart budget spent) is a problem: exit 1, named with its reason."""
    daemon = cluster.start(
        "st-failed",
        WORKER_MODE=f"{ECHO},{CRASHER}",
        SUPERVISED_MODE="true",
        MAX_RESTART_ATTEMPTS="0",
    )
    daemon.wait_until(
        "the crasher failed",
        lambda: cluster.worker_field("st-failed", "crasher", "state") == "failed",
    )

    code, doc = cluster.status_json()

    workers = doc["daemons"][0]["workers"]
    crasher = workers["crasher"]
    assert (1, False) == (code, doc["healthy"])
    assert ("running", "failed") == (workers["echo"]["state"], crasher["state"])
    assert (None, None, None) == (crasher["in_flight"], crasher["stream"], crasher["group"])
    assert [f"st-failed: crasher is failed: {crasher['reason']}"] == doc["problems"]
    assert "crash number 1" in crasher["reason"]
    code, out, _ = cluster.status()
    assert 1 == code
    assert ["NOT OK: 1 problem(s)", f"  - {doc['problems'][0]}"] == out.splitlines()[-2:]
    stop(daemon)


@pytest.mark.timeout(60)
def test_in_flight_and_pending_while_a_handler_runs(cluster: Cluster) -> None:
    """A message being handled counts in flight for the worker and pending for the group."""
    daemon = cluster.start("st-busy")
    entry_id = cluster.client.xadd(f"{cluster.prefix}:test:in", {"sleep": "2"})
    daemon.wait_until(
        "1 in flight", lambda: cluster.worker_field("st-busy", "echo", "in_flight") == 1
    )

    code, doc = cluster.status_json()

    stream = next(s for s in doc["streams"] if s["stream"] == f"{cluster.prefix}:test:in")
    [group] = stream["groups"]
    assert (0, 1) == (code, doc["daemons"][0]["workers"]["echo"]["in_flight"])
    assert (1, [("st-busy", 1)]) == (
        group["pending"],
        [(c["name"], c["pending"]) for c in group["consumers"]],
    )
    server_ms = int(cluster.client.time()[0]) * 1000
    id_ms = int(entry_id.split(b"-")[0])
    assert 0 <= group["oldest_pending_age_s"] <= (server_ms - id_ms) / 1000 + 1.0
    stop(daemon)


@pytest.mark.timeout(30)
def test_watch_refreshes_count_times_and_returns_the_last_code(cluster: Cluster) -> None:
    """--watch with --count 2 prints two refreshes (JSON: one line each), then exits."""
    code, out, err = cluster.status("--watch", "0.1", "--count", "2", "--json")
    frames = [json.loads(line) for line in out.splitlines()]
    assert (1, "", 2) == (code, err, len(frames))
    assert [False, False] == [f["healthy"] for f in frames]
    assert frames[0]["checked_at"] != frames[1]["checked_at"]


@pytest.mark.timeout(30)
def test_watch_stops_on_sigint(tmp_path: Path, redis_server: RedisServer, prefix: str) -> None:
    """`printery status --watch` redraws until SIGINT, then exits with the last status code."""
    output = tmp_path / "watch.out"
    env = {"PYTHONPATH": str(ROOT), "REDIS_URL": redis_server.url, "STREAM_PREFIX": prefix}
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [*CLI, "status", "--watch", "0.1"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 15
        while output.read_text().count("printery status  ") < 2:
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, "no second refresh"
            time.sleep(0.05)  # an outside process's output: nothing to await
        process.send_signal(signal.SIGINT)
        assert 1 == process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = output.read_text()
    assert "Traceback" not in text
    assert text.rstrip().endswith(f"no live daemon (no fresh heartbeat at {prefix}:heartbeat:*)")


@pytest.mark.timeout(20)
def test_unreachable_redis_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listening: one line naming the redacted URL, exit 2, no traceback, no output."""
    port = free_port()
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    code = run(["status"])
    out, err = capsys.readouterr()
    assert (2, "", 1) == (code, out, len(err.splitlines()))
    assert err.startswith(f"printery: cannot reach Redis at redis://:***@127.0.0.1:{port}/0: ")
    assert "hunter2" not in err


@pytest.mark.timeout(20)
def test_wrong_url_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A URL that is not redis://, rediss:// or unix:// is one line naming REDIS_URL, exit 2."""
    code = run(["status", "--redis-url", "http://localhost:6379"])
    assert (2, ("", "printery: REDIS_URL: must start with redis://, rediss:// or unix://\n")) == (
        code,
        capsys.readouterr(),
    )


@pytest.mark.timeout(20)
def test_flag_overrides_redis_url_from_the_environment(
    redis_server: RedisServer,
    prefix: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """REDIS_URL is used, and --redis-url (before or after the command) wins over it."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("STREAM_PREFIX", prefix)
    assert 1 == run(["status", "--json"])
    assert prefix == json.loads(capsys.readouterr().out)["prefix"]
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert 1 == run(["status", "--redis-url", redis_server.url])
    assert 1 == run(["--redis-url", redis_server.url, "status"])
    assert "" == capsys.readouterr().err


@pytest.mark.timeout(10)
def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """`printery status --help` explains the exit codes and shows examples."""
    with pytest.raises(SystemExit) as exited:
        run(["status", "--help"])
    out = capsys.readouterr().out
    assert 0 == exited.value.code
    assert "examples:\n  printery status\n  printery status --json" in out
    assert "Exit 0 when every worker is running, 1 when" in " ".join(out.split())


@pytest.mark.timeout(60)
def test_a_backlog_no_live_daemon_reads_is_not_ok(cluster: Cluster) -> None:
    """Entries on the started stream and no validator anywhere: exit 1, the stage named."""
    daemon = cluster.start("st-echo-only")
    daemon.wait_until(
        "echo running", lambda: cluster.worker_field("st-echo-only", "echo", "state") == "running"
    )
    for n in range(3):
        cluster.client.xadd(f"{cluster.prefix}:deployment:started", {"n": str(n)})

    code, doc = cluster.status_json()

    stream = f"{cluster.prefix}:deployment:started"
    expected = f"{stream}: 3 waiting and 0 pending for group validator, and no live daemon reads it"
    assert (1, [expected]) == (code, doc["problems"])
    code, out, _ = cluster.status()
    assert (1, ["NOT OK: 1 problem(s)", f"  - {expected}"]) == (code, out.splitlines()[-2:])
    stop(daemon)


@pytest.mark.timeout(60)
def test_a_killed_daemon_stays_stale_until_its_pending_messages_are_claimed(
    cluster: Cluster,
) -> None:
    """SIGKILLed holding a message: stale after its heartbeat expired, gone once it is claimed."""
    claim = {"CLAIM_IDLE_MS": "4000", "CLAIM_INTERVAL_MS": "100"}
    doomed = cluster.start("st-holder", **claim)
    cluster.client.xadd(f"{cluster.prefix}:test:in", {"sleep": "20"})
    doomed.wait_until(
        "1 in flight", lambda: cluster.worker_field("st-holder", "echo", "in_flight") == 1
    )
    keeper = cluster.start("st-keeper", **claim)
    doomed.send(signal.SIGKILL)
    doomed.wait_exit(timeout=10)
    keeper.wait_until("the killed daemon's key expired", lambda: not cluster.heartbeat("st-holder"))

    code, doc = cluster.status_json()

    [vanished] = doc["stale_daemons"]
    assert (1, "st-holder", None, True, 1) == (
        code,
        vanished["consumer"],
        vanished["pid"],
        vanished["stale"],
        vanished["pending"],
    )
    assert [{"stream": f"{cluster.prefix}:test:in", "group": "echo", "pending": 1}] == vanished[
        "holds"
    ]
    assert [
        "st-holder: no heartbeat, holds 1 pending (a live consumer claims them after CLAIM_IDLE_MS)"
    ] == doc["problems"]
    keeper.wait_until(
        "the keeper claimed the message",
        lambda: cluster.worker_field("st-keeper", "echo", "in_flight") == 1,
    )
    code, doc = cluster.status_json()
    assert (0, [], ["st-keeper"]) == (
        code,
        doc["stale_daemons"],
        [d["consumer"] for d in doc["daemons"]],
    )
