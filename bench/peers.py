"""Peers in the same run: a raw redis-py loop, FastStream and printery on one backlog.

Every peer is a process of its own, working off a pre-filled backlog of
``--messages`` ``deployment.started`` entries (~450 bytes) on the benchmark's
redis-server, doing the same job: read, decode ``data``, publish one output,
acknowledge.

``raw``            the hand-rolled loop: ``XREADGROUP COUNT 100``, one pipelined
                   round trip of the batch's ``XADD``s and its ``XACK``
``faststream``     FastStream's ``StreamSub`` in a group, per message
``faststream-batch``  the same with ``batch=True`` (publishes pipelined)
``passthrough``    printery's pass-through ``StreamWorker`` in a ``printery-workers``
                   process (``--worker=bench.peers:PassThrough``)
``validator``      ``printery-workers --worker=validator``: parse, every rule,
                   ``deployment.validated`` and the timeline in the commit with the ack

The first four call one function for the job (``bench/peer_job.py``); the
validator does its own, heavier one. Each consumer starts on a group set at
the stream's end, is seen blocked in ``XREADGROUP`` (printery's also answers
``/ready``), and only then is the group moved back to the backlog's start:
start-up never counts. A rate is taken from the Redis side, from the first to
the last output entry's id (milliseconds of the server's clock), so neither
the benchmark's polling nor a process's start or exit is timed. A round runs
every peer once, in an order that rotates from round to round, after one
untimed pass of the raw loop that warms the server up; ratios to
``raw`` are taken within a round, then the median, with the rounds' spread;
so is the ratio of CPU per message (the raw loop's over the peer's: 1.00 is
as cheap as the loop), which a busy neighbour moves much less than a rate.

FastStream installs into an environment of the benchmark's own, never
printery's: the first run makes ``bench/.venv-peers`` (``PEERS_VENV`` elsewhere)
with ``pip install 'faststream[redis]'``, later runs reuse it.

    python bench/peers.py [--messages 30000] [--rounds 3] [--peers raw,validator] [--redis-stats]

``--redis-stats`` also prints, per peer and round, the process's user and
system CPU per message and the Redis commands a message cost
(``INFO commandstats``: calls per message, and their µs; a script's own line
includes the commands it ran).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SERVER_PIDS, free_port, machine, redis_server, stop_processes
from bench.peer_job import output_fields
from bench.pipeline_latency import cpu_seconds, wait_http
from bench.runtime_throughput import fill
from printery.message import Message
from printery.redis.keys import Keys
from printery.redis.writes import Write
from printery.worker import StreamWorker

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("raw", "faststream", "faststream-batch", "passthrough", "validator")
FASTSTREAM = "faststream[redis]>=0.7,<0.8"


class PassThrough(StreamWorker):
    """printery's pass-through: ``<prefix>:in`` to ``<prefix>:out``, the peers' job."""

    name = "passthrough"

    @property
    def stream(self) -> str:
        return f"{self.keys.prefix}:in"

    async def handle(self, message: Message) -> Sequence[Write]:
        return [Write.xadd(f"{self.keys.prefix}:out", output_fields(message.raw))]


def faststream_python() -> str:
    """The interpreter of FastStream's own venv; made (once) if missing."""
    venv = Path(os.environ.get("PEERS_VENV", ROOT / "bench" / ".venv-peers"))
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        print(f"  (making {venv} with {FASTSTREAM}: once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        done = subprocess.run([*pip, FASTSTREAM], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"bench: pip could not install {FASTSTREAM}:\n{done.stderr}")
        (venv / ".installed").touch()
    return str(python)


def faststream_version(python: str) -> str:
    code = "import importlib.metadata as m; print(m.version('faststream'))"
    found = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    return found.stdout.strip()


def serve_raw(url: str, stream: str, out: str) -> None:
    """The raw loop's process: runs until SIGTERM."""
    import asyncio

    async def main() -> None:
        client = aioredis.Redis.from_url(url)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        while not stop.is_set():
            reply = await client.xreadgroup("g", "c", {stream: ">"}, count=100, block=200)
            for _, entries in reply or []:
                async with client.pipeline(transaction=False) as pipe:
                    for _, fields in entries:
                        pipe.xadd(out, output_fields(fields))  # type: ignore[arg-type]
                    pipe.xack(stream, "g", *[entry_id for entry_id, _ in entries])
                    await pipe.execute()
        await client.aclose()

    asyncio.run(main())


class Peer:
    """One peer's streams and group in round ``r``, and how to start its process."""

    def __init__(self, kind: str, r: int, url: str, fs_python: str | None) -> None:
        self.kind, self.url, self.fs_python = kind, url, fs_python
        prefix = f"r{r}{kind.replace('-', '')}"
        self.http_port: int | None = None
        if kind == "validator":
            keys = Keys(prefix)
            self.source, self.out, self.group = keys.started, keys.validated, "validator"
        else:
            self.source, self.out = f"{prefix}:in", f"{prefix}:out"
            self.group = "passthrough" if kind == "passthrough" else "g"
        self.prefix = prefix

    def start(self) -> subprocess.Popen[bytes]:
        if self.kind == "raw":
            args = [sys.executable, __file__, "--serve-raw", self.url, self.source, self.out]
            return subprocess.Popen(args)
        if self.kind.startswith("faststream"):
            assert self.fs_python is not None
            mode = "batch" if self.kind == "faststream-batch" else "per-message"
            script = str(ROOT / "bench" / "peers_faststream.py")
            return subprocess.Popen([self.fs_python, script, self.url, self.source, self.out, mode])
        self.http_port = free_port()
        worker = "validator" if self.kind == "validator" else "bench.peers:PassThrough"
        env = {
            **os.environ,
            "REDIS_URL": self.url,
            "STREAM_PREFIX": self.prefix,
            "CONSUMER_NAME": f"peer-{self.prefix}",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.http_port),
            "LOG_LEVEL": "error",
            "PYTHONPATH": str(ROOT),
        }
        cmd = [sys.executable, str(ROOT / "cmd" / "printery-workers"), f"--worker={worker}"]
        return subprocess.Popen(cmd, env=env)


