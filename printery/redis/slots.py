"""Redis Cluster hash slots: whether the keys of one script call can live on one node.

A cluster runs a script on the node that owns its declared keys' slot, and
refuses it up front (CROSSSLOT) when they span slots; a key the script touches
without declaring it is found only mid-script, after the XACK that came first.
So a commit's keys are checked here, before anything is sent, and the error
names the key that does not fit: the fix is a hash tag (``{order}:in`` and
``{order}:out`` share the slot of ``order``).

The slot is CRC16/XMODEM of the key, or of its hash tag (the text between the
first ``{`` and the first ``}`` after it, when not empty), modulo 16384:
redis-py's :func:`redis.crc.key_slot`, public and typed, fed the key's bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["SLOTS", "one_slot_problem", "slot_of"]

SLOTS = REDIS_CLUSTER_HASH_SLOTS


def slot_of(key: str | bytes) -> int:
    """The cluster hash slot of ``key``, as ``CLUSTER KEYSLOT`` answers it."""
    raw = key if isinstance(key, bytes) else key.encode(errors="surrogatepass")
    return key_slot(raw)


def one_slot_problem(keys: Sequence[str | bytes]) -> str | None:
    """Why ``keys`` cannot share one cluster slot, naming the first that does not, or None."""
    if not keys:
        return None
    first = keys[0]
    slot = slot_of(first)
    for key in keys[1:]:
        other = slot_of(key)
        if other != slot:
            return (
                f"{_shown(key)} hashes to slot {other}, not to slot {slot} of {_shown(first)}: "
                "on a Redis Cluster the keys of one commit must share a hash tag"
            )
    return None


def _shown(key: str | bytes) -> str:
    text = key.decode(errors="backslashreplace") if isinstance(key, bytes) else key
    return repr(text)
