"""``printery-workers --burst``: handle the backlog, then drain and exit, for cron jobs and tests.

A burst daemon starts like any other, then watches its stream workers'
groups; once every one has nothing waiting (lag 0) and nothing pending, and
no handler of its own is in flight, it drains the normal way and exits ``0``
(or the code the run earned: ``1`` after a standalone crash).

The groups are checked in the workers' start order (upstream first): a stage
whose group is idle has already written its outputs (they go with the ack),
so the stage after it sees them as lag when its own turn comes. The state
must hold on two passes in a row, so a batch read between two checks is not
mistaken for an empty group. A group whose lag Redis cannot tell (entries
deleted under it) counts as idle when nothing is pending or in flight on both
passes. Workers that are not stream workers have no backlog to wait for; a
worker that has ``failed`` reads nothing and is not waited for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import anyio

from printery.errors import RedisPermanent, RedisUnavailable
from printery.lifecycle import WorkerState
from printery.redis.adapter import StreamAdapter
from printery.supervisor.manager import WorkerStatus
from printery.worker import StreamWorker, Worker

__all__ = ["wait_until_handled"]


async def _idle(
    adapter: StreamAdapter,
    workers: Sequence[StreamWorker],
    status: Mapping[str, WorkerStatus],
) -> bool:
    for worker in workers:
        state = status[worker.name].state if worker.name in status else None
        if state is WorkerState.FAILED:
            continue
        if state is not WorkerState.RUNNING or worker.in_flight:
            return False
        for stream in worker.partition_streams:  # one, unless on a Redis Cluster
            try:
                stats = await adapter.group_stats(stream, worker.group)
            except (RedisUnavailable, RedisPermanent):
                return False  # the workers report the outage; look again when it is over
            if stats is None or stats.pending or stats.lag:
                return False
    return True


async def wait_until_handled(
    adapter: StreamAdapter,
    workers: Sequence[Worker],
    status: Callable[[], Mapping[str, WorkerStatus]],
    *,
    interval_s: float,
) -> None:
    """Return once every stream worker's group stayed idle for two passes (module docstring)."""
    stream_workers = [w for w in workers if isinstance(w, StreamWorker)]
    passes = 0
    while passes < 2:
        passes = passes + 1 if await _idle(adapter, stream_workers, status()) else 0
        await anyio.sleep(interval_s)
