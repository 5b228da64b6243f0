"""A real notifier daemon against a webhook receiver that is down, slow, or answering 500.

The receiver is a loopback HTTP server in a thread of the test, so each POST
is seen with the time it arrived (taken before the answer is sent, so the
daemon's backoff can only make the gaps longer). Every test ends with an
accounting by event id: each published notification was delivered exactly
once at the receiver or sits in ``<stream>:dead`` with its reason, and the
``notifier`` group has nothing pending.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from printery.envelope import Event
from tests.e2e.daemon import ROOT, Daemon, _clean_environ, metric_value
from tests.e2e.webhook_receiver import Receiver
from tests.support.redis_server import RedisServer

ATTEMPTS = 3  # POSTs per delivery
BACKOFF_S = 0.2  # NOTIFY_WEBHOOK_BACKOFF_MS: first wait between POSTs, doubling
MAX_DELIVERIES = 3
RETRY_BACKOFF_S = 0.5  # RETRY_BACKOFF_MS: first wait between deliveries, doubling
# The lower bound of each gap between two POSTs of one event that never gets through:
# inside a delivery the POST backoff, between deliveries the redelivery backoff.
POST_GAPS = [BACKOFF_S * 2**i for i in range(ATTEMPTS - 1)]
GAPS = [
    *POST_GAPS,
    RETRY_BACKOFF_S,
    *POST_GAPS,
    RETRY_BACKOFF_S * 2,
    *POST_GAPS,
]
# A notification that never gets through is dead-lettered after this long, give or take.
BUDGET_S = sum(GAPS)


def _env(
    redis_server: RedisServer, prefix: str, receiver: Receiver, **extra: str
) -> dict[str, str]:
    return {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": "notifier",
        "BLOCK_MS": "200",
        "NOTIFY_WEBHOOK_URLS": receiver.url,
        "NOTIFY_WEBHOOK_ATTEMPTS": str(ATTEMPTS),
        "NOTIFY_WEBHOOK_BACKOFF_MS": str(int(BACKOFF_S * 1000)),
        "NOTIFY_WEBHOOK_BACKOFF_MAX_MS": "5000",
        "NOTIFY_WEBHOOK_TIMEOUT": "3",
        "MAX_DELIVERIES": str(MAX_DELIVERIES),
        "RETRY_BACKOFF_MS": str(int(RETRY_BACKOFF_S * 1000)),
        "RETRY_BACKOFF_MAX_MS": "5000",
        "SHUTDOWN_TIMEOUT": "5",
        **extra,
    }


def _publish(client: redis.Redis, prefix: str, *subjects: str) -> list[str]:
    """One ``deployment.healthy`` notification per subject; returns their event ids."""
    events = [
        Event.create(
            "deployment.healthy",
            subject,
            {"deployment_id": subject, "service": "billing-api", "version": "1.4.2"},
            source="printery/health-monitor",
        )
        for subject in subjects
    ]
    pipe = client.pipeline(transaction=True)
    for event in events:
        pipe.xadd(f"{prefix}:notifications", event.to_fields())  # type: ignore[arg-type]
    pipe.execute()
    return [e.id for e in events]


def _xrange(client: redis.Redis, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return list(client.xrange(stream) or [])  # type: ignore[arg-type]  # redis-py's types are loose


def _fields(raw: Any) -> dict[str, str]:
    return {k.decode(): v.decode(errors="replace") for k, v in raw.items()}


def _audit(client: redis.Redis, prefix: str) -> Counter[str]:
    """Per event id, how many ``notification.delivered`` records the notifier committed."""
    found: Counter[str] = Counter()
    for _, raw in _xrange(client, f"{prefix}:notifications:delivered"):
        fields = _fields(raw)
        if fields["type"] == "notification.delivered":
            found[json.loads(fields["data"])["event_id"]] += 1
    return found


def _dead(client: redis.Redis, prefix: str) -> dict[str, dict[str, str]]:
    """The dead letters of the notifications stream, by event id."""
    return {
        _fields(raw)["id"]: _fields(raw)
        for _, raw in _xrange(client, f"{prefix}:notifications:dead")
    }


def _pending(client: redis.Redis, prefix: str) -> int:
    return int(client.xpending(f"{prefix}:notifications", "notifier")["pending"])


def _account(
    client: redis.Redis, prefix: str, receiver: Receiver, published: list[str]
) -> tuple[set[str], set[str]]:
    """Delivered and dead-lettered ids; fails on a loss, a duplicate, or anything pending."""
    audit, dead, at_receiver = _audit(client, prefix), _dead(client, prefix), receiver.delivered()
    delivered = set(audit) & set(published)
    lost = set(published) - delivered - set(dead)
    assert set() == lost, f"{len(lost)} notifications neither delivered nor dead-lettered"
    assert set() == delivered & set(dead), "delivered, yet dead-lettered"
    assert {} == {i: n for i, n in audit.items() if n > 1}, "audited twice"
    assert dict.fromkeys(delivered, 1) == {i: at_receiver[i] for i in delivered}, (
        "each delivered notification reached the receiver exactly once"
    )
    assert 0 == _pending(client, prefix)
    return delivered, set(dead)


def _replay_dead_letters(redis_server: RedisServer, prefix: str) -> str:
    """``printery dlq replay notifications --all``, as an operator runs it."""
    env = {
        **_clean_environ(),
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
    }
    command = "import sys; from printery.cli.main import main; sys.argv[0] = 'printery'; main()"
    done = subprocess.run(
        [sys.executable, "-c", command, "dlq", "replay", "notifications", "--all"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
    )
    assert 0 == done.returncode, (done.stdout, done.stderr)
    return done.stdout


def _logged_at(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["timestamp"]).replace("Z", "+00:00")).timestamp()


def _wait_dead(
    daemon: Daemon, client: redis.Redis, prefix: str, ids: list[str], timeout: float
) -> dict[str, dict[str, str]]:
    daemon.wait_until(
        f"{len(ids)} dead-lettered",
        lambda: set(ids) <= set(_dead(client, prefix)),
        timeout,
    )
    return _dead(client, prefix)


@pytest.mark.timeout(60)
def test_receiver_down_retries_with_backoff_then_dead_letters_and_replay_delivers(
    tmp_path: Path,
    client: redis.Redis,
    redis_server: RedisServer,
    prefix: str,
    receiver: Receiver,
) -> None:
    """Connection refused: each delivery retried with backoff, dead-lettered, then replayed."""
    with Daemon(tmp_path, _env(redis_server, prefix, receiver)) as daemon:
        daemon.wait_ready()
        published = _publish(client, prefix, "dep-a", "dep-b", "dep-c")
        dead = _wait_dead(daemon, client, prefix, published, timeout=BUDGET_S * 3 + 10)

        for event_id in published:
            letter = dead[event_id]
            assert str(MAX_DELIVERIES) == letter["deliveries"], letter
            assert "ClientConnectorError" in letter["error"], letter["error"]
            assert receiver.url in letter["error"], letter["error"]
            assert "notifier" == letter["group"]
        # Each message: MAX_DELIVERIES - 1 retries, spaced by POST and redelivery backoff.
        # Logged just after the commit that wrote the dead letter: wait for the log too.
        daemon.wait_until(
            "three dead letters logged",
            lambda: 3 == len(daemon.events("printery.message_dead_lettered")),
        )
        retried = daemon.events("printery.message_retried")
        dead_lettered = daemon.events("printery.message_dead_lettered")
        for entry_id in {r["message_id"] for r in dead_lettered}:
            times = [_logged_at(r) for r in retried if r["message_id"] == entry_id]
            times += [_logged_at(r) for r in dead_lettered if r["message_id"] == entry_id]
            assert MAX_DELIVERIES == len(times)
            gaps = [b - a for a, b in itertools.pairwise(times)]
            floors = [RETRY_BACKOFF_S * 2**i + sum(POST_GAPS) for i in range(MAX_DELIVERIES - 1)]
            assert all(g >= f * 0.95 for g, f in zip(gaps, floors, strict=True)), (gaps, floors)
            assert gaps[-1] > gaps[0], gaps
        metrics = daemon.metrics()
        assert 3.0 * (MAX_DELIVERIES - 1) == metric_value(
            metrics, "printery_messages_total", worker="notifier", outcome="retried"
        )
        assert 3.0 == metric_value(
            metrics, "printery_messages_total", worker="notifier", outcome="dead_lettered"
        )
        assert [] == receiver.posts

        receiver.start()  # the receiver is back: replay re-drives every dead letter
        out = _replay_dead_letters(redis_server, prefix)
        assert 3 == out.count("replayed "), out
        daemon.wait_until(
            "the replayed three delivered", lambda: set(published) <= set(_audit(client, prefix))
        )

    delivered, still_dead = _account(client, prefix, receiver, published)
    assert (set(published), set()) == (delivered, still_dead)


@pytest.mark.timeout(60)
def test_receiver_coming_up_mid_retry_gets_the_notification_once(
    tmp_path: Path,
    client: redis.Redis,
    redis_server: RedisServer,
    prefix: str,
    receiver: Receiver,
) -> None:
    """Down at first, up after the first failed delivery: the next delivery gets through."""
    with Daemon(tmp_path, _env(redis_server, prefix, receiver)) as daemon:
        daemon.wait_ready()
        published = _publish(client, prefix, "dep-late")
        retried = daemon.wait_event("printery.message_retried")
        assert "ClientConnectorError" in retried["reason"], retried
        receiver.start()
        receiver.wait_for("delivered", lambda: len(receiver.posts) >= 1)
        daemon.wait_until("audited", lambda: set(published) <= set(_audit(client, prefix)))

    assert [200] == [p.status for p in receiver.of(published[0])]
    delivered, dead = _account(client, prefix, receiver, published)
    assert (set(published), set()) == (delivered, dead)
    [record] = [
        json.loads(_fields(raw)["data"])
        for _, raw in _xrange(client, f"{prefix}:notifications:delivered")
    ]
    # The first POST of the next delivery, or a later one if the receiver lost the race.
    assert (200, True) == (record["status"], 1 <= record["attempts"] <= ATTEMPTS), record


@pytest.mark.timeout(60)
def test_receiver_answering_500_is_retried_with_growing_gaps_then_dead_lettered(
    tmp_path: Path,
    client: redis.Redis,
    redis_server: RedisServer,
    prefix: str,
    receiver: Receiver,
) -> None:
    """HTTP 500: ATTEMPTS POSTs per delivery, MAX_DELIVERIES deliveries, gaps growing; replay."""
    receiver.answer = lambda subject: 500
    receiver.start()
    with Daemon(tmp_path, _env(redis_server, prefix, receiver)) as daemon:
        daemon.wait_ready()
        published = _publish(client, prefix, "dep-500")
        dead = _wait_dead(daemon, client, prefix, published, timeout=BUDGET_S * 3 + 10)
        letter = dead[published[0]]
        assert str(MAX_DELIVERIES) == letter["deliveries"], letter
        assert "HTTP 500" in letter["error"], letter["error"]

        posts = receiver.of(published[0])
        assert [500] * ATTEMPTS * MAX_DELIVERIES == [p.status for p in posts]
        gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
        # Each gap at least its backoff (a sleep never ends early; the time is taken
        # before the answer is sent); the gaps between deliveries double.
        assert all(g >= f for g, f in zip(gaps, GAPS, strict=True)), (gaps, GAPS)
        between = gaps[ATTEMPTS - 1 :: ATTEMPTS]
        assert between[1] > between[0], gaps
        assert sum(gaps) < BUDGET_S * 3, ("no unexplained stall", gaps)

        receiver.answer = lambda subject: 200  # fixed
        out = _replay_dead_letters(redis_server, prefix)
        assert 1 == out.count("replayed "), out
        receiver.wait_for("the replay delivered", lambda: receiver.delivered()[published[0]] >= 1)
        daemon.wait_until("audited", lambda: set(published) <= set(_audit(client, prefix)))

    delivered, still_dead = _account(client, prefix, receiver, published)
    assert (set(published), set()) == (delivered, still_dead)


@pytest.mark.timeout(60)
def test_a_slow_receiver_for_one_notification_does_not_hold_up_the_others(
    tmp_path: Path,
    client: redis.Redis,
    redis_server: RedisServer,
    prefix: str,
    receiver: Receiver,
) -> None:
    """One POST hangs: later notifications are delivered and acked while it is outstanding."""
    receiver.hold = {"dep-slow"}
    receiver.start()
    env = _env(redis_server, prefix, receiver, NOTIFY_WEBHOOK_TIMEOUT="30")
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready()
        [slow] = _publish(client, prefix, "dep-slow")
        receiver.wait_for("holding the slow one", lambda: "dep-slow" in receiver.outstanding)
        fast = _publish(client, prefix, *(f"dep-fast-{i}" for i in range(8)))
        daemon.wait_until(
            "the fast ones delivered and audited",
            lambda: set(fast) <= set(_audit(client, prefix)),
        )
        # All of that happened while the slow POST was still waiting for its answer.
        assert ("dep-slow" in receiver.outstanding, receiver.of(slow)) == (True, [])
        assert 1 == _pending(client, prefix), "only the slow one is still pending"

        receiver.release.set()
        daemon.wait_until("the slow one audited", lambda: slow in _audit(client, prefix))

    assert [200] == [p.status for p in receiver.of(slow)]
    delivered, dead = _account(client, prefix, receiver, [slow, *fast])
    assert ({slow, *fast}, set()) == (delivered, dead)


@pytest.mark.timeout(60)
def test_a_receiver_slower_than_the_hang_timeout_is_not_taken_for_a_hung_notifier(
    tmp_path: Path,
    client: redis.Redis,
    redis_server: RedisServer,
    prefix: str,
    receiver: Receiver,
) -> None:
    """POSTs that take long but within NOTIFY_WEBHOOK_TIMEOUT are progress, not a hang.

    Standalone, a notifier taken for hung would make the daemon exit 1 (a
    restart loop in Kubernetes) for a receiver that is merely slow.
    """
    receiver.delay_s = {"dep-sluggish": 1.5}
    receiver.answer = lambda subject: 500  # and failing: the retries add up too
    receiver.start()
    env = _env(
        redis_server,
        prefix,
        receiver,
        NOTIFY_WEBHOOK_TIMEOUT="5",
        NOTIFIER_HANG_TIMEOUT="1",
        HEALTH_CHECK_INTERVAL="0.2",
        MAX_DELIVERIES="1",
    )
    with Daemon(tmp_path, env) as daemon:
        daemon.wait_ready()
        published = _publish(client, prefix, "dep-sluggish")
        _wait_dead(daemon, client, prefix, published, timeout=30)
        assert ATTEMPTS == len(receiver.of(published[0]))
        assert "printery.worker_crashed" not in daemon.event_names(), daemon.tail()
        assert daemon.running

    _account(client, prefix, receiver, published)
