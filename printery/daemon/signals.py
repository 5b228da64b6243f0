"""Signals that arrive before the daemon listens: remembered, not fatal.

Importing the daemon (redis, aiohttp, pydantic, structlog, prometheus) takes
about half a second, and a SIGTERM in that time (a rollout scaling down a pod
that has just started) would kill the process with status 143. The handlers
installed here, before those imports, remember the signal until the daemon
listens for signals itself; it then drains at once and exits ``0``. A second
signal exits at once, as it does later.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

__all__ = ["early_signals", "listen_early"]

_received: list[int] = []


def _remember(signum: int, _frame: FrameType | None) -> None:
    if _received:
        os._exit(128 + signum)  # a second one: out now
    _received.append(signum)


def listen_early() -> None:
    """Remember SIGTERM and SIGINT until the daemon's own watcher takes over."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _remember)


def early_signals() -> list[int]:
    """The signals that arrived before the daemon listened (none unless listen_early ran)."""
    return list(_received)
