"""Fixtures of the unit tier."""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest

from printery.redis.adapter import StreamAdapter


@pytest.fixture
async def own_fake_adapter() -> AsyncIterator[StreamAdapter]:
    """An adapter over a fakeredis server of this test's own (nothing shared between tests)."""
    adapter = StreamAdapter(fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()))
    yield adapter
    await adapter.close()
