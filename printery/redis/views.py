"""The adapter's reads and small writes for the pipeline, the CLI and the dashboard.

Plain reads (hashes, lists, markers), the operator's view of streams and dead
letters, and retention's trim and lock: everything but the consumer's own
hot path, which is :class:`~printery.redis.adapter.StreamAdapter`'s.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.commands.core import AsyncScript

from printery.redis.replies import (
    ConsumerInfo,
    Entry,
    GroupInfo,
    PendingEntry,
    Replayed,
    StreamInfo,
    Trim,
)
from printery.redis.translation import ident as _str
from printery.redis.translation import text as _text
from printery.redis.translation import translated
from printery.redis.writes import Write

__all__ = ["DEAD_LETTER_FIELDS", "Views"]


# What the runtime adds to a message when it dead-letters it (engine/committer.py).
DEAD_LETTER_FIELDS: Final = (
    "error",
    "deliveries",
    "failed_at",
    "original_id",
    "original_stream",
    "group",
)


class Views:
    """Reads and small writes over one client; mixed into the StreamAdapter."""

    client: aioredis.Redis
    cluster: bool
    _replay_dead: AsyncScript
    _trim_acknowledged: AsyncScript
    _unlock: AsyncScript
    _set_latest: AsyncScript

    # -- plain reads and markers, for the pipeline workers and the CLI -------------

    async def hash_get(self, key: str, names: Sequence[str]) -> dict[str, str | None]:
        """Some fields of a hash (HMGET); a missing field or key reads as None."""
        if not names:
            return {}
        with translated():
            values: list[Any] = await self.client.hmget(key, list(names))
        return {n: None if v is None else _text(v) for n, v in zip(names, values, strict=True)}

    async def hash_all(self, key: str) -> dict[str, str]:
        """Every field of a hash (HGETALL); empty when the key does not exist."""
        with translated():
            found: dict[Any, Any] = await self.client.hgetall(key)
        return {_text(k): _text(v) for k, v in found.items()}

    async def list_all(self, key: str) -> list[str]:
        """Every item of a list (LRANGE 0 -1), oldest first."""
        with translated():
            items: list[Any] = await self.client.lrange(key, 0, -1)
        return [_text(i) for i in items]

    async def apply(self, writes: Sequence[Write]) -> None:
        """Write records outside any commit (HSET, capped RPUSH, EXPIRE), one round trip.

        For state that moves while a message is still running (a task's progress):
        nothing here acks anything, so nothing here needs to be atomic with an ack.
        """
        with translated():
            pipe = self.client.pipeline(transaction=False)
            for write in writes:
                if write.op == "HSET":
                    pairs = dict(zip(write.args[::2], write.args[1::2], strict=True))
                    pipe.hset(write.key, mapping=pairs)  # type: ignore[arg-type]  # redis-py's mapping type is invariant
                elif write.op == "RPUSH":
                    value, cap = write.args
                    pipe.rpush(write.key, value)
                    pipe.ltrim(write.key, -int(cap), -1)
                elif write.op == "EXPIRE":
                    pipe.expire(write.key, int(write.args[0]))
                else:
                    raise ValueError(f"apply() does not write {write.op}")
            await pipe.execute()

    async def record(
        self, key: str, log_key: str, *, tail: int | None = None
    ) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """A timeline's or task's hash and its log (the last ``tail`` lines, or all).

        Log lines are the JSON objects printery wrote; anything else comes back
        as ``{"message": line}``, so a hand-written line never fails a reader.
        """
        fields = await self.hash_all(key)
        raw = await (self.list_all(log_key) if tail is None else self.list_tail(log_key, tail))
        log: list[dict[str, Any]] = []
        for item in raw:
            try:
                entry = json.loads(item)
            except ValueError:
                entry = None
            log.append(entry if isinstance(entry, dict) else {"message": item})
        return fields, log

    async def list_tail(self, key: str, count: int) -> list[str]:
        """The last ``count`` items of a list (LRANGE -count -1), oldest first."""
        with translated():
            items: list[Any] = await self.client.lrange(key, -count, -1)
        return [_text(i) for i in items]

    async def get(self, key: str) -> str | None:
        with translated():
            value: Any = await self.client.get(key)
        return None if value is None else _text(value)

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Several keys' values in one MGET (on a cluster, one per slot); None where missing."""
        if not keys:
            return []
        with translated():
            if self.cluster:
                values: list[Any] = await self.client.mget_nonatomic(keys)  # type: ignore[attr-defined]  # RedisCluster's own
            else:
                values = await self.client.mget(keys)
        return [None if v is None else _text(v) for v in values]

    async def set_once(self, key: str, value: str, ttl_s: int | None) -> bool:
        """SET NX with a TTL (None: none): True if this call set it, False if the key existed."""
        with translated():
            return bool(await self.client.set(key, value, nx=True, ex=ttl_s))

    async def set_latest(
        self, key: str, field: str, value: str, *, order_key: str, order: str
    ) -> bool:
        """HSET ``field`` unless ``order_key`` holds a later order for it; True if it was set.

        The registry's own step on a cluster (``Write.hset_latest`` inside the
        commit on a standalone server): idempotent, ``key`` and ``order_key``
        in one slot.
        """
        with translated():
            done = await self._set_latest(keys=[key, order_key], args=[field, value, order])
        return int(done) == 1

    # -- the operator's view: stream and group details, dead letters -----------------

    async def server_time_ms(self) -> int:
        """Redis's clock, which also stamps entry ids: ages of entries are measured on it."""
        with translated():
            seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def key_type(self, key: str) -> str:
        """``stream``, ``hash``, …, or ``none`` when the key does not exist."""
        with translated():
            return _str(await self.client.type(key))

    async def length(self, stream: str) -> int:
        """XLEN: 0 for a stream that does not exist."""
        with translated():
            return int(await self.client.xlen(stream))

    async def stream_info(self, stream: str) -> StreamInfo | None:
        """Length and every group with its consumers; None unless ``stream`` is a stream."""
        with translated():
            if _str(await self.client.type(stream)) != "stream":
                return None
            length = int(await self.client.xlen(stream))
            groups: list[dict[str, Any]] = await self.client.xinfo_groups(stream)
            found = []
            for info in groups:
                name = _text(info["name"])
                summary: Any = await self.client.xpending(stream, name)
                members: list[dict[str, Any]] = await self.client.xinfo_consumers(stream, name)
                lag = info.get("lag")
                found.append(
                    GroupInfo(
                        name,
                        None if lag is None else int(lag),
                        int(info["pending"]),
                        _str(summary["min"]) if summary.get("min") else None,
                        tuple(
                            ConsumerInfo(_text(m["name"]), int(m["pending"]), int(m["idle"]))
                            for m in members
                        ),
                    )
                )
        return StreamInfo(stream, length, tuple(found))

    async def entries(
        self, stream: str, *, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[Entry]:
        """XRANGE, oldest first; ``(id`` bounds are exclusive. Empty for a missing stream."""
        with translated():
            raw: Any = await self.client.xrange(stream, min=start, max=end, count=count)
        return [Entry(_str(i), dict(f)) for i, f in raw]

    async def newest_entries(
        self, stream: str, *, before: str | None = None, count: int = 50
    ) -> list[Entry]:
        """XREVRANGE, newest first, ``count`` at most; ``before`` (exclusive) pages backwards."""
        with translated():
            raw: Any = await self.client.xrevrange(
                stream, max="+" if before is None else f"({before}", min="-", count=count
            )
        return [Entry(_str(i), dict(f)) for i, f in raw]

    async def pending_entries(
        self, stream: str, group: str, *, after: str | None = None, count: int = 50
    ) -> list[PendingEntry]:
        """XPENDING's extended form, oldest first; ``after`` (exclusive) pages forwards."""
        with translated():
            try:
                raw: Any = await self.client.xpending_range(
                    stream, group, min="-" if after is None else f"({after}", max="+", count=count
                )
            except rex.ResponseError as exc:
                if str(exc).startswith("NOGROUP"):
                    return []
                raise
        return [
            PendingEntry(
                _str(p["message_id"]),
                _text(p["consumer"]),
                int(p["time_since_delivered"]),
                int(p["times_delivered"]),
            )
            for p in raw
        ]

    async def delete_entries(self, stream: str, ids: Sequence[str]) -> int:
        """XDEL: remove these entries; returns how many were there."""
        if not ids:
            return 0
        with translated():
            return int(await self.client.xdel(stream, *ids))

    async def last_entry_id(self, stream: str) -> str | None:
        with translated():
            raw: Any = await self.client.xrevrange(stream, max="+", min="-", count=1)
        return _str(raw[0][0]) if raw else None

    async def replay_dead(self, dead: str, stream: str, ids: Sequence[str]) -> list[Replayed]:
        """Move dead letters back to ``stream``, each atomically; see the module docstring.

        The original fields go back without the dead-letter fields, with
        ``replayed_from: <dead letter id>``; a fresh entry starts a fresh delivery count.
        """
        if not ids:
            return []
        with translated():
            reply: Any = await self._replay_dead(
                keys=[dead, stream], args=[json.dumps(DEAD_LETTER_FIELDS), *ids]
            )
        return [
            Replayed(_str(i), _str(r) if int(ok) else None, "" if int(ok) else _text(r))
            for i, ok, r in reply
        ]

    async def trim_before(self, stream: str, min_id: str) -> int:
        """Delete every entry older than ``min_id`` (XTRIM MINID, exact); returns how many."""
        with translated():
            return int(await self.client.xtrim(stream, minid=min_id, approximate=False))

    # -- retention ---------------------------------------------------------------------

    async def trim_acknowledged(self, stream: str, retention_ms: int, *, needs_group: bool) -> Trim:
        """Trim what every group has acknowledged and is older than ``retention_ms``, atomically.

        With ``needs_group`` a stream that has no group is left whole; without,
        its entries go by age alone (still never one some group has not acknowledged).
        """
        with translated():
            reply: Any = await self._trim_acknowledged(
                keys=[stream], args=[retention_ms, "1" if needs_group else "0"]
            )
        trimmed, length, min_id = reply
        return Trim(int(trimmed), int(length), _str(min_id) if min_id else None)

    async def try_lock(self, key: str, token: str, ttl_ms: int) -> bool:
        """SET NX PX: True if this call took the lock."""
        with translated():
            return bool(await self.client.set(key, token, nx=True, px=ttl_ms))

    async def unlock(self, key: str, token: str) -> None:
        """Release a lock this token holds; someone else's (ours expired) is left alone."""
        with translated():
            await self._unlock(keys=[key], args=[token])
