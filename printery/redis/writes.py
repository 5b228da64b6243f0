"""What a handler returns: the writes committed atomically with its message's ack.

A :class:`Write` is an ``[op, key, args]`` triple, made by its constructors;
:func:`commit_payload` turns a batch of them into the COMMIT script's one
JSON argument.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

import orjson

__all__ = ["Write", "commit_payload", "outputs_problem"]


class Write(NamedTuple):
    """One output of a handler, written in the same atomic step as the ack.

    ``op`` is ``XADD`` (fields), ``HSET`` (fields), ``HSET_LATEST`` (field,
    value, order key, order[, order hash, order field]), ``RPUSH`` (value,
    cap: a capped log), ``SET_NX`` (value, seconds) or ``EXPIRE`` (seconds).
    A named tuple: as immutable as a frozen dataclass, and made in half the
    time (a message has five or more).
    """

    op: str
    key: str
    args: tuple[str | bytes, ...]

    @classmethod
    def xadd(cls, stream: str, fields: Mapping[str, str | bytes]) -> Write:
        return cls("XADD", stream, _flat(fields))

    @classmethod
    def hset(cls, key: str, fields: Mapping[str, str]) -> Write:
        return cls("HSET", key, _flat(fields))

    @classmethod
    def hset_latest(
        cls,
        key: str,
        field: str,
        value: str,
        *,
        order_key: str,
        order: str,
        order_from: tuple[str, str] | None = None,
    ) -> Write:
        """HSET ``field`` unless ``order_key`` holds a later order for it (compared as text).

        For state where the latest request must win, not the last to finish.
        The order is ``order``, or, with ``order_from`` (hash key, field), that
        field when it is set, read in the commit itself: no round trip of its own.
        """
        source = () if order_from is None else order_from
        return cls("HSET_LATEST", key, (field, value, order_key, order, *source))

    @classmethod
    def capped_push(cls, key: str, value: str, cap: int) -> Write:
        return cls("RPUSH", key, (value, str(cap)))

    @classmethod
    def set_once(cls, key: str, value: str, ttl_s: int) -> Write:
        """SET NX with a TTL: a marker that the first writer's value keeps."""
        return cls("SET_NX", key, (value, str(ttl_s)))

    @classmethod
    def expire(cls, key: str, seconds: int) -> Write:
        return cls("EXPIRE", key, (str(seconds),))


def outputs_problem(writes: object) -> str | None:
    """Why a handler's return value is not a list of Writes; None when it is.

    A handler's bug (a forgotten ``return``) must cost its message a retry,
    not crash the committer that would have sent it.
    """
    if type(writes) is list or type(writes) is tuple:  # the common case, checked fast
        if set(map(type, writes)) <= _WRITE_TYPE:
            return None
    elif not isinstance(writes, Sequence) or isinstance(writes, str | bytes | Write):
        return f"handler returned {type(writes).__name__}, not a list of Write"
    for w in writes:
        if not isinstance(w, Write):
            return f"handler returned a {type(w).__name__} among its outputs, not a Write"
    return None


_WRITE_TYPE: Final = frozenset({Write})
_TEXT_TYPES: Final = frozenset({str, bytes})


def _flat(fields: Mapping[str, str | bytes]) -> tuple[str | bytes, ...]:
    """``(k1, v1, k2, v2, ...)``, the argument order of XADD and HSET.

    A whole number is written as its digits (Redis's JSON reader would round
    one past 2**53); anything else that is not text or bytes (None, a bool, a
    list) raises here, in the handler that made it, not in the commit.
    """
    if set(map(type, fields.values())) <= _TEXT_TYPES:
        return tuple(itertools.chain.from_iterable(fields.items()))  # nearly always
    return tuple(
        itertools.chain.from_iterable((name, _field(name, v)) for name, v in fields.items())
    )


def _field(name: object, value: object) -> str | bytes:
    if isinstance(value, str | bytes):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"output field {name!r} = {value!r}: values are str or bytes")


def commit_payload(
    batch: Sequence[tuple[str, Sequence[Write]]],
) -> tuple[bytes, list[bytes]]:
    """The COMMIT script's one JSON argument, and the values that travel beside it.

    One argument instead of thousands: redis-py packs each argument in Python
    (7.7 ms for 5,500 of them). orjson writes the batch in C, each Write as an
    ``[op, key, args]`` array (as a tuple: orjson takes six times longer over
    dataclasses), handing back only bytes: text when they are UTF-8, else an
    argument of their own, referenced by index. Text that is not valid Unicode
    (a lone surrogate, from a JSON escape in someone's data), which no JSON
    reader in Redis takes, travels the same way, as its surrogate-pass bytes.
    """
    binary: list[bytes] = []

    def encoded(value: object) -> str | list[int] | None:
        if isinstance(value, bytes):
            try:
                return value.decode()
            except UnicodeDecodeError:
                binary.append(value)
                return [len(binary) + 2]  # ARGV index in Lua: group, payload, then these
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # past 64 bits: orjson refuses it, Redis takes its digits
        return None  # what Redis cannot take: the script refuses the entry, before its ack

    def valid(text: str) -> str | list[int] | None:
        try:
            text.encode()
        except UnicodeEncodeError:
            return encoded(text.encode(errors="surrogatepass"))
        return text

    def checked(args: object) -> list[str | list[int] | None] | None:
        if not isinstance(args, tuple | list):
            return None  # refused by the script, like any malformed write
        return [valid(a) if isinstance(a, str) else encoded(a) for a in args]

    as_arrays = [(entry_id, [(w.op, w.key, w.args) for w in writes]) for entry_id, writes in batch]
    try:
        return orjson.dumps(as_arrays, default=encoded), binary
    except orjson.JSONEncodeError:
        binary.clear()
    every_arg_checked = [
        (entry_id, [(w.op, w.key, checked(w.args)) for w in writes]) for entry_id, writes in batch
    ]
    return orjson.dumps(every_arg_checked, default=_refused), binary


def _refused(_: object) -> None:
    """An op or key orjson cannot write goes as null: the script refuses its entry."""
