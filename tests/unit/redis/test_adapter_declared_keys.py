"""Part of the adapter contract: every script call declares, in KEYS, every key its script touches.

Redis 7 does not enforce declared keys on a standalone server, but a Redis
Cluster routes (and refuses) a script by its declared keys only: a key touched
without being declared fails the script mid-way, after the XACK it ran first.
So the check is structural, on a real redis-server: MONITOR shows every
command each script ran, the server names each command's keys (COMMAND
GETKEYS), and each must be among the call's KEYS. Real server only: fakeredis
has no MONITOR.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from printery.redis import scripts
from printery.redis.adapter import StreamAdapter, connect
from printery.redis.replies import Entry
from printery.redis.writes import Write
from tests.support.monitor import Monitor, keys_of
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.timeout(30), pytest.mark.redis_server]

GROUP = "g"


@pytest.fixture
async def watched(tmp_path: Path) -> AsyncIterator[tuple[StreamAdapter, Monitor]]:
    """An adapter on a redis-server of its own (MONITOR sees every client), and the monitor."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    adapter = StreamAdapter(connect(server.url, socket_timeout=5, connect_timeout=2))
    monitor = Monitor("127.0.0.1", server.port)
    await monitor.start()
    yield adapter, monitor
    await adapter.close()
    server.stop()


async def every_script_call(adapter: StreamAdapter) -> None:
    """Call each adapter method that runs a script, on paths that reach every command in it."""
    stream, out, dead = "orders:in", "orders:out", "orders:in:dead"
    ids = [await adapter.add(stream, {"n": str(i)}) for i in range(4)]
    await adapter.ensure_group(stream, GROUP)
    await adapter.read(stream, GROUP, "c1", count=10, block_ms=None)
    await adapter.client.set("orders:taken", "a string")
    writes = [
        Write.xadd(out, {"in_id": ids[0], "raw": b"\xff\x00"}),
        Write.hset("orders:record", {"stage": "validated"}),
        Write.hset_latest(
            "orders:registry",
            "api",
            "1.0.0",
            order_key="orders:order",
            order="a",
            order_from=("orders:timeline", "at"),
        ),
        Write.capped_push("orders:log", "x", 3),
        Write.set_once("orders:marker", "m", 60),
        Write.expire("orders:record", 60),
    ]
    assert [True, "orders:taken holds a string, not a hash"] == await adapter.commit(
        stream, GROUP, [(ids[0], writes), (ids[1], [Write.hset("orders:taken", {"f": "v"})])]
    )
    assert {ids[1], ids[2]} == await adapter.refresh(stream, GROUP, "c1", ids[1:3])
    assert 1 == await adapter.hand_back(stream, GROUP, "c1", [ids[3]], uncount=True)
    reclaimed = await adapter.reclaim(stream, GROUP, "c1", (await _own(adapter, stream))[0])
    assert reclaimed is not None
    assert await adapter.forget_consumer(stream, GROUP, "c1") is False
    await adapter.client.xgroup_createconsumer(stream, GROUP, "gone")
    await adapter.client.xgroup_createconsumer(stream, GROUP, "alive")
    assert await adapter.heartbeat("hb:alive", "tok", '{"token": "tok"}', 60_000) is True
    with anyio.fail_after(5):  # idle_ms=0 needs a consumer idle for a whole millisecond
        while not await adapter.reap_consumers(stream, GROUP, idle_ms=0, heartbeat_prefix="hb:"):
            await anyio.sleep(0.002)
    await adapter.release_heartbeat("hb:alive", "tok")
    letter = await adapter.add(dead, {"n": "9", "error": "boom", "original_stream": stream})
    [replayed] = await adapter.replay_dead(dead, stream, [letter])
    assert replayed.new_id is not None
    trim = await adapter.trim_acknowledged(stream, 0, needs_group=True)
    assert trim.length >= 0
    assert await adapter.try_lock("orders:lock", "tok", 60_000) is True
    await adapter.unlock("orders:lock", "tok")
    # The registry's own step on a cluster (its two keys share a slot there).
    assert await adapter.set_latest(
        "orders:registry", "api", "2.0.0", order_key="orders:order", order="b"
    )


async def _own(adapter: StreamAdapter, stream: str) -> list[Entry]:
    return await adapter.read(stream, GROUP, "c1", count=10, block_ms=None, after="0-0")


async def test_every_script_call_declares_every_key_it_touches(
    watched: tuple[StreamAdapter, Monitor],
) -> None:
    """Each key each script command touches (per MONITOR and COMMAND GETKEYS) is in its KEYS."""
    adapter, monitor = watched
    await every_script_call(adapter)
    await monitor.stop(adapter.client)
    calls = monitor.script_calls()
    undeclared = []
    for call in calls:
        for command in call.ran:
            for key in await keys_of(adapter.client, command):
                if key not in call.declared:
                    undeclared.append((command[0].decode(), key.decode(errors="replace")))
    assert [] == undeclared
    every_script = {
        hashlib.sha1(getattr(scripts, name).encode()).hexdigest().encode()
        for name in scripts.__all__
    }
    assert every_script == {call.script for call in calls if call.ran}


async def test_the_commit_declares_the_stream_first_then_each_output_key_once(
    watched: tuple[StreamAdapter, Monitor],
) -> None:
    """KEYS of a commit: the stream, then every distinct output key once, in order of first use."""
    adapter, monitor = watched
    stream = "orders:in"
    ids = [await adapter.add(stream, {"n": str(i)}) for i in range(2)]
    await adapter.ensure_group(stream, GROUP)
    await adapter.read(stream, GROUP, "c1", count=10, block_ms=None)
    latest = Write.hset_latest("c", "f", "v", order_key="b", order="1")
    batch = [
        (ids[0], [Write.xadd("a", {"f": "1"}), Write.hset("b", {"f": "1"}), Write.expire("b", 9)]),
        (ids[1], [Write.xadd("a", {"f": "2"}), latest]),
    ]
    assert [True, True] == await adapter.commit(stream, GROUP, batch)
    await monitor.stop(adapter.client)
    call = monitor.script_calls()[-1]  # after the NOSCRIPT try, if any
    assert [b"orders:in", b"a", b"b", b"c"] == call.declared
