"""Maintenance of a consumer run: keep held messages fresh, claim the dead's, reap, hand back.

- Every third of ``CLAIM_IDLE_MS`` each held message's idle time is reset,
  so no live handler's message is claimed by another consumer.
- Every ``CLAIM_INTERVAL_MS``, messages idle past ``CLAIM_IDLE_MS`` on any
  consumer are claimed (``XAUTOCLAIM``); entries trimmed meanwhile are
  accounted in ``<stream>:dead``.
- Once a minute, consumers idle past ``CONSUMER_IDLE_TIMEOUT`` with nothing
  pending and no live heartbeat are removed from the group.
- On drain, what never started is handed back (made long-idle, its delivery
  given back) so a live consumer claims it at once.
"""

from __future__ import annotations

import contextlib
import time

import anyio

from printery.engine.state import ConsumerState
from printery.envelope import now_rfc3339
from printery.errors import RedisUnavailable
from printery.lifecycle import (
    ConsumersReaped,
    MessageHandled,
    MessagesClaimed,
    MessagesHandedBack,
    Outcome,
)
from printery.redis.keys import Keys

__all__ = ["Maintaining"]


class Maintaining(ConsumerState):
    """The maintenance half of a consumer run."""

    async def _maintenance(self) -> None:
        refresh_every = self.claim_idle_ms / 3000
        next_claim = next_reap = time.monotonic()
        while True:
            try:
                await self._refresh_held()
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + self.claim_interval_s
                    await self._claim()
                if now >= next_reap:
                    next_reap = now + max(60.0, self.claim_interval_s)
                    gone = await self.adapter.reap_consumers(
                        self.stream,
                        self.group,
                        idle_ms=self.reap_idle_ms,
                        heartbeat_prefix=self.heartbeat_prefix,
                    )
                    if gone:
                        self.ctx.emit(ConsumersReaped(self.worker.name, self.stream, tuple(gone)))
            except RedisUnavailable:
                pass  # the read loop reports the outage and reconnects
            await anyio.sleep(min(refresh_every, self.claim_interval_s))

    async def _refresh_held(self) -> None:
        if self.held:
            await self.adapter.refresh(self.stream, self.group, self.consumer, list(self.held))

    async def _claim(self) -> None:
        cursor = "0-0"
        while not self.ctx.stopping.is_set():
            free = self.limit - len(self.held)
            if free <= 0:
                return
            cursor, entries, deleted = await self.adapter.autoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_ms=self.claim_idle_ms,
                start=cursor,
                count=min(free, self.batch_size),
            )
            fresh = [e for e in entries if e.id not in self.held]
            if fresh or deleted:
                self.ctx.emit(
                    MessagesClaimed(self.worker.name, self.stream, len(fresh), tuple(deleted))
                )
            for entry_id in deleted:
                await self._account_deleted(entry_id)
            for entry in fresh:
                self._accept(entry)
            if cursor == "0-0":
                return

    async def _account_deleted(self, entry_id: str) -> None:
        """A pending entry whose message was trimmed: Redis dropped it; keep a record."""
        await self.adapter.add(
            Keys.dead(self.stream),
            {
                "error": "entry was deleted from the stream (trimmed) while pending",
                "deliveries": "0",
                "failed_at": now_rfc3339(),
                "original_id": entry_id,
                "original_stream": self.stream,
                "group": self.group,
            },
        )
        self.ctx.emit(
            MessageHandled(
                self.worker.name,
                self.stream,
                entry_id,
                Outcome.DEAD_LETTERED,
                0.0,
                0,
                "trimmed while pending",
            )
        )

    async def _drain(self) -> None:
        """Hand back what never started, then let running handlers finish and commit."""
        await self._hand_back(exclude=self.started, counted=set(self._backing_off))
        self._buffer_send.close()  # handler loops skip what was handed back, then end
        self._commit_send.close()  # the committer ends once every handler loop has

    async def _hand_back(self, exclude: set[str], counted: set[str]) -> None:
        """Make our pending messages (but ``exclude``) claimable by a live consumer now.

        Asks Redis rather than trusting ``held``: a read cancelled by the drain
        may have been delivered into our pending list all the same. Only
        ``counted`` ones (cut short mid-handler: maybe the message's fault,
        a hang) keep the delivery; the others never ran.
        """
        try:
            pending = await self.adapter.own_pending_ids(self.stream, self.group, self.consumer)
        except RedisUnavailable:
            return  # they stay pending and are claimed after CLAIM_IDLE_MS
        back = [i for i in pending if i not in exclude]
        await self._hand_back_ids([i for i in back if i in counted])
        await self._hand_back_ids([i for i in back if i not in counted], uncount=True)

    async def _hand_back_ids(self, ids: list[str], *, uncount: bool = False) -> None:
        if not ids:
            return
        try:
            count = await self.adapter.hand_back(
                self.stream, self.group, self.consumer, ids, uncount=uncount
            )
        except RedisUnavailable:
            return  # they stay pending and are claimed after CLAIM_IDLE_MS
        self.ctx.emit(MessagesHandedBack(self.worker.name, self.stream, count))
        for entry_id in ids:
            self._release(entry_id)

    async def _forget_self(self) -> None:
        # If Redis is away, a leftover name is reaped later by a live daemon.
        with contextlib.suppress(RedisUnavailable):
            await self.adapter.forget_consumer(self.stream, self.group, self.consumer)
