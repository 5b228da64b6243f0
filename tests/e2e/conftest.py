"""Fixtures of the end-to-end tier: a client of the session Redis, a daemon's base settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.e2e.health_endpoint import HealthEndpoint
from tests.e2e.webhook_receiver import Receiver
from tests.e2e.workers import ECHO
from tests.support.redis_server import RedisServer


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A synchronous client of the session redis-server, for publishing and accounting."""
    with redis.Redis.from_url(redis_server.url) as found:
        yield found


@pytest.fixture
def echo_env(redis_server: RedisServer, prefix: str) -> dict[str, str]:
    """A daemon running EchoWorker on the session Redis, under this test's prefix."""
    return {
        "REDIS_URL": redis_server.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": ECHO,
        "BLOCK_MS": "200",
    }


@pytest.fixture
def endpoint() -> Iterator[HealthEndpoint]:
    """A loopback health endpoint, down (503) until the test sets ``endpoint.up``."""
    with HealthEndpoint() as found:
        yield found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver, not yet listening: the test starts it when the story needs it."""
    found = Receiver()
    yield found
    found.stop()
