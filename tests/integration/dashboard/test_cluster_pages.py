"""The dashboard on a real Redis Cluster: a stage's pages read, page and act on every partition."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from printery.dashboard.app import create_app
from printery.dashboard.config import Token
from printery.redis.adapter import StreamAdapter
from printery.redis.cluster import open_adapter, partitions_of, start_adapter
from printery.redis.keys import Keys, Partitions
from printery.settings import load_settings
from tests.support.dashboard import HOSTILE, add_dead_letter, put_task, sign_in
from tests.support.redis_cluster import RedisCluster

pytestmark = pytest.mark.timeout(60)

TOKEN = "cluster-token-0123456789"
Client = TestClient[web.Request, web.Application]


@contextlib.asynccontextmanager
async def on_cluster(
    cluster: RedisCluster, prefix: str
) -> AsyncIterator[tuple[StreamAdapter, list[Keys], Client]]:
    """A cluster adapter, the twelve partitions, and the dashboard over them with a token."""
    settings = load_settings(
        {}, {"REDIS_URL": cluster.url, "REDIS_MODE": "cluster", "STREAM_PREFIX": prefix}
    )
    adapter = open_adapter(settings, client_name="t")
    await start_adapter(adapter, settings)
    parts = list(partitions_of(settings).all)
    app = create_app(adapter, Keys(prefix), Token(TOKEN), interval=3600, partitions=parts)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            yield adapter, parts, client
    finally:
        await adapter.close()


def rows(text: str, attribute: str) -> list[tuple[str, str]]:
    """(entry id, partition tag) of each row marked ``attribute`` on a partitioned page."""
    found = re.findall(rf'<tr {attribute}="([^"]+)">.*?<td><a href="[^"]+">([^<]+)</a>', text, re.S)
    return [(i, t) for i, t in found]


async def test_stream_page_sums_and_merges_the_partitions(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    """Entries in three partitions: one page with all three, pending of each, every partition."""
    async with on_cluster(redis_cluster, prefix) as (adapter, parts, client):
        added = []
        for n, keys in enumerate(parts[:3]):
            await adapter.ensure_group(keys.started, "validator")
            entry_id = f"{n + 1}000-0"  # in order, whatever the clock's millisecond
            await adapter.client.xadd(keys.started, {"n": str(keys.tag)}, id=entry_id)
            added.append((entry_id, str(keys.tag)))
            await adapter.read(keys.started, "validator", "c1", count=1, block_ms=None)
        await add_dead_letter(adapter, parts[5].started)
        stage = await client.get(f"/streams/{prefix}:deployment:started")
        text = await stage.text()
        own = await (await client.get(f"/streams/{parts[1].started}")).text()
        untagged_missing = await client.get(f"/streams/{prefix}:deployment:validated")
    assert 200 == stage.status
    assert "3</span> entries in <span" in text
    assert 12 == text.count("<tr data-partition=")
    assert sorted(added, reverse=True) == rows(text, "data-entry")
    assert sorted(added) == rows(text, "data-pending")
    assert re.search(r'<span class="chip">c1 <span class="num">3</span>', text)  # summed
    assert f'href="/dead/{parts[5].started}"' in text
    assert 1 == own.count("<tr data-entry=")
    assert 404 == untagged_missing.status  # no partition's stream exists


async def test_paging_walks_equal_ids_in_two_partitions_once(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    """Two partitions stamping the same ids: count=1 pages show each (id, partition) once."""
    async with on_cluster(redis_cluster, prefix) as (adapter, parts, client):
        for keys in (parts[2], parts[9]):
            for entry_id in ("1000-1", "2000-0"):
                await adapter.client.xadd(keys.started, {"n": "1"}, id=entry_id)
        seen: list[tuple[str, str]] = []
        url: str | None = f"/streams/{prefix}:deployment:started?count=1"
        while url is not None and len(seen) < 10:
            text = await (await client.get(url)).text()
            seen += rows(text, "data-entry")
            older = re.search(r'<a href="(\?before=[^"]+)">older', text)
            url = (
                f"/streams/{prefix}:deployment:started{html.unescape(older.group(1))}"
                if older
                else None
            )
    a, b = str(parts[2].tag), str(parts[9].tag)
    assert [("2000-0", a), ("2000-0", b), ("1000-1", a), ("1000-1", b)] == seen


async def test_dead_letters_of_every_partition_replayed_and_purged(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    """The stage's dead-letter page lists each partition's, escaped; actions reach each one."""
    async with on_cluster(redis_cluster, prefix) as (adapter, parts, client):
        first, second, third = parts[0], parts[4], parts[8]
        for keys in (first, second):  # the same id in two partitions
            await adapter.client.xadd(
                Keys.dead(keys.started), {"n": "1", "error": HOSTILE[0]}, id="7-0"
            )
        only = await add_dead_letter(adapter, third.started, error=HOSTILE[1])
        stage = f"/dead/{prefix}:deployment:started"
        text = await (await client.get(stage)).text()
        csrf = await sign_in(client, TOKEN)
        signed = await (await client.get(stage)).text()
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        ambiguous = await client.post(f"{stage}/replay", data={"ids": "7-0"}, headers=bearer)
        unknown_tag = await client.post(
            f"{stage}/replay", data={"ids": "nope/7-0", "csrf": csrf}, allow_redirects=False
        )
        chosen = await client.post(
            f"{stage}/replay",
            data={"ids": f"{second.tag}/7-0,{only},1-1", "csrf": csrf},
            allow_redirects=False,
        )
        after_replay = [await adapter.length(Keys.dead(k.started)) for k in (first, second, third)]
        back = [await adapter.length(k.started) for k in (first, second, third)]
        purged = await client.post(f"{stage}/purge", data={"all": "1"}, headers=bearer)
        body = await purged.json()
        left = [await adapter.length(Keys.dead(k.started)) for k in parts]
    assert '<span class="num" id="dead-total">3</span>' in text
    assert "across its 12 partitions" in text
    assert 3 == text.count("<tr data-id=")
    assert HOSTILE[0] not in text
    assert HOSTILE[1] not in text
    assert html.escape(HOSTILE[0], quote=False) in text
    assert f'value="{second.tag}/7-0"' in signed
    assert f'value="{third.tag}/{only}"' in signed
    assert 409 == ambiguous.status
    assert 400 == unknown_tag.status
    assert 303 == chosen.status
    assert "replayed=2&kept=1" in chosen.headers["Location"]  # 1-1 is in no partition
    assert f"/dead/{prefix}:deployment:started?" in chosen.headers["Location"]
    assert ([1, 0, 0], [0, 1, 1]) == (after_replay, back)
    assert 1 == body["purged"]
    assert [0] * 12 == left


async def test_timeline_and_task_found_in_their_partitions(
    redis_cluster: RedisCluster, prefix: str
) -> None:
    """A deployment's timeline from its id's partition; a task's from the partition holding it."""
    async with on_cluster(redis_cluster, prefix) as (adapter, parts, client):
        home = Partitions(Keys(prefix), len(parts)).of("dep-77")
        await adapter.client.hset(
            home.deployment("dep-77"), mapping={"status": "healthy", "service": "<i>api</i>"}
        )
        task_keys = parts[6]
        assert task_keys.tag is not None
        await put_task(adapter, task_keys.root, "ev-9", {"status": "succeeded", "worker": "w"})
        deployment = await client.get("/timeline/dep-77")
        task = await client.get("/timeline/ev-9")
        missing = await client.get("/timeline/nothing-here")
        text, task_text = await deployment.text(), await task.text()
    assert (200, 200, 404) == (deployment.status, task.status, missing.status)
    assert "&lt;i&gt;api&lt;/i&gt;" in text
    assert "succeeded" in task_text
