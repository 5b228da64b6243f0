"""Heartbeats: each daemon's record in Redis, with a TTL, that ``printery status`` reads.

The record doubles as the lock on ``CONSUMER_NAME``: it carries a random token,
and a second process with the same name finds a live record with another
token and refuses to start, instead of silently sharing one consumer.

A record held by another token is either a live daemon's or the leftover of
one that just died (a pod restarted under the same name). The difference
shows within one interval: a live holder rewrites its record, a dead one
does not. So :meth:`Heartbeat.claim` watches the record; it refuses, naming
the holder's host and pid, as soon as the record changes, and waits out the
TTL only for a record that stays still::

    SET (our token) ─ ok ─► ours
      └ held ─► GET the holder's record every interval/20
                  ├ rewritten (≤ 1 interval) ─► ConsumerNameTaken: host, pid
                  ├ gone (expired) ───────────► SET again
                  └ still, past TTL + interval ► ConsumerNameTaken

A worker changing state (started, failed, restarting) rewrites the record
within a quarter second rather than at the next interval: a daemon that has
just come up must not show its workers ``stopped`` for five seconds.

The record (JSON; ``printery status`` reads it, and treats one whose
``updated_at`` is older than 2 × ``interval_s`` as stale)::

    {"consumer", "host", "pid", "version", "started_at", "uptime_s",
     "updated_at", "interval_s", "token",
     "workers": {name: {"state", "restarts", "uptime_s", "processed", "failed",
                        "reason", "in_flight", "stream", "group"}}}

``in_flight``, ``stream`` and ``group`` are there for stream workers only;
``children`` (``pid``, ``current``, ``handled``, ``rss_mb``,
``last_heartbeat_age_s``) for workers in their own processes.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from printery import __version__
from printery.envelope import now_rfc3339
from printery.errors import ConsumerNameTaken, RedisPermanent, RedisUnavailable
from printery.lifecycle import LifecycleEvent, MessageHandled, Outcome, WorkerStateChanged
from printery.redis.adapter import StreamAdapter
from printery.supervisor.manager import WorkerStatus

__all__ = ["Feed", "Heartbeat"]

# How long a state change waits before its write, so that workers starting or
# failing together (all four within milliseconds) make one write, not four.
_SETTLE_S = 0.25


@dataclass(frozen=True, slots=True)
class Feed:
    """What a stream worker consumes, and how many of its messages are in flight right now."""

    stream: str
    group: str
    in_flight: int
    children: list[dict[str, Any]] | None = None  # a worker in its own processes: each child


class Heartbeat:
    """Writes this daemon's record every ``interval`` s and on a state change; TTL 3 intervals."""

    def __init__(
        self,
        adapter: StreamAdapter,
        key: str,
        consumer: str,
        interval: float,
        status: Callable[[], Mapping[str, WorkerStatus]],
        *,
        feeds: Callable[[], Mapping[str, Feed]] | None = None,
    ) -> None:
        self.adapter = adapter
        self.key = key
        self.consumer = consumer
        self.interval = interval
        self.ttl_ms = int(interval * 3000)
        self.status = status
        self.feeds = feeds or dict
        self.token = secrets.token_hex(8)
        self.started_at = now_rfc3339()
        self.started_mono = time.monotonic()
        self.counts: Counter[tuple[str, str]] = Counter()
        self._changed = anyio.Event()

    def sink(self, event: LifecycleEvent) -> None:
        if isinstance(event, MessageHandled) and event.outcome is not Outcome.RETRIED:
            self.counts[event.worker, event.outcome.value] += 1
        elif isinstance(event, WorkerStateChanged):
            self._changed.set()

    def record(self) -> str:
        feeds = self.feeds()
        workers: dict[str, dict[str, Any]] = {}
        for name, s in self.status().items():
            workers[name] = {
                "state": s.state.value,
                "restarts": s.restarts,
                "uptime_s": round(s.uptime_s, 1),
                "processed": self.counts[name, Outcome.ACKED.value],
                "failed": self.counts[name, Outcome.DEAD_LETTERED.value],
                "reason": s.reason,
            }
            feed = feeds.get(name)
            if feed is not None:
                workers[name].update(in_flight=feed.in_flight, stream=feed.stream, group=feed.group)
                if feed.children is not None:
                    workers[name]["children"] = feed.children
        return json.dumps(
            {
                "token": self.token,
                "consumer": self.consumer,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "version": __version__,
                "started_at": self.started_at,
                "uptime_s": round(time.monotonic() - self.started_mono, 1),
                "updated_at": now_rfc3339(),
                "interval_s": self.interval,
                "workers": workers,
            }
        )

    async def claim(self) -> None:
        """Take the consumer name; waits out a stale record of a process that just died.

        Raises ConsumerNameTaken, naming the holder, once the holder rewrites its
        record (within one of its intervals): a live daemon has the name.
        """
        deadline = time.monotonic() + self.ttl_ms / 1000 + self.interval
        first: str | None = None
        step = max(0.02, min(self.interval / 20, 0.25))
        while not await self.adapter.heartbeat(self.key, self.token, self.record(), self.ttl_ms):
            current = await self.adapter.get(self.key)
            if current is not None and first is not None and current != first:
                raise ConsumerNameTaken(self._in_use(current))
            first = first or current
            if time.monotonic() > deadline:
                raise ConsumerNameTaken(self._in_use(current or first))
            await anyio.sleep(step)

    def _in_use(self, record: str | None) -> str:
        return (
            f"CONSUMER_NAME {self.consumer!r} is in use by {_holder(record)} "
            f"(heartbeat {self.key}); give each process its own name"
        )

    async def run(self) -> None:
        while True:
            with anyio.move_on_after(self.interval):
                await self._changed.wait()
                await anyio.sleep(min(_SETTLE_S, self.interval))
            self._changed = anyio.Event()
            try:
                if not await self.adapter.heartbeat(
                    self.key, self.token, self.record(), self.ttl_ms
                ):
                    # Redis lost our record (flushed) and another process took the name.
                    holder = _holder(await self.adapter.get(self.key))
                    raise ConsumerNameTaken(
                        f"CONSUMER_NAME {self.consumer!r} was taken by {holder}"
                    )
            except (RedisUnavailable, RedisPermanent):
                # The workers report the outage (or the refusal, and decide the exit
                # code); the record returns with Redis.
                continue

    async def release(self) -> None:
        try:
            await self.adapter.release_heartbeat(self.key, self.token)
        except (RedisUnavailable, RedisPermanent):
            return  # the record expires with its TTL


def _holder(record: str | None) -> str:
    """ "a live daemon on host H, pid P", from the holder's record (as much as it says)."""
    try:
        found = json.loads(record) if record else {}
    except ValueError:
        found = {}
    if not isinstance(found, dict):
        found = {}
    host, pid = found.get("host"), found.get("pid")
    if host is None and pid is None:
        return "another live daemon"
    return f"a live daemon on host {host or '?'}, pid {pid if pid is not None else '?'}"
