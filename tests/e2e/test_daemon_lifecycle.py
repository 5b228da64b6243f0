"""Real printery-workers processes, real signals: drain, exit codes, probes.

Each test ends with an accounting of what it published: acked exactly once,
or still pending for another consumer; nothing else.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.support.daemon_process import DaemonProcess
from tests.support.redis_server import RedisServer

ECHO = "tests.support.workers:EchoWorker"
CRASHER = "tests.support.workers:CrashingWorker"


def _id(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq)


def account(client: redis.Redis, prefix: str, published: list[bytes]) -> tuple[int, int, int]:
    """(acked, pending, undelivered) for the published ids; fails on duplicates or a loss."""
    stream = f"{prefix}:test:in"
    outputs = [f[b"in_id"] for _, f in client.xrange(f"{prefix}:test:out")]
    assert len(outputs) == len(set(outputs)), "an input was acked with its outputs twice"
    groups = {g["name"]: g for g in client.xinfo_groups(stream)} if client.exists(stream) else {}
    pending: set[bytes] = set()
    last = (0, 0)
    if b"echo" in groups:
        pending = {
            p["message_id"]
            for p in client.xpending_range(stream, "echo", min="-", max="+", count=10_000)
        }
        last = _id(groups[b"echo"]["last-delivered-id"])
    undelivered = {i for i in published if _id(i) > last}
    acked = set(outputs)
    assert acked.isdisjoint(pending)
    assert acked | pending | undelivered == set(published), "a message is unaccounted for"
    return len(acked), len(pending), len(undelivered)


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


@pytest.mark.timeout(60)
def test_sigterm_under_load_drains_and_exits_0(
    tmp_path: Path, redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    """SIGTERM mid-load: exit 0 within SHUTDOWN_TIMEOUT; every message acked once or pending."""
    daemon = DaemonProcess(
        tmp_path,
        {
            "REDIS_URL": redis_server.url,
            "STREAM_PREFIX": prefix,
            "WORKER_MODE": ECHO,
            "ECHO_CONCURRENCY": "8",
            "SHUTDOWN_TIMEOUT": "5",
            "BLOCK_MS": "200",
        },
    ).start()
    try:
        daemon.wait_ready()
        published = [client.xadd(f"{prefix}:test:in", {"sleep": "0.2"}) for _ in range(200)]
        daemon.wait_until("some outputs", lambda: client.xlen(f"{prefix}:test:out") >= 16)
        began = time.monotonic()
        daemon.send(signal.SIGTERM)
        code = daemon.wait_exit(timeout=10)
        took = time.monotonic() - began
    finally:
        daemon.stop()
    assert (code, took < 5 + 1) == (0, True), daemon.log_text()[-2000:]
    acked, pending, undelivered = account(client, prefix, published)
    assert acked >= 16
    assert acked + pending + undelivered == 200
    names = daemon.event_names()
    assert "printery.drain_started" in names
    assert [
        e["exit_code"] for e in daemon.events() if e.get("event") == "printery.daemon_stopped"
    ] == [0]


@pytest.mark.timeout(60)
def test_standalone_crash_drains_the_others_and_exits_1(
    tmp_path: Path, redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    """Standalone, a crashing worker makes the daemon drain the rest and exit 1, losing nothing."""
    stream = f"{prefix}:test:in"
    published = [client.xadd(stream, {"n": str(i)}) for i in range(20)]
    daemon = DaemonProcess(
        tmp_path,
        {
            "REDIS_URL": redis_server.url,
            "STREAM_PREFIX": prefix,
            "WORKER_MODE": f"{ECHO},{CRASHER}",
            "BLOCK_MS": "200",
        },
    ).start()
    try:
        code = daemon.wait_exit(timeout=20)
    finally:
        daemon.stop()
    assert code == 1, daemon.log_text()[-2000:]
    assert "printery.worker_failed" in daemon.event_names()
    acked, pending, undelivered = account(client, prefix, published)
    assert acked + pending + undelivered == 20


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("sig", "expected"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_second_signal_exits_at_once(  # noqa: PLR0917 - pytest passes fixtures by name
    tmp_path: Path,
    redis_server: RedisServer,
    client: redis.Redis,
    prefix: str,
    sig: signal.Signals,
    expected: int,
) -> None:
    """A second signal during a long drain exits at once with 128+signal."""
    daemon = DaemonProcess(
        tmp_path,
        {
            "REDIS_URL": redis_server.url,
            "STREAM_PREFIX": prefix,
            "WORKER_MODE": ECHO,
            "SHUTDOWN_TIMEOUT": "20",
            "BLOCK_MS": "200",
        },
    ).start()
    try:
        daemon.wait_ready()
        client.xadd(f"{prefix}:test:in", {"sleep": "30"})
        daemon.wait_until(
            "the slow handler started",
            lambda: client.xpending(f"{prefix}:test:in", "echo")["pending"] == 1,
        )
        daemon.send(sig)
        daemon.wait_until(
            "the drain started", lambda: "printery.drain_started" in daemon.event_names()
        )
        began = time.monotonic()
        daemon.send(sig)
        code = daemon.wait_exit(timeout=5)
        took = time.monotonic() - began
    finally:
        daemon.stop()
    assert (code, took < 2) == (expected, True)


def _child_of(pid: int) -> int | None:
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        if children:
            return int(children[0])
    return None


@pytest.mark.timeout(60)
def test_second_signal_exits_at_once_as_pid_1(
    tmp_path: Path, redis_server: RedisServer, client: redis.Redis, prefix: str
) -> None:
    """As PID 1 of its own namespace (as in a container), signals still drain, then force."""
    unshare = shutil.which("unshare")
    probe = (
        subprocess.run(
            [unshare or "unshare", "--pid", "--fork", "true"], capture_output=True, check=False
        )
        if unshare
        else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip("unshare --pid is not permitted here")
    daemon = DaemonProcess(
        tmp_path,
        {
            "REDIS_URL": redis_server.url,
            "STREAM_PREFIX": prefix,
            "WORKER_MODE": ECHO,
            "SHUTDOWN_TIMEOUT": "20",
            "BLOCK_MS": "200",
        },
        wrap=[unshare, "--pid", "--fork", "--kill-child", "--"],
    ).start()
    try:
        daemon.wait_ready()
        pid_1 = _child_of(daemon.pid)
        assert pid_1 is not None
        status = Path(f"/proc/{pid_1}/status").read_text().splitlines()
        nspid = next(line for line in status if line.startswith("NSpid:")).split()
        assert nspid[-1] == "1"  # it really is PID 1 in its own namespace
        client.xadd(f"{prefix}:test:in", {"sleep": "30"})
        daemon.wait_until(
            "the slow handler started",
            lambda: client.xpending(f"{prefix}:test:in", "echo")["pending"] == 1,
        )
        subprocess.run(["kill", "-TERM", str(pid_1)], check=True)
        daemon.wait_until(
            "the drain started", lambda: "printery.drain_started" in daemon.event_names()
        )
        subprocess.run(["kill", "-TERM", str(pid_1)], check=True)
        code = daemon.wait_exit(timeout=5)
    finally:
        daemon.stop()
    assert code == 143


BAD_SETTINGS = [
    ({"BATCH_SIZE": "0"}, [], "BATCH_SIZE"),
    ({"BLOCK_MS": "abc"}, [], "BLOCK_MS"),
    ({"SUPERVISED_MODE": "maybe"}, [], "SUPERVISED_MODE"),
    ({"REDIS_URL": "http://x"}, [], "REDIS_URL"),
    ({"LOG_LEVEL": "loud"}, [], "LOG_LEVEL"),
    ({"ENVIRONMENT": "prod"}, [], "ENVIRONMENT"),
    ({"HTTP_PORT": "70000"}, [], "HTTP_PORT"),
    ({"WORKER_MODE": "nope"}, [], "WORKER_MODE"),
    ({"BLOCK_MS": "6000"}, [], "BLOCK_MS"),
    ({"CLAIM_IDLE_MS": "100"}, [], "CLAIM_IDLE_MS"),
    ({"VALIDATOR_CONCURRENCY": "lots"}, [], "VALIDATOR_CONCURRENCY"),
    ({}, ["--max-restarts=-1"], "MAX_RESTART_ATTEMPTS"),
    ({}, ["--no-such-flag"], "--no-such-flag"),
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("env", "args", "named"),
    BAD_SETTINGS,
    ids=[b[2] + ("-flag" if b[1] else "") for b in BAD_SETTINGS],
)
def test_bad_setting_exits_2_with_one_line_naming_it(
    tmp_path: Path, env: dict[str, str], args: list[str], named: str
) -> None:
    """Each bad setting: exit 2, one line on stderr naming the setting, no traceback."""
    daemon = DaemonProcess(tmp_path, {"REDIS_URL": "redis://127.0.0.1:1/0", **env}, args)
    daemon.start()
    try:
        code = daemon.wait_exit(timeout=20)
    finally:
        daemon.stop()
    lines = daemon.log_text().strip().splitlines()
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(("printery-workers: ", "usage:")), lines[0]
    assert named in lines[0]
    assert "Traceback" not in daemon.log_text()


@pytest.mark.timeout(90)
def test_health_and_ready_follow_redis_and_the_drain(
    tmp_path: Path, own_redis: RedisServer, prefix: str
) -> None:
    """/health stays 200 through a Redis outage; /ready is 503 without Redis, 200 with it."""
    own_redis.stop()
    daemon = DaemonProcess(
        tmp_path,
        {
            "REDIS_URL": own_redis.url,
            "STREAM_PREFIX": prefix,
            "WORKER_MODE": ECHO,
            "BLOCK_MS": "200",
            "REDIS_SOCKET_TIMEOUT": "2",
            "REDIS_CONNECT_TIMEOUT": "1",
        },
    ).start()
    try:
        daemon.wait_until("/health answered", lambda: daemon.get("/health")[0] != 0)
        assert (daemon.get("/health")[0], daemon.get("/ready")[0]) == (200, 503)
        own_redis.start()
        daemon.wait_ready(timeout=30)
        client = redis.Redis.from_url(own_redis.url)
        client.xadd(f"{prefix}:test:in", {"n": "1"})
        daemon.wait_until("one output", lambda: client.xlen(f"{prefix}:test:out") == 1)
        metrics = daemon.get("/metrics")[1]
        for needle in (
            'printery_build_info{version="',
            'printery_worker_up{worker="echo"} 1.0',
            'printery_messages_total{outcome="acked",worker="echo"} 1.0',
            "printery_redis_up 1.0",
        ):
            assert needle in metrics
        own_redis.stop()
        daemon.wait_until("/ready turned 503", lambda: daemon.get("/ready")[0] == 503, 30)
        assert daemon.get("/health")[0] == 200
        own_redis.start()
        daemon.wait_ready(timeout=30)
        daemon.send(signal.SIGTERM)
        code = daemon.wait_exit(timeout=40)
    finally:
        daemon.stop()
    assert code == 0
    assert "printery.worker_restart_scheduled" not in daemon.event_names()
