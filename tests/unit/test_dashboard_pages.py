"""The dashboard's read-only pages over fakeredis: what each shows, paging, caps, JSON."""

from __future__ import annotations

import json
import re

from printery.admin.status import collect_status
from printery.dashboard.pages import MAX_COUNT
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from tests.support.dashboard import (
    add_dead_letter,
    dashboard_client,
    heartbeat_record,
    put_heartbeat,
    put_task,
)


async def test_overview_shows_daemons_workers_and_streams(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """The overview lists each live daemon's workers with their numbers, and every stream."""
    keys = Keys(prefix)
    record = heartbeat_record(
        "daemon-a",
        {
            "validator": {
                "processed": 1234,
                "in_flight": 3,
                "stream": keys.started,
                "group": "validator",
            },
            "notifier": {"state": "degraded", "reason": "Redis unreachable"},
        },
    )
    await put_heartbeat(own_fake_adapter, prefix, record)
    await own_fake_adapter.add(keys.started, {"a": "1"})
    await add_dead_letter(own_fake_adapter, keys.started)
    async with dashboard_client(own_fake_adapter, prefix) as client:
        response = await client.get("/")
        text = await response.text()
    assert 200 == response.status
    assert "daemon-a" in text
    assert 'data-worker="daemon-a/validator"' in text
    assert "1\u2009234" in text  # numbers grouped for reading
    assert '<span class="state warn">degraded</span>' in text
    assert "Redis unreachable" in text
    assert f'href="/streams/{keys.started}"' in text
    assert f'href="/dead/{keys.started}"' in text


async def test_api_status_is_the_status_document(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """/api/status answers the document of `printery status --json`, same keys and daemons."""
    await put_heartbeat(own_fake_adapter, prefix, heartbeat_record("d1", {"validator": {}}))
    async with dashboard_client(own_fake_adapter, prefix) as client:
        response = await client.get("/api/status")
        doc = await response.json()
    expected = await collect_status(own_fake_adapter, Keys(prefix))
    assert "application/json" == response.content_type
    assert sorted(expected) == sorted(doc)
    assert [d["consumer"] for d in expected["daemons"]] == [d["consumer"] for d in doc["daemons"]]
    assert [s["stream"] for s in expected["streams"]] == [s["stream"] for s in doc["streams"]]


async def test_overview_pages_daemons(own_fake_adapter: StreamAdapter, prefix: str) -> None:
    """Thirty daemons show 25 on the first page and the other five behind the cursor."""
    for i in range(30):
        await put_heartbeat(
            own_fake_adapter, prefix, heartbeat_record(f"d{i:02}", {"validator": {}})
        )
    async with dashboard_client(own_fake_adapter, prefix) as client:
        first = await (await client.get("/")).text()
        cursor = re.search(r'href="/\?after=([^"]+)"', first)
        assert cursor is not None
        second = await (await client.get(f"/?after={cursor.group(1)}")).text()
    assert 25 == len(re.findall(r'data-worker="d\d\d/validator"', first))
    assert 5 == len(re.findall(r'data-worker="d\d\d/validator"', second))
    assert "d24/validator" in first
    assert "d25/validator" in second


async def test_fragment_is_the_live_region_only(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """?fragment=1 answers the overview's live region without the page around it."""
    async with dashboard_client(own_fake_adapter, prefix) as client:
        text = await (await client.get("/?fragment=1")).text()
    assert "<html" not in text
    assert 'class="tiles"' in text


async def test_stream_page_shows_pending_and_newest_paged(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """A stream page lists pending entries (consumer, deliveries) and pages the newest."""
    stream = Keys(prefix).started
    ids = [await own_fake_adapter.add(stream, {"n": str(i)}) for i in range(7)]
    await own_fake_adapter.client.xgroup_create(stream, "g1", id="0")
    await own_fake_adapter.client.xreadgroup("g1", "consumer-x", {stream: ">"}, count=3)
    async with dashboard_client(own_fake_adapter, prefix) as client:
        response = await client.get(f"/streams/{stream}?count=3")
        text = await response.text()
        older = re.search(r'href="\?before=([0-9-]+)&amp;count=3"', text)
        assert older is not None
        second = await (
            await client.get(f"/streams/{stream}?before={older.group(1)}&count=3")
        ).text()
    assert 200 == response.status
    assert "consumer-x" in text
    assert ids[:3] == re.findall(r'data-pending="([0-9-]+)"', text)
    assert ids[6:3:-1] == re.findall(r'data-entry="([0-9-]+)"', text)
    assert ids[3:0:-1] == re.findall(r'data-entry="([0-9-]+)"', second)


async def test_count_is_capped(own_fake_adapter: StreamAdapter, prefix: str) -> None:
    """count=100000 shows at most MAX_COUNT dead letters."""
    stream = Keys(prefix).started
    pipe = own_fake_adapter.client.pipeline()
    for i in range(MAX_COUNT + 20):
        pipe.xadd(f"{stream}:dead", {"error": f"e{i}", "deliveries": "5"})
    await pipe.execute()
    async with dashboard_client(own_fake_adapter, prefix) as client:
        text = await (await client.get(f"/dead/{stream}?count=100000")).text()
    assert MAX_COUNT == len(re.findall(r'<tr data-id="', text))
    assert "older »" in text


async def test_bad_cursor_is_400(own_fake_adapter: StreamAdapter, prefix: str) -> None:
    """A cursor that is not an entry id is refused with 400, not passed to Redis."""
    stream = Keys(prefix).started
    async with dashboard_client(own_fake_adapter, prefix) as client:
        response = await client.get(f"/dead/{stream}?before=-")
    assert 400 == response.status


async def test_keys_outside_the_prefix_are_404(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """The dashboard shows only keys under its prefix, and only streams."""
    await own_fake_adapter.client.xadd("other:stream", {"a": "1"})
    await own_fake_adapter.client.set(f"{prefix}:plain", "x")
    async with dashboard_client(own_fake_adapter, prefix) as client:
        outside = await client.get("/streams/other:stream")
        plain = await client.get(f"/streams/{prefix}:plain")
        missing = await client.get(f"/streams/{prefix}:nothing")
    assert [404, 404, 404] == [outside.status, plain.status, missing.status]


async def test_dead_letters_show_error_and_original_fields(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """A dead letter shows its id, error, deliveries, group and the original data pretty-printed."""
    stream = Keys(prefix).started
    dead_id = await add_dead_letter(
        own_fake_adapter, stream, error="schema: version missing", deliveries="5"
    )
    async with dashboard_client(own_fake_adapter, prefix) as client:
        text = await (await client.get(f"/dead/{stream}:dead")).text()
    assert dead_id in text
    assert "schema: version missing" in text
    assert '<td class="num">5</td>' in text
    assert "&#34;service&#34;: &#34;billing-api&#34;" in text  # indented JSON, escaped
    assert "Replay" not in text  # read-only: no buttons


async def test_task_record_with_progress_and_log(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """A task record shows its status, a progress bar at its percent, step and log."""
    await put_task(
        own_fake_adapter,
        prefix,
        "ev-7",
        {
            "worker": "thumbnailer",
            "status": "running",
            "percent": "40",
            "step": "resizing",
            "started_at": "2026-01-01T00:00:00Z",
            "deliveries": "1",
        },
        [{"at": "2026-01-01T00:00:01Z", "level": "info", "message": "fetched 3 images"}],
    )
    async with dashboard_client(own_fake_adapter, prefix) as client:
        response = await client.get("/timeline/ev-7")
        text = await response.text()
    assert 200 == response.status
    assert '<progress max="100" value="40.0">' in text
    assert "resizing" in text
    assert "fetched 3 images" in text
    assert '<span class="state busy">running</span>' in text  # in progress, not done
    assert "thumbnailer" in text


async def test_deployment_timeline(own_fake_adapter: StreamAdapter, prefix: str) -> None:
    """A deployment's timeline shows its stages reached and its log."""
    keys = Keys(prefix)
    await own_fake_adapter.client.hset(
        keys.deployment("dep-9"),
        mapping={
            "service": "billing-api",
            "version": "1.2.3",
            "stage": "validation",
            "status": "validated",
            "validation_at": "2026-01-01T00:00:00Z",
        },
    )
    await own_fake_adapter.client.rpush(
        keys.deployment_log("dep-9"),
        json.dumps(
            {
                "at": "2026-01-01T00:00:00Z",
                "stage": "validation",
                "status": "validated",
                "message": "all rules passed",
            }
        ),
    )
    async with dashboard_client(own_fake_adapter, prefix) as client:
        text = await (await client.get("/timeline/dep-9")).text()
        missing = await client.get("/timeline/nope")
    assert "billing-api" in text
    assert "all rules passed" in text
    assert '<li class="reached current">' in text
    assert 404 == missing.status


async def test_timeline_search_redirects(own_fake_adapter: StreamAdapter, prefix: str) -> None:
    """The search box's GET /timeline?id=… redirects to that id's page."""
    async with dashboard_client(own_fake_adapter, prefix) as client:
        response = await client.get("/timeline?id=dep-1", allow_redirects=False)
    assert 303 == response.status
    assert "/timeline/dep-1" == response.headers["Location"]


async def test_static_files_are_served_by_the_app(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """The script and the stylesheet come from the app itself, typed; nothing else does."""
    async with dashboard_client(own_fake_adapter, prefix) as client:
        js = await client.get("/static/dashboard.js")
        css = await client.get("/static/dashboard.css")
        other = await client.get("/static/..%2Fapp.py")
    assert (200, "text/javascript") == (js.status, js.content_type)
    assert (200, "text/css") == (css.status, css.content_type)
    assert 404 == other.status
