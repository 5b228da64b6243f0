"""The stream runtime against a real redis-server: handling, acks, outputs, drain."""

from __future__ import annotations

import anyio
import pytest

from printery.adapter import StreamAdapter
from printery.keys import Keys
from printery.lifecycle import Hub, Outcome
from printery.manager import WorkerManager
from printery.settings import load_settings
from printery.worker import WorkerDeps
from tests.support.events import Recorder, handled
from tests.support.redis_server import RedisServer
from tests.support.workers import EchoWorker

pytestmark = pytest.mark.timeout(30)


def _deps(adapter: StreamAdapter, prefix: str, consumer: str = "c1", **env: str) -> WorkerDeps:
    settings = load_settings(
        {}, {"STREAM_PREFIX": prefix, "BLOCK_MS": "200", "CLAIM_IDLE_MS": "2000", **env}
    )
    return WorkerDeps(settings, adapter, Keys(prefix), consumer)


async def test_messages_flow_through_and_are_acked(
    redis_server: RedisServer, real_adapter: StreamAdapter, prefix: str
) -> None:
    """Every published entry yields one output and leaves nothing pending."""
    recorder = Recorder()
    worker = EchoWorker(_deps(real_adapter, prefix))
    manager = WorkerManager(emit=Hub([recorder]))
    manager.register(worker)
    for i in range(20):
        await real_adapter.add(worker.stream, {"n": str(i)})
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        await manager.start_all()
        await recorder.wait_for(lambda ev: len(handled(ev)) == 20)
        await manager.stop_all()
    client = real_adapter.client
    assert await client.xlen(worker.out) == 20
    stats = await real_adapter.group_stats(worker.stream, worker.group)
    assert stats is not None
    assert stats.pending == 0
    assert {e.outcome for e in handled(recorder.events)} == {Outcome.ACKED}
