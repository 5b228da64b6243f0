"""Retention against a real redis-server: what a trim pass may remove, and what it never may.

Entries get explicit ids a known time before Redis's clock, so "older than the
retention" needs no waiting; each test runs whole trim passes of a real
:class:`Trimmer` over every stream its prefix owns.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from printery.daemon.retention import Target, Trimmer, targets
from printery.lifecycle import StreamTrimmed, TrimFailed
from printery.redis.adapter import StreamAdapter, Trim, connect
from printery.redis.keys import Keys
from printery.settings import load_settings
from tests.support.events import Recorder
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis_server, pytest.mark.timeout(30)]

HOUR_MS = 3_600_000


def trimmer(adapter: StreamAdapter, prefix: str, recorder: Recorder, **env: str) -> Trimmer:
    settings = load_settings({}, {"STREAM_PREFIX": prefix, "STREAM_RETENTION": "3600", **env})
    keys = Keys(prefix)
    return Trimmer(adapter, keys, targets(settings, keys), interval=60, emit=recorder)


async def aged(adapter: StreamAdapter, stream: str, count: int, age_ms: int) -> list[str]:
    """``count`` entries, each about ``age_ms`` older than Redis's clock, oldest first."""
    now = await adapter.server_time_ms()
    ids = [f"{now - age_ms}-{n}" for n in range(count)]
    for entry_id in ids:
        await adapter.client.xadd(stream, {"n": entry_id}, id=entry_id)
    return ids


async def read(adapter: StreamAdapter, stream: str, group: str, count: int) -> list[str]:
    found: Any = await adapter.client.xreadgroup(group, "c", {stream: ">"}, count=count)
    return [i.decode() for i, _ in found[0][1]] if found else []


async def kept(adapter: StreamAdapter, stream: str) -> list[str]:
    return [e.id for e in await adapter.entries(stream)]


def trimmed(recorder: Recorder) -> dict[str, int]:
    """Entries trimmed per stream, over every pass recorded."""
    found: dict[str, int] = {}
    for event in recorder.of(StreamTrimmed):
        assert isinstance(event, StreamTrimmed)
        found[event.stream] = found.get(event.stream, 0) + event.trimmed
    return found


