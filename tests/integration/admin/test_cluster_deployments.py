"""``printery deployments`` on a Redis Cluster: every partition listed, merged newest first."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from printery.cli.main import run
from printery.envelope import Event
from printery.pipeline.publish import started_event
from printery.redis.cluster import open_adapter, partitions_of, start_adapter
from printery.redis.keys import Partitions, partition_of
from printery.settings import Settings, load_settings
from tests.support.redis_cluster import RedisCluster

pytestmark = pytest.mark.timeout(60)

# Ids chosen to land in four different partitions of twelve.
IDS = ("dep-a", "dep-b", "dep-c", "dep-d")


def settings_for(url: str, prefix: str) -> Settings:
    return load_settings({}, {"REDIS_URL": url, "REDIS_MODE": "cluster", "STREAM_PREFIX": prefix})


async def publish_four(settings: Settings) -> Partitions:
    """dep-a healthy, dep-b rejected, dep-c at validation, dep-d healthy by its timeline alone.

    Published in that order, each outcome in its own partition's notifications,
    each timeline under its partition's tag, as the pipeline writes them.
    """
    parts = partitions_of(settings)
    adapter = open_adapter(settings, client_name="t")
    await start_adapter(adapter, settings)
    try:
        for n, dep in enumerate(IDS):
            keys = parts.of(dep)
            data = {"deployment_id": dep, "service": f"svc-{n}", "version": "1.0.0"}
            # Ids a second apart: the order does not hang on the clock's millisecond.
            at = 1_700_000_000_000 + n * 1000
            started = started_event({**data, "environment": "prod"})
            await adapter.client.xadd(keys.started, started.to_fields(), id=f"{at}-0")
            if dep in {"dep-a", "dep-b"}:
                outcome = "healthy" if dep == "dep-a" else "rejected"
                reasons = [] if dep == "dep-a" else ["version: <b>not semver</b>"]
                event = Event.create(
                    f"deployment.{outcome}",
                    dep,
                    {**data, "environment": "prod", "reasons": reasons},
                )
                await adapter.client.xadd(keys.notifications, event.to_fields(), id=f"{at + 1}-0")
            stage, status = ("validation", "running") if dep == "dep-c" else ("health", "healthy")
            await adapter.client.hset(
                keys.deployment(dep), mapping={"stage": stage, "status": status}
            )
    finally:
        await adapter.close()
    return parts


def deployments(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    """``printery deployments --json`` in this process: its exit code and its document."""
    capsys.readouterr()
    code = run(["deployments", "--json", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_deployments_lists_every_partition_newest_first(
    redis_cluster: RedisCluster,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Four deployments in four partitions: all listed, newest first, each naming its partition."""
    settings = settings_for(redis_cluster.url, prefix)
    assert 4 == len({partition_of(d, settings.partitions) for d in IDS})
    parts = anyio.run(publish_four, settings)
    for name, value in {
        "REDIS_URL": redis_cluster.url,
        "REDIS_MODE": "cluster",
        "STREAM_PREFIX": prefix,
    }.items():
        monkeypatch.setenv(name, value)

    code, rows = deployments(capsys)
    limited_code, limited = deployments(capsys, "--limit", "2")
    _, only = deployments(capsys, "--service", "svc-1")

    assert 0 == code
    assert [
        ("dep-d", "healthy", None),
        ("dep-c", "in progress", "validation"),
        ("dep-b", "rejected", None),
        ("dep-a", "healthy", None),
    ] == [(r["deployment_id"], r["outcome"], r["stage"]) for r in rows]
    assert [parts.of(r["deployment_id"]).tag for r in rows] == [r["partition"] for r in rows]
    assert "version: <b>not semver</b>" == rows[2]["detail"]  # kept as text, as written
    assert (0, ["dep-d", "dep-c"]) == (limited_code, [r["deployment_id"] for r in limited])
    assert ["dep-b"] == [r["deployment_id"] for r in only]
