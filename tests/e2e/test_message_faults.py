"""Faults that come with the messages, against real ``printery-workers`` processes.

Poison and bombs at the real validator, a handler slower than
``CLAIM_IDLE_MS``, a handler that hangs, entries trimmed or a stream deleted
while pending, and a read the server delivered that the daemon never saw.
Each test ends with where every message went.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import redis

from printery.envelope import Event
from tests.e2e.daemon import Daemon
from tests.e2e.ledger import account, publish
from tests.e2e.workers import HERE
from tests.support.redis_server import RedisServer

PROMPT_ECHO = f"{HERE}:PromptEcho"


def started(deployment_id: str, data: str | bytes | None = None) -> dict[str | bytes, str | bytes]:
    body = {
        "deployment_id": deployment_id,
        "service": "billing-api",
        "version": "1.4.2",
        "environment": "production",
    }
    fields: dict[str | bytes, str | bytes] = dict(
        Event.create("deployment.started", deployment_id, body, source="e2e").to_fields()
    )
    if data is not None:
        fields["data"] = data
    return fields


def restarts(daemon: Daemon) -> dict[str, int]:
    _, body = daemon.get_json("/status")
    return {name: int(w["restarts"]) for name, w in body["workers"].items()}


@pytest.mark.timeout(60)
def test_poison_and_bombs_at_the_validator_daemon_are_rejected_or_dead_lettered(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """Scenarios 5, 15: each bad entry rejected or dead-lettered with a reason; good ones flow."""
    poison: dict[str, dict[str | bytes, str | bytes]] = {
        "no data": {k: v for k, v in started("dep-nodata").items() if k != "data"},
        "invalid JSON": started("dep-json", "{not json"),
        "a JSON array": started("dep-list", "[1, 2, 3]"),
        "2 MiB of data": started("dep-huge", json.dumps({"pad": "x" * (2 << 20)})),
        "unknown type": {**started("dep-type"), "type": "deployment.exploded"},
        "wrong field types": started(
            "dep-types",
            json.dumps(
                {"deployment_id": "dep-types", "service": 7, "version": ["1"], "environment": None}
            ),
        ),
        "undecodable bytes": started("dep-bytes", b"\xff\xfe\x00"),
        "deep nesting": started("dep-deep", "[" * 100_000 + "]" * 100_000),
        "huge array": started(
            "dep-array", json.dumps({"deployment_id": "dep-array", "a": list(range(50_000))})
        ),
        "non-UTF-8 field name": {**started("dep-name"), b"\xc3\x28": b"x"},
    }
    stream = f"{prefix}:deployment:started"
    env = {"REDIS_URL": redis_server.url, "STREAM_PREFIX": prefix, "WORKER_MODE": "validator"}
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready()
        good = publish(client, stream, [started(f"dep-good-{i}") for i in range(3)])
        bad = dict(zip(poison, publish(client, stream, list(poison.values())), strict=True))
        good += publish(client, stream, [started(f"dep-good-{i}") for i in range(3, 6)])
        daemon.wait_until(
            "every entry delivered", lambda: client.xinfo_groups(stream)[0]["lag"] == 0, timeout=20
        )
        daemon.wait_until(
            "every entry handled", lambda: client.xpending(stream, "validator")["pending"] == 0
        )
        assert {"validator": 0} == restarts(daemon)
        daemon.send(signal.SIGTERM)
        assert 0 == daemon.wait_exit(timeout=20), daemon.tail()

    validated = [f[b"subject"] for _, f in client.xrange(f"{prefix}:deployment:validated")]
    assert [f"dep-good-{i}".encode() for i in range(6)] == validated
    rejected = {
        f[b"subject"]: json.loads(f[b"data"])["reasons"]
        for _, f in client.xrange(f"{prefix}:notifications")
    }
    dead = {f[b"original_id"]: f[b"error"] for _, f in client.xrange(f"{stream}:dead")}
    for name, entry_id in bad.items():
        subject = poison[name].get("subject") or poison[name].get(b"subject")
        assert isinstance(subject, str)
        # Exactly one of the two, each with its reason.
        assert (subject.encode() in rejected) != (entry_id in dead), name
        assert rejected.get(subject.encode()) or dead.get(entry_id), name
    assert len(good) + len(bad) == len(validated) + len(rejected) + len(dead)


@pytest.mark.timeout(60)
def test_a_handler_outliving_claim_idle_is_not_handled_twice(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """Scenario 6: a 3 s handler with CLAIM_IDLE_MS=600 and a second daemon claiming eagerly."""
    env = {**echo_env, "CLAIM_IDLE_MS": "600", "CLAIM_INTERVAL_MS": "100"}
    stream = f"{prefix}:test:in"
    with Daemon(tmp_path, {**env, "CONSUMER_NAME": "slow"}) as slow:
        slow.wait_ready()
        published = publish(client, stream, [{"sleep": "3"}])
        slow.wait_until("it is being handled", lambda: client.xpending(stream, "echo")["pending"])
        with Daemon(tmp_path, {**env, "CONSUMER_NAME": "eager"}) as eager:
            eager.wait_ready()
            slow.wait_until("handled", lambda: client.xlen(f"{prefix}:test:out") == 1, timeout=15)
            eager.send(signal.SIGTERM)
            assert 0 == eager.wait_exit(timeout=15)
            assert "printery.messages_claimed" not in eager.event_names()
        slow.send(signal.SIGTERM)
        assert 0 == slow.wait_exit(timeout=15)
    ledger = account(client, prefix, published)
    assert (set(published), {}) == (ledger.acked, ledger.duplicates)
    [(_, out)] = client.xrange(f"{prefix}:test:out")
    assert (b"slow", b"1") == (out[b"consumer"], out[b"deliveries"])


@pytest.mark.timeout(60)
def test_a_hung_handler_is_cut_alone_within_its_hang_timeout_and_its_message_retried(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """Scenario 8: no progress for ECHO_HANG_TIMEOUT cuts that handler alone; no restart."""
    hang = 1.5
    env = {
        **echo_env,
        "WORKER_MODE": PROMPT_ECHO,  # the second delivery is quick
        "HEALTH_CHECK_INTERVAL": "0.5",
        "ECHO_HANG_TIMEOUT": str(hang),
        "RETRY_BACKOFF_MS": "50",
        "CLAIM_IDLE_MS": "60000",
    }
    stream = f"{prefix}:test:in"
    with Daemon(tmp_path, env, ["--supervised"]) as daemon:
        daemon.wait_ready()
        published = publish(client, stream, [{"sleep": "3600"}])
        daemon.wait_until("it is stuck", lambda: client.xpending(stream, "echo")["pending"])
        stuck_at = time.monotonic()
        daemon.wait_until("the hang found", lambda: daemon.events("printery.handler_hung"))
        found_after = time.monotonic() - stuck_at
        daemon.wait_until("handled on its retry", lambda: client.xlen(f"{prefix}:test:out"))
        assert 0 == restarts(daemon).get("echo", 0)
        daemon.send(signal.SIGTERM)
        assert 0 == daemon.wait_exit(timeout=20)
    [hung] = daemon.events("printery.handler_hung")
    assert ("echo", stream, published[0].decode()) == (
        hung["worker"],
        hung["stream"],
        hung["message_id"],
    )
    assert [] == daemon.events("printery.worker_crashed")
    # Cut one hang timeout after it started, plus polling slack: no health interval waited.
    assert hang <= found_after + 0.2, found_after
    assert found_after < hang + 1.0, found_after
    [(_, out)] = client.xrange(f"{prefix}:test:out")
    assert b"2" == out[b"deliveries"]
    ledger = account(client, prefix, published)
    assert (set(published), {}) == (ledger.acked, ledger.duplicates)


@pytest.mark.timeout(60)
def test_entries_trimmed_while_pending_are_accounted_not_retried(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """Scenario 10: a dead daemon's pending entries trimmed (MINID); the survivor accounts them."""
    env = {**echo_env, "CLAIM_IDLE_MS": "700", "CLAIM_INTERVAL_MS": "100"}
    stream = f"{prefix}:test:in"
    with Daemon(tmp_path, {**env, "CONSUMER_NAME": "doomed"}) as doomed:
        doomed.wait_ready()
        published = publish(client, stream, [{"sleep": "30"}] * 3)
        doomed.wait_until("all three held", lambda: client.xpending(stream, "echo")["pending"] == 3)
        doomed.send(signal.SIGKILL)
        doomed.wait_exit(timeout=10)
    last_ms, _, _ = published[-1].partition(b"-")
    kept = publish(client, stream, [{"n": "after"}])
    client.xtrim(stream, minid=f"{int(last_ms) + 1}-0", approximate=False)
    assert [kept[0]] == [i for i, _ in client.xrange(stream)]
    with Daemon(tmp_path, {**env, "CONSUMER_NAME": "survivor"}) as survivor:
        survivor.wait_until(
            "accounted and handled",
            lambda: client.xlen(f"{stream}:dead") == 3 and client.xlen(f"{prefix}:test:out") == 1,
        )
        survivor.wait_until(
            "nothing pending", lambda: not client.xpending(stream, "echo")["pending"]
        )
        survivor.send(signal.SIGTERM)
        assert 0 == survivor.wait_exit(timeout=15)
    dead = {f[b"original_id"]: f[b"error"] for _, f in client.xrange(f"{stream}:dead")}
    assert set(published) == set(dead)
    assert {b"entry was deleted from the stream (trimmed) while pending"} == set(dead.values())
    assert kept[0] == client.xrange(f"{prefix}:test:out")[0][1][b"in_id"]


