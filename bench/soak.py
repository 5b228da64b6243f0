"""Soak: the whole pipeline under random faults for minutes, then an account of every deployment.

The fault tests prove one fault at a time; production mixes them. This runs
``--replicas`` ``printery-workers`` processes (each running all four workers)
against a redis-server of its own (``appendonly yes``), a loopback health
endpoint and a loopback webhook receiver, publishes deployments at ``--rate``
a second (a mix that ends healthy, unhealthy, rejected and blocked), and at
random intervals injects one of these faults:

- ``kill-daemon``: SIGKILL a daemon, start a replacement (its messages are claimed)
- ``term-daemon``: SIGTERM a daemon (it must drain and exit 0), start a replacement
- ``redis-restart``: stop redis-server for a few seconds, start it again
- ``redis-stall``: SIGSTOP redis-server for a few seconds, then SIGCONT
- ``client-pause``: ``CLIENT PAUSE`` for a few seconds
- ``poison``: invalid JSON, an unknown type, non-UTF-8 bytes (with and without a
  readable id) on the started stream
- ``webhook-500`` / ``webhook-refuse``: the receiver answers 500, or refuses
  connections, for a few seconds

Then it stops publishing, waits (at most ``--settle`` seconds) for the pipeline
to settle, SIGTERMs every daemon and prints the accounting: published; reached
a terminal outcome at the webhook, per outcome; dead-lettered, per stream, with
the reasons grouped; still pending; duplicates at the webhook; unaccounted,
which must be 0; and the faults injected. It is not run in CI.

While it publishes it samples Redis's ``used_memory`` (INFO memory) every
``--memory-every`` seconds and reports the samples taken after ``--warm-up``:
first, last, min, max and the drift (last against first). The daemons run with
``STREAM_RETENTION`` = ``--stream-retention`` (``none``: nothing is trimmed) and
``STREAM_TRIM_INTERVAL`` = ``--trim-interval``; each deployment's own keys
(timeline, webhook markers) expire after ``--key-ttl`` in either case, so two
runs that differ only in ``--stream-retention`` compare the streams alone.
The warm-up defaults to the longer of the retention and the key TTL, plus two
trim intervals: by then the first entries and keys are gone, in either run.

    python bench/soak.py [--minutes 10] [--rate 20] [--seed N] [--replicas 2]
                         [--settle 180] [--fault-gap 3,12] [--faults a,b,...]
                         [--stream-retention S|none] [--trim-interval 10]
                         [--key-ttl 300] [--warm-up S] [--memory-every 5]
                         [--supervised] [--keep]

The same ``--seed`` replays the same deployments and the same sequence of
faults (their timing still varies with the machine); the seed is printed.

Exit ``0`` every deployment accounted, ``1`` something unaccounted, ``2`` the
soak itself could not run. An XADD whose reply was lost (Redis down or stalled)
may or may not have happened: such a deployment counts as published only if it
is found in the started stream (or, trimmed from it, reached the webhook).
``--keep`` keeps the work directory (daemon logs, the AOF) and prints where it is.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import redis
import redis.asyncio as aioredis
from aiohttp import web
from redis.backoff import NoBackoff
from redis.retry import Retry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RedisServer, free_port
from printery.envelope import Event
from printery.redis.keys import Keys

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "soak"
KEYS = Keys(PREFIX)


def soak_redis(data_dir: Path) -> RedisServer:
    """A redis-server on a fixed port and data directory, every write on disk.

    The faults stop it and start it again, and stall it.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("soak: redis-server is not installed (apt-get install redis-server)")
    return RedisServer(data_dir, appendonly=True, binary=binary, startup_s=30)


