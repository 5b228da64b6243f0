"""Restart policy: exponential backoff with jitter, a budget, a stability window.

The n-th restart inside the window waits
``min(backoff_max, backoff × 2^(n-1))`` scaled by a jitter factor drawn from
``[1 - jitter, 1 + jitter]``, never above ``backoff_max``. After
``max_restarts`` restarts the next crash is final. The count returns to zero
once the worker has been ``running`` for ``window`` seconds in total since its
last restart; time spent ``degraded`` (Redis away) neither counts toward the
window nor spends budget. Clock and randomness are injected so tests never
wait for real time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RestartBudget", "RestartPolicy"]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    max_restarts: int = 3
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0
    window_s: float = 300.0
    jitter: float = 0.2

    def base_delay(self, attempt: int) -> float:
        """The delay before restart number ``attempt`` (1-based), before jitter."""
        return min(self.backoff_max_s, self.backoff_s * 2.0 ** (attempt - 1))

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = self.base_delay(attempt)
        return min(self.backoff_max_s, base * rng.uniform(1 - self.jitter, 1 + self.jitter))


@dataclass(slots=True)
class RestartBudget:
    """One worker's restart accounting under a :class:`RestartPolicy`."""

    policy: RestartPolicy
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    restarts: int = 0
    total_restarts: int = 0
    _stable_s: float = 0.0
    _running_since: float | None = None

    def running(self) -> None:
        """The worker entered ``running``: its stable time starts accruing."""
        if self._running_since is None:
            self._running_since = self.clock()

    def paused(self) -> None:
        """The worker left ``running`` without crashing (degraded): keep what accrued."""
        if self._running_since is not None:
            self._stable_s += self.clock() - self._running_since
            self._running_since = None

    def stable_s(self) -> float:
        live = 0.0 if self._running_since is None else self.clock() - self._running_since
        return self._stable_s + live

    def settle(self) -> None:
        """Forget past restarts once the worker has been stable for the window."""
        if self.restarts and self.stable_s() >= self.policy.window_s:
            self.restarts = 0

    def on_failure(self) -> float | None:
        """A crash or hang: the delay before the next restart, or None if the budget is spent."""
        self.settle()
        self._running_since = None
        self._stable_s = 0.0
        if self.restarts >= self.policy.max_restarts:
            return None
        self.restarts += 1
        self.total_restarts += 1
        return self.policy.delay(self.restarts, self.rng)
