"""``printery dlq``: inspect and re-drive the dead letters of a stream (``<stream>:dead``).

STREAM is a stream key (``printery:deployment:started``), a short name under
the prefix (``started``, ``validated``, ``dependencies-satisfied``,
``notifications``), or either of those with ``:dead``.

- ``list``: the oldest ``--limit`` dead letters, one line each; without a
  stream, one line per dead-letter stream (printery.admin.dlq_summary).
- ``show``: every field of one dead letter (cut at ``SHOW_CHARS`` unless ``--full``).
- ``replay``: the given ids, or ``--all`` (those present when the command
  starts, so a message that fails again is not replayed twice); each one is
  added back to its stream without the dead-letter fields and with
  ``replayed_from``, and removed from ``<stream>:dead``, atomically
  (:meth:`~printery.redis.adapter.StreamAdapter.replay_dead`).
- ``purge``: every dead letter, or those dead-lettered before ``--older-than``
  (by Redis's clock, which stamps the ids); asks first unless ``--yes``. Dead
  letters that arrive while the question waits are never purged.

Counts before and after are printed. Exit ``0`` done, ``1`` something was not
done (an id not found or refused, a purge declined), ``2`` usage or Redis.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from printery.admin.dlq_summary import summarise
from printery.admin.tables import parse_duration, render_table, shorten
from printery.pipeline.publish import UsageProblem
from printery.redis.adapter import DEAD_LETTER_FIELDS, StreamAdapter
from printery.redis.keys import DEAD_SUFFIX, Keys
from printery.redis.replies import Entry

__all__ = [
    "DlqRequest",
    "add_dlq_parser",
    "ask",
    "dlq_request",
    "purge_all",
    "replay_batches",
    "resolve_stream",
    "run",
]

_ID = re.compile(r"^\d+-\d+$")
_PAGE = 100
SHOW_CHARS = 500  # `dlq show` cuts a longer field (a 1 MiB data field) unless --full


@dataclass(frozen=True, slots=True)
class DlqRequest:
    """A ``dlq`` command, checked before anything talks to Redis."""

    action: str
    stream: str
    ids: tuple[str, ...] = ()
    replay_all: bool = False
    limit: int = 20
    older_than_s: float | None = None
    older_than: str = ""
    yes: bool = False
    as_json: bool = False
    full: bool = False
    prefix: str = "printery"

    @property
    def dead(self) -> str:
        return Keys.dead(self.stream)


def add_dlq_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``dlq list|show|replay|purge`` under the ``printery`` parser's subcommands."""
    dlq = sub.add_parser(
        "dlq",
        help="inspect and re-drive dead letters",
        description="Inspect and re-drive the dead letters of a stream. STREAM is a stream "
        "key or a short name: started, validated, dependencies-satisfied, notifications.",
        epilog="examples:\n"
        "  printery dlq list started --limit 50\n"
        "  printery dlq show started 1717171717171-0\n"
        "  printery dlq replay notifications --all\n"
        "  printery dlq purge started --older-than 7d --yes",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dlq.set_defaults(print_help=dlq.print_help)  # a bare `printery dlq` prints this help
    actions = dlq.add_subparsers(dest="action", metavar="ACTION")

    def action(
        name: str, text: str, examples: str, *, stream_optional: bool = False
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(
            name,
            parents=[common],
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=f"examples:\n{examples}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if stream_optional:
            parser.add_argument(
                "stream",
                metavar="STREAM",
                nargs="?",
                help="stream key or short name; without it, a summary of every dead-letter stream",
            )
        else:
            parser.add_argument("stream", metavar="STREAM", help="stream key or short name")
        return parser

    listing = action(
        "list",
        "list the oldest dead letters of STREAM, one line each (no STREAM: every dead-letter "
        "stream, one line each)",
        "  printery dlq list started\n"
        "  printery dlq list printery:notifications --limit 5 --json\n"
        "  printery dlq list            # every dead-letter stream, one line each",
        stream_optional=True,
    )
    listing.add_argument("--limit", type=int, default=20, metavar="N", help="at most N (20)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    show = action(
        "show",
        "print every field of one dead letter",
        "  printery dlq show started 1717171717171-0",
    )
    show.add_argument("ids", metavar="ID", nargs=1, help="the dead letter's id")
    show.add_argument("--json", action="store_true", help="print JSON (always in full)")
    show.add_argument(
        "--full",
        action="store_true",
        help=f"print every field whole (longer ones are cut at {SHOW_CHARS} characters)",
    )
    replay = action(
        "replay",
        "put dead letters back on STREAM, each with a fresh delivery count",
        "  printery dlq replay started 1717171717171-0 1717171717180-0\n"
        "  printery dlq replay notifications --all",
    )
    replay.add_argument("ids", metavar="ID", nargs="*", help="dead letter ids")
    replay.add_argument("--all", dest="replay_all", action="store_true", help="every one")
    purge = action(
        "purge",
        "delete the dead letters of STREAM, after asking",
        "  printery dlq purge started --older-than 7d\n  printery dlq purge notifications --yes",
    )
    purge.add_argument(
        "--older-than",
        dest="older_than",
        metavar="DURATION",
        help="only those dead-lettered before this long ago: 30s, 15m, 2h, 7d",
    )
    purge.add_argument("--yes", action="store_true", help="do not ask")


def resolve_stream(name: str, keys: Keys) -> str:
    """The stream key ``name`` means; UsageProblem when it is neither a key nor a short name."""
    short = {
        "started": keys.started,
        "validated": keys.validated,
        "dependencies-satisfied": keys.dependencies_satisfied,
        "notifications": keys.notifications,
    }
    stream = name.strip().removesuffix(DEAD_SUFFIX)
    if stream in short:
        return short[stream]
    if ":" not in stream:
        raise UsageProblem(
            f"unknown stream {name!r}: give a stream key (like {keys.started}) "
            f"or a short name ({', '.join(short)})"
        )
    return stream


def dlq_request(args: argparse.Namespace, keys: Keys) -> DlqRequest:
    """Check the arguments; UsageProblem (one line, exit 2) when they make no sense.

    ``list`` without a stream is the summary of every dead-letter stream (``stream`` empty).
    """
    stream = "" if args.stream is None else resolve_stream(args.stream, keys)
    ids = tuple(dict.fromkeys(getattr(args, "ids", None) or ()))
    bad = [i for i in ids if not _ID.match(i)]
    if bad:
        raise UsageProblem(f"{bad[0]!r} is not a stream entry id (like 1717171717171-0)")
    replay_all = bool(getattr(args, "replay_all", False))
    if args.action == "replay" and replay_all == bool(ids):
        raise UsageProblem("replay: give the ids to replay, or --all (not both)")
    limit = getattr(args, "limit", 20)
    if limit < 1:
        raise UsageProblem(f"--limit must be at least 1 (got {limit})")
    older_than_s = None
    if getattr(args, "older_than", None) is not None:
        try:
            older_than_s = parse_duration(args.older_than)
        except ValueError as exc:
            raise UsageProblem(f"--older-than: {exc}") from None
    return DlqRequest(
        args.action,
        stream,
        ids,
        replay_all,
        limit,
        older_than_s,
        str(getattr(args, "older_than", None) or ""),
        bool(getattr(args, "yes", False)),
        bool(getattr(args, "json", False)),
        bool(getattr(args, "full", False)),
        keys.prefix,
    )


def ask(prompt: str) -> bool:
    """Ask on the terminal (or read a line from stdin); only ``y`` or ``yes`` is consent."""
    try:
        return input(prompt).strip().lower() in {"y", "yes"}
    except EOFError:
        print()
        return False


async def run(
    adapter: StreamAdapter, request: DlqRequest, confirm: Callable[[str], bool] = ask
) -> int:
    """Carry out the request; returns the exit code."""
    if not request.stream:
        return await summarise(adapter, request.prefix, as_json=request.as_json)
    for key in (request.stream, request.dead):
        kind = await adapter.key_type(key)
        if kind not in {"stream", "none"}:
            print(f"printery: {key} holds a {kind}, not a stream", file=sys.stderr)
            return 2
    if request.action == "list":
        return await _list(adapter, request)
    if request.action == "show":
        return await _show(adapter, request)
    if request.action == "replay":
        return await _replay(adapter, request)
    return await _purge(adapter, request, confirm)


def _fields(entry: Entry) -> dict[str, str]:
    return {
        k.decode(errors="replace"): v.decode(errors="replace")
        for k, v in (entry.fields or {}).items()
    }


async def _list(adapter: StreamAdapter, request: DlqRequest) -> int:
    total = await adapter.length(request.dead)
    found = await adapter.entries(request.dead, count=request.limit)
    if request.as_json:
        listed = [{"id": e.id, "fields": _fields(e)} for e in found]
        doc = {"stream": request.stream, "dead_stream": request.dead, "count": total}
        print(json.dumps({**doc, "dead_letters": listed}, indent=2))
        return 0
    if not found:
        print(f"{request.dead}: no dead letters")
        return 0
    print(f"{request.dead}: {total} dead letter(s); the {len(found)} oldest:")
    rows = []
    for entry in found:
        f = _fields(entry)
        rows.append(
            [
                entry.id,
                f.get("failed_at", "-"),
                f.get("deliveries", "-"),
                f.get("group", "-"),
                f.get("type", "-"),
                f.get("subject", "-"),
                shorten(f.get("error", ""), 70),
            ]
        )
    headers = ["ID", "FAILED AT", "DELIVERIES", "GROUP", "TYPE", "SUBJECT", "ERROR"]
    print("\n".join(render_table(headers, rows)))
    return 0


async def _show(adapter: StreamAdapter, request: DlqRequest) -> int:
    entry_id = request.ids[0]
    found = await adapter.entries(request.dead, start=entry_id, end=entry_id)
    if not found:
        print(f"printery: no dead letter {entry_id} in {request.dead}", file=sys.stderr)
        return 1
    fields = _fields(found[0])
    if request.as_json:
        print(json.dumps({"id": entry_id, "dead_stream": request.dead, "fields": fields}, indent=2))
        return 0
    meta = [(k, fields[k]) for k in DEAD_LETTER_FIELDS if k in fields]
    original = [(k, v) for k, v in fields.items() if k not in DEAD_LETTER_FIELDS]
    width = max(len(k) for k in fields)

    def shown(value: str) -> str:
        if request.full or len(value) <= SHOW_CHARS:
            return value
        return f"{value[:SHOW_CHARS]}… ({len(value)} characters; --full prints it whole)"

    print(f"dead letter {entry_id} in {request.dead}")
    print("\n".join(f"  {k:<{width}}  {shown(v)}" for k, v in meta))
    print("original fields:")
    print("\n".join(f"  {k:<{width}}  {shown(v)}" for k, v in original) or "  (none)")
    return 0


async def _replay(adapter: StreamAdapter, request: DlqRequest) -> int:
    before = (await adapter.length(request.dead), await adapter.length(request.stream))
    kept = 0
    async for ids in _to_replay(adapter, request):
        for result in await adapter.replay_dead(request.dead, request.stream, ids):
            if result.new_id is not None:
                print(f"replayed {result.dead_id} as {request.stream} {result.new_id}")
            else:
                kept += 1
                print(f"not replayed {result.dead_id}: {result.problem}")
    after = (await adapter.length(request.dead), await adapter.length(request.stream))
    print(f"{request.dead}: {before[0]} before, {after[0]} after")
    print(f"{request.stream}: {before[1]} before, {after[1]} after")
    return 1 if kept else 0


async def _to_replay(adapter: StreamAdapter, request: DlqRequest) -> AsyncIterator[list[str]]:
    """Batches of ids: the given ones, or every dead letter present when this started."""
    if not request.replay_all:
        for at in range(0, len(request.ids), _PAGE):
            yield list(request.ids[at : at + _PAGE])
        return
    last = await adapter.last_entry_id(request.dead)
    start = "-"
    while last is not None:
        page = await adapter.entries(request.dead, start=start, end=last, count=_PAGE)
        if not page:
            return
        yield [e.id for e in page]
        start = f"({page[-1].id}"


def replay_batches(adapter: StreamAdapter, request: DlqRequest) -> AsyncIterator[list[str]]:
    """The ids a replay request covers, in batches; the dashboard replays with these too."""
    return _to_replay(adapter, request)


async def purge_all(adapter: StreamAdapter, dead: str) -> int:
    """Delete every dead letter present now (one exact XTRIM MINID); returns how many."""
    last = await adapter.last_entry_id(dead)
    return 0 if last is None else await adapter.trim_before(dead, _after(last))


async def _purge(
    adapter: StreamAdapter, request: DlqRequest, confirm: Callable[[str], bool]
) -> int:
    before = await adapter.length(request.dead)
    last = await adapter.last_entry_id(request.dead)
    if request.older_than_s is None:
        cutoff = _after(last) if last is not None else None
        count, which = before, ""
    else:
        server_ms = await adapter.server_time_ms()
        cutoff = f"{max(0, server_ms - int(request.older_than_s * 1000))}-0"
        count = await _count_before(adapter, request.dead, cutoff)
        which = f" older than {request.older_than}"
    if cutoff is None or count == 0:
        print(f"{request.dead}: nothing to purge ({before} dead letter(s))")
        return 0
    prompt = f"Delete {count} dead letter(s){which} from {request.dead}? [y/N] "
    if not request.yes and not _ask_interruptibly(confirm, prompt):
        print(f"aborted: nothing purged; {request.dead}: {before} dead letter(s)")
        return 1
    purged = await adapter.trim_before(request.dead, cutoff)
    after = await adapter.length(request.dead)
    print(f"purged {purged} from {request.dead}: {before} before, {after} after")
    return 0


def _ask_interruptibly(confirm: Callable[[str], bool], prompt: str) -> bool:
    """Ask on the loop's own thread: nothing else runs meanwhile, and Ctrl-C must end it.

    In a worker thread, a pending input() would outlive the command. And asyncio's
    runner turns the first Ctrl-C into a cancellation that a blocked input() never
    sees, so the default handler, which raises KeyboardInterrupt, is put back meanwhile.
    """
    if threading.current_thread() is not threading.main_thread():
        return confirm(prompt)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return confirm(prompt)
    finally:
        signal.signal(signal.SIGINT, previous)


def _after(entry_id: str) -> str:
    """The smallest id greater than ``entry_id``: XTRIM MINID keeps it and all later."""
    ms, _, seq = entry_id.partition("-")
    if int(seq) >= 2**64 - 1:
        return f"{int(ms) + 1}-0"
    return f"{ms}-{int(seq) + 1}"


async def _count_before(adapter: StreamAdapter, stream: str, cutoff: str) -> int:
    """How many entries are older than ``cutoff``; paged, so a large stream is never one reply."""
    if cutoff == "0-0":
        return 0
    count, start = 0, "-"
    while True:
        page = await adapter.entries(stream, start=start, end=f"({cutoff}", count=1000)
        count += len(page)
        if len(page) < 1000:
            return count
        start = f"({page[-1].id}"
