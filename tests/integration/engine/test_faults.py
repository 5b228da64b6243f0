"""The stream runtime under faults, against a real redis-server.

Each test ends with an accounting: every input is an output exactly once, a
dead letter with its reason, or pending for a live consumer.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from printery.errors import RedisUnavailable
from printery.lifecycle import (
    HandlerHung,
    HandlerRaised,
    Outcome,
    RedisConnectivity,
    WorkerCrashed,
    WorkerRestartScheduled,
)
from printery.message import Message
from printery.redis.adapter import StreamAdapter, connect
from printery.redis.writes import Write
from printery.supervisor.restarts import RestartPolicy
from printery.worker import WorkerDeps
from tests.support.events import Recorder, handled
from tests.support.harness import make_deps, running
from tests.support.redis_server import RedisServer
from tests.support.workers import EchoWorker

pytestmark = pytest.mark.timeout(30)


async def out_ids(adapter: StreamAdapter, worker: EchoWorker) -> list[str]:
    entries = await adapter.client.xrange(worker.out)
    return [fields[b"in_id"].decode() for _, fields in entries]


async def test_ack_only_after_the_handler_finished(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """While the handler runs the message is pending; after it, acked with its output."""
    recorder = Recorder()
    entered, release = anyio.Event(), anyio.Event()

    class Gated(EchoWorker):
        async def handle(self, message: Message) -> Sequence[Write]:
            entered.set()
            await release.wait()
            return await super().handle(message)

    worker = Gated(make_deps(real_adapter, prefix))
    entry_id = await real_adapter.add(worker.stream, {"n": "1"})
    async with running(worker, recorder=recorder):
        with anyio.fail_after(5):
            await entered.wait()
        stats = await real_adapter.group_stats(worker.stream, worker.group)
        assert stats is not None
        assert (stats.pending, await real_adapter.client.xlen(worker.out)) == (1, 0)
        release.set()
        await recorder.wait_for(lambda ev: len(handled(ev)) == 1)
    stats = await real_adapter.group_stats(worker.stream, worker.group)
    assert stats is not None
    assert (stats.pending, await out_ids(real_adapter, worker)) == (0, [entry_id])


async def test_commit_retried_after_a_stall_writes_outputs_once(
    own_redis: RedisServer, prefix: str
) -> None:
    """SIGSTOP while the commit is in flight: the retried commit never duplicates outputs."""
    adapter = StreamAdapter(connect(own_redis.url, socket_timeout=1.5, connect_timeout=1))
    recorder = Recorder()

    class StallsOnCommit(EchoWorker):
        async def handle(self, message: Message) -> Sequence[Write]:
            writes = await super().handle(message)
            if message.deliveries == 1:
                own_redis.pause()  # the commit that follows is sent into a stalled server
            return writes

    worker = StallsOnCommit(make_deps(adapter, prefix, REDIS_SOCKET_TIMEOUT="1.5"))
    entry_id = await adapter.add(worker.stream, {"n": "1"})
    async with running(worker, recorder=recorder):
        await recorder.wait_for(
            lambda ev: any(isinstance(e, RedisConnectivity) and not e.up for e in ev)
        )
        own_redis.resume()  # the stalled commit now runs; the retry must find it acked
        await recorder.wait_for(lambda ev: len(handled(ev)) == 1)
    assert await out_ids(adapter, worker) == [entry_id]
    stats = await adapter.group_stats(worker.stream, worker.group)
    assert stats is not None
    assert stats.pending == 0
    await adapter.close()


async def test_dead_consumers_message_is_claimed_after_claim_idle(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """A message left pending by a consumer that died is claimed and handled by a live one."""
    recorder = Recorder()
    worker = EchoWorker(
        make_deps(real_adapter, prefix, CLAIM_IDLE_MS="600", CLAIM_INTERVAL_MS="100")
    )
    await real_adapter.ensure_group(worker.stream, worker.group)
    entry_id = await real_adapter.add(worker.stream, {"n": "1"})
    ghost = await real_adapter.read(worker.stream, worker.group, "ghost", count=10, block_ms=None)
    assert [e.id for e in ghost] == [entry_id]
    async with running(worker, recorder=recorder):
        await recorder.wait_for(lambda ev: len(handled(ev)) == 1)
    [event] = handled(recorder.events)
    assert (event.message_id, event.deliveries, event.outcome) == (entry_id, 2, Outcome.ACKED)
    assert await out_ids(real_adapter, worker) == [entry_id]


async def test_slow_handler_is_not_stolen_by_another_consumer(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """A handler outliving CLAIM_IDLE_MS keeps its message: handled once, one output."""
    env = {"CLAIM_IDLE_MS": "600", "CLAIM_INTERVAL_MS": "100"}
    first, second = Recorder(), Recorder()
    slow = EchoWorker(make_deps(real_adapter, prefix, "c1", **env))
    other = EchoWorker(make_deps(real_adapter, prefix, "c2", **env))
    entry_id = await real_adapter.add(slow.stream, {"sleep": "2.0"})  # > 3 × CLAIM_IDLE_MS
    async with running(slow, recorder=first):
        assert slow.handling is not None
        with anyio.fail_after(5):
            await slow.handling.wait()
        async with running(other, recorder=second):
            await first.wait_for(lambda ev: len(handled(ev)) == 1)
    assert (slow.calls, other.calls) == ([(entry_id, 1)], [])
    assert await out_ids(real_adapter, slow) == [entry_id]


async def test_max_deliveries_then_dead_letter_with_reason(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """Retried past MAX_DELIVERIES, a permanent failure, and bad bytes: each dead-lettered."""
    recorder = Recorder()
    worker = EchoWorker(make_deps(real_adapter, prefix, MAX_DELIVERIES="3"))
    retried = await real_adapter.add(worker.stream, {"fail": "retry"})
    raising = await real_adapter.add(worker.stream, {"fail": "raise"})
    permanent = await real_adapter.add(worker.stream, {"fail": "permanent"})
    garbage = await real_adapter.add(worker.stream, {"n": b"\xff\xfe"})
    good = await real_adapter.add(worker.stream, {"n": "ok"})
    async with running(worker, recorder=recorder):
        await recorder.wait_for(
            lambda ev: (
                len(handled(ev, Outcome.DEAD_LETTERED)) == 4
                and len(handled(ev, Outcome.ACKED)) == 1
            )
        )
    dead = await real_adapter.client.xrange(f"{worker.stream}:dead")
    reasons = {
        f[b"original_id"].decode(): (f[b"error"].decode(), int(f[b"deliveries"])) for _, f in dead
    }
    assert reasons == {
        retried: ("asked to retry (after 3 deliveries)", 3),
        raising: ("handler raised ValueError: asked to raise (after 3 deliveries)", 3),
        permanent: ("asked to dead-letter", 1),
        garbage: ("field 'n' is not UTF-8", 1),
    }
    assert await out_ids(real_adapter, worker) == [good]
    assert [f[b"group"] for _, f in dead] == [b"echo"] * 4
    stats = await real_adapter.group_stats(worker.stream, worker.group)
    assert stats is not None
    assert stats.pending == 0


async def test_a_handler_returning_no_outputs_is_retried_not_a_crash(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """A forgotten ``return``: retried as a handler error, dead-lettered with what it returned."""
    recorder = Recorder()
    worker = EchoWorker(make_deps(real_adapter, prefix, MAX_DELIVERIES="2"))
    broken = await real_adapter.add(worker.stream, {"fail": "return-none"})
    good = await real_adapter.add(worker.stream, {"n": "ok"})
    async with running(worker, recorder=recorder) as manager:
        await recorder.wait_for(
            lambda ev: (
                len(handled(ev, Outcome.DEAD_LETTERED)) == 1
                and len(handled(ev, Outcome.ACKED)) == 1
            )
        )
        assert manager.status()["echo"].state.value == "running"
    assert recorder.of(WorkerCrashed) == []
    reason = "handler returned NoneType, not a list of Write"
    assert [e.error for e in recorder.of(HandlerRaised)] == [reason, reason]
    dead = await real_adapter.client.xrange(f"{worker.stream}:dead")
    assert [(f[b"original_id"].decode(), f[b"error"].decode()) for _, f in dead] == [
        (broken, f"{reason} (after 2 deliveries)")
    ]
    assert await out_ids(real_adapter, worker) == [good]


async def test_a_handler_failing_on_a_redis_outage_spends_no_delivery(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """Redis errors inside the handler retry the message in the same delivery, past the limit."""

    class RedisTrouble(EchoWorker):
        async def handle(self, message: Message) -> Sequence[Write]:
            if len(self.calls) < 4:  # more failures than MAX_DELIVERIES allows
                self.calls.append((message.id, message.deliveries))
                raise RedisUnavailable("Timeout reading from redis:6379")
            return await super().handle(message)

    recorder = Recorder()
    worker = RedisTrouble(
        make_deps(real_adapter, prefix, MAX_DELIVERIES="2", RETRY_BACKOFF_MS="10")
    )
    entry_id = await real_adapter.add(worker.stream, {"n": "1"})
    async with running(worker, recorder=recorder):
        await recorder.wait_for(lambda ev: len(handled(ev, Outcome.ACKED)) == 1)
    assert [(entry_id, 1)] * 5 == worker.calls  # handled five times, one delivery
    assert 0 == await real_adapter.client.xlen(f"{worker.stream}:dead")
    retried = handled(recorder.events, Outcome.RETRIED)
    assert ["Redis unavailable: Timeout reading from redis:6379"] * 4 == [e.reason for e in retried]


async def test_own_pending_entries_are_handled_at_start(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """Entries delivered to this consumer but never seen (a lost read) are handled at once."""
    recorder = Recorder()
    worker = EchoWorker(make_deps(real_adapter, prefix, "c1", CLAIM_IDLE_MS="60000"))
    await real_adapter.ensure_group(worker.stream, worker.group)
    ids = [await real_adapter.add(worker.stream, {"n": str(i)}) for i in range(3)]
    lost = await real_adapter.read(worker.stream, worker.group, "c1", count=10, block_ms=None)
    assert [e.id for e in lost] == ids
    async with running(worker, recorder=recorder):
        await recorder.wait_for(lambda ev: len(handled(ev)) == 3, timeout=5)  # ≪ CLAIM_IDLE_MS
    assert sorted(await out_ids(real_adapter, worker)) == sorted(ids)


async def test_drain_hands_back_messages_that_never_started(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """On drain, read-but-unstarted messages become claimable by a live consumer at once."""
    recorder = Recorder()
    worker = EchoWorker(
        make_deps(real_adapter, prefix, "c1", ECHO_CONCURRENCY="1", CLAIM_IDLE_MS="60000")
    )
    ids = [await real_adapter.add(worker.stream, {"sleep": "0.3"}) for _ in range(5)]
    async with running(worker, recorder=recorder):
        assert worker.handling is not None
        with anyio.fail_after(5):
            await worker.handling.wait()  # the first is running; the drain starts now
    # The one that started finished and was acked; the other four were handed back.
    assert await out_ids(real_adapter, worker) == ids[:1]
    _, claimed, _ = await real_adapter.autoclaim(
        worker.stream, worker.group, "c2", min_idle_ms=60000, start="0-0", count=10
    )
    assert [e.id for e in claimed] == ids[1:]
    assert [1, 1, 1, 1] == [e.deliveries for e in claimed]  # never started: not counted


async def test_redis_restart_degrades_then_recovers_losing_nothing(
    own_redis: RedisServer, prefix: str
) -> None:
    """Redis stopped and started (AOF): degraded, reconnected, no restart spent, all handled."""
    adapter = StreamAdapter(connect(own_redis.url, socket_timeout=2, connect_timeout=1))
    recorder = Recorder()
    worker = EchoWorker(make_deps(adapter, prefix, REDIS_SOCKET_TIMEOUT="2"))
    first = [await adapter.add(worker.stream, {"n": str(i)}) for i in range(50)]
    async with running(worker, recorder=recorder, supervised=True) as manager:
        await recorder.wait_for(lambda ev: len(handled(ev)) == 50)
        own_redis.stop()
        await recorder.wait_for(
            lambda ev: any(isinstance(e, RedisConnectivity) and not e.up for e in ev)
        )
        assert manager.status()["echo"].state.value == "degraded"
        assert not manager.is_ready()
        own_redis.start()
        await recorder.wait_for(
            lambda ev: any(isinstance(e, RedisConnectivity) and e.up for e in ev), timeout=15
        )
        second = [await adapter.add(worker.stream, {"n": str(i)}) for i in range(50)]
        await recorder.wait_for(lambda ev: len(handled(ev)) == 100)
        assert manager.status()["echo"].state.value == "running"
    assert sorted(await out_ids(adapter, worker)) == sorted(first + second)
    assert [e for e in recorder.events if isinstance(e, WorkerRestartScheduled)] == []
    await adapter.close()


async def test_retry_during_drain_hands_back_and_spares_the_others(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """A handler that says retry while draining hands its message back; others still commit."""
    recorder = Recorder()
    both = anyio.Event()

    class SignalsWhenBothRun(EchoWorker):
        async def handle(self, message: Message) -> Sequence[Write]:
            if len(self.calls) == 1:
                both.set()  # this is the second call: both handlers are running
            return await super().handle(message)

    worker = SignalsWhenBothRun(make_deps(real_adapter, prefix, "c1", CLAIM_IDLE_MS="60000"))
    retried = await real_adapter.add(worker.stream, {"sleep": "0.3", "fail": "retry"})
    finished = await real_adapter.add(worker.stream, {"sleep": "0.6"})
    async with running(worker, recorder=recorder):
        with anyio.fail_after(5):
            await both.wait()  # the drain starts with both in flight
    assert await out_ids(real_adapter, worker) == [finished]
    _, claimed, _ = await real_adapter.autoclaim(
        worker.stream, worker.group, "c2", min_idle_ms=60000, start="0-0", count=10
    )
    assert [(retried, 2)] == [(e.id, e.deliveries) for e in claimed]  # a retry counts


async def test_a_wait_cut_short_by_the_drain_is_handed_back_uncounted(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """Draining during pause() hands the message back without spending a delivery.

    A health watch interrupted by five rolling restarts must not be
    dead-lettered for MAX_DELIVERIES it never failed.
    """
    waiting = anyio.Event()

    class Waits(EchoWorker):
        async def handle(self, message: Message) -> Sequence[Write]:
            waiting.set()
            await self.pause(3600)
            return []

    def deps() -> WorkerDeps:
        return make_deps(real_adapter, prefix, "c1", CLAIM_IDLE_MS="60000")

    entry_id = await real_adapter.add(Waits(deps()).stream, {"n": "1"})
    for _ in range(3):  # three drains; from the second run on it is c1's own pending entry
        worker = Waits(deps())
        waiting = anyio.Event()
        async with running(worker, recorder=Recorder()):
            with anyio.fail_after(5):
                await waiting.wait()
    _, claimed, _ = await real_adapter.autoclaim(
        worker.stream, worker.group, "c2", min_idle_ms=60000, start="0-0", count=10
    )
    assert [(entry_id, 1)] == [(e.id, e.deliveries) for e in claimed]


async def test_output_key_of_the_wrong_type_dead_letters_without_acking_first(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """WRONGTYPE on an output is found before the ack: dead-lettered with the reason."""
    recorder = Recorder()
    worker = EchoWorker(make_deps(real_adapter, prefix))
    await real_adapter.client.set(worker.out, "not a stream")
    entry_id = await real_adapter.add(worker.stream, {"n": "1"})
    async with running(worker, recorder=recorder) as manager:
        await recorder.wait_for(lambda ev: len(handled(ev, Outcome.DEAD_LETTERED)) == 1)
        assert manager.status()["echo"].state.value == "running"
    dead = await real_adapter.client.xrange(f"{worker.stream}:dead")
    assert [(f[b"original_id"].decode(), f[b"error"].decode()) for _, f in dead] == [
        (entry_id, f"cannot write the outputs: {worker.out} holds a string, not a stream")
    ]
    stats = await real_adapter.group_stats(worker.stream, worker.group)
    assert stats is not None
    assert stats.pending == 0


async def test_a_stuck_handler_is_cut_alone_and_its_message_retried(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """A handler stuck without progress is cut after its hang timeout, alone: its message is
    retried (a delivery spent), the others flow, and the worker never restarts."""
    recorder = Recorder()

    class StuckOnce(EchoWorker):
        async def handle(self, message: Message) -> Sequence[Write]:
            if message.fields.get("n") == "stuck" and message.deliveries == 1:
                await anyio.sleep_forever()  # no beat: stuck
            return await super().handle(message)

    deps = make_deps(real_adapter, prefix, ECHO_HANG_TIMEOUT="0.5", RETRY_BACKOFF_MS="10")
    worker = StuckOnce(deps)
    stuck = await real_adapter.add(worker.stream, {"n": "stuck"})
    async with running(
        worker,
        recorder=recorder,
        supervised=True,
        health_check_interval=0.1,
        policy=RestartPolicy(backoff_s=0.01, backoff_max_s=0.01),
    ) as manager:
        others = [await real_adapter.add(worker.stream, {"n": str(n)}) for n in range(5)]
        await recorder.wait_for(lambda ev: len(handled(ev, Outcome.ACKED)) == 6, timeout=15)
        assert manager.status()["echo"].restarts == 0
    assert [] == [e for e in recorder.events if isinstance(e, WorkerCrashed)]
    [hung] = [e for e in recorder.events if isinstance(e, HandlerHung)]
    assert (worker.stream, stuck) == (hung.stream, hung.message_id)
    [retried] = handled(recorder.events, Outcome.RETRIED)
    assert (stuck, "hung: no progress for 0.5 s") == (retried.message_id, retried.reason)
    assert sorted([stuck, *others]) == sorted(await out_ids(real_adapter, worker))
    assert (stuck, 2) in worker.calls


async def test_a_promised_wait_is_not_a_hang_and_a_broken_promise_is(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """``beat(within=...)`` holds the hang detector off for that long, and no longer."""
    recorder = Recorder()

    class Promises(EchoWorker):
        async def handle(self, message: Message) -> Sequence[Write]:
            if message.fields["n"] == "slow":
                self.beat(within=2.0)
                await anyio.sleep(1.0)  # 2.5 hang timeouts, kept within the promise
            elif message.deliveries == 1:
                self.beat(within=0.2)
                await anyio.sleep_forever()  # the promise is broken
            return await super().handle(message)

    deps = make_deps(real_adapter, prefix, ECHO_HANG_TIMEOUT="0.4", RETRY_BACKOFF_MS="10")
    worker = Promises(deps)
    slow = await real_adapter.add(worker.stream, {"n": "slow"})
    async with running(
        worker,
        recorder=recorder,
        supervised=True,
        health_check_interval=0.05,
        policy=RestartPolicy(backoff_s=0.01, backoff_max_s=0.01),
    ) as manager:
        await recorder.wait_for(lambda ev: len(handled(ev, Outcome.ACKED)) == 1, timeout=10)
        assert [] == [e for e in recorder.events if isinstance(e, HandlerHung)]
        stuck = await real_adapter.add(worker.stream, {"n": "stuck"})
        await recorder.wait_for(lambda ev: len(handled(ev, Outcome.ACKED)) == 2, timeout=15)
        assert manager.status()["echo"].restarts == 0
    assert [stuck] == [e.message_id for e in recorder.events if isinstance(e, HandlerHung)]
    assert [] == [e for e in recorder.events if isinstance(e, WorkerCrashed)]
    assert await out_ids(real_adapter, worker) == [slow, stuck]


async def test_a_handler_ignoring_its_cut_is_a_worker_hang_and_restarts_the_worker(
    real_adapter: StreamAdapter, prefix: str
) -> None:
    """A cut handler that shields itself from cancellation hangs the worker: one restart."""
    recorder = Recorder()

    class Stubborn(EchoWorker):
        async def handle(self, message: Message) -> Sequence[Write]:
            if message.deliveries == 1:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(2.0)  # deaf to the watchdog's cut for four hang timeouts
            return await super().handle(message)

    deps = make_deps(real_adapter, prefix, ECHO_HANG_TIMEOUT="0.5", RETRY_BACKOFF_MS="10")
    worker = Stubborn(deps)
    await real_adapter.add(worker.stream, {"n": "1"})
    async with running(
        worker,
        recorder=recorder,
        supervised=True,
        health_check_interval=0.1,
        policy=RestartPolicy(backoff_s=0.01, backoff_max_s=0.01),
    ) as manager:
        await recorder.wait_for(lambda ev: len(handled(ev, Outcome.ACKED)) == 1, timeout=20)
        assert manager.status()["echo"].restarts == 1
    crashes = [e for e in recorder.events if isinstance(e, WorkerCrashed)]
    assert ["hang"] == [c.kind for c in crashes]
