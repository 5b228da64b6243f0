"""One worker over every partition of its stage: a consumer per partition stream.

In cluster mode (README "Redis Cluster") a stage's stream is ``PARTITIONS`` streams, one
per hash tag, spread over the primaries. A worker reads all of them: one
:class:`~printery.engine.consumer.StreamConsumer` per partition, in one task
group, every daemon in the same consumer groups (no assignment protocol:
the groups share the work, as they do for one stream). Why one consumer per
stream rather than one XREADGROUP over many: a multi-stream read must stay
on one node, so it would be grouped per node and regrouped after every
failover, while a consumer per stream keeps the claim, hand-back, drain and
reap paths of standalone mode unchanged, at the cost of one blocking
connection per partition (``bench/cluster.py`` counts them).

Each consumer's task carries its partition's :class:`~printery.redis.keys.Keys`
in :data:`PARTITION_KEYS`; the handler tasks it spawns inherit it, so a
worker's ``self.keys`` (printery.worker) names its partition's keys, and
everything one message writes shares the input's hash tag.

The worker's concurrency is shared out: each partition runs
``ceil(concurrency / partitions)`` handlers, so a worker of concurrency 10
over 12 partitions runs 12 at most, not 120.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from printery.engine.consumer import StreamConsumer
from printery.engine.state import Handled
from printery.message import Message
from printery.redis.keys import Keys
from printery.redis.writes import Write

if TYPE_CHECKING:
    from printery.context import WorkerContext, WorkerDeps

__all__ = ["PARTITION_KEYS", "PartitionView", "run_partitions"]

PARTITION_KEYS: ContextVar[Keys | None] = ContextVar("printery_partition_keys", default=None)
"""The keys of the partition the current task's consumer reads; None outside cluster mode."""


class PartitionView:
    """A worker as one partition's consumer sees it: its stream, its share of the handlers."""

    def __init__(self, worker: Handled, keys: Keys, partitions: int) -> None:
        token = PARTITION_KEYS.set(keys)
        try:
            self.stream = worker.stream  # the worker names its stream from self.keys
        finally:
            PARTITION_KEYS.reset(token)
        self.keys = keys
        self.name = worker.name
        self.group = worker.group
        self.hang_timeout = worker.hang_timeout
        self.concurrency = max(1, math.ceil(worker.concurrency / partitions))
        self.max_in_flight = self.concurrency + (worker.max_in_flight - worker.concurrency)
        self._worker = worker

    async def handle(self, message: Message) -> Sequence[Write]:
        return await self._worker.handle(message)


async def run_partitions(
    worker: Handled,
    deps: WorkerDeps,
    ctx: WorkerContext,
    partitions: Sequence[Keys],
    consumers: list[StreamConsumer],
    *,
    task_status: TaskStatus[None],
) -> None:
    """Run one consumer per partition until the drain; started once every one has started.

    ``consumers`` is filled as they are made (the worker sums their in-flight
    counts). A consumer that returns before its first read (a drain during
    start) leaves the worker unstarted, as a single consumer would.
    """
    announced = 0
    settled = 0
    all_settled = anyio.Event()

    def settle(started: bool) -> None:
        nonlocal announced, settled
        announced += started
        settled += 1
        if settled == len(partitions):
            all_settled.set()

    class _Status:
        def __init__(self) -> None:
            self.done = False

        def started(self, value: None = None) -> None:
            if not self.done:
                self.done = True
                settle(True)

    async def one(keys: Keys) -> None:
        PARTITION_KEYS.set(keys)  # this task's context: its handler tasks inherit it
        status = _Status()
        consumer = StreamConsumer(PartitionView(worker, keys, len(partitions)), deps, ctx)
        consumers.append(consumer)
        try:
            await consumer.run(task_status=status)
        finally:
            if not status.done:
                status.done = True
                settle(False)

    async with anyio.create_task_group() as tg:
        for keys in partitions:
            tg.start_soon(one, keys)
        await all_settled.wait()
        # Every consumer pointed ctx at its own handlers; the hang check needs them all.
        ctx.stalest_handler = lambda: min(
            (s for c in consumers if (s := c._stalest_handler()) is not None),
            default=None,
        )
        if announced == len(partitions):
            task_status.started()