GROUPS = {
    KEYS.started: "validator",
    KEYS.validated: "dependency-checker",
    KEYS.dependencies_satisfied: "health-monitor",
    KEYS.notifications: "notifier",
}
OUTCOMES = (
    "deployment.healthy",
    "deployment.unhealthy",
    "deployment.rejected",
    "deployment.blocked",
)
KINDS = {"healthy": 0.7, "unhealthy": 0.1, "rejected": 0.1, "blocked": 0.1}
FAULTS = (
    "kill-daemon",
    "term-daemon",
    "redis-restart",
    "redis-stall",
    "client-pause",
    "poison",
    "webhook-500",
    "webhook-refuse",
)
# Fast enough that a soak of minutes sees many claims, retries and dead letters.
DAEMON_ENV = {
    "STREAM_PREFIX": PREFIX,
    "WORKER_MODE": "all",
    "HTTP_PORT": "0",
    "ENVIRONMENT": "production",
    "LOG_LEVEL": "warn",
    "BLOCK_MS": "500",
    "REDIS_SOCKET_TIMEOUT": "2",
    "REDIS_CONNECT_TIMEOUT": "1",
    "CLAIM_IDLE_MS": "3000",
    "MAX_DELIVERIES": "5",
    "RETRY_BACKOFF_MS": "200",
    "RETRY_BACKOFF_MAX_MS": "2000",
    "SHUTDOWN_TIMEOUT": "10",
    "HEARTBEAT_INTERVAL": "2",
    "DEPENDENCY_WAIT_TIMEOUT": "3",
    "HEALTH_CHECK_ALLOWED_HOSTS": "127.0.0.1",
    "NOTIFY_WEBHOOK_ATTEMPTS": "3",
    "NOTIFY_WEBHOOK_BACKOFF_MS": "100",
    "NOTIFY_WEBHOOK_BACKOFF_MAX_MS": "1000",
    "NOTIFY_WEBHOOK_TIMEOUT": "2",
}
_POLL_S = 0.5  # how often the state of other processes is looked at
YOUNG_S = 3.0  # a daemon signalled sooner after its start may not handle signals yet


def say(began: float, text: str) -> None:
    print(f"[{time.monotonic() - began:7.1f} s] {text}", flush=True)


# -- the loopback health endpoint and webhook receiver ----------------------------------


@dataclass(frozen=True)
class Post:
    event_id: str
    subject: str
    type: str
    status: int
    at: float = field(default_factory=time.monotonic)


