"""GETs that handlers running at once ask for together, sent to Redis as one MGET.

Handlers that run at once each read a key before their own I/O (the notifier
its delivery markers, one per webhook). Each GET alone is a round trip that
costs more CPU than the handler's own work; the handlers a read batch starts
ask within a turn or two of the event loop, so their keys can share one.
Values are read as one ``GET`` each would have read them: nothing is cached,
and a key asked for once a read is out is read again.

A handler running alone reads its key at once: waiting for company that is
not there costs a trip round the loop for nothing (at a steady 200 messages a
second a batch holds one or two, and the wait cost more than it saved).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

__all__ = ["CoalescedGets", "ReadsMany"]

# Turns of the loop the first asker waits for the others: the first lets in the
# handlers woken with it, the second those resuming just after (their own I/O
# done at nearly the same time): on a backlog with five handlers, 2.4 keys a
# read instead of 1.5.
_TURNS = 2


class ReadsMany(Protocol):
    """What the reads go through: the adapter's ``get`` and ``get_many`` (one MGET)."""

    async def get(self, key: str) -> str | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[str | None]: ...


class _AskAgain(Exception):
    """The asker that was to read for this one was cancelled first."""


class CoalescedGets:
    """``await gets.get(key)``: the keys handlers running at once ask for, in one ``get_many``.

    ``running`` counts the handlers that may ask: the first asker reads for all
    of them once every one has asked, or after two turns of the loop.
    """

    def __init__(self, reader: ReadsMany, running: Callable[[], int]) -> None:
        self._reader = reader
        self._running = running
        self._gathering: dict[str, list[asyncio.Future[str | None]]] | None = None

    async def get(self, key: str) -> str | None:
        """The key's value (None when it does not exist), read with the keys asked alongside."""
        while True:
            if self._gathering is None:
                if self._running() <= 1:
                    return await self._reader.get(key)
                return await self._lead(key)
            answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            self._gathering.setdefault(key, []).append(answer)
            try:
                return await answer
            except _AskAgain:
                continue

    async def _lead(self, key: str) -> str | None:
        asked: dict[str, list[asyncio.Future[str | None]]] = {key: []}
        self._gathering = asked
        try:
            try:
                for _ in range(_TURNS):
                    await asyncio.sleep(0)
                    if 1 + sum(map(len, asked.values())) >= self._running():
                        break
            finally:
                self._gathering = None  # later askers: a read of their own
            values = await self._reader.get_many(list(asked))
        except asyncio.CancelledError:
            _answer(asked, _AskAgain())  # this handler is going; the others are not
            raise
        except Exception as exc:  # each asker raises it, as its own GET would have
            _answer(asked, exc)
            raise
        for answers, value in zip(asked.values(), values, strict=True):
            for answer in answers:
                if not answer.done():  # its handler was cancelled meanwhile
                    answer.set_result(value)
        return values[0]  # the leader's own key is the first


def _answer(asked: dict[str, list[asyncio.Future[str | None]]], exc: Exception) -> None:
    for answers in asked.values():
        for answer in answers:
            if not answer.done():
                answer.set_exception(exc)