@pytest.mark.timeout(60)
def test_a_read_the_daemon_never_saw_is_handled_at_start_not_after_claim_idle(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """Scenario 12: entries delivered to our consumer name but lost in transit are handled at once.

    The server delivered them (XREADGROUP under the daemon's CONSUMER_NAME)
    and the reply never arrived, as after a stall: they sit in the consumer's
    own pending list, which the daemon reads first, far before CLAIM_IDLE_MS.
    """
    stream = f"{prefix}:test:in"
    client.xgroup_create(stream, "echo", id="0", mkstream=True)
    published = publish(client, stream, [{"n": str(i)} for i in range(5)])
    client.xreadgroup("echo", "lost-read", {stream: ">"}, count=5)
    env = {**echo_env, "CONSUMER_NAME": "lost-read", "CLAIM_IDLE_MS": "600000"}
    with Daemon(tmp_path, env) as daemon:
        begun = time.monotonic()
        daemon.wait_until("all five handled", lambda: client.xlen(f"{prefix}:test:out") == 5)
        took = time.monotonic() - begun
        daemon.send(signal.SIGTERM)
        assert 0 == daemon.wait_exit(timeout=15)
    assert took < 10, took  # one start, nowhere near the 600 s claim idle time
    ledger = account(client, prefix, published)
    assert (set(published), {}) == (ledger.acked, ledger.duplicates)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("vanish", ["DEL", "FLUSHALL"])
def test_stream_deleted_or_redis_flushed_under_a_daemon_recreates_without_a_busy_loop(
    tmp_path: Path, own_redis: RedisServer, prefix: str, vanish: str
) -> None:
    """Scenario 13: the group comes back, reads stay a few a second, no restart, work resumes."""
    client = redis.Redis.from_url(own_redis.url)
    stream = f"{prefix}:test:in"
    env = {
        "REDIS_URL": own_redis.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": "tests.support.workers:EchoWorker",
        "BLOCK_MS": "1000",
        "HEARTBEAT_INTERVAL": "0.5",
    }
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready()
        first = publish(client, stream, [{"n": "before"}])
        daemon.wait_until("handled", lambda: client.xlen(f"{prefix}:test:out") == 1)
        if vanish == "DEL":
            client.delete(stream)
        else:
            client.flushall()
        before = _calls(client, "xreadgroup")
        time.sleep(2)  # a measuring window, not a wait: a busy loop would show in it
        reads_per_s = (_calls(client, "xreadgroup") - before) / 2
        daemon.wait_until("the group recreated", lambda: _has_group(client, stream))
        second = publish(client, stream, [{"n": "after"}])
        daemon.wait_until(
            "handled after",
            lambda: second[0] in {f[b"in_id"] for _, f in client.xrange(f"{prefix}:test:out")},
        )
        assert {"echo": 0} == restarts(daemon)
        daemon.send(signal.SIGTERM)
        assert 0 == daemon.wait_exit(timeout=15)
    assert reads_per_s <= 5, reads_per_s
    assert first
    assert "printery.worker_crashed" not in daemon.event_names()
    client.close()


def _calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def _has_group(client: redis.Redis, stream: str) -> bool:
    try:
        return any(g["name"] == b"echo" for g in client.xinfo_groups(stream))
    except redis.ResponseError:
        return False
