"""Redis going away under several running daemons: restarted, stalled, out of memory.

Every test runs real ``printery-workers`` processes (supervised, so a crash
would show as a restart) against a redis-server of its own, breaks that server
while messages are in flight, and then proves, per the README and docs/operations.md:

- every daemon stays up (same pid) and its ``/health`` answers ``200`` on
  every poll, throughout;
- ``/ready`` turns ``503`` while Redis is away, then ``200`` again;
- no restart budget is spent: ``restarts`` 0 in ``/status``, the
  ``printery_worker_restarts_total`` and ``printery_worker_errors_total``
  samples unchanged, no crash logged;
- the accounting balances: every published message acked, each with exactly
  one output (the commit is one script, ack plus outputs, which writes them
  only if its own XACK acked: a commit retried after a lost reply writes
  nothing twice, so no duplicate is allowed here), nothing pending, nothing
  lost.

A stopped server cannot take a publish, so "during the outage" means: after
Redis is back and before the daemons have reconnected (restart), or queued
on the paused connection (CLIENT PAUSE) and served when the pause ends.

Out of memory is not an outage for a running worker: Redis still serves its
reads and its commit script (whose first write, the XACK, is not refused), so
it keeps working and ``/ready`` stays 200; only a daemon that starts then (it
cannot create its group) is ``degraded``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis

from tests.e2e.daemon import Daemon, metric_value, running_daemons, stop_cleanly
from tests.e2e.ledger import account, publish
from tests.e2e.workers import ECHO
from tests.support.redis_server import RedisServer

SOCKET_TIMEOUT_S = 1.5
DEGRADED_WITHIN_S = 5.0  # a stalled read times out after SOCKET_TIMEOUT_S: ample on a busy machine
_POLL_S = 0.05


def _env(server: RedisServer, prefix: str) -> dict[str, str]:
    return {
        "REDIS_URL": server.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": ECHO,
        "SUPERVISED_MODE": "true",
        "BLOCK_MS": "200",
        "REDIS_SOCKET_TIMEOUT": str(SOCKET_TIMEOUT_S),
        "REDIS_CONNECT_TIMEOUT": "1",
        "HEARTBEAT_INTERVAL": "0.5",
        # /health turns 503 if the supervisor misses 4 s of ticks: an outage must not stall it.
        "HEALTH_CHECK_INTERVAL": "2",
        "ECHO_CONCURRENCY": "4",
        "BATCH_SIZE": "8",  # each daemon holds at most 4 + 2 × 8: the flow is shared by all
        "SHUTDOWN_TIMEOUT": "10",
    }


def _name(daemon: Daemon) -> str:
    return daemon.env["CONSUMER_NAME"]


class Probe:
    """Polls every daemon's /health and /ready together, and the first's /metrics.

    Any /health or /metrics but 200 is kept; so is each ``printery_redis_up`` scraped.
    """

    def __init__(self, daemons: Sequence[Daemon]) -> None:
        self.daemons = daemons
        self.unhealthy: list[tuple[str, int]] = []
        self.unscrapable: list[tuple[int, str]] = []
        self.redis_up: set[float | None] = set()
        self.ready: list[int] = []
        self.polls = 0

    def poll(self) -> list[int]:
        ready = []
        for daemon in self.daemons:
            health = daemon.get("/health")[0]
            if health != 200:
                self.unhealthy.append((_name(daemon), health))
            ready.append(daemon.get("/ready")[0])
        scraped, text = self.daemons[0].get("/metrics")
        if scraped == 200:
            self.redis_up.add(metric_value(text, "printery_redis_up"))
        else:
            self.unscrapable.append((scraped, text[:200]))
        self.polls += 1
        self.ready = ready
        return ready

    def states(self) -> list[str | None]:
        return [d.worker_states().get("echo") for d in self.daemons]

    def until(self, what: str, predicate: Callable[[], bool], timeout: float) -> None:
        """Poll (health included) until ``predicate`` holds; fails if a daemon exits first."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            for daemon in self.daemons:
                if not daemon.running:
                    raise AssertionError(
                        f"{_name(daemon)} exited before {what}; stderr:\n{daemon.tail()}"
                    )
            if predicate():
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not {what} within {timeout} s: /ready {self.ready}, echo {self.states()}; "
                    f"stderr of the first:\n{self.daemons[0].tail()}"
                )
            time.sleep(_POLL_S)  # another process's state: polled with a deadline


