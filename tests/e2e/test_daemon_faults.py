"""Real daemons under faults: crashing workers, SIGKILL mid-handler, a taken name, bad passwords."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest
import redis

from tests.e2e.daemon import Daemon
from tests.e2e.ledger import account, publish
from tests.e2e.workers import CRASHER, ECHO, HERE
from tests.support.redis_server import RedisServer


def _stopped_with(daemon: Daemon) -> list[int]:
    return [e["exit_code"] for e in daemon.events("printery.daemon_stopped")]


@pytest.mark.timeout(30)
def test_standalone_crash_of_the_only_worker_exits_1(
    tmp_path: Path, echo_env: dict[str, str]
) -> None:
    """Standalone, a worker that crashes at start takes the daemon down with exit 1."""
    with Daemon(tmp_path, echo_env, [f"--worker={CRASHER}"]) as daemon:
        code = daemon.wait_exit(timeout=20)
    assert (1, [1]) == (code, _stopped_with(daemon)), daemon.tail()
    [failed] = daemon.events("printery.worker_failed")
    assert "crasher" == failed["worker"]


@pytest.mark.timeout(30)
def test_standalone_crash_drains_the_others_and_exits_1(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """Standalone, a crashing worker makes the daemon drain echo and exit 1, losing nothing."""
    published = publish(client, f"{prefix}:test:in", [{"n": str(i)} for i in range(20)])
    env = {**echo_env, "WORKER_MODE": f"{ECHO},{CRASHER}"}
    with Daemon(tmp_path, env) as daemon:
        code = daemon.wait_exit(timeout=20)
    assert (1, [1]) == (code, _stopped_with(daemon)), daemon.tail()
    assert "fatal" == daemon.events("printery.drain_started")[0]["reason"]
    assert {} == account(client, prefix, published).duplicates


@pytest.mark.timeout(30)
def test_standalone_crash_mid_load_lets_echos_handlers_finish(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """A crash while echo is busy: its running handlers finish and ack, the rest stay pending."""
    published = publish(client, f"{prefix}:test:in", [{"sleep": "0.1"}] * 100)
    env = {**echo_env, "WORKER_MODE": f"{ECHO},{HERE}:LateCrasher"}
    with Daemon(tmp_path, env) as daemon:
        code = daemon.wait_exit(timeout=20)
    ledger = account(client, prefix, published)
    assert (1, [1]) == (code, _stopped_with(daemon)), daemon.tail()
    assert (set(published), {}) == (ledger.acked | ledger.pending, ledger.duplicates)
    assert 0 < len(ledger.acked) < 100
    assert "printery.handler_raised" not in daemon.event_names()  # no handler was cut short


@pytest.mark.timeout(60)
def test_supervised_crash_storm_fails_one_worker_while_echo_keeps_working(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """Supervised: 2 restarts, then failed; /health 503, echo still handles; SIGTERM exits 0."""
    env = {
        **echo_env,
        "WORKER_MODE": f"{ECHO},{CRASHER}",
        "MAX_RESTART_ATTEMPTS": "2",
        "RESTART_BACKOFF_MS": "50",
    }
    with Daemon(tmp_path, env, ["--supervised"]) as daemon:
        daemon.wait_event("printery.worker_failed")
        daemon.wait_status("/health", 503)
        published = publish(client, f"{prefix}:test:in", [{"n": str(i)} for i in range(5)])
        daemon.wait_until("echo handled all five", lambda: client.xlen(f"{prefix}:test:out") == 5)
        assert {"echo": "running", "crasher": "failed"} == daemon.worker_states()
        assert (503, 503) == (daemon.get("/health")[0], daemon.get("/ready")[0])
        assert daemon.running, "one failed worker of two does not end the daemon"
        daemon.send(signal.SIGTERM)
        code = daemon.wait_exit(timeout=20)
    assert (0, [0]) == (code, _stopped_with(daemon)), daemon.tail()
    crasher = [e["event"] for e in daemon.events() if e.get("worker") == "crasher"]
    storm = [
        n for n in crasher if n in {"printery.worker_restart_scheduled", "printery.worker_failed"}
    ]
    assert [
        "printery.worker_restart_scheduled",
        "printery.worker_restart_scheduled",
        "printery.worker_failed",
    ] == storm
    assert [1, 2] == [e["attempt"] for e in daemon.events("printery.worker_restart_scheduled")]
    ledger = account(client, prefix, published)
    assert (set(published), {}) == (ledger.acked, ledger.duplicates)


@pytest.mark.timeout(30)
def test_supervised_daemon_exits_1_once_every_worker_failed(
    tmp_path: Path, echo_env: dict[str, str]
) -> None:
    """Supervised, when the only worker spends its restart budget, the daemon exits 1 by itself."""
    env = {**echo_env, "MAX_RESTART_ATTEMPTS": "1", "RESTART_BACKOFF_MS": "50"}
    with Daemon(tmp_path, env, ["--supervised", f"--worker={CRASHER}"]) as daemon:
        code = daemon.wait_exit(timeout=20)
    assert (1, [1]) == (code, _stopped_with(daemon)), daemon.tail()
    assert 1 == daemon.event_names().count("printery.worker_restart_scheduled")


@pytest.mark.timeout(30)
def test_worker_from_an_entry_point_loads_and_its_crash_exits_1(
    tmp_path: Path, echo_env: dict[str, str]
) -> None:
    """A worker named by a ``printery.workers`` entry point is found, runs, and crashes: exit 1."""
    site = tmp_path / "site"
    dist_info = site / "printery_testworkers-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: printery-testworkers\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(f"[printery.workers]\ncrasher = {CRASHER}\n")
    with Daemon(tmp_path, echo_env, ["--worker=crasher"], pythonpath=[site]) as daemon:
        code = daemon.wait_exit(timeout=20)
    assert (1, [1]) == (code, _stopped_with(daemon)), daemon.tail()
    [crashed] = daemon.events("printery.worker_crashed")
    assert ("crasher", "crash", "RuntimeError: crash number 1") == (
        crashed["worker"],
        crashed["kind"],
        crashed["error"],
    )


@pytest.mark.timeout(60)
def test_killed_daemons_message_is_claimed_by_a_survivor(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """SIGKILL mid-handler leaves the message pending; a live daemon claims and handles it once."""
    stream = f"{prefix}:test:in"
    env = {**echo_env, "CLAIM_IDLE_MS": "1000", "CLAIM_INTERVAL_MS": "200"}
    with Daemon(tmp_path, {**env, "CONSUMER_NAME": "doomed"}) as doomed:
        doomed.wait_ready()
        published = publish(client, stream, [{"sleep": "0.5"}])
        doomed.wait_until(
            "the doomed daemon took it", lambda: client.xpending(stream, "echo")["pending"] == 1
        )
        doomed.send(signal.SIGKILL)
        assert -signal.SIGKILL == doomed.wait_exit(timeout=10)
    with Daemon(tmp_path, {**env, "CONSUMER_NAME": "survivor"}) as survivor:
        survivor.wait_until(
            "the survivor handled it", lambda: client.xlen(f"{prefix}:test:out") == 1, timeout=20
        )
        survivor.send(signal.SIGTERM)
        assert 0 == survivor.wait_exit(timeout=20)
    [(_, fields)] = client.xrange(f"{prefix}:test:out")
    assert (published[0], b"survivor", b"2") == (
        fields[b"in_id"],
        fields[b"consumer"],
        fields[b"deliveries"],
    )
    assert 0 == client.xpending(stream, "echo")["pending"]


@pytest.mark.timeout(60)
def test_a_second_daemon_with_the_same_consumer_name_is_refused(
    tmp_path: Path, echo_env: dict[str, str]
) -> None:
    """Two processes never share one consumer: the second exits 2 with one line; the first runs."""
    env = {**echo_env, "CONSUMER_NAME": "twin", "HEARTBEAT_INTERVAL": "0.5"}
    with Daemon(tmp_path, env) as first:
        first.wait_ready()
        with Daemon(tmp_path, env) as second:
            code = second.wait_exit(timeout=20)
        assert (200, True) == (first.get("/ready")[0], first.running)
        first.send(signal.SIGTERM)
        assert 0 == first.wait_exit(timeout=20)
    lines = second.stderr().strip().splitlines()
    assert (2, 1) == (code, len(lines)), second.stderr()
    assert lines[0].startswith("printery-workers: CONSUMER_NAME 'twin' is in use")


@pytest.mark.timeout(60)
def test_a_taken_consumer_name_is_reported_within_one_interval_naming_the_holder(
    tmp_path: Path, echo_env: dict[str, str]
) -> None:
    """A second daemon exits 2 within one heartbeat interval (not the TTL), naming host and pid."""
    env = {**echo_env, "CONSUMER_NAME": "twin", "HEARTBEAT_INTERVAL": "4"}
    with Daemon(tmp_path, env) as first:
        first.wait_ready()
        began = time.monotonic()
        with Daemon(tmp_path, env) as second:
            code = second.wait_exit(timeout=30)
        took = time.monotonic() - began
        first.send(signal.SIGTERM)
        assert 0 == first.wait_exit(timeout=20)
    [line] = second.stderr().strip().splitlines()
    holder = f"is in use by a live daemon on host {socket.gethostname()}, pid {first.pid}"
    assert (2, True) == (code, holder in line), line
    # Start-up of the interpreter (~1-3 s) plus at most one interval; waiting out the
    # record's TTL, as before, took 3 × 4 + 4 = 16 s.
    assert took < 4 * 1.1 + 4, took


@pytest.mark.timeout(60)
def test_wrong_password_is_one_clear_line_not_a_retry_loop(tmp_path: Path) -> None:
    """A Redis that refuses the password: exit 2 within 10 s, one line, the password hidden."""
    server = RedisServer(tmp_path / "redis", extra=("--requirepass", "right-pw"))
    server.start()
    try:
        url = f"redis://:wrong-pw-canary@127.0.0.1:{server.port}/0"
        began = time.monotonic()
        with Daemon(tmp_path, {"REDIS_URL": url, "WORKER_MODE": ECHO}) as daemon:
            code = daemon.wait_exit(timeout=20)
        took = time.monotonic() - began
    finally:
        server.stop()
    text = daemon.stderr()
    lines = text.strip().splitlines()
    assert (2, 1, True) == (code, len(lines), took < 10), text
    assert lines[0].startswith("printery-workers: ")
    assert "password" in lines[0].lower() or "auth" in lines[0].lower(), lines[0]
    assert "wrong-pw-canary" not in text
    assert "Traceback" not in text


@pytest.mark.timeout(30)
def test_wrong_password_line_names_redis_url(tmp_path: Path) -> None:
    """The exit-2 line names the setting, here REDIS_URL, with the URL redacted."""
    server = RedisServer(tmp_path / "redis", extra=("--requirepass", "right-pw"))
    server.start()
    try:
        url = f"redis://:wrong-pw@127.0.0.1:{server.port}/0"
        with Daemon(tmp_path, {"REDIS_URL": url, "WORKER_MODE": ECHO}) as daemon:
            code = daemon.wait_exit(timeout=20)
    finally:
        server.stop()
    lines = daemon.stderr().strip().splitlines()
    assert (2, 1) == (code, len(lines)), daemon.stderr()
    assert lines[0].startswith("printery-workers: REDIS_URL"), lines[0]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("supervised", [False, True], ids=["standalone", "supervised"])
def test_password_refused_after_an_outage_at_start_is_permanent(
    tmp_path: Path, prefix: str, supervised: bool
) -> None:
    """Redis away at start, then up refusing the password: a permanent fault, not a crash loop."""
    server = RedisServer(tmp_path / "redis", extra=("--requirepass", "right-pw"))
    env = {
        "REDIS_URL": f"redis://:wrong-pw@127.0.0.1:{server.port}/0",
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": ECHO,
        "BLOCK_MS": "200",
        "REDIS_SOCKET_TIMEOUT": "2",
        "REDIS_CONNECT_TIMEOUT": "1",
        "HEARTBEAT_INTERVAL": "0.5",
        "RESTART_BACKOFF_MS": "50",
        "SUPERVISED_MODE": str(supervised).lower(),
    }
    try:
        with Daemon(tmp_path, env) as daemon:
            daemon.wait_until(
                "echo degraded", lambda: "printery.redis_unavailable" in daemon.event_names()
            )
            server.start()
            code = daemon.wait_exit(timeout=10)
    finally:
        server.stop()
    text = daemon.stderr()
    assert "Traceback" not in text, text[-3000:]
    assert "printery.worker_restart_scheduled" not in daemon.event_names()
    assert ["permanent"] == [e["kind"] for e in daemon.events("printery.worker_crashed")]
    if not supervised:  # standalone: bad credentials are exit 2 (supervised: failed, so 1 or 2)
        assert (2, [2]) == (code, _stopped_with(daemon))
    assert code in {1, 2}


@pytest.mark.timeout(30)
def test_consumer_name_taken_while_running_is_one_line_not_a_traceback(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """Another process takes over our heartbeat record: exit 2 with one clear line, no traceback."""
    env = {**echo_env, "CONSUMER_NAME": "twin", "HEARTBEAT_INTERVAL": "0.5"}
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready()
        client.set(f"{prefix}:heartbeat:twin", '{"token": "another-daemon"}', px=60_000)
        code = daemon.wait_exit(timeout=10)
    text = daemon.stderr()
    assert "Traceback" not in text, text[-3000:]
    assert 2 == code
    assert text.strip().splitlines()[-1].startswith("printery-workers: CONSUMER_NAME 'twin'")


@pytest.mark.timeout(30)
def test_sigterm_with_redis_stalled_still_exits_within_shutdown_timeout(
    tmp_path: Path, own_redis: RedisServer, prefix: str
) -> None:
    """Redis frozen (SIGSTOP) mid-handler, then SIGTERM: exit 0 within SHUTDOWN_TIMEOUT + 1 s."""
    stream = f"{prefix}:test:in"
    env = {
        "REDIS_URL": own_redis.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": ECHO,
        "BLOCK_MS": "200",
        "REDIS_SOCKET_TIMEOUT": "1.5",
        "SHUTDOWN_TIMEOUT": "3",
    }
    client = redis.Redis.from_url(own_redis.url)
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready()
        published = publish(client, stream, [{"sleep": "1"}])
        daemon.wait_until(
            "the handler started", lambda: client.xpending(stream, "echo")["pending"] == 1
        )
        own_redis.pause()
        daemon.send(signal.SIGTERM)
        try:
            code = daemon.wait_exit(timeout=3 + 1)
        finally:
            own_redis.resume()
    assert (0, [0]) == (code, _stopped_with(daemon)), daemon.tail()
    assert "printery.worker_failed" not in daemon.event_names()
    ledger = account(client, prefix, published)
    assert {} == ledger.duplicates
    client.close()
