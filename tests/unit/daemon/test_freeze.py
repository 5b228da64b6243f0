"""The daemon freezes what start-up made, once the workers run, so full collections stay short."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from printery.daemon.serve import _start_then_freeze

pytestmark = pytest.mark.timeout(10)


async def test_the_collector_freezes_start_up_objects_only_once_the_workers_started() -> None:
    before = gc.get_freeze_count()
    frozen_while_starting: list[int] = []

    class Manager:
        async def start_all(self) -> None:
            frozen_while_starting.append(gc.get_freeze_count())

    manager: Any = Manager()
    try:
        await _start_then_freeze(manager)
        assert frozen_while_starting == [before]
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
