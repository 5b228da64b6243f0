"""RestartPolicy and RestartBudget: backoff, jitter envelope, budget, stability window."""

from __future__ import annotations

import random

import pytest

from printery.supervisor.restarts import RestartBudget, RestartPolicy

pytestmark = pytest.mark.timeout(10)


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def envelope(policy: RestartPolicy, attempt: int) -> tuple[float, float]:
    """The interval a jittered delay must fall in: [0.8 × base, min(1.2 × base, cap)]."""
    base = min(policy.backoff_max_s, policy.backoff_s * 2 ** (attempt - 1))
    return 0.8 * base, min(1.2 * base, policy.backoff_max_s)


def budget(policy: RestartPolicy, clock: FakeClock, seed: int = 42) -> RestartBudget:
    return RestartBudget(policy, clock=clock, rng=random.Random(seed))


@pytest.mark.parametrize(
    ("backoff_s", "backoff_max_s", "attempt", "expected"),
    [
        (1.0, 30.0, 1, 1.0),
        (1.0, 30.0, 2, 2.0),
        (1.0, 30.0, 3, 4.0),
        (1.0, 30.0, 5, 16.0),
        (1.0, 30.0, 6, 30.0),
        (1.0, 30.0, 40, 30.0),
        (0.25, 1.0, 3, 1.0),
        (2.0, 2.0, 1, 2.0),
    ],
    ids=["first", "second", "third", "fifth", "capped", "far-capped", "small-cap", "cap-equals"],
)
def test_base_delay_doubles_and_caps(
    backoff_s: float, backoff_max_s: float, attempt: int, expected: float
) -> None:
    """The n-th restart waits min(max, backoff × 2^(n-1)) before jitter."""
    policy = RestartPolicy(backoff_s=backoff_s, backoff_max_s=backoff_max_s)
    assert expected == policy.base_delay(attempt)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6, 10])
def test_jittered_delay_stays_in_envelope(seed: int, attempt: int) -> None:
    """Every jittered delay lies in [0.8 × base, min(1.2 × base, cap)]."""
    policy = RestartPolicy(backoff_s=1.0, backoff_max_s=30.0)
    low, high = envelope(policy, attempt)
    delay = policy.delay(attempt, random.Random(seed))
    assert low <= delay <= high


def test_jitter_is_drawn_from_the_injected_rng() -> None:
    """The delay is base × uniform(0.8, 1.2) from the given rng: same seed, same delay."""
    policy = RestartPolicy(backoff_s=1.0, backoff_max_s=30.0)
    twin = random.Random(3)
    expected = [min(30.0, policy.base_delay(n) * twin.uniform(0.8, 1.2)) for n in (1, 2, 3)]
    rng = random.Random(3)
    assert expected == [policy.delay(n, rng) for n in (1, 2, 3)]


def test_jitter_spreads_delays() -> None:
    """Jitter is real: delays for one attempt differ across draws."""
    policy = RestartPolicy(backoff_s=1.0, backoff_max_s=30.0)
    rng = random.Random(5)
    assert len({policy.delay(2, rng) for _ in range(10)}) > 1


@pytest.mark.parametrize("max_restarts", [0, 1, 3, 7])
def test_crash_storm_stops_at_max_restarts(max_restarts: int) -> None:
    """A storm of crashes gets exactly max_restarts delays, then None, and stays None."""
    policy = RestartPolicy(max_restarts=max_restarts, backoff_s=1.0, backoff_max_s=30.0)
    clock = FakeClock()
    spent = budget(policy, clock)
    delays = []
    while (delay := spent.on_failure()) is not None:
        delays.append(delay)
        clock.advance(delay)
        assert len(delays) <= max_restarts
    assert max_restarts == len(delays)
    for attempt, delay in enumerate(delays, start=1):
        low, high = envelope(policy, attempt)
        assert low <= delay <= high
    assert spent.on_failure() is None
    assert max_restarts == spent.restarts
    assert max_restarts == spent.total_restarts