def _supervision(daemon: Daemon) -> tuple[int, float, float, float | None]:
    """echo's restarts in /status, its restarts and errors samples (0 while absent), redis_up."""
    _, status = daemon.get_json("/status")
    text = daemon.metrics()
    return (
        int(status["workers"]["echo"]["restarts"]),
        metric_value(text, "printery_worker_restarts_total", worker="echo") or 0.0,
        metric_value(text, "printery_worker_errors_total", worker="echo") or 0.0,
        metric_value(text, "printery_redis_up"),
    )


def _handled(client: redis.Redis, prefix: str) -> set[bytes]:
    return {bytes(f[b"in_id"]) for _, f in client.xrange(f"{prefix}:test:out")}


def _all_handled(client: redis.Redis, prefix: str, ids: Sequence[bytes]) -> Callable[[], bool]:
    return lambda: set(ids) <= _handled(client, prefix)


def _no_budget_spent(daemons: Sequence[Daemon], pids: list[int]) -> None:
    assert pids == [d.pid for d in daemons]
    assert [(0, 0.0, 0.0, 1.0)] * len(daemons) == [_supervision(d) for d in daemons]
    for daemon in daemons:
        names = daemon.event_names()
        assert not {
            "printery.worker_crashed",
            "printery.worker_restart_scheduled",
            "printery.worker_failed",
            "printery.handler_raised",
        } & set(names), daemon.tail()


def _survive(
    tmp_path: Path,
    server: RedisServer,
    prefix: str,
    *,
    break_redis: Callable[[redis.Redis], None],
    mend_redis: Callable[[], None],
    hold_s: float,
    timeouts_fire: bool,
    ends_after_s: float = float("inf"),
) -> None:
    """Three daemons, messages in flight, Redis broken for ``hold_s`` (at least), then mended.

    ``ends_after_s``: Redis comes back by itself that long after the break (CLIENT
    PAUSE): only answers received before then must show the outage.
    """
    stream = f"{prefix}:test:in"
    # A publish queued behind CLIENT PAUSE waits for its end: longer than redis-py's default.
    client = redis.Redis.from_url(server.url, socket_timeout=30)
    stack = contextlib.ExitStack()
    stack.callback(client.close)
    with stack:
        # Before: a backlog the daemons find when they start.
        published = publish(client, stream, [{"sleep": "0.05"}] * 30)
        env = _env(server, prefix)
        with running_daemons(tmp_path, env, 3) as daemons:
            pids = [d.pid for d in daemons]
            probe = Probe(daemons)
            probe.until("the backlog handled", _all_handled(client, prefix, published), 20)
            # Flowing: 90 slow messages, 12 at a time; Redis breaks while handlers run.
            flowing = publish(client, stream, [{"sleep": "0.2"}] * 90)
            published += flowing
            probe.until(
                "some of the flow handled",
                lambda: len(set(flowing) & _handled(client, prefix)) >= 12,
                20,
            )
            unhandled_at_break = set(flowing) - _handled(client, prefix)
            began = time.monotonic()
            break_redis(client)
            # Away: /ready 503 on every poll, echo degraded everywhere, /health 200 throughout.
            ready_while_away: list[list[int]] = []

            def away(done: Callable[[], bool]) -> Callable[[], bool]:
                def check() -> bool:
                    if time.monotonic() - began < ends_after_s:
                        ready_while_away.append(probe.ready)
                    return done()

                return check

            probe.until(
                "every echo degraded",
                away(lambda: probe.states() == ["degraded"] * 3),
                DEGRADED_WITHIN_S,
            )
            probe.until(
                f"Redis away for {hold_s} s",
                away(lambda: time.monotonic() - began >= hold_s),
                hold_s + 5,
            )
            assert {(503, 503, 503)} == {tuple(r) for r in ready_while_away}
            # /metrics answers through the outage, and says it (Prometheus keeps every series).
            assert ([], True) == (probe.unscrapable, 0.0 in probe.redis_up)
            assert unhandled_at_break, "the flow was over before Redis broke"
            mend_redis()
            # During: published before the daemons are back (or queued on the paused link).
            published += publish(client, stream, [{"n": str(i)} for i in range(30)])
            probe.until("every daemon ready again", lambda: probe.ready == [200] * 3, 30)
            probe.until("everything handled", _all_handled(client, prefix, published), 30)
            assert ([], True) == (probe.unhealthy, probe.polls > 10)
            assert ["running"] * 3 == probe.states()
            _no_budget_spent(daemons, pids)
            for daemon in daemons:
                errors = [e["error"] for e in daemon.events("printery.redis_unavailable")]
                assert errors, daemon.tail()
                if timeouts_fire:
                    assert any("timeout" in e.lower() for e in errors), errors
                assert daemon.events("printery.redis_reconnected"), daemon.tail()
            stop_cleanly(daemons)
        ledger = account(client, prefix, published)
        assert (set(published), set(), set(), {}) == (
            ledger.acked,
            ledger.pending,
            ledger.undelivered,
            ledger.duplicates,
        )
        assert len(published) == client.xlen(f"{prefix}:test:out")


