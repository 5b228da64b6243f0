"""Stream workers that speak HTTP: one aiohttp session per worker run, closed when it ends.

The session is opened lazily, inside the running loop, and closed however the
run ends (drain, crash, cancellation), so a restarted worker never inherits a
half-closed connection pool.
"""

from __future__ import annotations

import abc

import aiohttp
import anyio
from anyio.abc import TaskStatus

from printery.worker import StreamWorker, WorkerContext, WorkerDeps

__all__ = ["HttpStreamWorker"]


class HttpStreamWorker(StreamWorker):
    """A :class:`StreamWorker` whose handlers make HTTP requests through :meth:`http`."""

    def __init__(self, deps: WorkerDeps) -> None:
        super().__init__(deps)
        self._session: aiohttp.ClientSession | None = None

    @abc.abstractmethod
    def new_session(self) -> aiohttp.ClientSession:
        """This worker's session: its pool size and proxy policy are its own decision."""

    def http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self.new_session()
        return self._session

    async def serve(self, ctx: WorkerContext, *, task_status: TaskStatus[None]) -> None:
        try:
            await super().serve(ctx, task_status=task_status)
        finally:
            with anyio.CancelScope(shield=True):
                await self.aclose()

    async def aclose(self) -> None:
        """Close this run's HTTP session (the next run opens its own)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
