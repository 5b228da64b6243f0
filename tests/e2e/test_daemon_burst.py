"""``printery-workers --burst``: a real daemon handles the backlog, drains and exits 0."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from printery.pipeline.publish import started_event
from tests.e2e.daemon import Daemon
from tests.e2e.health_endpoint import HealthEndpoint
from tests.e2e.ledger import account, publish
from tests.support.redis_server import RedisServer

STAGES = {
    "deployment:started": "validator",
    "deployment:validated": "dependency-checker",
    "deployment:dependencies-satisfied": "health-monitor",
    "notifications": "notifier",
}


@pytest.mark.timeout(40)
def test_burst_handles_the_backlog_then_exits_0(
    tmp_path: Path, client: redis.Redis, echo_env: dict[str, str], prefix: str
) -> None:
    """50 messages waiting: --burst handles every one, drains, exits 0 with nothing pending."""
    published = publish(client, f"{prefix}:test:in", [{"n": str(i)} for i in range(50)])
    with Daemon(tmp_path, echo_env, ["--burst"]) as daemon:
        code = daemon.wait_exit(timeout=30)
    ledger = account(client, prefix, published)
    assert (0, set(published), {}) == (code, ledger.acked, ledger.duplicates), daemon.tail()
    assert 0 == client.xpending(f"{prefix}:test:in", "echo")["pending"]
    assert ["burst: backlog handled"] == [
        e["reason"] for e in daemon.events("printery.drain_started")
    ]


@pytest.mark.timeout(30)
def test_burst_with_nothing_to_do_exits_0_at_once(tmp_path: Path, echo_env: dict[str, str]) -> None:
    """An empty stream: --burst starts, finds nothing waiting, drains and exits 0 within seconds."""
    began = time.monotonic()
    with Daemon(tmp_path, echo_env, ["--burst"]) as daemon:
        code = daemon.wait_exit(timeout=20)
    assert (0, True) == (code, time.monotonic() - began < 10), daemon.tail()


@pytest.mark.timeout(60)
def test_burst_runs_the_whole_pipeline_to_its_outcomes(
    tmp_path: Path, client: redis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    """Deployments waiting at the start: --burst takes each through every stage, then exits 0."""
    env = {"REDIS_URL": redis_server.url, "STREAM_PREFIX": prefix, "WORKER_MODE": "all"}
    with HealthEndpoint() as health:
        health.up.set()
        deployments = [health.deployment(n, deadline_s=30) for n in range(5)]
        deployments.append({**deployments[0], "deployment_id": "bad", "version": "nope"})
        publish(
            client,
            f"{prefix}:deployment:started",
            [started_event(d).to_fields() for d in deployments],
        )
        with Daemon(tmp_path, {**env, "BLOCK_MS": "200"}, ["--burst"]) as daemon:
            code = daemon.wait_exit(timeout=45)
    assert 0 == code, daemon.tail()
    outcomes = sorted(
        fields[b"type"].decode() for _, fields in client.xrange(f"{prefix}:notifications")
    )
    assert ["deployment.healthy"] * 5 + ["deployment.rejected"] == outcomes
    # Every stage, the notifier included, read everything and holds nothing.
    left = {
        info["name"].decode(): (info["lag"], info["pending"])
        for stream in STAGES
        for info in client.xinfo_groups(f"{prefix}:{stream}")
    }
    assert dict.fromkeys(STAGES.values(), (0, 0)) == left