@pytest.mark.timeout(60)
def test_redis_restart_under_three_daemons_spends_no_budget_and_loses_nothing(
    tmp_path: Path, own_redis: RedisServer, prefix: str
) -> None:
    """redis-server shut down (SIGTERM, AOF on) for 3 s and started again on its port and dir."""
    _survive(
        tmp_path,
        own_redis,
        prefix,
        break_redis=lambda _: own_redis.stop(),
        mend_redis=own_redis.start,
        hold_s=3,
        timeouts_fire=False,  # connections are closed: refused at once, nothing to time out
    )


@pytest.mark.timeout(60)
def test_redis_frozen_by_sigstop_under_three_daemons_times_out_and_recovers(
    tmp_path: Path, own_redis: RedisServer, prefix: str
) -> None:
    """redis-server SIGSTOPped for 4 s (connections open, nothing answers), then SIGCONT."""
    _survive(
        tmp_path,
        own_redis,
        prefix,
        break_redis=lambda _: own_redis.pause(),
        mend_redis=own_redis.resume,
        hold_s=4,
        timeouts_fire=True,
    )


@pytest.mark.timeout(60)
def test_redis_client_pause_all_under_three_daemons_times_out_and_recovers(
    tmp_path: Path, own_redis: RedisServer, prefix: str
) -> None:
    """CLIENT PAUSE 8000 ALL: every command waits server-side; the pause ends by itself."""
    pause_ms = 8000

    def pause(client: redis.Redis) -> None:
        client.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")

    _survive(
        tmp_path,
        own_redis,
        prefix,
        break_redis=pause,
        mend_redis=lambda: None,  # CLIENT UNPAUSE would wait for the pause itself
        hold_s=3,
        timeouts_fire=True,
        ends_after_s=pause_ms / 1000,
    )


