"""``printery-workers``: the daemon's entry point and wiring.

::

    parse flags ─► settings (bad: one line, exit 2) ─► logging ─► Redis ping
      (bad credentials: exit 2; unreachable: start degraded) ─► build workers
      (unknown, cycle: exit 2) ─► HTTP server ─► claim CONSUMER_NAME (taken: exit 2)
      ─► start_all (beside the workers: heartbeat, trimmer) ─► … ─► SIGTERM/SIGINT,
      or (--burst) the backlog handled ─► stop_all (drain) ─► release heartbeat,
      close Redis ─► stop HTTP last ─► exit 0   (a second signal: exit 128+signal now)

Past 400 lines on purpose: the daemon's wiring is one path from flags to
exit code, meant to be read top to bottom.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import anyio
import stamina.instrumentation
from anyio.abc import TaskStatus

from printery import __version__
from printery.daemon.burst import wait_until_handled
from printery.daemon.discovery import build_worker, load_factory
from printery.daemon.logs import configure_logging, get_logger, log_sink
from printery.daemon.metrics import Metrics
from printery.daemon.retention import Trimmer, partitioned_targets, targets
from printery.daemon.signals import early_signals, listen_early
from printery.daemon.web import Endpoints
from printery.errors import ConfigError, ConsumerNameTaken, RedisPermanent, RedisUnavailable, find
from printery.lifecycle import Emit, Hub
from printery.processes.worker import ProcessWorker, process_worker_factory
from printery.processes.workers_file import load_workers_file
from printery.redis.adapter import StreamAdapter
from printery.redis.cluster import open_adapter, partitions_of, start_adapter
from printery.redis.keys import Keys
from printery.redis.replies import GroupStats
from printery.settings import BUILTIN_WORKERS, Settings, environment_only_help, load_settings
from printery.supervisor.heartbeat import Feed, Heartbeat
from printery.supervisor.manager import WorkerManager
from printery.supervisor.restarts import RestartPolicy
from printery.worker import StreamWorker, WorkerDeps

__all__ = ["build_manager", "build_parser", "main", "run"]

_FLAGS: dict[str, tuple[str, Any, str]] = {
    # flag: (settings field, type, help)
    "--redis-url": ("redis_url", str, "redis://, rediss:// or unix:// URL [REDIS_URL]"),
    "--worker": (
        "worker_mode",
        str,
        "all, or comma-separated workers (validator, dependency-checker, "
        "health-monitor, notifier, or module:attribute) [WORKER_MODE]",
    ),
    "--max-restarts": ("max_restart_attempts", int, "restarts per window [MAX_RESTART_ATTEMPTS]"),
    "--backoff": ("restart_backoff_ms", int, "first restart delay, ms [RESTART_BACKOFF_MS]"),
    "--health-check-interval": (
        "health_check_interval",
        float,
        "seconds between health passes [HEALTH_CHECK_INTERVAL]",
    ),
    "--shutdown-timeout": (
        "shutdown_timeout",
        float,
        "seconds the drain may take [SHUTDOWN_TIMEOUT]",
    ),
    "--restart-window": (
        "restart_window",
        float,
        "seconds running before restarts reset [RESTART_WINDOW]",
    ),
    "--log-level": ("log_level", str, "debug, info, warn, error [LOG_LEVEL]"),
    "--log-format": (
        "log_format",
        str,
        "json, console, or auto: console on a terminal, else JSON; JSON in production [LOG_FORMAT]",
    ),
    "--environment": ("environment", str, "development, staging, production [ENVIRONMENT]"),
    "--http-host": ("http_host", str, "address of /health, /ready, /metrics [HTTP_HOST]"),
    "--http-port": ("http_port", int, "port of the endpoints; 0 disables [HTTP_PORT]"),
    "--stream-prefix": ("stream_prefix", str, "prefix of every Redis key [STREAM_PREFIX]"),
    "--workers-file": (
        "workers_file",
        str,
        "TOML file declaring workers that run in their own processes [WORKERS_FILE]",
    ),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    flagged = {field for field, _, _ in _FLAGS.values()} | {"supervised_mode"}
    parser = _Parser(
        prog="printery-workers",
        description="Run printery's Redis Streams workers under supervision.",
        epilog=environment_only_help(flagged),
    )
    for flag, (field, kind, text) in _FLAGS.items():
        parser.add_argument(
            flag,
            dest=field,
            type=str if kind is not str else kind,
            default=None,
            help=text,
            metavar=field.upper(),
        )
    parser.add_argument(
        "--supervised",
        dest="supervised_mode",
        action="store_const",
        const=True,
        default=None,
        help="restart crashed or hung workers in-process [SUPERVISED_MODE]",
    )
    parser.add_argument(
        "--burst",
        action="store_true",
        help="handle the backlog, then drain and exit 0: each stream worker's group has "
        "nothing waiting or pending (for cron jobs and tests)",
    )
    parser.add_argument("--version", action="version", version=f"printery {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    # A SIGTERM during start-up (Redis not yet answering) must drain like any
    # other, not kill the process: remembered until the loop listens.
    # (printery.daemon.launch:main, the installed entry point, does this before importing us.)
    listen_early()
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Parse, validate, run; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(vars(args))
    except ConfigError as exc:
        print(f"printery-workers: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.environment, settings.log_format)
    # Reconnects are reported through printery's own events, not stamina's log lines.
    stamina.instrumentation.set_on_retry_hooks([])
    try:
        return anyio.run(_serve, settings, args.burst)
    except Exception as exc:
        refused = find(exc, RedisPermanent)
        if refused is not None:
            print(
                f"printery-workers: REDIS_URL ({settings.redis_url_redacted}): {refused}",
                file=sys.stderr,
            )
            return 2
        fatal = find(exc, (ConfigError, ConsumerNameTaken))
        if fatal is None:
            raise
        print(f"printery-workers: {fatal}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover - signals are handled in the loop
        return 130


def build_manager(settings: Settings, deps: WorkerDeps, emit: Emit) -> WorkerManager:
    """The selected workers, built and registered under a manager configured by ``settings``.

    Raises ConfigError for an unknown worker, a bad per-worker setting, a bad
    workers file or a dependency cycle: configuration errors surface before any I/O.
    """
    declared = load_workers_file(settings.workers_file) if settings.workers_file else {}
    manager = WorkerManager(
        emit=emit,
        supervised=settings.supervised_mode,
        policy=RestartPolicy(
            max_restarts=settings.max_restart_attempts,
            backoff_s=settings.restart_backoff_ms / 1000,
            backoff_max_s=settings.restart_backoff_max_ms / 1000,
            window_s=settings.restart_window,
        ),
        health_check_interval=settings.health_check_interval,
        shutdown_timeout=settings.shutdown_timeout,
        known_workers={*BUILTIN_WORKERS, *declared},
    )
    for name in settings.selected_workers(list(declared)):
        if name in declared:
            factory = process_worker_factory(declared[name])
        else:
            try:
                factory = load_factory(name)
            except ConfigError as exc:
                if not declared:
                    raise
                listed = ", ".join(declared)
                raise ConfigError(exc.setting, f"{exc.reason}; WORKERS_FILE has {listed}") from None
        worker = build_worker(name, deps, factory)
        # A StreamWorker carries its own hang timeout; for others, read the setting.
        hang = None if isinstance(worker, StreamWorker) else settings.hang_timeout_for(worker.name)
        manager.register(worker, hang_timeout=hang)
    manager.check()
    return manager


async def _serve(settings: Settings, burst: bool = False) -> int:
    log = get_logger(consumer=settings.consumer_name)
    keys = Keys(settings.stream_prefix)
    hub = Hub([log_sink(settings.consumer_name)])
    adapter = open_adapter(settings, client_name=f"printery:{settings.consumer_name}")
    deps = WorkerDeps(settings, adapter, keys, settings.consumer_name)
    manager = build_manager(settings, deps, hub)  # configuration errors first, before any I/O
    workers = manager.workers()
    try:
        # REDIS_MODE against the server, the slot map, PARTITIONS: a disagreement is exit 2.
        await start_adapter(adapter, settings)
        await adapter.ping()
    except RedisUnavailable as exc:
        log.warning(
            "printery.redis_unavailable_at_start",
            error=str(exc),
            redis_url=settings.redis_url_redacted,
        )

    stats: list[GroupStats] = []

    async def refresh_stats() -> None:
        """The streams' lag and pending for /metrics; none while Redis cannot say.

        /metrics answers through an outage (printery_redis_up 0 says why); the
        stream series are left out rather than shown at their last values.
        """
        stats.clear()  # a refresh cut short by /metrics' own deadline leaves none either
        fresh = []
        try:
            for worker in workers:
                if isinstance(worker, StreamWorker):
                    # On a cluster, one series per partition stream (12 by default: bounded).
                    for stream in worker.partition_streams:
                        found = await adapter.group_stats(stream, worker.group)
                        if found is not None:
                            fresh.append(found)
        except (RedisUnavailable, RedisPermanent):
            return
        stats[:] = fresh

    async def redis_ok() -> bool:
        try:
            await adapter.ping()
        except (RedisUnavailable, RedisPermanent):
            return False
        return True

    metrics = Metrics(manager.status, lambda: stats)
    hub.subscribe(metrics.sink)
    heartbeat = Heartbeat(
        adapter,
        keys.heartbeat(settings.consumer_name),
        settings.consumer_name,
        settings.heartbeat_interval,
        manager.status,
        feeds=lambda: {
            w.name: Feed(
                w.stream,
                w.group,
                w.in_flight,
                w.children_status() if isinstance(w, ProcessWorker) else None,
            )
            for w in workers
            if isinstance(w, StreamWorker)
        },
    )
    hub.subscribe(heartbeat.sink)
    trimmer = Trimmer(
        adapter,
        keys,
        partitioned_targets(settings, partitions_of(settings).all, workers)
        if settings.cluster
        else targets(settings, keys, workers),
        interval=settings.stream_trim_interval,
        emit=hub,
    )
    endpoints = Endpoints(
        manager,
        metrics,
        consumer=settings.consumer_name,
        redis_ok=redis_ok,
        refresh_stats=refresh_stats,
    )
    if settings.http_port:
        await endpoints.start(settings.http_host, settings.http_port)
    try:
        # Redis away at start: the heartbeat loop writes the record when it returns.
        with contextlib.suppress(RedisUnavailable):
            await heartbeat.claim()
        idle = _burst_waiter(adapter, manager, settings) if burst else None
        code = await _supervise(
            settings, manager, heartbeat, log, endpoints.port, trimmer=trimmer, burst=idle
        )
        # Within what is left of SHUTDOWN_TIMEOUT (at least a moment): with Redis
        # stalled the release would wait a socket timeout, and the record expires anyway.
        with anyio.CancelScope(deadline=max(manager.stop_deadline, anyio.current_time() + 0.1)):
            await heartbeat.release()
        await adapter.close()
        return code
    finally:
        await endpoints.stop()


async def _start_then_freeze(manager: WorkerManager) -> None:
    """Start the workers, then move everything alive to the collector's permanent generation.

    The libraries' hundreds of thousands of objects are long-lived; a full
    collection scanned them all, a 35 to 85 ms pause in every process a few
    times a minute under load (most of the pipeline's p99 at 200/s). Frozen,
    only what was made since is scanned.
    """
    await manager.start_all()
    gc.freeze()


def _burst_waiter(
    adapter: StreamAdapter, manager: WorkerManager, settings: Settings
) -> Callable[[], Awaitable[None]]:
    async def wait() -> None:
        await wait_until_handled(
            adapter,
            manager.workers(),
            manager.status,
            interval_s=min(0.25, settings.block_ms / 1000),
        )

    return wait


async def _supervise(
    settings: Settings,
    manager: WorkerManager,
    heartbeat: Heartbeat,
    log: Any,
    port: int | None,
    *,
    trimmer: Trimmer,
    burst: Callable[[], Awaitable[None]] | None = None,
) -> int:
    shutdown = anyio.Event()
    name_lost: list[ConsumerNameTaken] = []
    handled: list[bool] = []

    async def burst_then_drain(wait: Callable[[], Awaitable[None]]) -> None:
        await wait()
        log.info("printery.burst_handled")
        handled.append(True)
        shutdown.set()

    async def keep_heartbeat() -> None:
        try:
            await heartbeat.run()
        except ConsumerNameTaken as exc:
            # Another process reads under our name now: drain, then exit 2 saying so.
            log.error("printery.consumer_name_taken", error=str(exc))  # noqa: TRY400 - expected, no traceback
            name_lost.append(exc)
            shutdown.set()

    async with anyio.create_task_group() as tg:
        await tg.start(_watch_signals, shutdown, log)
        for signum in early_signals():  # read once the watcher listens: none slips between
            log.info("printery.signal_received", signal=signal.Signals(signum).name, early=True)
            shutdown.set()
        await tg.start(manager.run)
        tg.start_soon(keep_heartbeat)
        tg.start_soon(trimmer.run)  # retention; reports Redis errors, never raises them
        tg.start_soon(_start_then_freeze, manager)
        if burst is not None:
            tg.start_soon(burst_then_drain, burst)
        log.info(
            "printery.daemon_started",
            version=__version__,
            pid=os.getpid(),
            workers=[w.name for w in manager.workers()],
            supervised=settings.supervised_mode,
            http_port=port,
            redis_url=settings.redis_url_redacted,
        )
        async with anyio.create_task_group() as first:

            async def wait(event: anyio.Event) -> None:
                await event.wait()
                first.cancel_scope.cancel()

            first.start_soon(wait, shutdown)
            first.start_soon(wait, manager.fatal)
        log.info(
            "printery.drain_started",
            reason="consumer name taken"
            if name_lost
            else "burst: backlog handled"
            if handled
            else "signal"
            if shutdown.is_set()
            else "fatal",
            timeout_s=settings.shutdown_timeout,
        )
        await manager.stop_all()
        tg.cancel_scope.cancel()
    if name_lost:
        log.info("printery.daemon_stopped", exit_code=2)
        raise name_lost[0]
    log.info("printery.daemon_stopped", exit_code=manager.exit_code)
    return manager.exit_code


async def _watch_signals(
    shutdown: anyio.Event, log: Any, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if shutdown.is_set():
                # Second signal: the operator wants out now. Messages in flight stay pending.
                log.warning("printery.forced_exit", signal=signal.Signals(signum).name)
                os._exit(128 + signum)
            log.info("printery.signal_received", signal=signal.Signals(signum).name)
            shutdown.set()
