"""The body of ``printery dashboard``: check the settings, connect, serve until a signal.

Exit codes: ``0`` stopped by SIGINT/SIGTERM; ``2`` a bad setting (one line
naming it), Redis unreachable at start, or the port taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import structlog
from aiohttp import web

from printery.daemon.logs import configure_logging
from printery.dashboard.app import create_app
from printery.dashboard.config import DashboardConfig
from printery.errors import ConfigError, RedisError
from printery.redis.cluster import open_adapter, partitions_of, start_adapter
from printery.redis.keys import Keys
from printery.settings import Settings

__all__ = ["serve"]

_log = structlog.get_logger("printery.dashboard")


def serve(settings: Settings, host: str | None, port: int | None) -> int:
    """Run the dashboard in the foreground; returns the exit code."""
    try:
        config = DashboardConfig.load(host, port)
    except ConfigError as exc:
        print(f"printery: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.environment, settings.log_format)
    try:
        return asyncio.run(_serve(settings, config))
    except KeyboardInterrupt:
        return 0


async def _serve(settings: Settings, config: DashboardConfig) -> int:
    adapter = open_adapter(settings, client_name="printery:dashboard")
    try:
        try:
            # REDIS_MODE and PARTITIONS checked as by every printery command.
            await start_adapter(adapter, settings)
            await adapter.ping()
        except RedisError as exc:
            print(
                f"printery: cannot reach Redis at {settings.redis_url_redacted}: {exc}",
                file=sys.stderr,
            )
            return 2
        parts = partitions_of(settings).all if settings.cluster else ()
        app = create_app(adapter, Keys(settings.stream_prefix), config.token, partitions=parts)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            print(
                f"printery: DASHBOARD_PORT: cannot listen on {config.host}:{config.port}: "
                f"{exc.strerror or exc}",
                file=sys.stderr,
            )
            return 2
        bound = runner.addresses
        port = bound[0][1] if bound else config.port
        _log.info(
            "printery.dashboard_started",
            url=f"http://{config.host}:{port}/",
            read_only=config.read_only,
            redis=settings.redis_url_redacted,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            await runner.cleanup()
        _log.info("printery.dashboard_stopped")
        return 0
    finally:
        await adapter.close()
