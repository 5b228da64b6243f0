"""``printery dlq`` on a real redis-server, with dead letters written by workers under a manager."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from printery.cli.main import run
from printery.errors import Permanent
from printery.lifecycle import Outcome
from printery.message import Message
from printery.pipeline.validator import ValidatorWorker
from printery.redis.adapter import StreamAdapter
from printery.redis.writes import Write
from printery.worker import StreamWorker
from tests.support.events import Recorder, handled
from tests.support.harness import make_deps, running
from tests.support.redis_server import RedisServer, free_port
from tests.support.workers import EchoWorker

pytestmark = pytest.mark.timeout(30)

META = ("error", "deliveries", "failed_at", "original_id", "original_stream", "group")


class FixableEcho(EchoWorker):
    """EchoWorker that dead-letters ``needs: fix`` messages until the test sets ``fixed``."""

    fixed = False

    async def handle(self, message: Message) -> Sequence[Write]:
        if message.fields.get("needs") == "fix" and not self.fixed:
            raise Permanent("not fixed yet")
        return await super().handle(message)


class Dlq:
    """The CLI on this test's prefix, run in a worker thread like a separate process would."""

    def __init__(
        self, server: RedisServer, prefix: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        self.server = server
        self.prefix = prefix
        self.capsys = capsys
        self.stream = f"{prefix}:test:in"
        self.dead = f"{self.stream}:dead"

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        where = ["--redis-url", self.server.url, "--stream-prefix", self.prefix]
        code = await anyio.to_thread.run_sync(run, ["dlq", *argv, *where])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def dlq(redis_server: RedisServer, prefix: str, capsys: pytest.CaptureFixture[str]) -> Dlq:
    return Dlq(redis_server, prefix, capsys)


@asynccontextmanager
async def worker_running(worker: StreamWorker, recorder: Recorder) -> AsyncIterator[None]:
    async with running(worker, recorder=recorder):
        yield


async def dead_letter(
    adapter: StreamAdapter, prefix: str, *fields: dict[str, str]
) -> tuple[FixableEcho, Recorder, list[str]]:
    """Publish ``fields`` to a broken FixableEcho and wait until each is dead-lettered."""
    worker = FixableEcho(make_deps(adapter, prefix))
    recorder = Recorder()
    async with worker_running(worker, recorder):
        for f in fields:
            await adapter.add(worker.stream, f)
        await recorder.wait_for(lambda ev: len(handled(ev, Outcome.DEAD_LETTERED)) == len(fields))
    return worker, recorder, [e.id for e in await adapter.entries(f"{worker.stream}:dead")]


def as_text(fields: dict[bytes, bytes] | None) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (fields or {}).items()}


async def test_list_shows_the_oldest_dead_letters_and_the_count(
    real_adapter: StreamAdapter, prefix: str, dlq: Dlq
) -> None:
    """`dlq list --limit 2` shows the 2 oldest of 3 dead letters, one line each, and the count."""
    _, _, ids = await dead_letter(
        real_adapter, prefix, *({"needs": "fix", "n": str(i)} for i in range(3))
    )

    code, out, err = await dlq("list", dlq.stream, "--limit", "2")

    lines = out.splitlines()
    expected_rows = [[i, "1", "echo", "-", "-", "not", "fixed", "yet"] for i in ids[:2]]
    assert (0, "", 4) == (code, err, len(lines))
    assert f"{dlq.dead}: 3 dead letter(s); the 2 oldest:" == lines[0]
    assert "ID FAILED AT DELIVERIES GROUP TYPE SUBJECT ERROR" == " ".join(lines[1].split())
    # The second column (the failure time) is left out: it is the worker's clock.
    assert expected_rows == [[row.split()[0], *row.split()[2:]] for row in lines[2:]]


