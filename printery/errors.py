"""Every exception printery raises, under one root.

::

    PrinteryError
     ├── ConfigError ............ a setting is invalid; the CLI prints one line and exits 2
     ├── RedisError ............. anything the Redis adapter translated
     │    ├── RedisUnavailable .. connection refused, reset, timed out, OOM: degraded, not a crash
     │    │    ├── GroupMissing . the stream or its group vanished (deleted, flushed): recreate
     │    │    └── RedisOutOfMemory  maxmemory reached: writes refused, XTRIM and XDEL still run
     │    └── RedisPermanent .... bad credentials, wrong server, refused command: no retry loop
     │         └── CrossSlot .... a commit's keys span cluster slots: refused before it is sent
     ├── ConsumerNameTaken ...... another live daemon holds this CONSUMER_NAME
     ├── Invalid ................ a deployment request the validator refuses (pipeline.deployment)
     ├── HandlerError ........... a handler's verdict on one message
     │    ├── RetryLater ........ transient: leave pending, redeliver after backoff
     │    │    └── Drained ...... the drain interrupted it: hand back, count no delivery
     │    └── Permanent ......... dead-letter now, with the reason
     └── WorkerHung ............. the supervisor saw no progress within the hang timeout

The adapter is the only module that imports ``redis.exceptions``: the rest of
printery sees Redis through :class:`RedisUnavailable` and :class:`RedisPermanent`.
"""

from __future__ import annotations

from typing import TypeVar

__all__ = [
    "ConfigError",
    "ConsumerNameTaken",
    "CrossSlot",
    "Drained",
    "GroupMissing",
    "HandlerError",
    "Permanent",
    "PrinteryError",
    "RedisError",
    "RedisOutOfMemory",
    "RedisPermanent",
    "RedisUnavailable",
    "RetryLater",
    "WorkerHung",
    "find",
]

E = TypeVar("E", bound=BaseException)


class PrinteryError(Exception):
    """Root of every error printery raises on purpose."""


class ConfigError(PrinteryError):
    """A setting is invalid; carries its name so the CLI can print one line."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting = setting
        self.reason = reason


class RedisError(PrinteryError):
    """A failure talking to Redis, already translated by the adapter."""


class RedisUnavailable(RedisError):
    """Redis cannot be reached right now; reconnect with backoff, stay degraded."""


class GroupMissing(RedisUnavailable):
    """The stream or consumer group is gone (deleted, flushed): recreate it with backoff."""


class RedisOutOfMemory(RedisUnavailable):
    """A write refused at ``maxmemory`` (``noeviction``); commands that free memory still run."""


class RedisPermanent(RedisError):
    """Redis answered, but will keep refusing: credentials, ACL, wrong server."""


class CrossSlot(RedisPermanent):
    """The keys of one commit cannot live in one Redis Cluster slot; names the key that does not.

    Raised before anything is sent, so nothing is acked: on a cluster the
    script would fail on that key after its XACK, leaving the ack without
    its outputs.
    """


class ConsumerNameTaken(PrinteryError):
    """Another live daemon already reads under this consumer name."""


class HandlerError(PrinteryError):
    """A handler's verdict on the message it was given."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(HandlerError):
    """Transient failure: keep the message pending so it is delivered again."""


class Drained(RetryLater):
    """The drain interrupted the handler: handed back without counting a delivery."""


class Permanent(HandlerError):
    """The message can never succeed: dead-letter it now with the reason."""


class WorkerHung(PrinteryError):
    """A worker's loop made no progress within its hang timeout."""


def find(exc: BaseException, kinds: type[E] | tuple[type[E], ...]) -> E | None:
    """The first of ``kinds`` in ``exc``, looking inside exception groups.

    Task groups wrap what their tasks raise, so a refused password inside a
    worker's task group arrives as an ExceptionGroup: it must still be seen as
    the permanent fault it is, not as a crash.
    """
    if isinstance(exc, kinds):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = find(inner, kinds)
            if found is not None:
                return found
    return None
