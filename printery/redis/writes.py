"""What a handler returns: the writes committed atomically with its message's ack.

A :class:`Write` is an ``[op, key, args]`` triple, made by its constructors;
:func:`commit_payload` turns a batch of them into the COMMIT script's one
JSON argument.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
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
    stream: str, batch: Sequence[tuple[str, Sequence[Write]]]
) -> tuple[list[str | bytes], bytes, list[bytes]]:
    """The COMMIT script's KEYS, its one JSON argument, and the values that travel beside it.

    Every key the script touches is declared, as Redis's scripting rules (and
    a cluster's routing) require: ``stream`` first, then each distinct output
    key once, in order of first use. The JSON names a key by its index in KEYS:
    a write is ``[op, key index, args]``, and HSET_LATEST's order key and order
    hash (arguments 3 and 5) follow as two more indices, so the payload stays
    one argument.

    One argument instead of thousands: redis-py packs each argument in Python
    (7.7 ms for 5,500 of them). orjson writes the batch in C, each Write as an
    array (from a tuple: orjson takes six times longer over dataclasses),
    handing back only bytes: text when they are UTF-8. A batch holding bytes
    that are not UTF-8, or text that is not valid Unicode (a lone surrogate,
    from a JSON escape in someone's data), which no JSON reader in Redis
    takes, is written the careful way, every argument looked at: those go as
    arguments of their own, referenced by index, and a value that is not text
    (a list, say) as null, so the script never takes one for a reference. A
    key that is not text goes as null: the script refuses its entry.
    """
    index = _Index({stream: 1})
    binary: list[bytes] = []
    try:
        as_arrays = [
            (
                entry_id,
                [
                    (w.op, index[w.key], w.args) if w.op != "HSET_LATEST" else _latest(w, index)
                    for w in writes
                ],
            )
            for entry_id, writes in batch
        ]
    except (TypeError, IndexError):  # a key that cannot be hashed, HSET_LATEST's arguments short
        pass
    else:
        if _all_text(index):
            try:
                payload = orjson.dumps(as_arrays, default=_encoder(binary))
            except orjson.JSONEncodeError:
                pass
            else:
                if not binary:
                    return list(index), payload, binary  # type: ignore[arg-type]  # checked by _all_text
    return _careful_payload(stream, batch)


class _Index(dict[object, int]):
    """Key → its index in KEYS (from 1), a new key taking the next: a lookup at C speed."""

    def __missing__(self, key: object) -> int:
        at = self[key] = len(self) + 1
        return at


def _encoder(binary: list[bytes]) -> Callable[[object], str | list[int] | None]:
    """orjson's ``default``: a value it cannot write itself, as Redis will take it.

    Bytes that are UTF-8 go as text, others as an argument of their own in
    ``binary``, referenced by index; an int past 64 bits (orjson refuses it) as
    its digits; anything else as null, which the script refuses for its entry,
    before that entry's ack.
    """

    def encoded(value: object) -> str | list[int] | None:
        if isinstance(value, bytes):
            try:
                return value.decode()
            except UnicodeDecodeError:
                binary.append(value)
                return [len(binary) + 2]  # ARGV index in Lua: group, payload, then these
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return None

    return encoded


def _latest(w: Write, index: _Index) -> tuple[object, ...]:
    """HSET_LATEST as ``[op, key, args, order key, order hash]``, the last two as KEYS indices.

    The arguments keep the keys' text (for the script's checks of arity and
    text); the script uses the declared keys the indices name.
    """
    args = w.args
    if len(args) > 4:
        return (w.op, index[w.key], args, index[args[2]], index[args[4]])
    return (w.op, index[w.key], args, index[args[2]])


def _all_text(index: dict[object, int]) -> bool:
    """Whether every key is text Redis takes as it is (valid Unicode or bytes)."""
    if not set(map(type, index)) <= _TEXT_TYPES:
        return False
    return all(isinstance(k, bytes) or k.isascii() or _encodes(k) for k in index)  # type: ignore[attr-defined, arg-type]  # str or bytes, checked above


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _careful_payload(
    stream: str, batch: Sequence[tuple[str, Sequence[Write]]]
) -> tuple[list[str | bytes], bytes, list[bytes]]:
    """:func:`commit_payload` for a batch holding bytes, odd text or values Redis cannot take.

    Every key and argument is looked at: bytes that are UTF-8 go as text,
    others (and text that is not valid Unicode) as an argument of their own;
    a key or value that is not text goes as null, which the script refuses
    for its entry only, before that entry's ack.
    """
    index: dict[str | bytes, int] = {stream: 1}
    binary: list[bytes] = []

    def ref(key: object) -> int | None:
        if isinstance(key, str):
            if not _encodes(key):
                key = key.encode(errors="surrogatepass")
        elif not isinstance(key, bytes):
            return None
        return index.setdefault(key, len(index) + 1)

    encoded = _encoder(binary)

    def valid(text: str) -> str | list[int] | None:
        if _encodes(text):
            return text
        return encoded(text.encode(errors="surrogatepass"))

    def checked(args: object) -> list[str | list[int] | None] | None:
        if not isinstance(args, tuple | list):
            return None  # refused by the script, like any malformed write
        return [valid(a) if isinstance(a, str) else encoded(a) for a in args]

    def write(w: Write) -> tuple[object, ...]:
        array = (w.op, ref(w.key), checked(w.args))
        if w.op != "HSET_LATEST" or not isinstance(w.args, tuple | list):
            return array
        return array + tuple(ref(k) for k in w.args[2:5:2])

    every_arg_checked = [(entry_id, [write(w) for w in writes]) for entry_id, writes in batch]
    return list(index), orjson.dumps(every_arg_checked, default=_refused), binary


def _refused(_: object) -> None:
    """An op or key orjson cannot write goes as null: the script refuses its entry."""