async def test_list_json_has_the_documented_shape(
    real_adapter: StreamAdapter, prefix: str, dlq: Dlq
) -> None:
    """`dlq list --json`: stream, dead stream, count, and each dead letter's id and fields."""
    _, _, ids = await dead_letter(real_adapter, prefix, {"needs": "fix", "n": "1"})
    [entry] = await real_adapter.entries(dlq.dead)

    code, out, err = await dlq("list", dlq.stream, "--json")

    assert (0, "") == (code, err)
    assert {
        "stream": dlq.stream,
        "dead_stream": dlq.dead,
        "count": 1,
        "dead_letters": [{"id": ids[0], "fields": as_text(entry.fields)}],
    } == json.loads(out)
    fields = as_text(entry.fields)
    assert ["needs", "n", *META] == list(fields)
    assert ("fix", "not fixed yet", "echo", dlq.stream) == (
        fields["needs"],
        fields["error"],
        fields["group"],
        fields["original_stream"],
    )


async def test_show_prints_every_field_and_exit_1_for_an_unknown_id(
    real_adapter: StreamAdapter, prefix: str, dlq: Dlq
) -> None:
    """`dlq show` prints the dead-letter fields, then the original ones; an unknown id exits 1."""
    _, _, [dead_id] = await dead_letter(real_adapter, prefix, {"needs": "fix"})
    [entry] = await real_adapter.entries(dlq.dead)
    fields = as_text(entry.fields)

    code, out, err = await dlq("show", dlq.stream, dead_id)

    assert (0, "") == (code, err)
    assert [
        f"dead letter {dead_id} in {dlq.dead}",
        *(f"  {k:<15}  {fields[k]}" for k in META),
        "original fields:",
        f"  {'needs':<15}  fix",
    ] == out.splitlines()
    code, out, err = await dlq("show", dlq.stream, dead_id, "--json")
    assert {"id": dead_id, "dead_stream": dlq.dead, "fields": fields} == json.loads(out)
    assert (1, "", f"printery: no dead letter 1-1 in {dlq.dead}\n") == await dlq(
        "show", dlq.stream, "1-1"
    )


async def test_replayed_dead_letter_succeeds_with_a_fresh_delivery_count(
    real_adapter: StreamAdapter, prefix: str, dlq: Dlq
) -> None:
    """Replay re-adds the original fields plus replayed_from; the fixed worker handles it once."""
    worker, recorder, [dead_id] = await dead_letter(
        real_adapter, prefix, {"needs": "fix", "n": "7"}
    )
    [original] = await real_adapter.entries(dlq.stream)
    assert 1 == len(handled(recorder.events, Outcome.DEAD_LETTERED))

    worker.fixed = True
    async with worker_running(worker, recorder):
        code, out, err = await dlq("replay", dlq.stream, dead_id)
        replayed = (await real_adapter.entries(dlq.stream))[-1]
        await recorder.wait_for(
            lambda ev: [replayed.id] == [e.message_id for e in handled(ev, Outcome.ACKED)]
        )

    assert (0, "") == (code, err)
    assert [
        f"replayed {dead_id} as {dlq.stream} {replayed.id}",
        f"{dlq.dead}: 1 before, 0 after",
        f"{dlq.stream}: 1 before, 2 after",
    ] == out.splitlines()
    assert {**as_text(original.fields), "replayed_from": dead_id} == as_text(replayed.fields)
    [output] = await real_adapter.entries(f"{prefix}:test:out")
    assert (replayed.id, "1") == (
        as_text(output.fields)["in_id"],
        as_text(output.fields)["deliveries"],
    )
    assert [] == await real_adapter.entries(dlq.dead)
    assert [1] == [e.deliveries for e in handled(recorder.events, Outcome.ACKED)]


