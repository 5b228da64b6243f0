"""Run workers under a real WorkerManager inside a test, with events recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from printery.lifecycle import Hub
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from printery.settings import Settings, load_settings
from printery.supervisor.manager import WorkerManager
from printery.worker import Worker, WorkerDeps
from tests.support.events import Recorder

# Fast but consistent settings for in-process runtime tests.
FAST = {"BLOCK_MS": "200", "CLAIM_IDLE_MS": "2000", "RETRY_BACKOFF_MS": "20"}


def make_settings(prefix: str, **env: str) -> Settings:
    return load_settings({}, {"STREAM_PREFIX": prefix, **FAST, **env})


def make_deps(adapter: StreamAdapter, prefix: str, consumer: str = "c1", **env: str) -> WorkerDeps:
    return WorkerDeps(make_settings(prefix, **env), adapter, Keys(prefix), consumer)


@asynccontextmanager
async def running(
    *workers: Worker, recorder: Recorder, **manager: Any
) -> AsyncIterator[WorkerManager]:
    """Start the workers under a manager; drain them on exit."""
    mgr = WorkerManager(emit=Hub([recorder]), **manager)
    for worker in workers:
        mgr.register(worker)
    async with anyio.create_task_group() as tg:
        await tg.start(mgr.run)
        await mgr.start_all()
        try:
            yield mgr
        finally:
            with anyio.CancelScope(shield=True):
                await mgr.stop_all()
