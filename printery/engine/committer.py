"""The committer: finished handlers' results, acked with their outputs, many per round trip.

A finished handler hands its result over and moves on; the committer acks
and writes a whole batch in one script call, waiting (never polling) up to
``_COMMIT_LINGER_S`` for more results while handlers still have read messages
to get through. A result whose outputs cannot be written is dead-lettered in
a second round, so no ack ever stands without its outputs.
"""

from __future__ import annotations

import asyncio
import functools
import time

import anyio
import anyio.lowlevel

from printery.engine.state import COMMIT_BATCH, Commit, ConsumerState
from printery.envelope import now_rfc3339
from printery.errors import RedisUnavailable
from printery.lifecycle import HandlerRaised, MessageHandled, Outcome
from printery.redis.keys import Keys
from printery.redis.replies import Entry
from printery.redis.writes import Write

__all__ = ["Committing"]

_COMMIT_LINGER_S = 0.002  # longest a result waits for others to share its round trip


class Committing(ConsumerState):
    """The commit half of a consumer run."""

    def _finish(self, entry: Entry, outcome: Outcome, started: float, reason: str) -> None:
        self._release(entry.id)
        self.ctx.emit(
            MessageHandled(
                self.worker.name,
                self.stream,
                entry.id,
                outcome,
                time.perf_counter() - started,
                entry.deliveries,
                reason,
            )
        )

    async def _committer(self) -> None:
        """Commit finished handlers' results in batches: one round trip for many messages."""
        async with self._commit_recv:
            async for first in self._commit_recv:
                batch = [first]
                await self._gather(batch, anyio.current_time() + _COMMIT_LINGER_S)
                while batch:
                    batch = await self._commit_batch(batch)

    async def _gather(self, batch: list[Commit], linger_until: float) -> None:
        """Add the results that come in while handlers still have read messages to get through.

        Waits for them, never polls: a handler waiting on I/O (a webhook, a health
        endpoint) may take the whole linger, and polling meanwhile burns the CPU.
        """
        while len(batch) < COMMIT_BATCH:
            try:
                batch.append(self._commit_recv.receive_nowait())
                continue
            except anyio.WouldBlock:
                pass
            except anyio.EndOfStream:
                return
            if not self._reads_waiting() or anyio.current_time() >= linger_until:
                return  # nothing read is left to wait for, or lingered long enough
            # Asleep until the linger ends or a handler says the batch should go now
            # (_nudge_committer): a result that comes in meanwhile joins the buffer
            # without waking this task, one wake-up a batch rather than one a result.
            self._commit_due = due = asyncio.Event()
            with anyio.move_on_at(linger_until):
                await due.wait()
            self._commit_due = None

    async def _commit_batch(self, batch: list[Commit]) -> list[Commit]:
        """Commit, finish what went through; return the dead letters still to commit."""
        results = await self._reconnecting(functools.partial(self._commit_once, batch))
        again: list[Commit] = []
        for request, result in zip(batch, results, strict=True):
            if isinstance(result, str):
                reason = f"cannot write the outputs: {result}"
                if request.outcome is Outcome.DEAD_LETTERED:
                    # Even <stream>:dead is unusable: it stays pending, and says so loudly.
                    self.ctx.emit(
                        HandlerRaised(self.worker.name, self.stream, request.entry.id, reason, "")
                    )
                    self._release(request.entry.id)
                else:
                    again.append(self._dead_letter_commit(request.entry, reason, request.started))
                continue
            reason = request.reason or ("" if result else "already acked")
            self._finish(request.entry, request.outcome, request.started, reason)
        return again

    async def _commit_once(self, batch: list[Commit]) -> list[bool | str]:
        # One attempt is shielded, so the drain's soft deadline never splits a commit
        # from its bookkeeping; the backoff between attempts stays cancellable. Past
        # the cleanup deadline (Redis stalled) the reply is given up on: the script
        # is atomic, so the entry is either acked with its outputs or still pending.
        with anyio.CancelScope(shield=True, deadline=self.ctx.cleanup_deadline):
            return await self.adapter.commit(
                self.stream, self.group, [(c.entry.id, c.writes) for c in batch]
            )
        await anyio.lowlevel.checkpoint()  # the drain's cancellation, now past the deadline
        raise RedisUnavailable("commit reply given up at the shutdown deadline")

    def _dead_letter_commit(self, entry: Entry, reason: str, started: float) -> Commit:
        """The commit that acks ``entry`` and adds it, with the reason, to ``<stream>:dead``."""
        fields: dict[str, str | bytes] = {
            k.decode(errors="replace"): v for k, v in (entry.fields or {}).items()
        }
        fields.update(
            {
                "error": reason[:2000],
                "deliveries": str(entry.deliveries),
                "failed_at": now_rfc3339(),
                "original_id": entry.id,
                "original_stream": self.stream,
                "group": self.group,
            }
        )
        dead = [Write.xadd(Keys.dead(self.stream), fields)]
        return Commit(entry, dead, Outcome.DEAD_LETTERED, started, reason)