async def test_replay_all_takes_only_the_dead_letters_present_at_the_start(
    real_adapter: StreamAdapter, prefix: str, dlq: Dlq
) -> None:
    """--all with the worker still broken: each of 150 is replayed once, and fails once more."""
    worker, recorder, ids = await dead_letter(
        real_adapter, prefix, *({"needs": "fix", "n": str(i)} for i in range(150))
    )

    async with worker_running(worker, recorder):
        code, out, err = await dlq("replay", dlq.stream, "--all")
        await recorder.wait_for(lambda ev: len(handled(ev, Outcome.DEAD_LETTERED)) == 300)

    lines = out.splitlines()
    assert (0, "", 152) == (code, err, len(lines))
    assert [f"replayed {i} as {dlq.stream} " for i in ids] == [
        line[: line.rindex(" ") + 1] for line in lines[:150]
    ]
    assert re.fullmatch(rf"{re.escape(dlq.dead)}: 150 before, \d+ after", lines[150])
    assert f"{dlq.stream}: 150 before, 300 after" == lines[151]
    again = await real_adapter.entries(dlq.dead)
    assert sorted(ids) == sorted(as_text(e.fields)["replayed_from"] for e in again)


async def test_replay_keeps_what_it_cannot_replay_and_exits_1(
    real_adapter: StreamAdapter, prefix: str, dlq: Dlq
) -> None:
    """A dead letter with no original fields, and an unknown id, stay put; the good one goes."""
    _, _, [good] = await dead_letter(real_adapter, prefix, {"needs": "fix"})
    # What the runtime writes for a pending entry that was trimmed away: metadata only.
    trimmed = await real_adapter.add(
        dlq.dead,
        {
            "error": "entry was deleted from the stream (trimmed) while pending",
            "deliveries": "0",
            "failed_at": "2024-01-01T00:00:00.000Z",
            "original_id": "1-1",
            "original_stream": dlq.stream,
            "group": "echo",
        },
    )

    code, out, err = await dlq("replay", dlq.stream, good, trimmed, "2-2")

    new_id = (await real_adapter.entries(dlq.stream))[-1].id
    assert (1, "") == (code, err)
    assert [
        f"replayed {good} as {dlq.stream} {new_id}",
        f"not replayed {trimmed}: no original fields (trimmed before it was dead-lettered)",
        f"not replayed 2-2: not in {dlq.dead}",
        f"{dlq.dead}: 2 before, 1 after",
        f"{dlq.stream}: 1 before, 2 after",
    ] == out.splitlines()
    assert [trimmed] == [e.id for e in await real_adapter.entries(dlq.dead)]


@pytest.mark.parametrize(
    "case",
    [("n\n", 1, 2), ("", 1, 2), ("y\n", 0, 0)],
    ids=["no", "end-of-input", "yes"],
)
async def test_purge_without_yes_asks_first(
    real_adapter: StreamAdapter,
    prefix: str,
    dlq: Dlq,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, int, int],
) -> None:
    """Without --yes purge asks; only a yes deletes, and the counts are printed either way."""
    answer, code, left = case
    await dead_letter(real_adapter, prefix, {"needs": "fix"}, {"needs": "fix"})
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))

    result = await dlq("purge", dlq.stream)

    prompt = f"Delete 2 dead letter(s) from {dlq.dead}? [y/N] "
    told = {
        "n\n": f"{prompt}aborted: nothing purged; {dlq.dead}: 2 dead letter(s)\n",
        "": f"{prompt}\naborted: nothing purged; {dlq.dead}: 2 dead letter(s)\n",
        "y\n": f"{prompt}purged 2 from {dlq.dead}: 2 before, 0 after\n",
    }[answer]
    assert (code, told, "") == result
    assert left == await real_adapter.length(dlq.dead)