async def until(check: Any, what: str, limit_s: float) -> None:
    """Poll the coroutine function ``check`` until it is true; another process's progress."""
    deadline = time.monotonic() + limit_s
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what} not within {limit_s:g} s")
        await anyio.sleep(0.01)


def entry_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


def user_system_s(pid: int) -> tuple[float, float]:
    """A live process's user and system CPU seconds (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


_OURS = {"cmdstat_xlen", "cmdstat_client|list", "cmdstat_config|resetstat", "cmdstat_xgroup|setid"}


def commands_per_message(stats: dict[str, Any], count: int) -> str:
    """``INFO commandstats`` as the commands Redis spent most time on, per message."""
    top = sorted(stats.items(), key=lambda kv: -float(kv[1]["usec"]))[:12]
    return ", ".join(
        f"{name.removeprefix('cmdstat_')} {float(v['calls']) / count:.2f} "
        f"({float(v['usec']) / count:.1f} µs)"
        for name, v in top
        if name not in _OURS  # the benchmark's own polling and gate
    )


async def run_peer(peer: Peer, count: int, redis_stats: bool = False) -> tuple[float, float, float]:
    """msg/s from the outputs' ids; CPU µs per message of the peer's process and of Redis."""
    client = aioredis.Redis.from_url(peer.url)
    await fill(peer.url, peer.source, count)
    await client.xgroup_create(peer.source, peer.group, id="$")  # nothing to read: the gate
    proc = peer.start()
    try:
        if peer.http_port is not None:
            port = peer.http_port
            await anyio.to_thread.run_sync(wait_http, f"http://127.0.0.1:{port}/ready", 60)

        async def reading() -> bool:  # blocked in XREADGROUP on the empty group
            if proc.poll() is not None:
                raise SystemExit(f"bench: {peer.kind} exited with {proc.returncode}")
            clients = await client.client_list()
            return any(c.get("cmd") == "xreadgroup" for c in clients)

        await until(reading, f"{peer.kind}'s first read", 60)
        cpu_before = cpu_seconds(proc.pid)
        split_before = user_system_s(proc.pid)
        redis_before = cpu_seconds(SERVER_PIDS[peer.url])
        await client.config_resetstat()
        await client.execute_command("XGROUP", "SETID", peer.source, peer.group, "0")

        progress = [0, time.monotonic()]  # outputs seen, when that last changed

        async def all_out() -> bool:
            if proc.poll() is not None:
                raise SystemExit(f"bench: {peer.kind} exited with {proc.returncode}")
            done = int(await client.xlen(peer.out))
            if done != progress[0]:
                progress[:] = [done, time.monotonic()]
            elif time.monotonic() - progress[1] > 30:  # a failing handler: fail, don't wait out
                raise SystemExit(f"bench: {peer.kind} stuck at {done} of {count} outputs for 30 s")
            return done >= count

        await until(all_out, f"{count} outputs of {peer.kind}", 600)
        cpu = cpu_seconds(proc.pid) - cpu_before
        user, system = (b - a for a, b in zip(split_before, user_system_s(proc.pid), strict=True))
        redis_cpu = cpu_seconds(SERVER_PIDS[peer.url]) - redis_before
        stats = await client.info("commandstats")
    finally:
        stop_processes([proc])
    pending = await client.xpending(peer.source, peer.group)
    (first_id, _), *_ = await client.xrange(peer.out, count=1)
    (last_id, _), *_ = await client.xrevrange(peer.out, count=1)
    for key in (peer.source, peer.out):  # the next peers' rounds start on an emptier server
        await client.delete(key)
    await client.aclose()
    if pending["pending"]:
        raise SystemExit(f"bench: {peer.kind} left {pending['pending']} entries unacknowledged")
    span_s = max(entry_ms(last_id) - entry_ms(first_id), 1) / 1000
    if redis_stats:
        print(
            f"    {peer.kind}: process user {user / count * 1e6:.0f} + system "
            f"{system / count * 1e6:.0f} µs/msg, busy {(user + system) / span_s:.2f} core; "
            f"Redis commands per message (their µs): {commands_per_message(stats, count)}"
        )
    return (count - 1) / span_s, cpu / count * 1e6, redis_cpu / count * 1e6


def spread(values: Sequence[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


async def main(count: int, rounds: int, kinds: list[str], redis_stats: bool = False) -> None:
    fs_python = faststream_python() if any(k.startswith("faststream") for k in kinds) else None
    version = f", FastStream {faststream_version(fs_python)}" if fs_python else ""
    print(f"peers, {count} messages, {rounds} rounds, {machine()}{version}")
    print("  each peer a process of its own; rate from the first to the last output entry id")
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    cpus: dict[str, list[float]] = {k: [] for k in kinds}
    redis_cpus: dict[str, list[float]] = {k: [] for k in kinds}
    ratios: dict[str, list[float]] = {k: [] for k in kinds}
    cpu_ratios: dict[str, list[float]] = {k: [] for k in kinds}  # raw's CPU/msg over the peer's
    with redis_server() as url:
        # Untimed: a fresh redis-server's first backlog also grows its memory, which made
        # whichever peer went first look 2 to 4 times slower than in the rounds after.
        await run_peer(Peer("raw", rounds, url, fs_python), count)
        for r in range(rounds):
            order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]  # alternate who goes first
            got: dict[str, float] = {}
            got_cpu: dict[str, float] = {}
            for kind in order:
                peer = Peer(kind, r, url, fs_python)
                rate, cpu, redis_cpu = await run_peer(peer, count, redis_stats)
                got[kind], got_cpu[kind] = rate, cpu
                rates[kind].append(rate)
                cpus[kind].append(cpu)
                redis_cpus[kind].append(redis_cpu)
            base = got.get("raw")
            line = ", ".join(
                f"{k} {got[k]:,.0f}" + (f" ({got[k] / base:.2f} x)" if base and k != "raw" else "")
                for k in kinds
            )
            print(f"  round {r + 1} (msg/s): {line}", flush=True)
            if base:
                for k in kinds:
                    ratios[k].append(got[k] / base)
                    cpu_ratios[k].append(got_cpu["raw"] / got_cpu[k])
    for k in kinds:
        ratio = (
            f"{statistics.median(ratios[k]):.2f} x raw (rounds {spread(ratios[k])})"
            if ratios[k] and k != "raw"
            else "the baseline"
        )
        by_cpu = (
            f"; by CPU/msg {statistics.median(cpu_ratios[k]):.2f} x ({spread(cpu_ratios[k])})"
            if cpu_ratios[k] and k != "raw"
            else ""
        )
        print(
            f"  {k:17} {statistics.median(rates[k]):8,.0f} msg/s  {ratio:32}  "
            f"CPU/msg {statistics.median(cpus[k]):4.0f} µs + redis "
            f"{statistics.median(redis_cpus[k]):3.0f} µs{by_cpu}"
        )


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C: the peer process and the redis-server are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if sys.argv[1:2] == ["--serve-raw"]:
        serve_raw(*sys.argv[2:5])
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--messages", type=int, default=30_000)
        parser.add_argument("--rounds", type=int, default=3)
        parser.add_argument("--peers", default=",".join(PEERS), help=", ".join(PEERS))
        parser.add_argument(
            "--redis-stats",
            action="store_true",
            help="per peer: user/system CPU, and the Redis commands of a message (commandstats)",
        )
        args = parser.parse_args()
        chosen = [k.strip() for k in args.peers.split(",") if k.strip()]
        unknown = sorted(set(chosen) - set(PEERS))
        if unknown:
            parser.error(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")
        anyio.run(main, args.messages, args.rounds, chosen, args.redis_stats)