async def test_entries_pending_in_one_group_but_acked_in_another_are_never_trimmed(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """Group A acked everything, group B still holds some: only what both finished goes."""
    recorder = Recorder()
    stream = Keys(prefix).validated
    ids = await aged(real_adapter, stream, 10, 2 * HOUR_MS)
    for group in ("a", "b"):
        await real_adapter.ensure_group(stream, group)
    await real_adapter.client.xack(stream, "a", *await read(real_adapter, stream, "a", 10))
    held = await read(real_adapter, stream, "b", 10)
    await real_adapter.client.xack(stream, "b", *held[:4], *held[7:])  # ids[4:7] pending in b

    assert 4 == await trimmer(real_adapter, prefix, recorder).trim_once()
    assert ids[4:] == await kept(real_adapter, stream)
    assert {stream: 4} == {s: n for s, n in trimmed(recorder).items() if n}
    pending: Any = await real_adapter.client.xpending(stream, "b")
    assert 3 == pending["pending"]


async def test_trimming_keeps_every_groups_lag_known(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """Only what every group read goes, so Redis can still count each group's lag (KEDA's input)."""
    recorder = Recorder()
    stream = Keys(prefix).started
    await aged(real_adapter, stream, 10, 2 * HOUR_MS)
    for group, count in (("validator", 6), ("audit", 8)):
        await real_adapter.ensure_group(stream, group)
        await real_adapter.client.xack(
            stream, group, *await read(real_adapter, stream, group, count)
        )
    assert 6 == await trimmer(real_adapter, prefix, recorder).trim_once()
    await real_adapter.add(stream, {"n": "new"})
    info = await real_adapter.stream_info(stream)
    assert info is not None
    assert {"validator": 5, "audit": 3} == {g.name: g.lag for g in info.groups}


async def test_unread_entries_are_never_trimmed_however_old(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """A group that read half of a day-old stream keeps the other half, unread, whole."""
    recorder = Recorder()
    stream = Keys(prefix).started
    ids = await aged(real_adapter, stream, 10, 24 * HOUR_MS)
    await real_adapter.ensure_group(stream, "validator")
    await real_adapter.client.xack(
        stream, "validator", *await read(real_adapter, stream, "validator", 5)
    )

    pass_ = trimmer(real_adapter, prefix, recorder)
    assert 5 == await pass_.trim_once()
    assert 0 == await pass_.trim_once()
    assert ids[5:] == await kept(real_adapter, stream)
    assert ids[5:] == await read(real_adapter, stream, "validator", 10)


async def test_a_stream_with_no_group_yet_is_left_whole_and_read_in_full_later(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """An output nobody reads yet keeps every old entry; its reader, when it comes, gets all."""
    recorder = Recorder()
    stream = Keys(prefix).dependencies_satisfied
    ids = await aged(real_adapter, stream, 6, 5 * HOUR_MS)
    assert 0 == await trimmer(real_adapter, prefix, recorder).trim_once()
    assert StreamTrimmed(stream, 0, 6) in recorder.of(StreamTrimmed)
    await real_adapter.ensure_group(stream, "health-monitor")
    assert ids == await read(real_adapter, stream, "health-monitor", 10)


async def test_the_audit_stream_is_trimmed_by_age_alone(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """notifications:delivered has no reader: entries older than STREAM_RETENTION go, young stay."""
    recorder = Recorder()
    stream = Keys(prefix).delivered
    old = await aged(real_adapter, stream, 3, 2 * HOUR_MS)
    young = await aged(real_adapter, stream, 2, 60_000)
    assert 3 == await trimmer(real_adapter, prefix, recorder).trim_once()
    assert young == await kept(real_adapter, stream)
    assert [] == [i for i in old if i in await kept(real_adapter, stream)]


async def test_dead_letters_go_by_their_own_retention(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """DEAD_LETTER_RETENTION, not STREAM_RETENTION, ages `<stream>:dead`; none keeps every one."""
    recorder = Recorder()
    keys = Keys(prefix)
    dead = Keys.dead(keys.started)
    await aged(real_adapter, dead, 2, 3 * HOUR_MS)
    recent = await aged(real_adapter, dead, 2, HOUR_MS // 2)
    acked = await aged(real_adapter, keys.notifications, 2, HOUR_MS // 2)
    await real_adapter.ensure_group(keys.notifications, "notifier")
    await real_adapter.client.xack(
        keys.notifications, "notifier", *await read(real_adapter, keys.notifications, "notifier", 9)
    )

    keep_all = trimmer(real_adapter, prefix, recorder, DEAD_LETTER_RETENTION="none")
    assert 0 == await keep_all.trim_once()
    assert 4 == await real_adapter.length(dead)
    # Dead letters kept two hours, acknowledged entries kept ten minutes.
    short = trimmer(
        real_adapter, prefix, recorder, STREAM_RETENTION="600", DEAD_LETTER_RETENTION="7200"
    )
    assert 4 == await short.trim_once()
    assert recent == await kept(real_adapter, dead)
    assert [] == [i for i in acked if i in await kept(real_adapter, keys.notifications)]


async def test_two_trimmers_racing_take_turns(real_adapter: StreamAdapter, prefix: str) -> None:
    """While one daemon trims a stream the other skips it; once released, the other trims."""
    keys = Keys(prefix)
    stream = keys.delivered
    await aged(real_adapter, stream, 5, 2 * HOUR_MS)
    inside, go_on = anyio.Event(), anyio.Event()

    class Slow(StreamAdapter):
        async def trim_acknowledged(self, *args: Any, **kwargs: Any) -> Trim:
            inside.set()
            await go_on.wait()
            return await super().trim_acknowledged(*args, **kwargs)

    first_events, second_events = Recorder(), Recorder()
    only = [Target(stream, 3600, by_age=True)]
    first = Trimmer(Slow(real_adapter.client), keys, only, interval=60, emit=first_events)
    second = Trimmer(real_adapter, keys, only, interval=60, emit=second_events)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.trim_once)
        await inside.wait()
        assert first.token.encode() == await real_adapter.client.get(keys.trim_lock(stream))
        assert 0 == await second.trim_once()  # the lock is held: skipped, length reported
        assert [StreamTrimmed(stream, 0, 5)] == second_events.of(StreamTrimmed)
        go_on.set()
    assert [StreamTrimmed(stream, 5, 0)] == first_events.of(StreamTrimmed)
    assert None is await real_adapter.client.get(keys.trim_lock(stream))
    await aged(real_adapter, stream, 2, 2 * HOUR_MS)
    assert 2 == await second.trim_once()  # its turn now


async def naive_trim(adapter: StreamAdapter, stream: str, between: Any) -> int:
    """The cut computed from separate reads, as a client could: pending first, then the rest."""
    summary: Any = await adapter.client.xpending(stream, "g")
    await between()
    groups: Any = await adapter.client.xinfo_groups(stream)
    last = groups[0]["last-delivered-id"].decode()
    ms, seq = last.split("-")
    bound = f"{ms}-{int(seq) + 1}"
    if summary["pending"]:
        bound = min(bound, summary["min"].decode())
    return int(await adapter.client.xtrim(stream, minid=bound, approximate=False))


async def test_a_group_reading_between_the_check_and_the_trim_loses_nothing(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """Read apart, a read in between puts pending entries below the cut; in the script, never."""
    stream = f"{prefix}:race"
    ids = await aged(real_adapter, stream, 8, 2 * HOUR_MS)
    await real_adapter.ensure_group(stream, "g")
    await real_adapter.client.xack(stream, "g", *await read(real_adapter, stream, "g", 4))
    newly: list[str] = []

    async def group_reads() -> None:
        newly.extend(await read(real_adapter, stream, "g", 4))  # ids[4:], now pending

    # The hazard the script exists for: the naive cut trims the four entries just handed out.
    assert 8 == await naive_trim(real_adapter, stream, group_reads)
    assert (ids[4:], []) == (newly, await kept(real_adapter, stream))

    stream = f"{prefix}:atomic"
    ids = await aged(real_adapter, stream, 8, 2 * HOUR_MS)
    await real_adapter.ensure_group(stream, "g")
    await real_adapter.client.xack(stream, "g", *await read(real_adapter, stream, "g", 4))
    async with anyio.create_task_group() as tg:  # the read lands before or after: never inside
        tg.start_soon(read, real_adapter, stream, "g", 4)
        tg.start_soon(
            functools.partial(real_adapter.trim_acknowledged, needs_group=True), stream, HOUR_MS
        )
    assert ids[4:] == await kept(real_adapter, stream)


@pytest.mark.timeout(60)
async def test_concurrent_reads_acks_and_trims_lose_no_entry(
    redis_server: RedisServer, prefix: str
) -> None:
    """Two consumers read, hold and ack while trims run every few ms: every entry read, whole."""
    stream = f"{prefix}:busy"
    clients = [aioredis.Redis.from_url(redis_server.url, socket_timeout=5) for _ in range(4)]
    producer, *readers, trimming = clients
    adapter = StreamAdapter(trimming)
    await producer.xgroup_create(stream, "g", id="0", mkstream=True)
    published: list[bytes] = []
    seen: list[bytes] = []
    holes: list[bytes] = []
    done = anyio.Event()

    async def produce() -> None:
        for n in range(1000):
            published.append(await producer.xadd(stream, {"n": str(n)}))
            if n % 50 == 0:
                await anyio.sleep(0)
        done.set()

    async def consume(client: aioredis.Redis, name: str) -> None:
        held: list[bytes] = []
        while not done.is_set() or len(seen) < len(published):
            found: Any = await client.xreadgroup("g", name, {stream: ">"}, count=7, block=20)
            for entry_id, fields in found[0][1] if found else []:
                (holes if not fields else seen).append(entry_id)
                held.append(entry_id)
            if len(held) > 20:  # hold some a while: pending across several trims
                await client.xack(stream, "g", *held[:10])
                del held[:10]
            again: Any = await client.xreadgroup("g", name, {stream: "0"}, count=100)
            holes.extend(i for i, f in (again[0][1] if again else []) if not f)
        if held:
            await client.xack(stream, "g", *held)

    async def trim() -> None:
        while not done.is_set() or len(seen) < len(published):
            await adapter.trim_acknowledged(stream, 1, needs_group=True)
            await anyio.sleep(0.003)

    try:
        with anyio.fail_after(45):  # a loaded machine; the test proves loss, not speed
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                for n, client in enumerate(readers):
                    tg.start_soon(consume, client, f"c{n}")
                tg.start_soon(trim)
        assert [] == holes
        assert sorted(published) == sorted(seen)
        newest = int(published[-1].split(b"-")[0])
        while await adapter.server_time_ms() <= newest + 2:  # every entry past the 1 ms retention
            await anyio.sleep(0.001)
        await adapter.trim_acknowledged(stream, 1, needs_group=True)
        assert 0 == await adapter.length(stream)
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
def small_redis(tmp_path: Any) -> Iterator[RedisServer]:
    """A redis-server of this test's own, with noeviction as deploy/README asks."""
    server = RedisServer(tmp_path / "redis", extra=("--maxmemory-policy", "noeviction"))
    server.start()
    yield server
    server.stop()


async def test_out_of_memory_the_trim_still_runs_and_writes_resume(
    small_redis: RedisServer, prefix: str
) -> None:
    """With Redis refusing writes (maxmemory, noeviction), the trim frees what was acked."""
    adapter = StreamAdapter(connect(small_redis.url, socket_timeout=5, connect_timeout=2))
    recorder = Recorder()
    try:
        stream = Keys(prefix).started
        now = await adapter.server_time_ms()
        pipe = adapter.client.pipeline(transaction=False)
        for n in range(3000):
            pipe.xadd(stream, {"data": "x" * 1000}, id=f"{now - 2 * HOUR_MS}-{n}")
        await pipe.execute()
        await adapter.ensure_group(stream, "validator")
        await adapter.client.xgroup_setid(stream, "validator", id="$")
        used = int((await adapter.client.info("memory"))["used_memory"])
        await adapter.client.config_set("maxmemory", used - 1_000_000)
        with pytest.raises(Exception, match=r"OOM|maxmemory"):
            await adapter.client.xadd(stream, {"n": "refused"})

        assert 3000 == await trimmer(adapter, prefix, recorder).trim_once()
        assert [] == recorder.of(TrimFailed)
        await adapter.client.xadd(stream, {"n": "taken again"})
    finally:
        await adapter.close()


async def test_a_redis_outage_is_reported_and_the_next_pass_trims(
    own_redis: RedisServer, prefix: str
) -> None:
    """Redis down: the pass reports TrimFailed once and returns; Redis back: the next pass trims."""
    adapter = StreamAdapter(connect(own_redis.url, socket_timeout=1, connect_timeout=1))
    recorder = Recorder()
    try:
        stream = Keys(prefix).delivered
        await aged(adapter, stream, 4, 2 * HOUR_MS)
        passes = trimmer(adapter, prefix, recorder)
        own_redis.stop()
        assert 0 == await passes.trim_once()
        failures = recorder.of(TrimFailed)
        assert [Keys(prefix).started] == [f.stream for f in failures]  # type: ignore[attr-defined]
        own_redis.start()
        assert 4 == await passes.trim_once()
    finally:
        await adapter.close()