async def test_purge_with_yes_does_not_ask(
    real_adapter: StreamAdapter, prefix: str, dlq: Dlq, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--yes purges at once: stdin is never read."""
    await dead_letter(real_adapter, prefix, {"needs": "fix"})
    monkeypatch.setattr("sys.stdin", None)

    assert (0, f"purged 1 from {dlq.dead}: 1 before, 0 after\n", "") == await dlq(
        "purge", dlq.stream, "--yes"
    )
    assert 0 == await real_adapter.length(dlq.dead)
    assert (0, f"{dlq.dead}: nothing to purge (0 dead letter(s))\n", "") == await dlq(
        "purge", dlq.stream, "--yes"
    )


async def test_purge_older_than_keeps_the_recent_ones(
    real_adapter: StreamAdapter, prefix: str, dlq: Dlq
) -> None:
    """--older-than 2h deletes the dead letters of 3 hours ago and keeps today's."""
    now_ms = await real_adapter.server_time_ms()
    three_hours_ago = now_ms - 3 * 3600 * 1000
    for seq in range(2):  # dead-lettered 3 h ago: ids carry the time they were written
        await real_adapter.client.xadd(
            dlq.dead, {"needs": "fix", "error": "old"}, id=f"{three_hours_ago}-{seq}"
        )
    _, _, ids = await dead_letter(real_adapter, prefix, {"needs": "fix"}, {"needs": "fix"})

    assert (0, f"{dlq.dead}: nothing to purge (4 dead letter(s))\n", "") == await dlq(
        "purge", dlq.stream, "--older-than", "5h", "--yes"
    )
    assert (0, f"purged 2 from {dlq.dead}: 4 before, 2 after\n", "") == await dlq(
        "purge", dlq.stream, "--older-than", "2h", "--yes"
    )
    assert ids[2:] == [e.id for e in await real_adapter.entries(dlq.dead)]


async def test_short_name_resolves_under_the_prefix(
    real_adapter: StreamAdapter, prefix: str, dlq: Dlq
) -> None:
    """`started`, `started:dead` and the key all name <prefix>:deployment:started."""
    validator = ValidatorWorker(make_deps(real_adapter, prefix))
    recorder = Recorder()
    async with worker_running(validator, recorder):
        await real_adapter.add(validator.stream, {"garbage": "1"})
        await recorder.wait_for(lambda ev: len(handled(ev, Outcome.DEAD_LETTERED)) == 1)

    for name in ("started", "started:dead", f"{prefix}:deployment:started"):
        code, out, err = await dlq("list", name, "--json")
        doc: dict[str, Any] = json.loads(out)
        assert (0, "", f"{prefix}:deployment:started", 1) == (
            code,
            err,
            doc["stream"],
            doc["count"],
        )
        assert "validator" == doc["dead_letters"][0]["fields"]["group"]


NOT_BOTH = "replay: give the ids to replay, or --all (not both)"
USAGE = [
    (
        ["list", "bogus"],
        "unknown stream 'bogus': give a stream key (like {p}:deployment:started) "
        "or a short name (started, validated, dependencies-satisfied, notifications)",
    ),
    (["show", "started", "12"], "'12' is not a stream entry id (like 1717171717171-0)"),
    (["replay", "started"], NOT_BOTH),
    (["replay", "started", "1-1", "--all"], NOT_BOTH),
    (
        ["purge", "started", "--older-than", "2 weeks"],
        "--older-than: expected a number and a unit (s, m, h, d), like 15m or 7d (got '2 weeks')",
    ),
    (["list", "started", "--limit", "0"], "--limit must be at least 1 (got 0)"),
]


@pytest.mark.parametrize(
    ("argv", "problem"),
    USAGE,
    ids=["stream", "id", "replay-nothing", "replay-both", "duration", "limit"],
)
async def test_usage_problems_are_one_line_and_exit_2_before_redis(
    prefix: str, capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    """Bad arguments are reported before any connection (Redis here is unreachable), exit 2."""
    where = ["--redis-url", f"redis://127.0.0.1:{free_port()}/0", "--stream-prefix", prefix]
    code = await anyio.to_thread.run_sync(run, ["dlq", *argv, *where])
    assert (2, ("", f"printery: {problem.format(p=prefix)}\n")) == (code, capsys.readouterr())


async def test_unreachable_redis_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening at --redis-url: one line naming it, exit 2, for every dlq command."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    commands = [
        ["list", "started"],
        ["show", "started", "1-1"],
        ["replay", "started", "--all"],
        ["purge", "started", "--yes"],
    ]
    for argv in commands:
        code = await anyio.to_thread.run_sync(run, ["dlq", *argv, "--redis-url", url])
        out, err = capsys.readouterr()
        assert (2, "", 1) == (code, out, len(err.splitlines()))
        assert err.startswith(f"printery: cannot reach Redis at {url}: ")


@pytest.mark.parametrize("action", ["list", "show", "replay", "purge"])
def test_help_has_examples(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each `printery dlq <action> --help` shows examples of that action."""
    with pytest.raises(SystemExit) as exited:
        run(["dlq", action, "--help"])
    out = capsys.readouterr().out
    assert 0 == exited.value.code
    assert f"examples:\n  printery dlq {action} " in out


async def test_list_without_a_stream_summarises_every_dead_letter_stream(
    real_adapter: StreamAdapter, prefix: str, dlq: Dlq
) -> None:
    """`dlq list` alone: one line per dead-letter stream, the pipeline's four and any other."""
    await dead_letter(real_adapter, prefix, {"needs": "fix", "n": "1"}, {"needs": "fix", "n": "2"})
    await real_adapter.add(f"{prefix}:notifications:dead", {"error": "webhook said 500"})

    code, out, err = await dlq("list", "--json")

    rows = json.loads(out)["dead_letter_streams"]
    assert (0, "") == (code, err)
    assert [
        (f"{prefix}:deployment:started:dead", 0, None),
        (f"{prefix}:deployment:validated:dead", 0, None),
        (f"{prefix}:deployment:dependencies-satisfied:dead", 0, None),
        (f"{prefix}:notifications:dead", 1, "webhook said 500"),
        (dlq.dead, 2, "not fixed yet"),
    ] == [(r["dead_stream"], r["count"], r["newest_error"]) for r in rows]
    code, out, _ = await dlq("list")
    lines = out.splitlines()
    assert (0, "3 dead letter(s) in 2 stream(s)") == (code, lines[0])
    assert [dlq.dead, "2"] == lines[-2].split()[:2]


async def test_show_shortens_a_huge_field_unless_full(
    real_adapter: StreamAdapter, prefix: str, dlq: Dlq
) -> None:
    """`dlq show` cuts a 5000-character field at 500 with a note; --full prints it whole."""
    huge = "x" * 5000
    _, _, [dead_id] = await dead_letter(real_adapter, prefix, {"needs": "fix", "blob": huge})

    code, out, _ = await dlq("show", dlq.stream, dead_id)
    [line] = [ln for ln in out.splitlines() if ln.lstrip().startswith("blob")]
    cut = f"  {'blob':<15}  {'x' * 500}… (5000 characters; --full prints it whole)"
    assert (0, cut) == (code, line)

    code, out, _ = await dlq("show", dlq.stream, dead_id, "--full")
    [line] = [ln for ln in out.splitlines() if ln.lstrip().startswith("blob")]
    assert (0, f"  {'blob':<15}  {huge}") == (code, line)


@pytest.mark.parametrize("argv", [[], ["dlq"]], ids=["printery", "printery-dlq"])
def test_bare_commands_print_their_help(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bare `printery` and `printery dlq` print their help (exit 0), not a usage error."""
    code = run(argv)
    out, err = capsys.readouterr()
    usage = " ".join(["usage: printery", *argv])
    assert (0, "", True) == (code, err, out.startswith(usage)), out


def test_help_names_the_environment_only_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """`printery --help` and `printery-workers --help` list the settings that have no flag."""
    from printery.daemon.serve import build_parser as daemon_parser

    with pytest.raises(SystemExit):
        run(["--help"])
    printery_help = " ".join(capsys.readouterr().out.split())
    daemon_help = " ".join(daemon_parser().format_help().split())
    env_only = "settings without a flag, read from the environment only: "
    assert (True, True) == (env_only in printery_help, env_only in daemon_help)
    assert ("CLAIM_IDLE_MS" in printery_help, "BATCH_SIZE," in daemon_help) == (True, True)
    # The daemon's own flags are not listed as environment-only there.
    assert "LOG_LEVEL," not in daemon_help.split(env_only)[1]
