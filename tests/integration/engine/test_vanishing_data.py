"""Data vanishing under a running worker: streams deleted, Redis flushed, entries trimmed."""

from __future__ import annotations

import anyio
import pytest

from printery.lifecycle import Outcome, WorkerRestartScheduled
from printery.redis.adapter import StreamAdapter, connect
from tests.support.events import Recorder, handled
from tests.support.harness import make_deps, running
from tests.support.redis_server import RedisServer
from tests.support.workers import EchoWorker

pytestmark = pytest.mark.timeout(60)


async def xreadgroup_calls(adapter: StreamAdapter) -> int:
    stats = await adapter.client.info("commandstats")
    return int(stats.get("cmdstat_xreadgroup", {}).get("calls", 0))


@pytest.mark.parametrize("vanish", ["DEL stream", "FLUSHALL"])
async def test_group_recreated_after_the_data_vanished_without_a_busy_loop(
    own_redis: RedisServer, prefix: str, vanish: str
) -> None:
    """The group is recreated with backoff (a few reads a second), no restart, work resumes."""
    adapter = StreamAdapter(connect(own_redis.url, socket_timeout=5, connect_timeout=1))
    recorder = Recorder()
    worker = EchoWorker(make_deps(adapter, prefix, BLOCK_MS="200"))
    async with running(worker, recorder=recorder, supervised=True):
        await adapter.add(worker.stream, {"n": "before"})
        await recorder.wait_for(lambda ev: len(handled(ev)) == 1)
        if vanish == "FLUSHALL":
            await adapter.client.flushall()  # this test's own server: nothing else lives there
        else:
            await adapter.client.delete(worker.stream)
        before = await xreadgroup_calls(adapter)
        with anyio.move_on_after(2):  # a window of wall time to count reads in
            await anyio.sleep_forever()
        reads_per_s = (await xreadgroup_calls(adapter) - before) / 2
        assert reads_per_s < 15  # BLOCK_MS 200 gives at most ~5/s; a busy loop is thousands
        after = await adapter.add(worker.stream, {"n": "after"})
        await recorder.wait_for(lambda ev: len(handled(ev)) == 2)
    assert [e.message_id for e in handled(recorder.events)][-1] == after
    assert [e for e in recorder.events if isinstance(e, WorkerRestartScheduled)] == []
    await adapter.close()


async def test_entries_trimmed_while_pending_are_accounted_not_retried(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """Pending entries whose messages were trimmed are recorded in <stream>:dead, then gone."""
    recorder = Recorder()
    worker = EchoWorker(
        make_deps(real_adapter, prefix, CLAIM_IDLE_MS="600", CLAIM_INTERVAL_MS="100")
    )
    await real_adapter.ensure_group(worker.stream, worker.group)
    ids = [await real_adapter.add(worker.stream, {"n": str(i)}) for i in range(3)]
    await real_adapter.read(worker.stream, worker.group, "ghost", count=10, block_ms=None)
    await real_adapter.client.xtrim(worker.stream, maxlen=0)  # the messages are gone, still pending
    async with running(worker, recorder=recorder):
        await recorder.wait_for(lambda ev: len(handled(ev, Outcome.DEAD_LETTERED)) == 3)
    dead = await real_adapter.client.xrange(f"{worker.stream}:dead")
    assert sorted(f[b"original_id"].decode() for _, f in dead) == sorted(ids)
    assert {f[b"error"] for _, f in dead} == {
        b"entry was deleted from the stream (trimmed) while pending"
    }
    stats = await real_adapter.group_stats(worker.stream, worker.group)
    assert stats is not None
    assert (stats.pending, await real_adapter.client.xlen(worker.out)) == (0, 0)
