"""How a pool worker reads: for idle children only, and without waiting for the last commit."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from printery.processes.task import read_task
from printery.processes.worker import ProcessWorker, process_worker_factory
from printery.processes.workers_file import WorkerDefinition
from printery.redis.adapter import StreamAdapter, connect
from printery.redis.keys import Keys
from printery.redis.replies import Entry
from printery.redis.writes import Write
from tests.e2e.processes import POOL_CHILD, task
from tests.support.events import Recorder, handled
from tests.support.harness import make_deps, running
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(30)


class _Watched(StreamAdapter):
    """A real adapter whose first commit waits, and which notes what each read asked for."""

    def __init__(self, url: str) -> None:
        super().__init__(connect(url, socket_timeout=5, connect_timeout=2))
        self.worker: ProcessWorker | None = None
        self.reads: list[tuple[int, int]] = []  # (count asked, idle children then)
        self.handled_when_first_commit_returned: int | None = None
        self.release = anyio.Event()

    async def read(self, stream: str, group: str, consumer: str, **kw: Any) -> list[Entry]:
        pool = self.worker.pool if self.worker is not None else None
        if pool is not None and kw.get("after") is None:
            self.reads.append((kw["count"], len(pool._idle)))
        return await super().read(stream, group, consumer, **kw)

    async def commit(
        self, stream: str, group: str, batch: Sequence[tuple[str, Sequence[Write]]]
    ) -> list[bool | str]:
        first = self.handled_when_first_commit_returned is None and self.worker is not None
        if first:
            with anyio.move_on_after(5):
                await self.release.wait()
        done = await super().commit(stream, group, batch)
        if first and self.worker is not None and self.worker.pool is not None:
            self.handled_when_first_commit_returned = self.worker.pool.live[0].child.handled
        return done


async def test_the_next_message_reaches_a_child_while_its_last_commit_is_on_its_way(
    redis_server: RedisServer, prefix: str
) -> None:
    """One child, prefetch 0: message 2 is handled while message 1's commit waits.

    Every read of new messages asks for no more than the children idle at that
    moment: nothing waits in the daemon for a child.
    """
    adapter = _Watched(redis_server.url)
    definition = WorkerDefinition(
        name="proc",
        command=(sys.executable, str(POOL_CHILD)),
        input="proc:in",
        outputs=("proc:out",),
        processes=1,
    )
    worker = process_worker_factory(definition)(make_deps(adapter, prefix))
    assert isinstance(worker, ProcessWorker)
    adapter.worker = worker
    recorder = Recorder()
    try:
        await adapter.ensure_group(worker.stream, worker.group)
        for n in range(3):
            await adapter.add(worker.stream, task(n))
        async with running(worker, recorder=recorder):
            pool = worker.pool
            assert pool is not None
            with anyio.fail_after(10):
                while not pool.live or pool.live[0].child.handled < 2:
                    await anyio.sleep(0.01)
            adapter.release.set()
            await recorder.wait_for(lambda events: len(handled(events)) == 3)
        assert adapter.handled_when_first_commit_returned is not None
        assert adapter.handled_when_first_commit_returned >= 2
        assert adapter.reads
        assert all(count <= idle for count, idle in adapter.reads)
        assert 3 == await adapter.client.xlen(f"{prefix}:proc:out")
    finally:
        await adapter.close()


_CHATTY = """
import json, sys
def send(m):
    sys.stdout.write(json.dumps(m) + "\\n")
send({"op": "ready", "protocol": 1})
sys.stdout.flush()
for line in sys.stdin:
    task = json.loads(line)
    if task["op"] != "task":
        break
    for n in range(20):
        send({"op": "progress", "id": task["id"], "percent": n * 5, "step": f"s{n}"})
    send({"op": "result", "id": task["id"], "success": True, "outputs": []})
    sys.stdout.flush()
"""


class _Counted(StreamAdapter):
    def __init__(self, url: str) -> None:
        super().__init__(connect(url, socket_timeout=5, connect_timeout=2))
        self.applied = 0

    async def apply(self, writes: Sequence[Write]) -> None:
        self.applied += 1
        await super().apply(writes)


async def test_a_burst_of_progress_lines_is_one_write_to_redis_and_every_line_is_kept(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    """20 progress lines sent at once: fewer writes than lines, all 20 logged in order."""
    script = tmp_path / "chatty.py"
    script.write_text(_CHATTY)
    adapter = _Counted(redis_server.url)
    definition = WorkerDefinition(
        name="proc",
        command=(sys.executable, str(script)),
        input="proc:in",
        outputs=("proc:out",),
        processes=1,
    )
    worker = process_worker_factory(definition)(make_deps(adapter, prefix))
    recorder = Recorder()
    event = task(1)
    try:
        await adapter.ensure_group(worker.stream, worker.group)
        await adapter.add(worker.stream, event)
        async with running(worker, recorder=recorder):
            await recorder.wait_for(lambda events: len(handled(events)) == 1)
        record = await read_task(adapter, Keys(prefix), str(event["id"]))
        assert record is not None
        assert "succeeded" == record.fields["status"]
        assert [f"s{n}" for n in range(20)] == [entry["step"] for entry in record.log]
        assert 1 <= adapter.applied < 20
    finally:
        await adapter.close()
