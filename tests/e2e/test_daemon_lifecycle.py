"""Real printery-workers processes, real signals: drain, deadline, forced exit, probes.

Each test that publishes ends with an accounting of every message: acked
exactly once, or still pending for another consumer; nothing else.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from printery import __version__
from tests.e2e.daemon import Daemon, children_of, metric_value
from tests.e2e.ledger import account, publish
from tests.e2e.workers import HERE
from tests.support.redis_server import RedisServer

CLAIM_IDLE_MS_DEFAULT = 60_000


def _delivered_up_to(client: redis.Redis, stream: str, last: bytes) -> bool:
    groups = {g["name"]: g for g in client.xinfo_groups(stream)} if client.exists(stream) else {}
    return b"echo" in groups and groups[b"echo"]["last-delivered-id"] == last


def _pending(client: redis.Redis, stream: str) -> int:
    if not client.exists(stream):
        return 0
    if b"echo" not in {g["name"] for g in client.xinfo_groups(stream)}:
        return 0
    return int(client.xpending(stream, "echo")["pending"])


@pytest.mark.timeout(60)
def test_sigterm_under_load_drains_and_exits_0(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """SIGTERM under load: exit 0 by SHUTDOWN_TIMEOUT + 1 s; each message acked once or pending."""
    stream, out = f"{prefix}:test:in", f"{prefix}:test:out"
    env = {**echo_env, "ECHO_CONCURRENCY": "8", "SHUTDOWN_TIMEOUT": "5"}
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready()
        published = publish(client, stream, [{"sleep": "0.2"}] * 200)
        daemon.wait_until(
            "all 200 delivered and 16 handled",
            lambda: _delivered_up_to(client, stream, published[-1]) and client.xlen(out) >= 16,
        )
        daemon.send(signal.SIGTERM)
        code = daemon.wait_exit(timeout=5 + 1)
        took = daemon.seconds_since_signal()

    ledger = account(client, prefix, published)
    assert (0, True) == (code, took < 5 + 1), daemon.tail()
    assert {} == ledger.duplicates
    assert set(published) == ledger.acked | ledger.pending
    assert len(ledger.acked) >= 16
    # What never started was handed back: long idle, so a live consumer claims it at once.
    assert [] == [i for i, idle in ledger.idle_ms.items() if idle < CLAIM_IDLE_MS_DEFAULT]
    names = daemon.event_names()
    assert names.index("printery.signal_received") < names.index("printery.drain_started")
    assert [0] == [e["exit_code"] for e in daemon.events("printery.daemon_stopped")]


@pytest.mark.timeout(60)
def test_drain_deadline_cancels_slow_handlers_and_a_successor_handles_them_once(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """At SHUTDOWN_TIMEOUT slow handlers are cancelled (exit 0); a successor handles each once."""
    stream = f"{prefix}:test:in"
    env = {**echo_env, "WORKER_MODE": f"{HERE}:PromptEcho", "ECHO_CONCURRENCY": "4"}
    with Daemon(tmp_path / "first", {**env, "SHUTDOWN_TIMEOUT": "2"}) as first:
        first.wait_ready()
        slow = {"sleep": "30", "sleeper": first.env["CONSUMER_NAME"]}
        published = publish(client, stream, [slow] * 6)  # 4 run, 2 wait
        first.wait_until("all six read", lambda: _pending(client, stream) == 6)
        first.send(signal.SIGTERM)
        code = first.wait_exit(timeout=2 + 1)
        took = first.seconds_since_signal()
    assert (0, True) == (code, took < 2 + 1), first.tail()
    assert [0] == [e["exit_code"] for e in first.events("printery.daemon_stopped")]
    assert "printery.worker_failed" not in first.event_names()
    abandoned = account(client, prefix, published)
    assert (set(published), frozenset()) == (abandoned.pending, abandoned.acked)
    # Handed back, the running ones too: idle far beyond any claim idle time.
    assert [] == [i for i, idle in abandoned.idle_ms.items() if idle < CLAIM_IDLE_MS_DEFAULT]

    successor_env = {**env, "CLAIM_IDLE_MS": "1000", "CLAIM_INTERVAL_MS": "200"}
    with Daemon(tmp_path / "second", successor_env) as second:
        second.wait_until("all six handled", lambda: client.xlen(f"{prefix}:test:out") >= 6)
        second.send(signal.SIGTERM)
        assert 0 == second.wait_exit(timeout=10)
    handled = account(client, prefix, published)
    assert (set(published), frozenset(), {}) == (handled.acked, handled.pending, handled.duplicates)


@pytest.mark.timeout(30)
def test_sigterm_while_still_starting_drains_and_exits_0(
    tmp_path: Path, own_redis: RedisServer, prefix: str
) -> None:
    """SIGTERM before the daemon listens (Redis frozen at start): a clean exit 0, not a kill."""
    env = {
        "REDIS_URL": own_redis.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": "tests.support.workers:EchoWorker",
        "BLOCK_MS": "200",
        "REDIS_SOCKET_TIMEOUT": "1.5",
        "REDIS_CONNECT_TIMEOUT": "1",
    }
    own_redis.pause()
    try:
        with Daemon(tmp_path, env) as daemon:
            # The endpoints are up while the heartbeat claim still waits on the frozen Redis.
            daemon.wait_until("the endpoints answer", lambda: daemon.get("/health")[0] != 0)
            assert "printery.daemon_started" not in daemon.event_names()
            daemon.send(signal.SIGTERM)
            code = daemon.wait_exit(timeout=10)
    finally:
        own_redis.resume()
    assert 0 == code, daemon.tail()
    [received] = daemon.events("printery.signal_received")
    assert (received["signal"], received["early"]) == ("SIGTERM", True)
    assert [0] == [e["exit_code"] for e in daemon.events("printery.daemon_stopped")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("sig", "expected"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_second_signal_exits_at_once(  # noqa: PLR0917 - pytest passes fixtures by name
    tmp_path: Path,
    client: redis.Redis,
    echo_env: dict[str, str],
    prefix: str,
    sig: signal.Signals,
    expected: int,
) -> None:
    """A second signal during a long drain exits at once with 128+signal, the handler unfinished."""
    stream = f"{prefix}:test:in"
    with Daemon(tmp_path, {**echo_env, "SHUTDOWN_TIMEOUT": "20"}) as daemon:
        daemon.wait_ready()
        published = publish(client, stream, [{"sleep": "30"}])
        daemon.wait_until("the slow handler started", lambda: _pending(client, stream) == 1)
        daemon.send(sig)
        daemon.wait_event("printery.drain_started")
        daemon.send(sig)
        code = daemon.wait_exit(timeout=5)
        took = daemon.seconds_since_signal()
    assert (expected, True) == (code, took < 2), daemon.tail()
    assert ["printery.forced_exit"] == [n for n in daemon.event_names() if "forced" in n]
    ledger = account(client, prefix, published)
    assert (set(published), frozenset()) == (ledger.pending, ledger.acked)


def _unshare_or_skip() -> str:
    """The unshare binary, if it may create a PID namespace here; else skip (fail under CI)."""
    found = shutil.which("unshare")
    reason = "unshare is not installed"
    if found is not None:
        probe = subprocess.run(
            [found, "--pid", "--fork", "--kill-child", "--", "true"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0:
            return found
        reason = f"unshare --pid failed: {probe.stderr.strip()}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{reason}, and CI=true forbids skipping")
    pytest.skip(reason)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("sig", "expected"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_second_signal_exits_at_once_as_pid_1(  # noqa: PLR0917 - pytest passes fixtures by name
    tmp_path: Path,
    client: redis.Redis,
    echo_env: dict[str, str],
    prefix: str,
    sig: signal.Signals,
    expected: int,
) -> None:
    """As PID 1 of its own namespace (as in a container), a signal drains, a second one forces."""
    unshare = _unshare_or_skip()
    stream = f"{prefix}:test:in"
    wrap = [unshare, "--pid", "--fork", "--kill-child", "--"]
    with Daemon(tmp_path, {**echo_env, "SHUTDOWN_TIMEOUT": "20"}, wrap=wrap) as daemon:
        daemon.wait_ready()
        [pid_1] = list(children_of(daemon.pid))
        status = Path(f"/proc/{pid_1}/status").read_text().splitlines()
        nspid = next(line for line in status if line.startswith("NSpid:")).split()
        assert "1" == nspid[-1], "the daemon is PID 1 in its own namespace"
        publish(client, stream, [{"sleep": "30"}])
        daemon.wait_until("the slow handler started", lambda: _pending(client, stream) == 1)
        daemon.send(sig, pid=pid_1)
        daemon.wait_event("printery.drain_started")
        daemon.send(sig, pid=pid_1)
        code = daemon.wait_exit(timeout=5)  # unshare reports its child's status
        took = daemon.seconds_since_signal()
    assert (expected, True) == (code, took < 2), daemon.tail()


@pytest.mark.timeout(90)
def test_health_and_ready_follow_redis_and_the_drain(
    tmp_path: Path, own_redis: RedisServer, prefix: str
) -> None:
    """/health stays 200 through a Redis outage and the drain; /ready follows Redis and drain."""
    stream, out = f"{prefix}:test:in", f"{prefix}:test:out"
    own_redis.stop()
    env = {
        "REDIS_URL": own_redis.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": "tests.support.workers:EchoWorker",
        "BLOCK_MS": "200",
        "REDIS_SOCKET_TIMEOUT": "2",
        "REDIS_CONNECT_TIMEOUT": "1",
        "SHUTDOWN_TIMEOUT": "20",
    }
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_until("/health answered", lambda: daemon.get("/health")[0] != 0)
        assert (200, 503) == (daemon.get("/health")[0], daemon.get("/ready")[0])

        own_redis.start()
        daemon.wait_ready(timeout=30)
        client = redis.Redis.from_url(own_redis.url)
        published = publish(client, stream, [{"n": "1"}])
        daemon.wait_until("one output", lambda: client.xlen(out) == 1)
        metrics = daemon.metrics()
        assert {
            "build_info": 1.0,
            "worker_up": 1.0,
            "acked": 1.0,
            "redis_up": 1.0,
        } == {
            "build_info": metric_value(metrics, "printery_build_info", version=__version__),
            "worker_up": metric_value(metrics, "printery_worker_up", worker="echo"),
            "acked": metric_value(
                metrics, "printery_messages_total", worker="echo", outcome="acked"
            ),
            "redis_up": metric_value(metrics, "printery_redis_up"),
        }

        own_redis.stop()
        daemon.wait_status("/ready", 503, timeout=30)
        assert 200 == daemon.get("/health")[0]
        daemon.wait_until(
            "echo degraded",
            lambda: daemon.worker_states().get("echo") == "degraded",
        )
        assert 200 == daemon.get("/health")[0]

        own_redis.start()
        daemon.wait_ready(timeout=30)
        published += publish(client, stream, [{"sleep": "3"}])
        daemon.wait_until("the slow handler started", lambda: _pending(client, stream) == 1)
        daemon.send(signal.SIGTERM)
        daemon.wait_until(
            "/status says draining", lambda: daemon.get_json("/status")[1].get("draining") is True
        )
        ready_status, ready = daemon.get_json("/ready")
        assert (503, True, 200) == (ready_status, ready["draining"], daemon.get("/health")[0])
        code = daemon.wait_exit(timeout=20)
    assert 0 == code, daemon.tail()
    ledger = account(client, prefix, published)
    assert (set(published), {}) == (ledger.acked, ledger.duplicates)
    assert "printery.worker_restart_scheduled" not in daemon.event_names()
    client.close()


@pytest.mark.timeout(30)
def test_version_and_help_exit_0(tmp_path: Path) -> None:
    """--version prints ``printery <version>``; --help prints the usage; both exit 0."""
    with Daemon(tmp_path, args=["--version"]) as version:
        assert 0 == version.wait_exit(timeout=20)
    with Daemon(tmp_path, args=["--help"]) as usage:
        assert 0 == usage.wait_exit(timeout=20)
    assert f"printery {__version__}" == version.stdout().strip()
    assert "" == version.stderr()
    assert usage.stdout().startswith("usage: printery-workers")
    assert "--supervised" in usage.stdout()
