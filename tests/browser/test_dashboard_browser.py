"""The dashboard in a real browser: live numbers, hostile dead letters inert, a replay by click."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import pytest
import redis
from playwright.sync_api import expect

from tests.browser.conftest import TOKEN
from tests.e2e.daemon import Daemon
from tests.support.dashboard import HOSTILE
from tests.support.dashboard_process import DashboardProcess

pytestmark = pytest.mark.timeout(120)


def _wait(what: str, predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout} s")
        time.sleep(0.05)


def _dead_letter(client: redis.Redis, prefix: str) -> str:
    """Publish a message the echo worker dead-letters at once, full of markup; its dead id."""
    stream = f"{prefix}:test:in"
    fields = {"fail": "permanent", "data": json.dumps({"note": HOSTILE[1]})}
    for i, payload in enumerate(HOSTILE):
        fields[f"field{i}"] = payload
        fields[f"{payload}-{i}"] = "name"
    client.xadd(stream, fields)
    _wait("dead-lettered", lambda: client.xlen(f"{stream}:dead") == 1)
    return client.xrange(f"{stream}:dead")[0][0].decode()


def test_overview_shows_the_running_daemons_workers(
    browser_page: Any, daemon: Daemon, dashboard: DashboardProcess
) -> None:
    """The overview lists the real daemon's echo worker as running, with its stream."""
    consumer = daemon.env["CONSUMER_NAME"]
    prefix = daemon.env["STREAM_PREFIX"]
    browser_page.goto(dashboard.url + "/")
    row = browser_page.locator(f'[data-worker="{consumer}/echo"]')
    row.wait_for()
    # The dashboard's first reading may predate the daemon's first heartbeat after
    # its workers ran (one every 0.5 s here): the live update brings "running".
    expect(row.locator(".state")).to_have_text("running", timeout=10_000)
    assert f"{prefix}:test:in" in row.inner_text()
    assert [] == browser_page.dialogs


def test_live_numbers_change_without_reload(
    browser_page: Any, daemon: Daemon, dashboard: DashboardProcess, client: redis.Redis
) -> None:
    """While messages flow, the processed count on the page rises with no navigation."""
    consumer = daemon.env["CONSUMER_NAME"]
    stream = f"{daemon.env['STREAM_PREFIX']}:test:in"
    browser_page.goto(dashboard.url + "/")
    cell = browser_page.locator(f'[data-worker="{consumer}/echo"] [data-metric="processed"]')
    cell.wait_for()
    before = cell.inner_text()
    browser_page.evaluate("window.__same_page = true")
    for i in range(40):
        client.xadd(stream, {"n": str(i)})
    browser_page.wait_for_function(
        """([sel, before]) => {
            const el = document.querySelector(sel);
            return el && el.textContent.trim() !== before && Number(el.textContent) >= 40;
        }""",
        arg=[f'[data-worker="{consumer}/echo"] [data-metric="processed"]', before],
        timeout=20_000,
    )
    assert browser_page.evaluate("window.__same_page") is True  # no reload happened
    assert "live" == browser_page.locator("#live").inner_text()


def test_hostile_dead_letter_renders_as_text(
    browser_page: Any, daemon: Daemon, dashboard: DashboardProcess, client: redis.Redis
) -> None:
    """A real dead letter full of <script> and <img onerror> shows as text and runs nothing."""
    prefix = daemon.env["STREAM_PREFIX"]
    dead_id = _dead_letter(client, prefix)
    browser_page.goto(f"{dashboard.url}/dead/{quote(prefix)}:test:in")
    row = browser_page.locator(f'tr[data-id="{dead_id}"]')
    row.wait_for()
    row.locator("summary").click()
    text = row.inner_text()
    for payload in HOSTILE:
        assert payload in text  # shown, as the characters it is made of
    assert browser_page.evaluate("window.__pwned") is None
    assert 1 == browser_page.evaluate("document.scripts.length")  # only the dashboard's own
    assert 0 == browser_page.evaluate("document.querySelectorAll('main img, main svg').length")
    assert [] == browser_page.dialogs
    assert [] == [c for c in browser_page.console if "Content Security Policy" in c]


def test_replay_clicked_with_the_token(
    browser_page: Any, daemon: Daemon, dashboard: DashboardProcess, client: redis.Redis
) -> None:
    """Signed in with the token, a click on Replay moves the dead letter back to its stream."""
    prefix = daemon.env["STREAM_PREFIX"]
    stream = f"{prefix}:test:in"
    dead_id = _dead_letter(client, prefix)
    dead_page = f"/dead/{quote(prefix)}:test:in"
    browser_page.goto(f"{dashboard.url}/signin?next={quote(dead_page)}")
    browser_page.fill("input[name=token]", TOKEN)
    browser_page.click("form.signin-form button")
    browser_page.wait_for_url(f"**{dead_page}")
    browser_page.locator(f'tr[data-id="{dead_id}"] button:text-is("Replay")').click()
    browser_page.locator(".banner.ok").wait_for()
    assert "Replayed 1." == browser_page.locator(".banner.ok").inner_text().strip()
    replayed = [f for _, f in client.xrange(stream) if f.get(b"replayed_from") == dead_id.encode()]
    assert 1 == len(replayed)
    assert dead_id not in [i.decode() for i, _ in client.xrange(f"{stream}:dead")]
    assert TOKEN not in browser_page.content()
