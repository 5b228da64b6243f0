"""StreamWorker.pause: a wait inside a handler that gives the message back on drain."""

from __future__ import annotations

import anyio
import fakeredis
import pytest

from printery.errors import RetryLater
from printery.lifecycle import Hub
from printery.redis.adapter import StreamAdapter
from printery.worker import WorkerContext
from tests.support.harness import make_deps
from tests.support.workers import EchoWorker

pytestmark = pytest.mark.timeout(10)


async def test_pause_waits_its_time_when_not_draining() -> None:
    """Without a drain, pause returns after its delay and raises nothing."""
    worker = EchoWorker(make_deps(StreamAdapter(fakeredis.FakeAsyncRedis()), "p"))
    worker.ctx = WorkerContext("echo", Hub(), lambda state, reason: None)
    with anyio.fail_after(2):
        await worker.pause(0.01)


async def test_pause_raises_retry_later_as_soon_as_the_drain_starts() -> None:
    """A handler waiting in pause is told to hand its message back when stopping is set."""
    worker = EchoWorker(make_deps(StreamAdapter(fakeredis.FakeAsyncRedis()), "p"))
    ctx = WorkerContext("echo", Hub(), lambda state, reason: None)
    worker.ctx = ctx
    caught: list[str] = []

    async def waiting_handler() -> None:
        try:
            await worker.pause(3600)
        except RetryLater as exc:
            caught.append(exc.reason)

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiting_handler)
            await anyio.wait_all_tasks_blocked()
            ctx.stopping.set()
    assert ["draining: handed back to a live consumer"] == caught
