"""Retention with real daemons: a stream is trimmed only once every group is done with it.

A validator daemon runs alone with a short ``STREAM_RETENTION``: its input is
trimmed, while its output, which no group reads yet, keeps every entry long
past the retention. The rest of the pipeline starts late in a second daemon,
finds every deployment, and then every stage stream is trimmed to what some
group has not finished (a deployment whose health check still waits) or is
younger than the retention. Both daemons' metrics account for every entry.

A trim pass is seen from outside by a marker: an hour-old entry added to the
audit stream, which every pass trims by age. Two markers gone in turn mean a
whole pass ran after the first was added.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis

from printery.pipeline.publish import started_event
from printery.redis.keys import Keys
from tests.e2e.daemon import Daemon, metric_value
from tests.e2e.health_endpoint import HealthEndpoint
from tests.e2e.ledger import publish
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis_server, pytest.mark.timeout(120)]

DEPLOYMENTS = 20
RETENTION_S = 1.5
INTERVAL_S = 0.3
STAGE_GROUPS = {
    "started": "validator",
    "validated": "dependency-checker",
    "dependencies_satisfied": "health-monitor",
    "notifications": "notifier",
}


def _ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


def _key(entry_id: bytes) -> tuple[int, int]:
    ms, seq = entry_id.split(b"-")
    return int(ms), int(seq)


def server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def whole_pass(daemon: Daemon, client: redis.Redis, keys: Keys) -> None:
    """Return once a trim pass started and ended after this call (two markers gone in turn)."""
    for _ in range(2):
        marker = client.xadd(
            keys.delivered, {"marker": "1"}, id=f"{server_ms(client) - 3_600_000}-*"
        )
        daemon.wait_until(
            "a trim pass",
            lambda m=marker: not client.xrange(keys.delivered, m, m),
            timeout=10,
        )


def wait_older_than_retention(daemon: Daemon, client: redis.Redis, stream: str) -> None:
    """Until the newest entry of ``stream`` is older than the retention, on Redis's clock."""
    newest = client.xrevrange(stream, count=1)
    if newest:
        daemon.wait_until(
            f"{stream} older than the retention",
            lambda: server_ms(client) - _ms(newest[0][0]) > RETENTION_S * 1000 + 100,
            timeout=10,
        )


def unfinished_or_young(client: redis.Redis, stream: str) -> list[bytes]:
    """The entries of ``stream`` retention must keep: unread or pending in a group, or young."""
    now = server_ms(client)
    keep: list[bytes] = []
    groups = client.xinfo_groups(stream) if client.exists(stream) else []
    pending = {
        bytes(row["message_id"])
        for g in groups
        for row in client.xpending_range(stream, g["name"], min="-", max="+", count=10_000)
    }
    for entry_id, _ in client.xrange(stream):
        unread = not groups or any(_key(entry_id) > _key(g["last-delivered-id"]) for g in groups)
        young = now - _ms(entry_id) <= RETENTION_S * 1000
        if unread or young or entry_id in pending:
            keep.append(entry_id)
    return keep


def trimmed_total(daemons: list[Daemon], stream: str) -> float:
    return sum(
        metric_value(d.metrics(), "printery_stream_trimmed_total", stream=stream) or 0.0
        for d in daemons
    )


