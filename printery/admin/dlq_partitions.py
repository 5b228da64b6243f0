"""``printery dlq`` on a Redis Cluster: a stage's dead letters are one stream per partition.

A short name (``started``) or an untagged stream key means the stage, so the
request runs on each partition's ``<stream>:dead`` that holds dead letters,
one after the other; a tagged key (``printery:{p3.23}:deployment:started``)
means that partition alone. Replaying ids looks up which partition holds
each id first, so an id is replayed from the one dead stream it is in and
an id found in none is reported once. The exit code is the worst of the
partitions'.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence

from printery.admin.dlq import DlqRequest, ask, run
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys

__all__ = ["run_partitioned"]


async def run_partitioned(
    adapter: StreamAdapter,
    request: DlqRequest,
    base: Keys,
    partitions: Sequence[Keys],
    confirm: Callable[[str], bool] = ask,
) -> int:
    """Run ``request`` on every partition of its stage; as :func:`run` for a tagged key."""
    suffix = request.stream.removeprefix(base.root)
    if "{" in request.stream or suffix == request.stream:
        return await run(adapter, request, confirm)
    streams = [p.root + suffix for p in partitions]
    if request.action in {"replay", "show"} and request.ids:
        return await _by_ids(adapter, request, streams, confirm)
    holding = [s for s in streams if await adapter.length(Keys.dead(s))]
    if not holding:
        return await run(adapter, dataclasses.replace(request, stream=streams[0]), confirm)
    code = 0
    for stream in holding:
        code = max(code, await run(adapter, dataclasses.replace(request, stream=stream), confirm))
    return code


async def _by_ids(
    adapter: StreamAdapter,
    request: DlqRequest,
    streams: Sequence[str],
    confirm: Callable[[str], bool],
) -> int:
    where: dict[str, list[str]] = {}
    for entry_id in request.ids:
        for stream in streams:
            if await adapter.entries(Keys.dead(stream), start=entry_id, end=entry_id):
                where.setdefault(stream, []).append(entry_id)
                break
        else:
            print(f"printery: {entry_id}: no such dead letter in any partition", file=sys.stderr)
    code = 0 if sum(map(len, where.values())) == len(request.ids) else 1
    for stream, ids in where.items():
        found = dataclasses.replace(request, stream=stream, ids=tuple(ids))
        code = max(code, await run(adapter, found, confirm))
    return code