def test_count_resets_after_window_of_running() -> None:
    """After window_s of running the count returns to zero: the next crash is restart 1 again."""
    policy = RestartPolicy(max_restarts=2, backoff_s=1.0, backoff_max_s=30.0, window_s=300.0)
    clock = FakeClock()
    spent = budget(policy, clock)
    assert spent.on_failure() is not None
    assert spent.on_failure() is not None
    spent.running()
    clock.advance(300.0)
    delay = spent.on_failure()
    assert delay is not None
    assert 1 == spent.restarts
    assert 3 == spent.total_restarts
    low, high = envelope(policy, 1)
    assert low <= delay <= high


def test_settle_resets_count_without_a_crash() -> None:
    """settle() (the health pass) forgets restarts once the worker ran a full window."""
    policy = RestartPolicy(max_restarts=3, window_s=60.0)
    clock = FakeClock()
    spent = budget(policy, clock)
    spent.on_failure()
    spent.running()
    clock.advance(59.9)
    spent.settle()
    assert 1 == spent.restarts
    clock.advance(0.1)
    spent.settle()
    assert 0 == spent.restarts
    assert 1 == spent.total_restarts


def test_running_short_of_the_window_keeps_the_count() -> None:
    """Running for less than window_s does not reset the count."""
    policy = RestartPolicy(max_restarts=2, window_s=300.0)
    clock = FakeClock()
    spent = budget(policy, clock)
    spent.on_failure()
    spent.running()
    clock.advance(299.0)
    assert spent.on_failure() is not None
    assert 2 == spent.restarts
    spent.running()
    clock.advance(299.0)
    assert spent.on_failure() is None


def test_paused_time_does_not_count_toward_the_window() -> None:
    """Time spent degraded (paused) is not stable time: the window needs running time."""
    policy = RestartPolicy(max_restarts=3, window_s=300.0)
    clock = FakeClock()
    spent = budget(policy, clock)
    spent.on_failure()
    spent.running()
    clock.advance(200.0)
    spent.paused()
    clock.advance(10_000.0)
    assert 200.0 == spent.stable_s()
    spent.settle()
    assert 1 == spent.restarts
    spent.running()
    clock.advance(99.0)
    spent.settle()
    assert 299.0 == spent.stable_s()
    assert 1 == spent.restarts
    clock.advance(1.0)
    spent.settle()
    assert 0 == spent.restarts


def test_paused_time_spends_no_budget() -> None:
    """Going degraded and back, however often, neither spends budget nor counts as a restart."""
    policy = RestartPolicy(max_restarts=1)
    clock = FakeClock()
    spent = budget(policy, clock)
    for _ in range(50):
        spent.running()
        clock.advance(1.0)
        spent.paused()
        clock.advance(60.0)
    assert 0 == spent.restarts
    assert 0 == spent.total_restarts
    assert spent.on_failure() is not None


def test_crash_resets_stable_time() -> None:
    """A crash wipes the running time accrued so far: the window starts over."""
    policy = RestartPolicy(max_restarts=3, window_s=300.0)
    clock = FakeClock()
    spent = budget(policy, clock)
    spent.running()
    clock.advance(250.0)
    spent.on_failure()
    assert 0.0 == spent.stable_s()
    spent.running()
    clock.advance(250.0)
    spent.on_failure()
    assert 2 == spent.restarts
    assert 0.0 == spent.stable_s()


def test_running_twice_does_not_restart_the_stopwatch() -> None:
    """A second running() while already running keeps the original start time."""
    clock = FakeClock()
    spent = budget(RestartPolicy(), clock)
    spent.running()
    clock.advance(10.0)
    spent.running()
    clock.advance(5.0)
    assert 15.0 == spent.stable_s()


def test_defaults_match_the_documented_settings() -> None:
    """The policy's defaults are the documented ones: 3 restarts, 1 s, 30 s, 300 s, ±20 %."""
    assert (3, 1.0, 30.0, 300.0, 0.2) == (
        RestartPolicy().max_restarts,
        RestartPolicy().backoff_s,
        RestartPolicy().backoff_max_s,
        RestartPolicy().window_s,
        RestartPolicy().jitter,
    )
