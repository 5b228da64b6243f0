"""Hostile text in every field Redis or a URL can carry reaches the page as text, never markup."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from markupsafe import escape

from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from tests.support.dashboard import (
    HOSTILE,
    add_dead_letter,
    dashboard_client,
    heartbeat_record,
    put_heartbeat,
    put_task,
    sign_in,
)

TOKEN = "s3cret-token-for-tests"


def assert_text_only(payload: str, page: str) -> None:
    """The payload is on the page escaped, and nowhere as markup."""
    assert payload not in page
    assert str(escape(payload)) in page


@pytest.mark.parametrize("payload", HOSTILE)
async def test_overview_escapes_heartbeat_fields(
    own_fake_adapter: StreamAdapter, prefix: str, payload: str
) -> None:
    """Consumer, host, worker, reason, stream and group names from a heartbeat stay text."""
    stream = f"{prefix}:{payload}"
    record = heartbeat_record(
        f"d-{payload}",
        {
            f"w-{payload}": {
                "state": "failed",
                "reason": f"r-{payload}",
                "stream": stream,
                "group": f"g-{payload}",
            }
        },
    )
    record["host"] = f"h-{payload}"
    await put_heartbeat(own_fake_adapter, prefix, record)
    await own_fake_adapter.add(stream, {"a": "1"})
    await own_fake_adapter.client.xgroup_create(stream, f"g-{payload}", id="0")
    async with dashboard_client(own_fake_adapter, prefix) as client:
        page = await (await client.get("/")).text()
        fragment = await (await client.get("/?fragment=1")).text()
    for text in (page, fragment):
        for part in (f"d-{payload}", f"w-{payload}", f"r-{payload}", f"h-{payload}", stream):
            assert_text_only(part, text)


@pytest.mark.parametrize("payload", HOSTILE)
async def test_dead_letter_page_escapes_every_field(
    own_fake_adapter: StreamAdapter, prefix: str, payload: str
) -> None:
    """Error, group, original field names and values of a dead letter stay text, signed in too."""
    stream = f"{prefix}:{payload}"
    data = json.dumps({"service": payload, "note": payload})
    await add_dead_letter(
        own_fake_adapter,
        stream,
        {"data": data, "type": f"t-{payload}", f"f-{payload}": f"v-{payload}"},
        error=f"e-{payload}",
        group=f"g-{payload}",
    )
    async with dashboard_client(own_fake_adapter, prefix, TOKEN) as client:
        anonymous = await (await client.get(f"/dead/{quote(stream)}")).text()
        await sign_in(client, TOKEN)
        signed_in = await (await client.get(f"/dead/{quote(stream)}")).text()
    for text in (anonymous, signed_in):
        for part in (
            f"e-{payload}",
            f"g-{payload}",
            f"t-{payload}",
            f"f-{payload}",
            f"v-{payload}",
        ):
            assert_text_only(part, text)
        assert payload not in text
    assert 'name="csrf"' in signed_in  # the buttons are there, and the payload still text


@pytest.mark.parametrize("payload", HOSTILE)
async def test_stream_page_escapes_entries_groups_and_consumers(
    own_fake_adapter: StreamAdapter, prefix: str, payload: str
) -> None:
    """Entry fields, group and consumer names on a stream's page stay text."""
    stream = f"{prefix}:{payload}"
    await own_fake_adapter.add(stream, {f"k-{payload}": f"v-{payload}", "subject": payload})
    await own_fake_adapter.client.xgroup_create(stream, f"g-{payload}", id="0")
    await own_fake_adapter.client.xreadgroup(f"g-{payload}", f"c-{payload}", {stream: ">"})
    async with dashboard_client(own_fake_adapter, prefix) as client:
        response = await client.get(f"/streams/{quote(stream)}")
        text = await response.text()
    assert 200 == response.status
    for part in (f"k-{payload}", f"v-{payload}", f"g-{payload}", f"c-{payload}"):
        assert_text_only(part, text)


@pytest.mark.parametrize("payload", HOSTILE)
async def test_task_record_and_timeline_escape(
    own_fake_adapter: StreamAdapter, prefix: str, payload: str
) -> None:
    """A task record's fields and log lines, and an unknown id in the path, stay text."""
    await put_task(
        own_fake_adapter,
        prefix,
        "ev-x",
        {"worker": f"w-{payload}", "status": payload, "step": f"s-{payload}", "error": payload},
        [{"level": "info", "message": f"m-{payload}", "data": {"k": payload}}, f"raw-{payload}"],
    )
    async with dashboard_client(own_fake_adapter, prefix) as client:
        task = await (await client.get("/timeline/ev-x")).text()
        missing = await client.get(f"/timeline/{quote(payload)}")
        missing_text = await missing.text()
    for part in (f"w-{payload}", f"s-{payload}", f"m-{payload}", f"raw-{payload}"):
        assert_text_only(part, task)
    assert payload not in task
    assert 404 == missing.status
    assert_text_only(payload, missing_text)


@pytest.mark.parametrize("payload", HOSTILE)
async def test_query_parameters_stay_text(
    own_fake_adapter: StreamAdapter, prefix: str, payload: str
) -> None:
    """Hostile query parameters are refused or shown as text, never reflected as markup."""
    stream = Keys(prefix).started
    await own_fake_adapter.add(stream, {"a": "1"})
    async with dashboard_client(own_fake_adapter, prefix, TOKEN) as client:
        q = quote(payload)
        answers = [
            await client.get(f"/?after={q}"),
            await client.get(f"/?streams={q}"),
            await client.get(f"/streams/{stream}?before={q}"),
            await client.get(f"/streams/{stream}?group={q}"),
            await client.get(f"/dead/{stream}?before={q}&replayed={q}"),
            await client.get(f"/signin?next={q}"),
            await client.get(f"/timeline?id={q}", allow_redirects=False),
        ]
        texts = [await a.text() for a in answers]
    assert [200, 400, 400, 404, 400, 200, 303] == [a.status for a in answers]
    for text in texts:
        assert payload not in text
    assert "text/plain" == answers[1].content_type  # errors are plain text