def test_only_what_every_group_finished_is_trimmed_and_a_late_pipeline_finds_everything(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """Output without a reader kept past retention; late readers get all; the rest trimmed."""
    keys = Keys(prefix)
    streams = {name: getattr(keys, name) for name in STAGE_GROUPS}
    env = {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "BLOCK_MS": "200",
        "STREAM_RETENTION": str(RETENTION_S),
        "STREAM_TRIM_INTERVAL": str(INTERVAL_S),
    }
    with HealthEndpoint() as health:
        health.up.set()
        with Daemon(tmp_path, {**env, "WORKER_MODE": "validator"}) as validator:
            validator.wait_ready()
            started = [
                started_event(health.deployment(n, deadline_s=60)).to_fields()
                for n in range(DEPLOYMENTS)
            ]
            publish(client, keys.started, [*started, {"not": "an event"}])
            validator.wait_until(
                "every deployment validated",
                lambda: client.xlen(keys.validated) == DEPLOYMENTS,
                timeout=20,
            )
            validator.wait_until(
                "the started stream trimmed",
                lambda: client.xlen(keys.started) == 0,
                timeout=20,
            )
            wait_older_than_retention(validator, client, keys.validated)
            whole_pass(validator, client, keys)
            assert DEPLOYMENTS == client.xlen(keys.validated)  # no group yet: every entry kept
            assert 1 == client.xlen(Keys.dead(keys.started))  # dead letters: their own retention
            scraped = validator.metrics()
            assert DEPLOYMENTS + 1 == metric_value(
                scraped, "printery_stream_trimmed_total", stream=keys.started
            )
            assert 0.0 == metric_value(
                scraped, "printery_stream_trimmed_total", stream=keys.validated
            )
            assert DEPLOYMENTS == metric_value(
                scraped, "printery_stream_length", stream=keys.validated
            )
            assert 0 == metric_value(scraped, "printery_stream_length", stream=keys.started)

            rest = {**env, "WORKER_MODE": "dependency-checker,health-monitor,notifier"}
            with Daemon(tmp_path, rest) as late:
                late.wait_until(
                    "every deployment healthy and notified",
                    lambda: all(
                        client.hget(keys.deployment(f"dep-{n}"), "status") == b"healthy"
                        and client.hexists(keys.deployment(f"dep-{n}"), "notification_at")
                        for n in range(DEPLOYMENTS)
                    ),
                    timeout=30,
                )
                # One more deployment whose health check keeps failing: pending downstream.
                health.up.clear()
                publish(
                    client,
                    keys.started,
                    [started_event(health.deployment(99, deadline_s=60)).to_fields()],
                )
                late.wait_until(
                    "the last deployment held by the health monitor",
                    lambda: (
                        client.xpending(keys.dependencies_satisfied, "health-monitor")["pending"]
                        == 1
                    ),
                    timeout=20,
                )
                for stream in streams.values():
                    wait_older_than_retention(late, client, stream)
                whole_pass(late, client, keys)
                lengths = {name: client.xlen(s) for name, s in streams.items()}
                assert {
                    "started": 0,
                    "validated": 0,
                    "dependencies_satisfied": 1,
                    "notifications": 0,
                } == lengths
                for stream in streams.values():
                    assert unfinished_or_young(client, stream) == [
                        i for i, _ in client.xrange(stream)
                    ]

                health.up.set()
                late.wait_until(
                    "the last deployment healthy",
                    lambda: client.hget(keys.deployment("dep-99"), "status") == b"healthy",
                    timeout=20,
                )
                late.wait_until(
                    "nothing pending",
                    lambda: all(
                        client.xpending(streams[name], group)["pending"] == 0
                        for name, group in STAGE_GROUPS.items()
                    ),
                )
                for stream in streams.values():
                    wait_older_than_retention(late, client, stream)
                whole_pass(late, client, keys)
                assert dict.fromkeys(streams, 0) == {
                    name: client.xlen(s) for name, s in streams.items()
                }
                added = {
                    name: int(client.xinfo_stream(s)["entries-added"])
                    for name, s in streams.items()
                }
                assert {
                    "started": DEPLOYMENTS + 2,
                    "validated": DEPLOYMENTS + 1,
                    "dependencies_satisfied": DEPLOYMENTS + 1,
                    "notifications": DEPLOYMENTS + 1,
                } == added
                both = [validator, late]
                assert added == {name: trimmed_total(both, s) for name, s in streams.items()}
                for daemon in both:  # each daemon's gauge moves at its own next pass
                    daemon.wait_until(
                        "every stage stream's length 0 in /metrics",
                        lambda d=daemon: all(
                            metric_value(d.metrics(), "printery_stream_length", stream=s) == 0
                            for s in streams.values()
                        ),
                    )
                late.send(signal.SIGTERM)
                assert 0 == late.wait_exit(timeout=15)
            validator.send(signal.SIGTERM)
            assert 0 == validator.wait_exit(timeout=15)
    assert 1 == client.xlen(Keys.dead(keys.started))
    assert [] == [e for d in both for e in d.events("printery.trim_failed")]
