"""The relay's four hops as printery workers: the engine's cost, without the pipeline's.

``pipeline_latency.py`` compares the deployment pipeline with a plain relay
that copies each entry to the next stream, GETs the health URL on the third
hop and POSTs ``{"subject": …}`` on the fourth. The pipeline does more per
hop than that (parse the CloudEvent, validate, build the successor event,
write the timeline, read the delivery marker). These four workers do exactly
the relay's job under printery's engine (read loop, handler slots, the
atomic commit with the ack, supervision), so a run of them next to the relay
and the pipeline splits printery's CPU per deployment into the engine's share
and the pipeline's own work.

Streams are the relay's: ``<prefix>:0`` → ``:1`` → ``:2`` → ``:3`` →
``:3:done``. The health URL and the webhook come from ``BENCH_HEALTH_URL``
and ``BENCH_HOOK_URL``. Run as
``printery-workers --worker bench.relay_hops:Hop0,bench.relay_hops:Hop1,…``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import aiohttp

from printery.message import Message
from printery.pipeline.http_worker import HttpStreamWorker
from printery.redis.writes import Write

__all__ = ["Hop0", "Hop1", "Hop2", "Hop3"]


class _Hop(HttpStreamWorker):
    """One hop: copy the entry's fields to the next stream, in the commit with the ack."""

    index = 0

    @property
    def stream(self) -> str:
        return f"{self.keys.prefix}:{self.index}"

    @property
    def target(self) -> str:
        return f"{self.keys.prefix}:{self.index + 1}" if self.index < 3 else f"{self.stream}:done"

    def new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(trust_env=False)

    async def handle(self, message: Message) -> Sequence[Write]:
        return [Write.xadd(self.target, message.raw)]


class Hop0(_Hop):
    name = "hop-0"
    index = 0


class Hop1(_Hop):
    name = "hop-1"
    index = 1


class Hop2(_Hop):
    """The third hop GETs the health URL first, as the relay's does."""

    name = "hop-2"
    index = 2

    async def handle(self, message: Message) -> Sequence[Write]:
        async with self.http().get(os.environ["BENCH_HEALTH_URL"]) as response:
            await response.read()
        return await super().handle(message)


class Hop3(_Hop):
    """The last hop POSTs the subject to the webhook first, as the relay's does."""

    name = "hop-3"
    index = 3

    async def handle(self, message: Message) -> Sequence[Write]:
        subject = message.raw[b"subject"].decode()
        async with self.http().post(os.environ["BENCH_HOOK_URL"], json={"subject": subject}) as r:
            await r.read()
        return await super().handle(message)
