"""Test data for the dashboard in the shapes the daemons write, and a client of the app.

Heartbeats follow printery.supervisor.heartbeat's record; dead letters the runtime's
(original fields plus error, deliveries, failed_at, original_id, group); task
records of a task (``<prefix>:task:<event id>`` hash and its ``:log`` list).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from printery.dashboard.app import create_app
from printery.dashboard.config import Token
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys

__all__ = [
    "HOSTILE",
    "add_dead_letter",
    "dashboard_client",
    "heartbeat_record",
    "put_heartbeat",
    "put_task",
    "sign_in",
]

# Markup that runs script if a page ever lets it through as markup.
HOSTILE = (
    "<script>window.__pwned=1</script>",
    '<img src=x onerror="window.__pwned=2">',
    "\"'><svg onload=window.__pwned=3>",
)


def heartbeat_record(
    consumer: str,
    workers: Mapping[str, Mapping[str, Any]],
    *,
    updated_at: float | None = None,
    interval_s: float = 5.0,
) -> dict[str, Any]:
    at = datetime.fromtimestamp(updated_at if updated_at is not None else time.time(), UTC)
    return {
        "consumer": consumer,
        "host": "host-1",
        "pid": 4242,
        "version": "0.1.0",
        "started_at": at.isoformat(),
        "uptime_s": 120.0,
        "updated_at": at.isoformat(),
        "interval_s": interval_s,
        "token": "t",
        "workers": {
            name: {
                "state": "running",
                "restarts": 0,
                "uptime_s": 100.0,
                "processed": 0,
                "failed": 0,
                "reason": None,
                "in_flight": 0,
                "stream": None,
                "group": None,
                **dict(w),
            }
            for name, w in workers.items()
        },
    }


async def put_heartbeat(adapter: StreamAdapter, prefix: str, record: Mapping[str, Any]) -> None:
    await adapter.client.set(f"{prefix}:heartbeat:{record['consumer']}", json.dumps(record), ex=60)


async def add_dead_letter(
    adapter: StreamAdapter,
    stream: str,
    fields: Mapping[str, str] | None = None,
    *,
    error: str = "boom",
    deliveries: str = "5",
    group: str = "g",
) -> str:
    """One dead letter in ``<stream>:dead``, the runtime's shape; returns its id."""
    body = {
        "specversion": "1.0",
        "id": "ev-1",
        "type": "deployment.started",
        "subject": "dep-1",
        "data": json.dumps({"deployment_id": "dep-1", "service": "billing-api"}),
        **dict(fields or {}),
        "error": error,
        "deliveries": deliveries,
        "failed_at": datetime.now(UTC).isoformat(),
        "original_id": "1-0",
        "original_stream": stream,
        "group": group,
    }
    return await adapter.add(f"{stream}:dead", body)


async def put_task(
    adapter: StreamAdapter,
    prefix: str,
    event_id: str,
    fields: Mapping[str, str],
    log: list[Mapping[str, Any] | str] = (),  # type: ignore[assignment]
) -> None:
    key = f"{prefix}:task:{event_id}"
    await adapter.client.hset(key, mapping=dict(fields))
    for line in log:
        await adapter.client.rpush(
            f"{key}:log", line if isinstance(line, str) else json.dumps(line)
        )


@contextlib.asynccontextmanager
async def dashboard_client(
    adapter: StreamAdapter, prefix: str, token: str | None = None, *, interval: float = 0.05
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The dashboard app over ``adapter`` behind aiohttp's test server, on loopback."""
    app = create_app(adapter, Keys(prefix), Token(token) if token else None, interval=interval)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


async def sign_in(client: TestClient[web.Request, web.Application], token: str) -> str:
    """Sign in through the form; returns the CSRF token the dead-letter forms carry."""
    response = await client.post(
        "/signin", data={"token": token, "next": "/"}, allow_redirects=False
    )
    assert 303 == response.status, await response.text()
    page = await (await client.get("/")).text()
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, page
    return found.group(1)
