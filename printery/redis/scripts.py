"""The Lua scripts behind the adapter's multi-step operations, each atomic on the server.

- ``COMMIT``: per entry, XACK first, and only when it acked (returned 1)
  write the outputs; a whole batch of entries in one call, as one JSON
  argument. Its KEYS are the stream, then each output key once (the JSON
  names keys by index), so a cluster routes or refuses the call whole. A
  commit retried after a timeout finds the message already acked and writes
  nothing, so an input never yields its outputs twice. Output keys
  of the wrong type are found before the ack, so a WRONGTYPE never leaves an
  ack without outputs. Unflagged scripts are refused under OOM only before
  their first write, so the script cannot stop between the ack and the
  outputs.
- ``SET_IDLE``: set the idle time of messages still owned by this consumer:
  to 0 (refresh), so a slow handler's message is not claimed by another while
  it runs; or to a long time (hand back), so a live consumer claims them at
  once on drain, optionally giving back the delivery the read counted.
- ``RECLAIM``: re-deliver an entry this consumer still owns (count + 1).
- ``HEARTBEAT`` / ``RELEASE``: the daemon's record, which doubles as the lock
  on its consumer name (written or deleted only by the token that holds it).
- ``FORGET_CONSUMER`` / ``REAP_CONSUMERS``: delete a consumer only while it
  has nothing pending (``XGROUP DELCONSUMER`` drops pending entries with it)
  and, for others, only when no daemon heartbeat claims the name: on Redis 7.0
  ``idle`` alone does not prove a consumer dead. The reaper is given the
  candidates (read beforehand) and their heartbeat keys in KEYS, and checks
  each again before deleting it.
- ``SET_LATEST``: the registry's own step on a Redis Cluster, where it cannot
  share the commit's slot: HSET a field unless a later order is recorded for
  it; idempotent, so it runs before the ack-gated commit and a redelivery
  repeats it harmlessly.
- ``TRIM_ACKNOWLEDGED``: retention. Reads every group's
  last-delivered id and lowest pending id and trims below the lowest of them
  and the age cutoff, in one step: a group reading or claiming between a
  check and a trim would otherwise lose the entries it was just handed.
- ``UNLOCK``: delete a lock only while it still holds our token.
- ``REPLAY_DEAD``: per dead letter, XADD its original fields (plus
  ``replayed_from``) to the original stream and XDEL it from ``<stream>:dead``
  in one step, so a dead letter is never both replayed and kept, nor lost.

Every script touches only keys declared in its KEYS, as Redis's scripting
rules ask: ``tests/unit/redis/test_adapter_declared_keys.py`` checks it under MONITOR.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

__all__ = [
    "COMMIT",
    "FORGET_CONSUMER",
    "HEARTBEAT",
    "REAP_CONSUMERS",
    "RECLAIM",
    "RELEASE",
    "REPLAY_DEAD",
    "SET_IDLE",
    "SET_LATEST",
    "TRIM_ACKNOWLEDGED",
    "UNLOCK",
]


def _load(name: str) -> str:
    """A script's source, from the ``.lua`` file of that name beside this module."""
    return files("printery.redis").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


COMMIT: Final = _load("commit")

SET_IDLE: Final = _load("set_idle")

RECLAIM: Final = _load("reclaim")

HEARTBEAT: Final = _load("heartbeat")

RELEASE: Final = _load("release")

FORGET_CONSUMER: Final = _load("forget_consumer")

REAP_CONSUMERS: Final = _load("reap_consumers")

REPLAY_DEAD: Final = _load("replay_dead")

SET_LATEST: Final = _load("set_latest")
TRIM_ACKNOWLEDGED: Final = _load("trim_acknowledged")

UNLOCK: Final = _load("unlock")