class Loopback:
    """The deployments' health endpoints (always up) and the webhook receiver (faulty on demand).

    ``mode`` is ``ok``, ``500`` (answer 500) or ``refuse`` (the listening
    socket is closed and kept-alive connections are dropped unanswered).
    """

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.mode = "ok"
        self.health_port = free_port()
        self.hook_port = free_port()
        self.health_url = f"http://127.0.0.1:{self.health_port}"
        self.hook_url = f"http://127.0.0.1:{self.hook_port}/hook"
        self._health_runner: web.AppRunner | None = None
        self._hook_runner: web.AppRunner | None = None
        self._hook_site: web.TCPSite | None = None

    async def start(self) -> None:
        health = web.Application()
        health.add_routes(
            [
                web.get("/healthz", self.healthy),
                web.get("/unhealthy", self.unhealthy),
            ]
        )
        self._health_runner = web.AppRunner(health, access_log=None, handle_signals=False)
        await self._health_runner.setup()
        await web.TCPSite(self._health_runner, "127.0.0.1", self.health_port).start()
        hook = web.Application()
        hook.add_routes([web.post("/hook", self.hook)])
        self._hook_runner = web.AppRunner(hook, access_log=None, handle_signals=False)
        await self._hook_runner.setup()
        await self.listen()

    async def listen(self) -> None:
        assert self._hook_runner is not None
        self._hook_site = web.TCPSite(self._hook_runner, "127.0.0.1", self.hook_port)
        await self._hook_site.start()

    async def refuse(self) -> None:
        self.mode = "refuse"
        if self._hook_site is not None:
            await self._hook_site.stop()
            self._hook_site = None

    async def recover(self) -> None:
        if self.mode == "refuse":
            await self.listen()
        self.mode = "ok"

    async def healthy(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def unhealthy(self, _: web.Request) -> web.Response:
        return web.Response(status=503)

    async def hook(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "refuse":
            if request.transport is not None:
                request.transport.close()  # a kept-alive connection: drop it unanswered
            return web.Response(status=503)  # never sent: the connection is gone
        body = await request.json()
        status = 500 if self.mode == "500" else 204
        self.posts.append(
            Post(
                request.headers.get("Idempotency-Key", ""),
                str(body.get("subject")),
                str(body.get("type")),
                status,
            )
        )
        return web.Response(status=status)

    async def close(self) -> None:
        for runner in (self._hook_runner, self._health_runner):
            if runner is not None:
                await runner.cleanup()


# -- the daemons ------------------------------------------------------------------------


class Daemon:
    """One ``printery-workers`` process with its log in the work directory."""

    def __init__(self, slot: int, generation: int, env: dict[str, str], log_dir: Path) -> None:
        self.name = f"soak-{slot}-{generation}"
        self.slot = slot
        self.generation = generation
        self.log_path = log_dir / f"{self.name}.log"
        self.env = {**env, "CONSUMER_NAME": self.name}
        self.process: subprocess.Popen[bytes] | None = None
        self.signalled: signal.Signals | None = None
        self.started_at = 0.0
        self.age_at_signal = 0.0

    def start(self) -> Daemon:
        self.started_at = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "cmd" / "printery-workers")],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        return self

    def send(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.signalled = sig
        self.age_at_signal = time.monotonic() - self.started_at
        self.process.send_signal(sig)

    @property
    def young(self) -> bool:
        """Signalled before it could have set up its signal handlers (still importing)."""
        return self.age_at_signal < YOUNG_S

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()


@dataclass
class Run:
    """Everything the soak did and saw, for the accounting."""

    began: float
    published: dict[str, str] = field(default_factory=dict)  # subject -> kind
    uncertain: dict[str, str] = field(default_factory=dict)  # XADD failed: maybe published
    poison_ids: dict[str, str] = field(default_factory=dict)  # entry id -> kind (no subject)
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[tuple[float, str]] = field(default_factory=list)  # (start, fault)
    term_exits: Counter[int] = field(default_factory=Counter)
    young_term_exits: Counter[int] = field(default_factory=Counter)
    unexpected_exits: list[tuple[str, int]] = field(default_factory=list)
    daemons: list[Daemon] = field(default_factory=list)
    retired: list[Daemon] = field(default_factory=list)
    generation: int = 0


def started_fields(n: int, kind: str, health_url: str, rng: random.Random) -> dict[str, str]:
    deployment_id = f"soak-{n}"
    service = rng.choice(["billing-api", "auth-api", "search-api", "ledger"])
    dependencies: list[dict[str, str]] = []
    if kind == "healthy" and service != "auth-api" and rng.random() < 0.5:
        dependencies = [{"service": "auth-api", "version": ">=2.0.0"}]
    if kind == "blocked":
        dependencies = [{"service": "ghost-api", "version": "^1.0.0"}]
    data = {
        "deployment_id": deployment_id,
        "service": service,
        "version": "not-a-version" if kind == "rejected" else f"2.{n % 1000}.0",
        "environment": "production",
        "requested_by": "soak@example.com",
        "dependencies": dependencies,
        "health_check": {
            "url": f"{health_url}/{'unhealthy' if kind == 'unhealthy' else 'healthz'}",
            "expect_status": 200,
            "timeout_s": 1,
            "interval_s": 0.3,
            "healthy_threshold": 1,
            "deadline_s": 2 if kind == "unhealthy" else 20,
        },
    }
    return Event.create("deployment.started", deployment_id, data, source="soak").to_fields()


def _client(url: str) -> aioredis.Redis:
    # No silent retries: a lost reply must be known, since the XADD may have happened.
    return aioredis.Redis.from_url(
        url, socket_timeout=3, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )


async def publisher(
    run: Run, url: str, loop: Loopback, *, rate: float, until: float, rng: random.Random
) -> None:
    client = _client(url)
    n = 0
    try:
        while time.monotonic() < until:
            kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
            fields = started_fields(n, kind, loop.health_url, rng)
            subject = fields["subject"]
            n += 1
            try:
                await client.xadd(KEYS.started, fields)  # type: ignore[arg-type]
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                run.uncertain[subject] = kind
            else:
                run.published[subject] = kind
            await anyio.sleep(max(0.0, run.began + n / rate - time.monotonic()) if rate else 0)
    finally:
        await client.aclose()


def poison_entries(n: int) -> list[tuple[str, str | None, dict[bytes, bytes]]]:
    """(kind, subject or None, fields) for each kind of poison."""

    def entry(subject: str | None, **changes: bytes) -> dict[bytes, bytes]:
        # Each its own event id: entries sharing (source, id) are one event to a receiver.
        base = Event.create("deployment.started", "x", {}, source="soak").to_fields()
        fields = {k.encode(): v.encode() for k, v in base.items()}
        fields[b"subject"] = subject.encode() if subject else b"\xff\xfe"
        fields.update({k.encode(): v for k, v in changes.items()})
        return fields

    return [
        ("invalid-json", f"poison-{n}-json", entry(f"poison-{n}-json", data=b'{"deployment_id": ')),
        (
            "unknown-type",
            f"poison-{n}-type",
            entry(f"poison-{n}-type", type=b"deployment.exploded"),
        ),
        ("non-utf8", f"poison-{n}-bytes", entry(f"poison-{n}-bytes", data=b"\xff\xfe\xfd")),
        ("non-utf8-no-id", None, entry(None, data=b"\xc3\x28")),
    ]


async def inject(
    run: Run,
    fault: str,
    *,
    rng: random.Random,
    server: RedisServer,
    loop: Loopback,
    replace: Callable[[Daemon], Awaitable[None]],
) -> None:
    live = [d for d in run.daemons if d.exit_code is None and d.signalled is None]
    if fault in {"kill-daemon", "term-daemon"}:
        if not live:
            return
        victim = rng.choice(live)
        victim.send(signal.SIGKILL if fault == "kill-daemon" else signal.SIGTERM)
        await replace(victim)
    elif fault == "redis-restart":
        down = rng.uniform(1, 5)
        await anyio.to_thread.run_sync(server.stop)
        await anyio.sleep(down)
        await anyio.to_thread.run_sync(server.start)
    elif fault == "redis-stall":
        server.pause()
        await anyio.sleep(rng.uniform(1, 5))
        server.resume()
    elif fault == "client-pause":
        pause_ms = int(rng.uniform(1, 4) * 1000)
        client = _client(server.url)
        try:
            await client.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()
        await anyio.sleep(pause_ms / 1000)
    elif fault == "poison":
        client = _client(server.url)
        try:
            for kind, subject, fields in poison_entries(run.faults[fault]):
                try:
                    entry_id = await client.xadd(KEYS.started, fields)  # type: ignore[arg-type]
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    continue
                if subject is None:
                    run.poison_ids[_text(entry_id)] = kind
                else:
                    run.published[subject] = f"poison:{kind}"
        finally:
            await client.aclose()
    elif fault in {"webhook-500", "webhook-refuse"}:
        if fault == "webhook-500":
            loop.mode = "500"
        else:
            await loop.refuse()
        # Up to twice the notifier's retry budget (about 5 s here): some are dead-lettered.
        await anyio.sleep(rng.uniform(2, 10))
        await loop.recover()


async def injector(
    run: Run,
    until: float,
    gaps: tuple[float, float],
    rng: random.Random,
    faults: tuple[str, ...],
    **kwargs: Any,
) -> None:
    while True:
        await anyio.sleep(rng.uniform(*gaps))
        if time.monotonic() >= until:
            return
        fault = rng.choice(faults)
        say(run.began, f"fault: {fault}")
        run.fault_log.append((time.monotonic(), fault))
        await inject(run, fault, rng=rng, **kwargs)
        run.faults[fault] += 1


async def supervise(run: Run, replace: Callable[[Daemon], Awaitable[None]]) -> None:
    """Restart a daemon that exited on its own, as the container platform would."""
    while True:
        for daemon in list(run.daemons):
            code = daemon.exit_code
            if code is not None and daemon.signalled is None:
                run.unexpected_exits.append((daemon.name, code))
                say(run.began, f"daemon {daemon.name} exited {code} on its own; replaced")
                await replace(daemon)
        for daemon in list(run.retired):
            code = daemon.exit_code
            if code is not None and daemon.signalled is signal.SIGTERM:
                (run.young_term_exits if daemon.young else run.term_exits)[code] += 1
                run.retired.remove(daemon)
            elif code is not None:
                run.retired.remove(daemon)
        await anyio.sleep(_POLL_S)


# -- Redis memory -------------------------------------------------------------------------


@dataclass
class Memory:
    """``used_memory`` samples: (seconds since the soak began, bytes)."""

    samples: list[tuple[float, int]] = field(default_factory=list)
    failed: int = 0


async def sample_memory(run: Run, url: str, memory: Memory, every: float, until: float) -> None:
    """INFO memory every ``every`` seconds until ``until``; an unanswered one is skipped."""
    client = _client(url)
    try:
        while time.monotonic() < until:
            try:
                info = await client.info("memory")
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                memory.failed += 1
            else:
                memory.samples.append((time.monotonic() - run.began, int(info["used_memory"])))
            await anyio.sleep(every)
    finally:
        await client.aclose()


def memory_report(memory: Memory, warm_up_at: float) -> list[str]:
    """The figure: used_memory after the warm-up, first/last/min/max and the drift."""
    after = [(t, b) for t, b in memory.samples if t >= warm_up_at]
    mib = 1024 * 1024
    lines = [
        f"redis used_memory: {len(memory.samples)} samples, {memory.failed} unanswered "
        f"(Redis down or stalled); after the warm-up (from {warm_up_at:.0f} s): {len(after)}"
    ]
    if len(after) < 2:
        return [*lines, "  too few samples after the warm-up for a figure"]
    values = [b for _, b in after]
    first, last = values[0], values[-1]
    lines += [
        f"  first {first / mib:.1f} MiB at {after[0][0]:.0f} s, last {last / mib:.1f} MiB at "
        f"{after[-1][0]:.0f} s, min {min(values) / mib:.1f} MiB, max {max(values) / mib:.1f} MiB",
        f"  drift (last against first): {100 * (last - first) / first:+.1f} %; "
        f"range (max - min against first): {100 * (max(values) - min(values)) / first:.1f} %",
    ]
    if memory.samples:
        lines.append(
            "  before the warm-up: first "
            f"{memory.samples[0][1] / mib:.1f} MiB at {memory.samples[0][0]:.0f} s"
        )
    return lines


def stream_lengths(url: str) -> dict[str, int]:
    streams = [*GROUPS, KEYS.delivered, *(Keys.dead(s) for s in GROUPS)]
    with redis.Redis.from_url(url, socket_timeout=10) as client:
        return {s: int(client.xlen(s)) for s in streams}


# -- the accounting -----------------------------------------------------------------------


def _text(value: bytes | str | None) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else value.decode(errors="replace")


def _reason(error: str) -> str:
    """An error with its particulars (ids, numbers, ports, addresses) taken out, for grouping."""
    error = re.sub(r"\b[0-9a-f]{8}-[0-9a-f-]{27}\b", "<id>", error)
    error = re.sub(r"soak-\d+|poison-\d+-\w+", "<deployment>", error)
    error = re.sub(r"\d+(\.\d+)?", "N", error)
    return error[:110]


@dataclass
class Account:
    in_stream: set[str]
    delivered: dict[str, set[str]]  # subject -> outcome types answered 2xx
    duplicates: int
    answered: list[Post]  # every 2xx, in order
    dead: dict[str, dict[str, str]]  # stream -> {subject or original id: error}
    in_flight: dict[str, set[str]]  # stream -> subjects pending or not yet read
    pending: int
    lag: int


def account(url: str, loop: Loopback) -> Account:
    delivered: dict[str, set[str]] = defaultdict(set)
    answered: Counter[str] = Counter()
    ok = [p for p in list(loop.posts) if 200 <= p.status < 300]
    for post in ok:
        delivered[post.subject].add(post.type)
        answered[post.event_id] += 1
    dead: dict[str, dict[str, str]] = {}
    in_flight: dict[str, set[str]] = {}
    pending = lag = 0
    with redis.Redis.from_url(url, socket_timeout=10) as client:
        in_stream = {_text(f.get(b"subject")) for _, f in client.xrange(KEYS.started)}
        for stream, group in GROUPS.items():
            letters = client.xrange(Keys.dead(stream))
            dead[stream] = {
                _text(f.get(b"subject")) or _text(f.get(b"original_id")): _text(f.get(b"error"))
                for _, f in letters
            }
            # Entries with unreadable subjects are known by their id too.
            dead[stream].update(
                {_text(f.get(b"original_id")): _text(f.get(b"error")) for _, f in letters}
            )
            flying: set[str] = set()
            if client.exists(stream):
                groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
                if group in groups:
                    rows = client.xpending_range(stream, group, min="-", max="+", count=1_000_000)
                    pending += len(rows)
                    for row in rows:
                        entry_id = row["message_id"]
                        found = client.xrange(stream, entry_id, entry_id)
                        flying.add(_text(found[0][1].get(b"subject")) if found else _text(entry_id))
                        flying.add(_text(entry_id))
                    last = groups[group]["last-delivered-id"]
                    unread = client.xrange(stream, min=b"(" + last, max="+")
                    lag += len(unread)
                    flying.update(_text(f.get(b"subject")) for _, f in unread)
                    flying.update(_text(i) for i, _ in unread)
            in_flight[stream] = flying
    return Account(
        in_stream=in_stream,
        delivered=delivered,
        duplicates=sum(n - 1 for n in answered.values() if n > 1),
        answered=ok,
        dead=dead,
        in_flight=in_flight,
        pending=pending,
        lag=lag,
    )


def settled(run: Run, acc: Account) -> bool:
    terminal = set(acc.delivered) | {s for d in acc.dead.values() for s in d}
    waiting = set(run.published) - terminal
    return acc.pending == 0 and acc.lag == 0 and not waiting


def report(run: Run, acc: Account, url: str, log_dir: Path, memory: list[str]) -> int:
    found_uncertain = {s for s in run.uncertain if s in acc.in_stream or s in acc.delivered}
    published = {**run.published, **{s: run.uncertain[s] for s in found_uncertain}}
    dead_subjects = {s: stream for stream, d in acc.dead.items() for s in d}
    flying = {s: stream for stream, f in acc.in_flight.items() for s in f}
    outcome_of: Counter[str] = Counter()
    told_twice = 0
    fates: Counter[str] = Counter()
    unaccounted: list[str] = []
    for subject in published:
        types = acc.delivered.get(subject)
        if types:
            fates["delivered"] += 1
            told_twice += len(types) > 1
            for kind in types:
                outcome_of[kind] += 1
            if subject in dead_subjects:
                fates["delivered, and a copy dead-lettered"] += 1
        elif subject in dead_subjects:
            fates["dead-lettered"] += 1
        elif subject in flying:
            fates["still pending"] += 1
        else:
            unaccounted.append(subject)
    poison_dead = [i for i in run.poison_ids if i in acc.dead[KEYS.started]]
    unaccounted += [
        i for i in run.poison_ids if i not in acc.dead[KEYS.started] and i not in flying
    ]

    expected = Counter(k for k in published.values())
    print()
    print("=" * 78)
    print("ACCOUNTING")
    print("=" * 78)
    print(f"published deployments:     {len(published)}")
    print(f"  by kind:                 {dict(sorted(expected.items()))}")
    print(
        f"  XADD failed (reply lost): {len(run.uncertain)}, of which found in the stream "
        f"(so published): {len(found_uncertain)}"
    )
    print(f"  poison without an id:    {len(run.poison_ids)}")
    print(f"terminal outcome at the webhook: {fates['delivered']}")
    for kind in OUTCOMES:
        print(f"  {kind:<26} {outcome_of[kind]}")
    print(f"  deployments told more than one outcome: {told_twice}")
    print("  outcome by what was published (kind: outcome count):")
    for kind in sorted(expected):
        row = Counter(
            t.removeprefix("deployment.")
            for s, k in published.items()
            if k == kind
            for t in acc.delivered.get(s, ())
        )
        print(f"    {kind:<24} {dict(row.most_common())}")
    print(f"duplicates at the webhook (same event id answered 2xx again): {acc.duplicates}")
    if acc.duplicates:
        print(f"  by the last fault before the repeat: {dict(duplicate_causes(run, acc))}")
    print(f"dead-lettered (only there): {fates['dead-lettered']}")
    print(f"  poison without an id, dead-lettered: {len(poison_dead)}")
    print(f"  delivered and also dead-lettered: {fates['delivered, and a copy dead-lettered']}")
    print("dead letters per stream, reasons grouped:")
    with redis.Redis.from_url(url) as client:
        for stream in GROUPS:
            letters = client.xrange(Keys.dead(stream))
            print(f"  {Keys.dead(stream)}: {len(letters)}")
            reasons = Counter(_reason(_text(f.get(b"error"))) for _, f in letters)
            for reason, count in reasons.most_common(8):
                print(f"    {count:6}  {reason}")
            if len(reasons) > 8:
                print(f"    ... and {len(reasons) - 8} other reasons")
    print(f"still pending: {acc.pending} entries pending in a group, {acc.lag} unread")
    print(f"  deployments still in flight: {fates['still pending']}")
    print(f"UNACCOUNTED: {len(unaccounted)}")
    for subject in unaccounted[:20]:
        print(f"  {subject} ({published.get(subject) or run.poison_ids.get(subject)})")
    print("faults injected:")
    for fault in FAULTS:
        print(f"  {fault:<16} {run.faults[fault]}")
    print(
        f"daemons started: {run.generation}; exit codes after SIGTERM: {dict(run.term_exits)}; "
        f"of those SIGTERMed within {YOUNG_S:g} s of their start: {dict(run.young_term_exits)}"
    )
    print(
        f"daemons that exited on their own: {len(run.unexpected_exits)} {run.unexpected_exits[:10]}"
    )
    print(f"daemon log events: {dict(log_events(log_dir))}")
    for line in memory:
        print(line)
    print("=" * 78)
    return 1 if unaccounted else 0


def duplicate_causes(run: Run, acc: Account) -> Counter[str]:
    """For each repeated 2xx, the fault injected last before it (and how long before)."""
    causes: Counter[str] = Counter()
    seen: set[str] = set()
    for post in acc.answered:
        if post.event_id not in seen:
            seen.add(post.event_id)
            continue
        before = [(t, f) for t, f in run.fault_log if t <= post.at]
        if not before:
            causes["no fault before it"] += 1
            continue
        t, fault = before[-1]
        causes[f"{fault} ({'<' if post.at - t < 15 else '>'}15 s before)"] += 1
    return causes


def log_events(log_dir: Path) -> Counter[str]:
    """Notable events in the daemons' JSON logs: crashes, failures, restarts, errors."""
    notable = Counter[str]()
    for path in log_dir.glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if "Traceback" in line:
                    notable["traceback (not a log record)"] += 1
                continue
            if not isinstance(record, dict):
                continue
            name = str(record.get("event"))
            if record.get("level") in {"error", "critical"} or name in {
                "printery.worker_crashed",
                "printery.worker_failed",
                "printery.worker_restart_scheduled",
                "printery.forced_exit",
            }:
                notable[name] += 1
    return notable


def _clean_environ() -> dict[str, str]:
    """This environment less any printery setting: the soak's own settings must hold."""
    from printery.settings import Settings

    names = {name.upper() for name in Settings.model_fields}
    return {
        k: v
        for k, v in os.environ.items()
        if k.upper() not in names
        and k != "PYTHONPATH"
        and not k.upper().endswith(("_CONCURRENCY", "_HANG_TIMEOUT"))
    }


async def wait_for_groups(url: str, began: float, timeout: float = 60) -> None:
    """Until every daemon's worker created its group: published entries wait for them anyway."""
    deadline = time.monotonic() + timeout
    client = _client(url)
    try:
        while time.monotonic() < deadline:
            ready = 0
            for stream, group in GROUPS.items():
                try:
                    groups = await client.xinfo_groups(stream)
                except redis.exceptions.ResponseError:
                    continue  # no such key yet
                ready += any(g["name"].decode() == group for g in groups)
            if ready == len(GROUPS):
                say(began, "every group exists")
                return
            await anyio.sleep(0.1)  # the daemons are other processes: poll
    finally:
        await client.aclose()
    raise SystemExit("soak: the daemons did not create their groups within 60 s")


async def soak(args: argparse.Namespace) -> int:
    # One random stream per task, so a seed replays the same deployments and faults.
    rng, fault_rng = random.Random(args.seed), random.Random(args.seed + 1)
    work = Path(tempfile.mkdtemp(prefix="printery-soak-"))
    log_dir = work / "logs"
    log_dir.mkdir()
    server = soak_redis(work / "redis")
    loop = Loopback()
    run = Run(time.monotonic())
    gaps, faults = args.fault_gap, args.faults
    print(
        f"soak: {args.replicas} daemons (all four workers each), {args.rate:g} deployments/s "
        f"for {args.minutes:g} min, seed {args.seed}, a fault every {gaps[0]:g}-{gaps[1]:g} s; "
        f"STREAM_RETENTION={args.stream_retention}, STREAM_TRIM_INTERVAL={args.trim_interval:g}, "
        f"key TTL {args.key_ttl} s, memory warm-up {args.warm_up:g} s; work directory {work}",
        flush=True,
    )
    env = {
        **_clean_environ(),
        **DAEMON_ENV,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": server.url,
        "NOTIFY_WEBHOOK_URLS": loop.hook_url,
        "SUPERVISED_MODE": "true" if args.supervised else "false",
        "STREAM_RETENTION": args.stream_retention,
        "STREAM_TRIM_INTERVAL": f"{args.trim_interval:g}",
        "TIMELINE_TTL": str(args.key_ttl),
        "NOTIFY_MARKER_TTL": str(args.key_ttl),
    }
    memory = Memory()

    def new_daemon(slot: int) -> Daemon:
        run.generation += 1
        daemon = Daemon(slot, run.generation, env, log_dir).start()
        run.daemons.append(daemon)
        return daemon

    async def replace(old: Daemon) -> None:
        run.daemons.remove(old)
        if old.signalled is not None:
            run.retired.append(old)
        new_daemon(old.slot)

    final_exits: Counter[int] = Counter()
    try:
        server.start()
        await loop.start()
        for slot in range(args.replicas):
            new_daemon(slot)
        await wait_for_groups(server.url, run.began)
        until = time.monotonic() + args.minutes * 60
        warm_up_at = time.monotonic() - run.began + args.warm_up
        async with anyio.create_task_group() as tg:
            tg.start_soon(supervise, run, replace)
            async with anyio.create_task_group() as busy:
                busy.start_soon(
                    functools.partial(
                        publisher, run, server.url, loop, rate=args.rate, until=until, rng=rng
                    )
                )
                busy.start_soon(sample_memory, run, server.url, memory, args.memory_every, until)
                busy.start_soon(
                    functools.partial(
                        injector,
                        run,
                        until,
                        (gaps[0], gaps[1]),
                        fault_rng,
                        faults,
                        server=server,
                        loop=loop,
                        replace=replace,
                    )
                )
            await loop.recover()
            say(run.began, f"publishing stopped ({len(run.published)} published); settling")
            deadline = time.monotonic() + args.settle
            next_note = 0.0
            while True:
                acc = await anyio.to_thread.run_sync(account, server.url, loop)
                if settled(run, acc):
                    say(run.began, "settled")
                    break
                if time.monotonic() > deadline:
                    say(run.began, f"not settled after {args.settle:g} s; accounting as it is")
                    break
                if time.monotonic() >= next_note:
                    next_note = time.monotonic() + 10
                    say(run.began, f"settling: {acc.pending} pending, {acc.lag} unread")
                await anyio.sleep(1)  # the pipeline is other processes: poll
            tg.cancel_scope.cancel()
        for daemon in run.daemons:
            if daemon.exit_code is None:
                daemon.send(signal.SIGTERM)
        for daemon in [*run.daemons, *run.retired]:
            assert daemon.process is not None
            try:
                code = await anyio.to_thread.run_sync(daemon.process.wait, 30)
            except subprocess.TimeoutExpired:
                daemon.process.kill()
                code = -9
            if daemon in run.daemons:
                final_exits[code] += 1
            elif daemon.signalled is signal.SIGTERM:
                (run.young_term_exits if daemon.young else run.term_exits)[code] += 1
        say(run.began, f"every daemon stopped; exit codes at the end: {dict(final_exits)}")
        acc = await anyio.to_thread.run_sync(account, server.url, loop)
        lengths = await anyio.to_thread.run_sync(stream_lengths, server.url)
        figure = [
            *memory_report(memory, warm_up_at),
            f"stream lengths at the end: {lengths}",
        ]
        code = report(run, acc, server.url, log_dir, figure)
        if any(c != 0 for c in final_exits):
            print("note: a daemon did not exit 0 on the final SIGTERM")
        return code
    finally:
        for daemon in [*run.daemons, *run.retired]:
            if daemon.exit_code is None and daemon.process is not None:
                daemon.process.kill()
        await loop.close()
        if server.process is not None:
            server.stop()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10, help="how long to publish (10)")
    parser.add_argument("--rate", type=float, default=20, help="deployments a second (20)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (a new one if unset)")
    parser.add_argument("--replicas", type=int, default=2, help="daemons at a time (2)")
    parser.add_argument(
        "--settle", type=float, default=180, help="seconds to settle, at most (180)"
    )
    parser.add_argument(
        "--fault-gap", default="3,12", help="seconds between faults, min,max (3,12)"
    )
    parser.add_argument(
        "--faults", default=",".join(FAULTS), help="the faults to choose from (all of them)"
    )
    parser.add_argument(
        "--stream-retention",
        default="none",
        help="STREAM_RETENTION of the daemons, seconds or none (none)",
    )
    parser.add_argument(
        "--trim-interval", type=float, default=10, help="STREAM_TRIM_INTERVAL, seconds (10)"
    )
    parser.add_argument(
        "--key-ttl",
        type=int,
        default=300,
        help="TIMELINE_TTL and NOTIFY_MARKER_TTL, seconds (300)",
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        default=None,
        help="seconds of publishing before the memory figure starts "
        "(the longer of retention and key TTL, + 2 trim intervals)",
    )
    parser.add_argument(
        "--memory-every", type=float, default=5, help="seconds between memory samples (5)"
    )
    parser.add_argument("--supervised", action="store_true", help="run the daemons --supervised")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    try:
        low, high = (float(x) for x in args.fault_gap.split(","))
    except ValueError:
        parser.error("--fault-gap: two numbers of seconds, min,max (like 3,12)")
    args.fault_gap = (low, high)
    args.faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    unknown = set(args.faults) - set(FAULTS)
    if unknown or not args.faults:
        parser.error(f"--faults: unknown {sorted(unknown)}; choose from {', '.join(FAULTS)}")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1_000_000)
    retention = args.stream_retention.strip().lower()
    try:
        seconds = None if retention == "none" else float(retention)
    except ValueError:
        parser.error("--stream-retention: seconds, or none")
    args.stream_retention = retention
    if args.warm_up is None:
        args.warm_up = max(seconds or 0.0, args.key_ttl) + 2 * args.trim_interval
    try:
        code = anyio.run(soak, args)
    except (SystemExit, RuntimeError) as exc:
        if isinstance(exc, SystemExit) and not isinstance(exc.code, str):
            raise
        print(exc if isinstance(exc, SystemExit) else f"soak: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
