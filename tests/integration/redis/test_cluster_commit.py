"""A commit on a Redis Cluster node: declared keys keep a cross-slot commit from acking.

A one-node cluster (cluster-enabled, every slot assigned to it) checks the
declared keys of a script as any cluster does. Before every key was declared,
on a cluster of several nodes the commit script acked its entry and then
failed on an output key another node holds, losing the outputs; now such a
commit is refused whole, before anything ran: by the adapter when told it
talks to a cluster, by the server (CROSSSLOT on the declared keys) otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from printery.errors import CrossSlot, RedisError
from printery.redis.adapter import StreamAdapter, connect
from printery.redis.slots import slot_of
from printery.redis.writes import Write
from tests.support.redis_server import RedisServer, free_port

pytestmark = [pytest.mark.timeout(30), pytest.mark.redis_server]

GROUP = "g"


@pytest.fixture
async def cluster_node(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server in cluster mode that owns all 16384 slots, its state ``ok``."""
    # The bus port is the port + 10000 unless given: past 55535 that is no port at all.
    bus = ("--cluster-port", str(free_port()))
    server = RedisServer(
        tmp_path / "redis",
        extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", *bus),
    )
    server.start()
    adapter = StreamAdapter(connect(server.url, socket_timeout=5, connect_timeout=2))
    await adapter.client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    with anyio.fail_after(10):
        while b"cluster_state:ok" not in await adapter.client.execute_command("CLUSTER", "INFO"):
            await anyio.sleep(0.05)  # the node's own cron marks the state: no event to await
    await adapter.close()
    yield server
    server.stop()


async def pending_ids(adapter: StreamAdapter, stream: str) -> list[str]:
    pending: Any = await adapter.client.xpending_range(stream, GROUP, min="-", max="+", count=10)
    return [p["message_id"].decode() for p in pending]


async def one_read_entry(adapter: StreamAdapter, stream: str) -> str:
    entry_id = await adapter.add(stream, {"n": "1"})
    await adapter.ensure_group(stream, GROUP)
    await adapter.read(stream, GROUP, "c1", count=10, block_ms=None)
    return entry_id


async def test_slot_of_agrees_with_the_servers_cluster_keyslot(cluster_node: RedisServer) -> None:
    """slot_of answers what CLUSTER KEYSLOT answers, for plain, tagged, odd and binary keys."""
    adapter = StreamAdapter(connect(cluster_node.url, socket_timeout=5, connect_timeout=2))
    keys: list[str | bytes] = [
        *(f"printery:deployment:{i}" for i in range(200)),
        "{orders}:in",
        "a{}{b}",
        "x{{y}}z",
        "déploiement ✓",
        b"\xff\x00{\xfe}",
    ]
    server = [int(await adapter.client.execute_command("CLUSTER", "KEYSLOT", k)) for k in keys]
    await adapter.close()
    assert server == [slot_of(k) for k in keys]


async def test_a_commit_whose_keys_share_a_hash_tag_acks_and_writes(
    cluster_node: RedisServer,
) -> None:
    """Stream and outputs under one hash tag: a cluster adapter acks and writes them."""
    adapter = StreamAdapter(
        connect(cluster_node.url, socket_timeout=5, connect_timeout=2), cluster=True
    )
    stream = "{orders}:in"
    entry_id = await one_read_entry(adapter, stream)
    writes = [
        Write.xadd("{orders}:out", {"in_id": entry_id}),
        Write.hset_latest("{orders}:registry", "api", "1", order_key="{orders}:order", order="a"),
    ]
    assert [True] == await adapter.commit(stream, GROUP, [(entry_id, writes)])
    assert [] == await pending_ids(adapter, stream)
    assert 1 == await adapter.length("{orders}:out")
    assert {"api": "1"} == await adapter.hash_all("{orders}:registry")
    await adapter.close()


async def test_a_cluster_adapter_refuses_a_cross_slot_commit_and_acks_nothing(
    cluster_node: RedisServer,
) -> None:
    """An output key in another slot: CrossSlot names it; still pending, nothing written."""
    adapter = StreamAdapter(
        connect(cluster_node.url, socket_timeout=5, connect_timeout=2), cluster=True
    )
    stream = "{orders}:in"
    entry_id = await one_read_entry(adapter, stream)
    writes = [Write.xadd("{orders}:out", {"n": "1"}), Write.hset("audit", {"n": "1"})]
    with pytest.raises(CrossSlot) as raised:
        await adapter.commit(stream, GROUP, [(entry_id, writes)])
    expected = (
        f"commit to '{{orders}}:in' refused before it was sent: 'audit' hashes to slot "
        f"{slot_of('audit')}, not to slot {slot_of('orders')} of '{{orders}}:in': "
        "on a Redis Cluster the keys of one commit must share a hash tag"
    )
    assert expected == str(raised.value)
    assert [entry_id] == await pending_ids(adapter, stream)
    assert (0, 0) == (await adapter.length("{orders}:out"), await adapter.client.exists("audit"))
    await adapter.close()


async def test_the_server_refuses_a_declared_cross_slot_commit_before_its_ack(
    cluster_node: RedisServer,
) -> None:
    """Unchecked (cluster=False), the cluster itself refuses the call whole: nothing acked."""
    adapter = StreamAdapter(connect(cluster_node.url, socket_timeout=5, connect_timeout=2))
    stream = "{orders}:in"
    entry_id = await one_read_entry(adapter, stream)
    with pytest.raises(RedisError, match="hash to the same slot"):
        await adapter.commit(stream, GROUP, [(entry_id, [Write.xadd("elsewhere", {"n": "1"})])])
    assert [entry_id] == await pending_ids(adapter, stream)
    assert 0 == await adapter.length("elsewhere")
    await adapter.close()
