"""Record lifecycle events and await conditions on them: no sleeping in tests."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from printery.lifecycle import LifecycleEvent, MessageHandled, Outcome


class Recorder:
    """A lifecycle sink that keeps every event and wakes waiters on each one."""

    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []
        self._changed = anyio.Event()

    def __call__(self, event: LifecycleEvent) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = anyio.Event()

    def of(self, kind: type[LifecycleEvent]) -> list[LifecycleEvent]:  # type: ignore[valid-type]
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(
        self, predicate: Callable[[list[LifecycleEvent]], bool], timeout: float = 10
    ) -> None:
        """Return once ``predicate(events)`` holds; TimeoutError after ``timeout`` seconds."""
        with anyio.fail_after(timeout):
            while not predicate(self.events):
                await self._changed.wait()


def handled(events: list[LifecycleEvent], outcome: Outcome | None = None) -> list[MessageHandled]:
    """The MessageHandled events, of one outcome if given."""
    return [
        e
        for e in events
        if isinstance(e, MessageHandled) and (outcome is None or e.outcome is outcome)
    ]
