"""``printery-workers``'s entry point: hear SIGTERM before the heavy imports.

Importing the daemon (redis, aiohttp, pydantic, structlog, prometheus) takes
about half a second; :mod:`printery.daemon.signals` listens first, so a
SIGTERM in that time drains at once and exits ``0``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from printery.daemon.signals import listen_early

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    listen_early()
    from printery.daemon.serve import run  # noqa: PLC0415 - the point: after the handlers

    sys.exit(run(argv))
