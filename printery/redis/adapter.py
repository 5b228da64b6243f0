"""The stream adapter: the one module that talks to Redis.

Every Redis exception is translated here (:func:`translated`), so the rest of
printery sees two conditions: :class:`RedisUnavailable` (degraded, reconnect)
and :class:`RedisPermanent` (credentials, ACL: stop, don't loop).

Multi-step operations are server-side scripts (printery.redis.scripts), each
atomic; ``commit`` is the one the delivery guarantee rests on.

Past 400 lines on purpose: one method per Redis operation, each a few lines
inside the one translation boundary; the values it returns are in
:mod:`printery.redis.replies`, the writes it commits in :mod:`printery.redis.writes`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from printery.errors import (
    CrossSlot,
    GroupMissing,
    RedisError,
    RedisOutOfMemory,
    RedisPermanent,
    RedisUnavailable,
)
from printery.redis import diagnose, scripts
from printery.redis.replies import (
    ConsumerInfo,
    Entry,
    GroupInfo,
    GroupStats,
    PendingEntry,
    Replayed,
    StreamInfo,
    Trim,
)
from printery.redis.slots import one_slot_problem
from printery.redis.writes import Write, commit_payload, outputs_problem

__all__ = [
    "DEAD_LETTER_FIELDS",
    "ConsumerInfo",
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

# What the runtime adds to a message when it dead-letters it (runtime._dead_letter_commit).
DEAD_LETTER_FIELDS: Final = (
    "error",
    "deliveries",
    "failed_at",
    "original_id",
    "original_stream",
    "group",
)


# redis-py strips the error code from the replies it has a class for ("OOM
# command not allowed…" arrives as OutOfMemoryError("command not allowed…")):
# those are classified by class, and the code is put back for the logs.
_STRIPPED_CODES: Final[dict[type[Exception], str]] = {
    rex.MasterDownError: "MASTERDOWN",  # before its base class, ClusterDownError
    rex.ClusterDownError: "CLUSTERDOWN",
    rex.MovedError: "MOVED",  # before its base class, AskError
    rex.AskError: "ASK",
    rex.ClusterCrossSlotError: "CROSSSLOT",
    rex.OutOfMemoryError: "OOM",
    rex.ReadOnlyError: "READONLY",
    rex.TryAgainError: "TRYAGAIN",
    rex.MasterDownError: "MASTERDOWN",
    rex.NoPermissionError: "NOPERM",
}
_STRIPPED_UNAVAILABLE: Final = (
    rex.OutOfMemoryError,
    rex.ReadOnlyError,
    rex.TryAgainError,
    # A Redis Cluster in a failover or a resharding: redis-py follows MOVED and
    # ASK itself and re-reads the slot map; what still reaches us passes.
    rex.ClusterDownError,  # and MasterDownError
    rex.AskError,  # and MovedError
    rex.ClusterError,  # "TTL exhausted": redirected too often in one call
)
# The cluster client's own errors about reaching the cluster (not Redis replies).
_CLUSTER_UNREACHABLE: Final = (
    "Redis Cluster cannot be connected",
    "All slots are not covered",
    "startup_nodes could not agree",
)


class DatabaseOutOfRange(RedisPermanent):
    """The URL's database index is past the server's ``databases``: ``ping`` names the count."""


def _refused(message: str) -> str:
    """A refusal of the credentials, said as one: never "cannot reach"."""
    if message.startswith("HELLO must be called with the client already authenticated"):
        return "refused: the server wants a password, and the URL gives none"
    if message.startswith("NOAUTH"):
        return f"refused: the server wants a password, and the URL gives none ({message})"
    if message.startswith("NOPERM"):
        return f"refused by the ACL: {message}"
    return f"refused the user or password: {message}"


def _with_code(exc: Exception) -> str:
    code = next((c for kind, c in _STRIPPED_CODES.items() if isinstance(exc, kind)), "")
    message = str(exc)
    return message if not code or message.startswith(code) else f"{code} {message}"


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Translate redis-py's exceptions into printery's; the one boundary that does it."""
    try:
        yield
    except rex.OutOfMemoryError as exc:
        raise RedisOutOfMemory(_with_code(exc)) from exc
    except _STRIPPED_UNAVAILABLE as exc:
        raise RedisUnavailable(_with_code(exc)) from exc
    except (rex.NoPermissionError, rex.ClusterCrossSlotError) as exc:
        raise RedisPermanent(_with_code(exc)) from exc
    except rex.SlotNotCoveredError as exc:
        raise RedisUnavailable(str(exc)) from exc
    except rex.RedisClusterException as exc:
        message = str(exc)
        if message.startswith(_CLUSTER_UNREACHABLE):
            raise RedisUnavailable(message) from exc
        if "Cluster mode is not enabled" in message:
            raise RedisPermanent(f"{message} (REDIS_MODE=cluster)") from exc
        raise RedisError(message) from exc
    except rex.ResponseError as exc:
        message = str(exc)
        # NOGROUP: the group is gone. UNBLOCKED: the stream was deleted under a
        # blocked XREADGROUP (Redis 7). Either way: recreate the group.
        if message.startswith(("NOGROUP", "UNBLOCKED")) or "no such key" in message:
            raise GroupMissing(message) from exc
        if message.startswith("OOM"):
            raise RedisOutOfMemory(message) from exc
        if message.startswith(
            ("LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "MOVED", "ASK ")
        ):
            raise RedisUnavailable(message) from exc
        if message.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
            raise RedisPermanent(_refused(message)) from exc
        if "DB index is out of range" in message:
            raise DatabaseOutOfRange(message) from exc
        raise RedisError(message) from exc  # unexpected: the supervisor counts a crash
    except (rex.AuthenticationError, rex.AuthorizationError) as exc:
        raise RedisPermanent(_refused(str(exc) or type(exc).__name__)) from exc
    except (rex.ConnectionError, rex.TimeoutError, OSError, TimeoutError) as exc:
        raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
    except AttributeError as exc:
        # redis-py's cluster client closes every node's connections when it
        # re-reads the slot map (a failover); a task of ours half-way through
        # connecting on one of them then finds its writer gone (None). That is
        # a connection lost, not a bug of ours: only when raised inside redis-py.
        if not _raised_in_redis_connection(exc):
            raise
        raise RedisUnavailable(f"connection closed during a reconnect: {exc}") from exc


def _raised_in_redis_connection(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.endswith(_REDIS_CONNECTION_FILES)


_REDIS_CONNECTION_FILES: Final = (
    os.path.join("redis", "asyncio", "connection.py"),
    os.path.join("redis", "connection.py"),
)


def connect(
    url: str, *, socket_timeout: float, connect_timeout: float, client_name: str | None = None
) -> aioredis.Redis:
    """A client that fails fast: one socket timeout, raw bytes.

    The only retry is one immediate reconnect on a closed connection (a pooled
    socket the server dropped, say after a restart). Timeouts are never retried
    here, so a stalled Redis is noticed within one socket timeout; the runtime
    reconnects with backoff, and its commit script is safe to send twice.
    """
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(rex.ConnectionError,)),
        retry_on_timeout=False,
        health_check_interval=0,
        client_name=client_name,
    )


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class StreamAdapter:
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

    async def list_tail(self, key: str, count: int) -> list[str]:
        """The last ``count`` items of a list (LRANGE -count -1), oldest first."""
        with translated():
            items: list[Any] = await self.client.lrange(key, -count, -1)
        return [_text(i) for i in items]

    async def get(self, key: str) -> str | None:
        with translated():
            value: Any = await self.client.get(key)
        return None if value is None else _text(value)

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


def _inactive_ms(consumer: Mapping[str, Any]) -> int:
    """How long a consumer has not read: ``inactive`` (Redis 7.2+, Valkey), else ``idle``.

    ``inactive`` is -1 for a consumer that never read successfully: then only
    ``idle`` says how long it has been there.
    """
    inactive = int(consumer.get("inactive", -1))
    return inactive if inactive >= 0 else int(consumer["idle"])


def _text(value: bytes | str) -> str:
    """Values written by others may hold any bytes: never fail a read on decoding."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