# -- scenario 14: out of memory -------------------------------------------------------------


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own with 8 MB of memory and no eviction."""
    server = RedisServer(
        tmp_path / "redis",
        extra=("--maxmemory", "8mb", "--maxmemory-policy", "noeviction"),
    )
    server.start()
    yield server
    server.stop()


def _fill(client: redis.Redis, key: str) -> int:
    """Put Redis a megabyte past its memory limit; returns the filler's size.

    ``key`` gets 2 MB, then ``maxmemory`` is set to what the server used
    before it plus 1 MB. Filling up to the limit itself would leave the server within a
    kilobyte of it, and whatever the daemons free meanwhile (an ack's pending
    entry, an expired heartbeat, a shrunk query buffer) would let the next write
    through: a megabyte past it, every write that may grow memory is refused
    until the filler is deleted, which puts the server a megabyte under.
    """
    used = int(client.info("memory")["used_memory"])
    client.append(key, b"x" * (2 * 2**20))  # under the fixture's 8 MB: taken
    client.config_set("maxmemory", used + 2**20)
    return int(client.strlen(key))


def _publish_until_refused(client: redis.Redis, stream: str) -> list[bytes]:
    """XADD small entries, as a producer would, until one is refused with OOM; the ids taken."""
    taken: list[bytes] = []
    for n in range(10_000):
        try:
            taken.append(bytes(client.xadd(stream, {"n": f"oom-{n}"})))
        except redis.exceptions.OutOfMemoryError:
            return taken
    raise AssertionError("10,000 entries taken at maxmemory without an OOM")


def _oom_env(server: RedisServer, prefix: str, heartbeat_s: float) -> dict[str, str]:
    return {**_env(server, prefix), "HEARTBEAT_INTERVAL": str(heartbeat_s)}


@pytest.mark.timeout(60)
def test_redis_out_of_memory_commits_each_ack_with_its_outputs_and_recovers(
    tmp_path: Path, small_redis: RedisServer, prefix: str
) -> None:
    """Redis filled to maxmemory (noeviction) while two daemons work through a backlog.

    Under OOM Redis refuses commands that may grow memory (XADD, SET, XGROUP
    CREATE) and a script only before its first write. The commit script's
    first write is the XACK, so it runs whole: every ack comes with its
    output, never one without the other. Reads (XREADGROUP) are not refused:
    the daemons finish the backlog under OOM, stay ``running``, ``/ready``
    200 (Redis answers PING). The producer is refused. Once the filler is
    deleted, new work flows and the accounting balances.

    HEARTBEAT_INTERVAL is 60 s so that no heartbeat is written while Redis is
    full: a refused heartbeat kills the daemon today (see the next test).
    """
    stream, filler = f"{prefix}:test:in", f"{prefix}:filler"
    client = redis.Redis.from_url(small_redis.url)
    stack = contextlib.ExitStack()
    stack.callback(client.close)
    with stack:
        with running_daemons(tmp_path, _oom_env(small_redis, prefix, 60), 2) as daemons:
            pids = [d.pid for d in daemons]
            probe = Probe(daemons)
            published = publish(client, stream, [{"sleep": "0.3"}] * 40)  # 8 at a time: ~1.5 s
            assert _fill(client, filler) > 0
            published += _publish_until_refused(client, stream)
            at_oom = len(_handled(client, prefix))
            probe.until("the backlog handled", _all_handled(client, prefix, published), 20)
            assert at_oom < 40, "the backlog was handled before the OOM"
            ledger = account(client, prefix, published)  # fails on an ack without its output
            assert (set(published), {}) == (ledger.acked, ledger.duplicates)
            # Still out of memory, with the outputs of the whole backlog written.
            published += _publish_until_refused(client, stream)
            assert ([200, 200], ["running"] * 2) == (probe.poll(), probe.states())

            client.delete(filler)
            more = publish(client, stream, [{"sleep": "0.05"}] * 60)
            published += more
            probe.until("everything handled", _all_handled(client, prefix, published), 20)
            assert ([], [200, 200]) == (probe.unhealthy, probe.poll())
            _no_budget_spent(daemons, pids)
            stop_cleanly(daemons)
        ledger = account(client, prefix, published)
        assert (set(published), set(), {}) == (ledger.acked, ledger.pending, ledger.duplicates)


@pytest.mark.timeout(60)
def test_redis_out_of_memory_degrades_a_starting_daemon_and_kills_none(
    tmp_path: Path, small_redis: RedisServer, prefix: str
) -> None:
    """Redis at maxmemory: running daemons live on, one starting now is degraded, then runs.

    The running daemons' heartbeats are refused (SET): that is an outage of
    the heartbeat, not a crash. A daemon that starts now cannot create its
    group (XGROUP CREATE): echo ``degraded`` with the OOM as reason,
    ``/ready`` 503, ``/health`` 200, no restart. Once the filler is deleted it
    runs, and all three handle new work.
    """
    stream, filler = f"{prefix}:test:in", f"{prefix}:filler"
    client = redis.Redis.from_url(small_redis.url)
    stack = contextlib.ExitStack()
    stack.callback(client.close)
    with stack:
        env = _oom_env(small_redis, prefix, 0.5)
        with running_daemons(tmp_path, env, 2) as running:
            pids = [d.pid for d in running]
            published = publish(client, stream, [{"sleep": "0.1"}] * 20)
            assert _fill(client, filler) > 0
            published += _publish_until_refused(client, stream)
            filled = time.monotonic()
            with Daemon(tmp_path, env) as late:
                late.wait_until("/health answered", lambda: late.get("/health")[0] != 0)
                daemons = [*running, late]
                probe = Probe(daemons)
                probe.until(
                    "the late echo degraded, for 4 heartbeat intervals",
                    lambda: (
                        probe.states() == ["running", "running", "degraded"]
                        and time.monotonic() - filled > 2
                    ),
                    20,
                )
                published += _publish_until_refused(client, stream)  # still full
                _, status = late.get_json("/status")
                assert "OOM" in status["workers"]["echo"]["reason"], status
                assert [200, 200, 503] == probe.poll()

                client.delete(filler)
                probe.until("every daemon ready", lambda: probe.ready == [200] * 3, 20)
                more = publish(client, stream, [{"sleep": "0.05"}] * 30)
                published += more
                probe.until("everything handled", _all_handled(client, prefix, published), 20)
                assert ([], ["running"] * 3) == (probe.unhealthy, probe.states())
                _no_budget_spent(daemons, [*pids, late.pid])
                stop_cleanly(daemons)
        ledger = account(client, prefix, published)
        assert (set(published), set(), {}) == (ledger.acked, ledger.pending, ledger.duplicates)
