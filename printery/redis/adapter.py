"""The stream adapter: the one module that talks to Redis.

Every Redis exception is translated here (:func:`translated`), so the rest of
printery sees two conditions: :class:`RedisUnavailable` (degraded, reconnect)
and :class:`RedisPermanent` (credentials, ACL: stop, don't loop).

Multi-step operations are server-side scripts (printery.redis.scripts), each
atomic; ``commit`` is the one the delivery guarantee rests on.

The consumer's hot path is here; exceptions are translated in
:mod:`printery.redis.translation`, the reads the CLI and dashboard make are in
:mod:`printery.redis.views`, the values returned in :mod:`printery.redis.replies`,
the writes committed in :mod:`printery.redis.writes`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions as rex

from printery.errors import (
    CrossSlot,
    RedisPermanent,
    RedisUnavailable,
)
from printery.redis import diagnose, scripts
from printery.redis.replies import (
    ConsumerInfo,
    Entry,
    GroupInfo,
    GroupStats,
    Replayed,
    StreamInfo,
)
from printery.redis.slots import one_slot_problem
from printery.redis.translation import DatabaseOutOfRange, connect, translated
from printery.redis.translation import ident as _str
from printery.redis.translation import text as _text
from printery.redis.views import DEAD_LETTER_FIELDS, Views
from printery.redis.writes import Write, commit_payload, outputs_problem

__all__ = [
    "DEAD_LETTER_FIELDS",
    "ConsumerInfo",
    "DatabaseOutOfRange",
    "Entry",
    "GroupInfo",
    "GroupStats",
    "Replayed",
    "StreamAdapter",
    "StreamInfo",
    "Write",
    "connect",
    "outputs_problem",
    "translated",
]

# Hand-back idle: far beyond any CLAIM_IDLE_MS, yet small enough that Redis does
# not clamp the resulting delivery time (it resets a negative one to "now").
_HAND_BACK_IDLE_MS: Final = 100 * 86_400_000


class StreamAdapter(Views):
    """Stream operations for consumers; methods raise only printery's Redis errors.

    Every script call declares, in KEYS, every key its script touches.
    ``cluster``: the server is a Redis Cluster (``client`` a ``RedisCluster``,
    printery.redis.cluster), so a commit whose keys span hash slots is refused
    (:class:`CrossSlot`) before it is sent, and the operations that span keys
    of many slots (heartbeats, the reaper's heartbeat checks) go key by key;
    on a standalone server the keys of one commit may live in any slots.
    """

    def __init__(self, client: aioredis.Redis, *, cluster: bool = False) -> None:
        self.client = client
        self.cluster = cluster
        self._commit = client.register_script(scripts.COMMIT)
        self._reclaim = client.register_script(scripts.RECLAIM)
        self._set_idle = client.register_script(scripts.SET_IDLE)
        self._forget = client.register_script(scripts.FORGET_CONSUMER)
        self._heartbeat = client.register_script(scripts.HEARTBEAT)
        self._release = client.register_script(scripts.RELEASE)
        self._reap = client.register_script(scripts.REAP_CONSUMERS)
        self._replay_dead = client.register_script(scripts.REPLAY_DEAD)
        self._set_latest = client.register_script(scripts.SET_LATEST)
        self._trim_acknowledged = client.register_script(scripts.TRIM_ACKNOWLEDGED)
        self._unlock = client.register_script(scripts.UNLOCK)

    async def ping(self) -> None:
        """PING; a failure caused by a mistake in the URL says so (printery.redis.diagnose)."""
        try:
            with translated():
                await self.client.ping()
        except DatabaseOutOfRange as exc:
            raise RedisPermanent(await diagnose.databases_hint(self.client)) from exc
        except RedisUnavailable as exc:
            hint = await diagnose.tls_hint(self.client, str(exc))
            if hint is None:
                raise
            permanent, message = hint
            raise (RedisPermanent if permanent else RedisUnavailable)(message) from exc

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create the group from the stream's start (nothing published earlier is lost)."""
        with translated():
            try:
                await self.client.xgroup_create(stream, group, id="0", mkstream=True)
            except rex.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int,
        block_ms: int | None,
        after: str | None = None,
    ) -> list[Entry]:
        """New entries (``after=None``: ``>``), or this consumer's own pending ones after ``after``.

        Pending entries come with their delivery counts; a new entry's count is 1.
        """
        with translated():
            reply: Any = await self.client.xreadgroup(
                group,
                consumer,
                {stream: ">" if after is None else after},
                count=count,
                block=block_ms if after is None else None,
            )
        raw = reply[0][1] if reply else []
        entries = [Entry(_str(i), dict(f) if f else None) for i, f in raw]
        if after is None:
            return entries
        return await self._with_deliveries(stream, group, consumer, entries)

    async def reclaim(self, stream: str, group: str, consumer: str, entry: Entry) -> Entry | None:
        """Deliver an owned message again (its count goes up); None if it was taken or acked."""
        with translated():
            reply: Any = await self._reclaim(keys=[stream], args=[group, consumer, entry.id])
        if not reply:
            return None
        entry_id, flat = reply[0]
        fields = dict(zip(flat[::2], flat[1::2], strict=True)) if flat else None
        return Entry(_str(entry_id), fields, entry.deliveries + 1)

    async def autoclaim(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        min_idle_ms: int,
        start: str,
        count: int,
    ) -> tuple[str, list[Entry], list[str]]:
        """Claim long-idle entries; returns the next cursor, the entries and deleted ids."""
        with translated():
            reply: Any = await self.client.xautoclaim(
                stream, group, consumer, min_idle_time=min_idle_ms, start_id=start, count=count
            )
        cursor = _str(reply[0])
        entries = [Entry(_str(i), dict(f) if f else None) for i, f in reply[1]]
        deleted = [_str(i) for i in reply[2]] if len(reply) > 2 else []
        return cursor, await self._with_deliveries(stream, group, consumer, entries), deleted

    async def _with_deliveries(
        self, stream: str, group: str, consumer: str, entries: list[Entry]
    ) -> list[Entry]:
        if not entries:
            return entries
        with translated():
            pending: Any = await self.client.xpending_range(
                stream,
                group,
                min=entries[0].id,
                max=entries[-1].id,
                count=len(entries) + 10,
                consumername=consumer,
            )
        counts = {_str(p["message_id"]): int(p["times_delivered"]) for p in pending}
        return [Entry(e.id, e.fields, counts.get(e.id, 1)) for e in entries]

    async def commit(
        self, stream: str, group: str, batch: Sequence[tuple[str, Sequence[Write]]]
    ) -> list[bool | str]:
        """Ack each entry of ``stream`` and write its outputs, atomically; one round trip.

        Per entry, the outputs are written only if this call's XACK acked it.
        Returns, per entry, True (acked and written), False (acked before:
        nothing written) or the reason it could not be committed (an output
        key of another type: neither acked nor written). On a cluster, raises
        :class:`CrossSlot` before sending when the keys span hash slots.
        """
        if not batch:
            return []
        keys, payload, binary = commit_payload(stream, batch)
        if self.cluster and (problem := one_slot_problem(keys)) is not None:
            raise CrossSlot(f"commit to {stream!r} refused before it was sent: {problem}")
        args: list[str | bytes] = [group, payload, *binary]
        with translated():
            acked: Any = await self._commit(keys=keys, args=args)
        return [_str(flag) if isinstance(flag, bytes) else int(flag) == 1 for flag in acked]

    async def refresh(
        self, stream: str, group: str, consumer: str, ids: Sequence[str], *, idle_ms: int = 0
    ) -> set[str]:
        """Reset (or set) the idle time of ``ids`` still owned by ``consumer``; returns them."""
        if not ids:
            return set()
        with translated():
            owned = await self._set_idle(keys=[stream], args=[group, consumer, idle_ms, 0, *ids])
        return {_str(i) for i in owned}

    async def hand_back(
        self, stream: str, group: str, consumer: str, ids: Sequence[str], *, uncount: bool = False
    ) -> int:
        """Make messages claimable by a live consumer right away; returns how many were ours.

        ``uncount`` takes back the delivery our read counted: a message the
        drain took from us before (or while) it was handled did not fail, and a
        pod drained many times must not push it towards the dead letters.
        """
        if not ids:
            return 0
        with translated():
            owned = await self._set_idle(
                keys=[stream], args=[group, consumer, _HAND_BACK_IDLE_MS, int(uncount), *ids]
            )
        return len(owned)

    async def own_pending_ids(
        self, stream: str, group: str, consumer: str, limit: int = 10_000
    ) -> list[str]:
        with translated():
            pending: Any = await self.client.xpending_range(
                stream, group, min="-", max="+", count=limit, consumername=consumer
            )
        return [_str(p["message_id"]) for p in pending]

    async def forget_consumer(self, stream: str, group: str, consumer: str) -> bool:
        """Delete this consumer from the group if it has nothing pending."""
        with translated():
            result = await self._forget(keys=[stream], args=[group, consumer])
        return int(result) >= 0

    async def reap_consumers(
        self, stream: str, group: str, *, idle_ms: int, heartbeat_prefix: str
    ) -> list[str]:
        """Delete consumers idle past ``idle_ms`` with nothing pending and no live heartbeat.

        The candidates are read here (XINFO CONSUMERS), so that the script is
        given every heartbeat key it checks in KEYS; it checks each candidate
        again, atomically, before ``XGROUP DELCONSUMER``. On a cluster the
        heartbeats live in other slots: see :meth:`_reap_across_slots`.
        """
        if self.cluster:
            return await self._reap_across_slots(stream, group, idle_ms, heartbeat_prefix)
        with translated():
            found: list[dict[str, Any]] = await self.client.xinfo_consumers(stream, group)
            names: list[bytes] = [  # as Redis has them: a name need not be UTF-8
                c["name"]
                for c in found
                if int(c["pending"]) == 0 and int(c["idle"]) > idle_ms and _inactive_ms(c) > idle_ms
            ]
            if not names:
                return []
            prefix = heartbeat_prefix.encode()
            gone = await self._reap(
                keys=[stream, *(prefix + n for n in names)], args=[group, idle_ms, *names]
            )
        return [_text(n) for n in gone]

    async def _reap_across_slots(
        self, stream: str, group: str, idle_ms: int, heartbeat_prefix: str
    ) -> list[str]:
        """The reaper on a cluster, where heartbeats live in other slots than the stream.

        No script may touch both, so the heartbeats are read first, one key at
        a time, and each candidate without one is deleted by FORGET_CONSUMER,
        which re-checks atomically that it holds nothing pending. A consumer
        that read meanwhile with nothing pending loses only its name: its next
        read recreates it.
        """
        with translated():
            found: list[dict[str, Any]] = await self.client.xinfo_consumers(stream, group)
            gone = []
            for c in found:
                name = c["name"]
                if int(c["pending"]) or int(c["idle"]) <= idle_ms or _inactive_ms(c) <= idle_ms:
                    continue
                raw = name if isinstance(name, bytes) else str(name).encode()
                if await self.client.exists(heartbeat_prefix.encode() + raw):
                    continue
                if int(await self._forget(keys=[stream], args=[group, raw])) >= 0:
                    gone.append(_text(raw))
        return gone

    async def add(self, stream: str, fields: Mapping[str, str | bytes]) -> str:
        with translated():
            return _str(await self.client.xadd(stream, dict(fields)))  # type: ignore[arg-type]  # redis-py's FieldT is invariant

    async def group_stats(self, stream: str, group: str) -> GroupStats | None:
        """Length, lag and pending of one group; None when the stream or group is missing."""
        with translated():
            try:
                groups: list[dict[str, Any]] = await self.client.xinfo_groups(stream)
                length = int(await self.client.xlen(stream))
            except rex.ResponseError:
                return None
        for info in groups:
            if _str(info["name"]) == group:
                lag = info.get("lag")
                return GroupStats(
                    stream,
                    group,
                    length,
                    None if lag is None else int(lag),
                    int(info["pending"]),
                    int(info["consumers"]),
                )
        return None

    async def heartbeat(self, key: str, token: str, value: str, ttl_ms: int) -> bool:
        """Write our heartbeat record unless another process (another token) holds the key."""
        with translated():
            return int(await self._heartbeat(keys=[key], args=[token, value, ttl_ms])) == 1

    async def release_heartbeat(self, key: str, token: str) -> None:
        with translated():
            await self._release(keys=[key], args=[token])

    async def heartbeats(self, pattern: str) -> list[bytes]:
        """Every live heartbeat record matching ``pattern``."""
        with translated():
            keys = [k async for k in self.client.scan_iter(match=pattern, count=500)]
            if not keys:
                return []
            if self.cluster:  # the keys live in many slots: one MGET per slot
                values: list[Any] = await self.client.mget_nonatomic(keys)  # type: ignore[attr-defined]  # RedisCluster's own
            else:
                values = await self.client.mget(keys)
        return [v for v in values if v is not None]


def _inactive_ms(consumer: Mapping[str, Any]) -> int:
    """How long a consumer has not read: ``inactive`` (Redis 7.2+, Valkey), else ``idle``.

    ``inactive`` is -1 for a consumer that never read successfully: then only
    ``idle`` says how long it has been there.
    """
    inactive = int(consumer.get("inactive", -1))
    return inactive if inactive >= 0 else int(consumer["idle"])
