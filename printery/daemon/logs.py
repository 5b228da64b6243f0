"""Logging: structlog, JSON lines for machines, console rendering for people.

``LOG_FORMAT`` decides (:func:`resolve_format`): ``json``, ``console``, or
``auto`` (the default): console when stderr is a terminal, JSON otherwise, and
JSON whenever ``ENVIRONMENT=production``, since a production process with a
terminal attached (``docker run -t``) still feeds a log pipeline. So a
container under Kubernetes writes JSON, and a developer's shell shows text,
without either setting anything; ``staging`` no longer means console by itself.

:func:`log_sink` turns lifecycle events into namespaced log events
(``printery.worker_restart_scheduled``, ``worker=…, attempt=…, delay_s=…``).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from printery.lifecycle import (
    ChildSpawned,
    ChildStopped,
    ConsumersReaped,
    HandlerHung,
    HandlerRaised,
    LifecycleEvent,
    MessageHandled,
    MessagesClaimed,
    MessagesHandedBack,
    Outcome,
    RedisConnectivity,
    StreamTrimmed,
    TrimFailed,
    WorkerCrashed,
    WorkerFailed,
    WorkerRestartScheduled,
    WorkerStateChanged,
)

__all__ = ["configure_logging", "get_logger", "log_sink", "resolve_format"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def resolve_format(log_format: str, environment: str, *, terminal: bool) -> str:
    """``json`` or ``console``: what ``LOG_FORMAT`` means here (see the module docstring)."""
    if log_format in {"json", "console"}:
        return log_format
    return "console" if terminal and environment != "production" else "json"


def configure_logging(
    level: str = "info", environment: str = "development", log_format: str = "auto"
) -> None:
    """Configure structlog once per process: one JSON object per line, or console text."""
    terminal = sys.stderr.isatty()
    as_json = resolve_format(log_format, environment, terminal=terminal) == "json"
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=terminal)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.dict_tracebacks if as_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        # Every handled message passes a logger: unbound, each call would build one
        # anew. Configure before the first log line (the daemon does, at start).
        cache_logger_on_first_use=True,
    )


def get_logger(**context: Any) -> Any:
    return structlog.get_logger(**context)


def log_sink(consumer: str) -> Any:
    """A lifecycle sink that logs each event with its context."""
    log = get_logger(consumer=consumer)

    def sink(event: LifecycleEvent) -> None:
        if (
            type(event) is MessageHandled
            and event.outcome is Outcome.ACKED
            and not log.is_enabled_for(logging.DEBUG)
        ):
            return  # the one event of every message: skip building what would not be logged
        match event:
            case WorkerStateChanged(worker, old, new, reason):
                log.info(
                    "printery.worker_state",
                    worker=worker,
                    old=old.value,
                    state=new.value,
                    reason=reason,
                )
            case WorkerCrashed(worker, kind, error, trace):
                # ``exception`` is the key structlog renders as lines on a console
                # and keeps as one string in JSON.
                log.error(
                    "printery.worker_crashed",
                    worker=worker,
                    kind=kind,
                    error=error,
                    exception=trace or None,
                )
            case HandlerHung(worker, stream, message_id, subject, silent_s):
                log.warning(
                    "printery.handler_hung",
                    worker=worker,
                    stream=stream,
                    message_id=message_id,
                    subject=subject or None,
                    silent_s=round(silent_s, 3),
                )
            case WorkerRestartScheduled(worker, attempt, delay_s):
                log.warning(
                    "printery.worker_restart_scheduled",
                    worker=worker,
                    attempt=attempt,
                    delay_s=round(delay_s, 3),
                )
            case WorkerFailed(worker, reason):
                log.error("printery.worker_failed", worker=worker, reason=reason)
            case MessageHandled(
                worker, stream, message_id, outcome, duration_s, deliveries, reason
            ):
                level = "debug" if outcome is Outcome.ACKED else "warning"
                getattr(log, level)(
                    f"printery.message_{outcome.value}",
                    worker=worker,
                    stream=stream,
                    message_id=message_id,
                    deliveries=deliveries,
                    duration_s=round(duration_s, 4),
                    reason=reason or None,
                )
            case HandlerRaised(worker, stream, message_id, error, trace):
                log.error(
                    "printery.handler_raised",
                    worker=worker,
                    stream=stream,
                    message_id=message_id,
                    error=error,
                    exception=trace or None,
                )
            case MessagesClaimed(worker, stream, count, deleted):
                log.info(
                    "printery.messages_claimed",
                    worker=worker,
                    stream=stream,
                    count=count,
                    deleted_ids=list(deleted) or None,
                )
            case MessagesHandedBack(worker, stream, count):
                log.info("printery.messages_handed_back", worker=worker, stream=stream, count=count)
            case ConsumersReaped(worker, stream, consumers):
                log.info(
                    "printery.consumers_reaped",
                    worker=worker,
                    stream=stream,
                    consumers=list(consumers),
                )
            case ChildSpawned(worker, pid):
                log.info("printery.child_spawned", worker=worker, pid=pid)
            case ChildStopped(worker, pid, reason, killed, detail):
                getattr(log, "warning" if killed or reason != "exited" else "info")(
                    "printery.child_stopped",
                    worker=worker,
                    pid=pid,
                    reason=reason,
                    killed=killed,
                    detail=detail,
                )
            case StreamTrimmed(stream, trimmed, length):
                if trimmed:
                    log.debug(
                        "printery.stream_trimmed", stream=stream, trimmed=trimmed, length=length
                    )
            case TrimFailed(stream, error):
                log.warning("printery.trim_failed", stream=stream, error=error)
            case RedisConnectivity(worker, up, error, attempt, _):
                if up:
                    log.info("printery.redis_reconnected", worker=worker, attempts=attempt)
                else:
                    log.warning(
                        "printery.redis_unavailable", worker=worker, attempt=attempt, error=error
                    )

    return sink
