"""The shared sampler: throughput from the heartbeats' counters, and a failed reading kept apart."""

from __future__ import annotations

from printery.dashboard.sampler import Sampler
from printery.errors import RedisUnavailable
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from tests.support.dashboard import heartbeat_record, put_heartbeat


async def test_throughput_from_counter_deltas(own_fake_adapter: StreamAdapter, prefix: str) -> None:
    """Deltas of `processed` between samples make the rate and the per-minute history."""
    now = [1_700_000_000.0]
    sampler = Sampler(own_fake_adapter, Keys(prefix), clock=lambda: now[0])
    for processed in (100, 160, 220):
        record = heartbeat_record("d1", {"w": {"processed": processed}}, updated_at=now[0])
        await put_heartbeat(own_fake_adapter, prefix, record)
        snap = await sampler.sample()
        now[0] += 30
    assert 120 == sum(snap.per_minute)
    assert 2.0 == snap.rates[("d1", "w")]  # 120 messages over the 60 s seen


async def test_restarted_daemon_adds_nothing(own_fake_adapter: StreamAdapter, prefix: str) -> None:
    """A counter that went back (the daemon restarted) and a new daemon add no throughput."""
    now = [1_700_000_000.0]
    sampler = Sampler(own_fake_adapter, Keys(prefix), clock=lambda: now[0])
    await put_heartbeat(
        own_fake_adapter,
        prefix,
        heartbeat_record("d1", {"w": {"processed": 500}}, updated_at=now[0]),
    )
    await sampler.sample()
    now[0] += 10
    await put_heartbeat(
        own_fake_adapter, prefix, heartbeat_record("d1", {"w": {"processed": 3}}, updated_at=now[0])
    )
    await put_heartbeat(
        own_fake_adapter,
        prefix,
        heartbeat_record("d2", {"w": {"processed": 900}}, updated_at=now[0]),
    )
    snap = await sampler.sample()
    assert 0 == sum(snap.per_minute)


async def test_failed_reading_keeps_the_last_document(
    own_fake_adapter: StreamAdapter, prefix: str
) -> None:
    """When Redis fails, the snapshot keeps the last document and says why."""
    sampler = Sampler(own_fake_adapter, Keys(prefix))
    await put_heartbeat(own_fake_adapter, prefix, heartbeat_record("d1", {"w": {}}))
    good = await sampler.sample()

    async def broken(pattern: str) -> list[bytes]:
        raise RedisUnavailable("connection refused")

    own_fake_adapter.heartbeats = broken  # type: ignore[method-assign]
    bad = await sampler.sample()
    assert good.doc == bad.doc
    assert "cannot read Redis: connection refused" == bad.error
