"""The browser tier: Debian's chromium, driven by Playwright, against real processes.

Playwright never downloads a browser here: it drives ``/usr/bin/chromium``
(``apt-get install chromium``; scripts/test installs it when missing). Under
CI=true a missing chromium fails the run instead of skipping it. Each test
gets a fresh profile directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.daemon import Daemon
from tests.support.dashboard_process import DashboardProcess
from tests.support.redis_server import RedisServer
from tests.support.workers import EchoWorker

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ECHO = f"{EchoWorker.__module__}:{EchoWorker.__name__}"
TOKEN = "browser-token-4f1c9e2a"


def _chromium() -> str:
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if found is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("chromium is not installed, and CI=true forbids skipping")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[object]:
    """A page of a fresh headless chromium profile; dialogs are recorded, then dismissed."""
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        page = context.new_page()
        page.dialogs = []  # type: ignore[attr-defined]
        page.console = []  # type: ignore[attr-defined]
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
        page.on("console", lambda m: page.console.append(f"{m.type}: {m.text}"))  # type: ignore[attr-defined]
        page.set_default_timeout(15_000)
        yield page
        context.close()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_server.url) as found:
        yield found


@pytest.fixture
def daemon(redis_server: RedisServer, prefix: str, tmp_path: Path) -> Iterator[Daemon]:
    """A real printery-workers running the echo worker, with a fast heartbeat."""
    env = {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": ECHO,
        "BLOCK_MS": "200",
        "HEARTBEAT_INTERVAL": "0.5",
        "MAX_DELIVERIES": "1",
    }
    with Daemon(tmp_path / "daemon", env) as found:
        found.wait_ready()
        yield found


@pytest.fixture
def dashboard(redis_server: RedisServer, prefix: str, tmp_path: Path) -> Iterator[DashboardProcess]:
    """A real `printery dashboard` with a token, on the same Redis and prefix."""
    env = {"REDIS_URL": redis_server.url, "STREAM_PREFIX": prefix, "DASHBOARD_TOKEN": TOKEN}
    with DashboardProcess(tmp_path / "dashboard", env) as found:
        yield found
