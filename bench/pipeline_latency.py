"""Pipeline latency: deployments published at a fixed rate, publish to webhook receipt.

Every party runs in a process of its own, so none steals another's event loop:

- the **receiver** (health endpoint that answers at once, ``healthy_threshold``
  1, and webhook receiver), on loopback;
- the **baseline**: a plain redis-py relay of the same four hops, doing the
  same I/O as the pipeline (XREADGROUP, XADD to the next stream, XACK per
  batch; the third hop GETs the health URL, the last one POSTs the outcome),
  each hop one asyncio task in one process;
- **printery**, twice: the four workers in one ``printery-workers`` process
  (``WORKER_MODE=all``), and one process per worker (as in Kubernetes);
- the publisher, in this process: ``rate`` XADDs a second in 10 ms ticks.

Each run starts only once every process answers (``/ready`` for printery),
so start-up never counts as latency. Reports p50/p99/max from publish to
receipt and, from the entries' ids (Redis's clock, in ms), where the time
went hop by hop. Target: p99 under 20 ms at 1,000 deployments/s. At a low
rate (``--rate 20``) every deployment travels alone: its hop times show that
no message waits for a batch to fill.

CPU per deployment depends on the rate: a process that sleeps between
messages pays the machine's wake-up cost on every round trip, so the run
first prints what a round trip costs here, back to back and after idling.

    python bench/pipeline_latency.py [--rate 1000] [--seconds 10] [--mode all|one|four]
        [--redis-stats] [--gc-stats]

``--redis-stats`` adds each process's system CPU, how often it slept and
woke (voluntary context switches), and the Redis commands a deployment cost
(``INFO commandstats``, calls per deployment). ``--gc-stats`` adds what the
garbage collector did in each printery process once its workers ran (after
the daemon's ``gc.freeze()``): collections per generation, their CPU, the
longest, and the objects it freed (cyclic garbage: what reference counting
could not free), until the process exits, through a ``sitecustomize`` the benchmark puts on the
daemons' ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, machine, redis_server, round_trip_cpu, stop_processes
from printery.envelope import Event
from printery.redis.keys import Keys

ROOT = Path(__file__).resolve().parent.parent
WORKERS = ("validator", "dependency-checker", "health-monitor", "notifier")
PROFILE = os.environ.get("BENCH_PROFILE", "")
HOP_WORKERS = tuple(f"bench.relay_hops:Hop{i}" for i in range(4))
HOPS = ("validator", "dependency-checker", "health-monitor", "notifier: POST", "notifier: ack")


def wait_http(url: str, limit_s: float = 60, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll another process until ``url`` answers 200 (nothing in-process to await)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"bench: a process exited ({proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"bench: {url} did not answer 200 within {limit_s:g} s")


# -- the receiver (its own process) ---------------------------------------------------------


def serve_receiver(port: int, out: str) -> None:
    """Health endpoint and webhook receiver; on SIGTERM writes {subject: receipt time} to out."""
    from aiohttp import web

    received: dict[str, float] = {}

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        received.setdefault(str(body["subject"]), time.time())
        return web.Response(status=204)

    async def main() -> None:
        app = web.Application()
        app.add_routes([web.get("/healthz", health), web.post("/hook", hook)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        Path(out).write_text(json.dumps(received))
        await runner.cleanup()

    asyncio.run(main())


# -- the baseline relay (its own process) ---------------------------------------------------


def serve_relay(
    url: str, streams: Sequence[str], health_url: str, hook: str, hops: Sequence[int] = (0, 1, 2, 3)
) -> None:
    """Plain hops (all four, or ``hops``); the third GETs the health URL, the last POSTs."""
    import aiohttp

    async def main() -> None:
        client = aioredis.Redis.from_url(url)
        for i in hops:
            await client.xgroup_create(streams[i], "g", id="0", mkstream=True)
        async with aiohttp.ClientSession() as http:

            async def get(_: dict[bytes, bytes]) -> None:
                async with http.get(health_url) as response:
                    await response.read()

            async def post(fields: dict[bytes, bytes]) -> None:
                async with http.post(hook, json={"subject": fields[b"subject"].decode()}) as r:
                    await r.read()

            async def hop(source: str, target: str, call: Any) -> None:
                while True:
                    reply = await client.xreadgroup("g", "c", {source: ">"}, count=100, block=1000)
                    for _, entries in reply or []:
                        if call is not None:
                            await asyncio.gather(*(call(fields) for _, fields in entries))
                        async with client.pipeline(transaction=False) as pipe:
                            for _, fields in entries:
                                pipe.xadd(target, fields)
                            pipe.xack(source, "g", *[entry_id for entry_id, _ in entries])
                            await pipe.execute()

            calls = [None, None, get, post]
            targets = [*streams[1:], f"{streams[-1]}:done"]
            await asyncio.gather(
                *(
                    hop(s, t, c)
                    for i, (s, t, c) in enumerate(zip(streams, targets, calls, strict=True))
                    if i in hops
                )
            )

    asyncio.run(main())


# -- the collector's account (in each printery process, with --gc-stats) -------------------

GC_PROBE = """
import atexit, gc, json, os, time

_path = os.environ.get("BENCH_GC_STATS")
_on = [False]
_start = [0.0]
_runs = {0: [], 1: [], 2: []}
_freed = [0]


def _probe(phase, info):
    if phase == "start":
        _start[0] = time.thread_time()
    elif _on[0]:
        _runs[info["generation"]].append(time.thread_time() - _start[0])
        _freed[0] += info["collected"]


def _freeze(_original=gc.freeze):
    _original()
    _on[0] = True  # from here on: the workers run


def _write():
    with open(_path, "w") as out:
        json.dump({"runs": _runs, "freed": _freed[0]}, out)


if _path:
    gc.callbacks.append(_probe)
    gc.freeze = _freeze
    atexit.register(_write)
"""


def gc_account(path: Path, count: int) -> str:
    """One printery process's collector, as the probe wrote it at exit."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return "no account (did the process exit cleanly?)"
    runs = {int(k): v for k, v in found["runs"].items()}
    spent = sum(sum(v) for v in runs.values())
    gens = ", ".join(
        f"gen{g} {len(v)} (longest {max(v, default=0) * 1000:.1f} ms)" for g, v in runs.items()
    )
    return (
        f"{spent / count * 1e6:.0f} µs CPU per deployment; {gens}; "
        f"{found['freed'] / count:.0f} objects freed per deployment"
    )


# -- the publisher (this process) -----------------------------------------------------------


def started(deployment_id: str, health_url: str) -> dict[str, str]:
    data = {
        "deployment_id": deployment_id,
        "service": "billing-api",
        "version": "1.4.2",
        "environment": "production",
        "health_check": {
            "url": health_url,
            "healthy_threshold": 1,
            "interval_s": 1,
            "timeout_s": 1,
            "deadline_s": 10,
        },
    }
    return Event.create("deployment.started", deployment_id, data, source="bench").to_fields()


async def publish(
    url: str, stream: str, prefix: str, *, rate: int, seconds: float, health_url: str
) -> dict[str, float]:
    """XADD ``rate`` deployments a second for ``seconds``, in 10 ms ticks; publish times."""
    client = aioredis.Redis.from_url(url)
    sent: dict[str, float] = {}
    per_tick = max(1, rate // 100)
    began = time.perf_counter()
    n = 0
    while n < rate * seconds:
        batch = [f"{prefix}-{n + i}" for i in range(per_tick)]
        events = [started(deployment_id, health_url) for deployment_id in batch]
        async with client.pipeline(transaction=False) as pipe:
            for fields in events:
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
            now = time.time()
            await pipe.execute()
        sent.update(dict.fromkeys(batch, now))
        n += per_tick
        await anyio.sleep(max(0.0, began + n / rate - time.perf_counter()))
    await client.aclose()
    return sent


# -- measuring ------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def quantiles(values: list[float]) -> str:
    if not values:
        return "nothing received"
    p50, p99 = quantile(values, 0.50), quantile(values, 0.99)
    return f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  max {max(values):7.1f} ms"


def end_to_end(sent: dict[str, float], received: dict[str, float]) -> list[float]:
    """ms from publish to webhook receipt, per deployment received."""
    return [(received[k] - t) * 1000 for k, t in sent.items() if k in received]


async def entry_times(url: str, stream: str) -> dict[str, float]:
    """subject -> the entry's time in ms (from its id), for every entry of ``stream``."""
    client = aioredis.Redis.from_url(url)
    times: dict[str, float] = {}
    last = "-"
    while True:
        chunk = await client.xrange(stream, min=last, max="+", count=5000)
        for entry_id, fields in chunk if last == "-" else chunk[1:]:
            subject = fields.get(b"subject")
            if subject is not None:
                times.setdefault(subject.decode(), float(entry_id.split(b"-")[0]))
        if len(chunk) < 5000:
            break
        last = chunk[-1][0].decode()
    await client.aclose()
    return times


async def report(
    label: str,
    url: str,
    streams: Sequence[str],
    sent: dict[str, float],
    received: dict[str, float],
) -> str:
    """End-to-end quantiles, then where the time went, hop by hop (entry ids, ms)."""
    total = quantiles(end_to_end(sent, received))
    lines = [f"  {label:<24}{total}  ({sum(k in received for k in sent)} of {len(sent)})"]
    stages = [await entry_times(url, s) for s in streams]  # started, 3 hops, notified, acked
    points = [*stages[:4], {k: v * 1000 for k, v in received.items()}, stages[4]]
    for hop, before, after in zip(HOPS, points, points[1:], strict=False):
        gaps = [after[k] - before[k] for k in sent if k in before and k in after]
        lines.append(f"      {hop:<20}{quantiles(gaps)}")
    return "\n".join(lines)


def cpu_seconds(proc: subprocess.Popen[bytes] | int) -> float:
    """User + system CPU a live process has used so far (Linux /proc), 0 elsewhere."""
    return sum(cpu_split(proc))


def cpu_split(proc: subprocess.Popen[bytes] | int) -> tuple[float, float]:
    """User and system CPU a live process has used so far (Linux /proc), 0 elsewhere."""
    pid = proc if isinstance(proc, int) else proc.pid
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def wake_ups(proc: subprocess.Popen[bytes]) -> int:
    """Times a live process has slept and woken so far (voluntary context switches)."""
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


_OURS = {"cmdstat_xlen", "cmdstat_config|resetstat", "cmdstat_info"}  # the bench's own


async def redis_commands(url: str, count: int) -> str:
    """``INFO commandstats`` since the last reset, as calls per deployment (most first)."""
    client = aioredis.Redis.from_url(url)
    stats = await client.info("commandstats")
    await client.aclose()
    top = sorted(stats.items(), key=lambda kv: -float(kv[1]["calls"]))
    return ", ".join(
        f"{name.removeprefix('cmdstat_')} {float(v['calls']) / count:.2f}"
        for name, v in top
        if name not in _OURS
    )


def launch(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], env=env)


async def wait_received(path: str, receiver: subprocess.Popen[bytes]) -> dict[str, float]:
    receiver.terminate()
    await anyio.to_thread.run_sync(receiver.wait)
    return {k: float(v) for k, v in json.loads(Path(path).read_text()).items()}


async def wait_done(url: str, stream: str, count: int, limit_s: float) -> None:
    """Until ``stream`` holds ``count`` entries, or the limit: another process's progress."""
    client = aioredis.Redis.from_url(url)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and await client.xlen(stream) < count:
        await anyio.sleep(0.1)
    await client.aclose()


async def run(
    url: str,
    label: str,
    rate: int,
    seconds: float,
    workers: Sequence[str] | None,
    *,
    redis_stats: bool = False,
    gc_stats: bool = False,
    relay_processes: int = 1,
) -> Outcome:
    """One measured run: baseline relay when ``workers`` is None, else printery processes.

    ``workers`` of :data:`HOP_WORKERS` run the relay's own job under printery's
    engine, on the relay's streams; ``relay_processes`` 4 splits the relay.
    """
    port = free_port()
    health_url, hook = f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{port}/hook"
    prefix = f"r{port}"
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "received.json")
        probe = Path(tmp) / "probe"
        probe.mkdir()
        (probe / "sitecustomize.py").write_text(GC_PROBE)
        receiver = launch([__file__, "--serve-receiver", str(port), out])
        await anyio.to_thread.run_sync(wait_http, health_url, 30, receiver)
        procs: list[subprocess.Popen[bytes]] = []
        profilers: list[subprocess.Popen[bytes]] = []
        streams = [f"{prefix}:{n}" for n in range(4)]
        relay_chain = [*streams, f"{streams[-1]}:done"]
        if workers is None:
            split = [[0, 1, 2, 3]] if relay_processes == 1 else [[0], [1], [2], [3]]
            for hops in split:
                relay = [__file__, "--serve-relay", url, ",".join(streams), health_url, hook]
                procs.append(launch([*relay, ",".join(map(str, hops))]))
            await anyio.sleep(1)  # the relay creates its groups at once; give it a moment
            first, chain = streams[0], relay_chain
        else:
            keys = Keys(prefix)
            for i, worker in enumerate(workers):
                http_port = free_port()
                env = {
                    **os.environ,
                    "REDIS_URL": url,
                    "STREAM_PREFIX": prefix,
                    "HTTP_HOST": "127.0.0.1",
                    "HTTP_PORT": str(http_port),
                    "LOG_LEVEL": "error",
                    "PYTHONPATH": f"{probe}{os.pathsep}{ROOT}" if gc_stats else str(ROOT),
                    "BENCH_GC_STATS": str(Path(tmp) / f"gc-{i}.json") if gc_stats else "",
                    "HEALTH_CHECK_ALLOWED_HOSTS": "127.0.0.1",
                    "NOTIFY_WEBHOOK_URLS": hook,
                    "BENCH_HEALTH_URL": health_url,  # the relay's hops under the engine
                    "BENCH_HOOK_URL": hook,
                    "WORKER_MODE": worker,
                    "CONSUMER_NAME": f"bench-{i}",
                }
                procs.append(launch([str(ROOT / "cmd" / "printery-workers")], env))
                await anyio.to_thread.run_sync(
                    wait_http, f"http://127.0.0.1:{http_port}/ready", 60, procs[-1]
                )
                name = "all" if "," in worker else worker
                if name in PROFILE.split(","):
                    # BENCH_PROFILE=<worker> (or all: the one process of all four): sample
                    # that process with py-spy (pip install py-spy)
                    profilers.append(
                        subprocess.Popen(
                            [
                                *("py-spy", "record", "-r", "200", "-f", "raw", "--nonblocking"),
                                *("-d", str(int(seconds) + 2), "-p", str(procs[-1].pid)),
                                *("-o", f"/tmp/printery-{name}.pyspy"),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        )
                    )
            first = keys.started
            chain = [
                keys.started,
                keys.validated,
                keys.dependencies_satisfied,
                keys.notifications,
                keys.delivered,
            ]
            if set(",".join(workers).split(",")) <= set(HOP_WORKERS):
                first, chain = streams[0], relay_chain
        try:
            before = [cpu_split(p) for p in [receiver, *procs]]
            woke = [wake_ups(p) for p in [receiver, *procs]]
            if redis_stats:
                stats = aioredis.Redis.from_url(url)
                await stats.config_resetstat()
                await stats.aclose()
            sent = await publish(
                url, first, prefix, rate=rate, seconds=seconds, health_url=health_url
            )
            await wait_done(url, chain[-1], len(sent), 60)
            split = [
                (user - u0, system - s0)
                for (u0, s0), (user, system) in zip(
                    before, [cpu_split(p) for p in [receiver, *procs]], strict=True
                )
            ]
            used = [user + system for user, system in split]
            woke = [wake_ups(p) - w for p, w in zip([receiver, *procs], woke, strict=True)]
            commands = await redis_commands(url, rate * int(seconds)) if redis_stats else ""
        finally:
            for profiler in profilers:
                profiler.wait()
            stop_processes(procs)
        received = await wait_received(out, receiver)
        if workers is None:
            parties = ["relay"] if relay_processes == 1 else [f"relay {i}" for i in range(4)]
        else:
            parties = [w.replace("bench.relay_hops:Hop", "hop ") for w in workers]
        names = ["receiver", *(name if "," not in name else "all four" for name in parties)]
        cpu = ", ".join(
            f"{name} {spent / len(sent) * 1e6:.0f}" for name, spent in zip(names, used, strict=True)
        )
        lines = await report(label, url, chain, sent, received)
        lines = f"{lines}\n      CPU µs per deployment: {cpu}"
        if redis_stats:
            system = ", ".join(
                f"{name} {s / len(sent) * 1e6:.0f}"
                for name, (_, s) in zip(names, split, strict=True)
            )
            lines += f"\n      of which system: {system}"
            wakes = ", ".join(
                f"{name} {w / len(sent):.1f}" for name, w in zip(names, woke, strict=True)
            )
            lines += f"\n      wake-ups per deployment (voluntary context switches): {wakes}"
            lines += f"\n      Redis commands per deployment: {commands}"
        if gc_stats and workers is not None:
            for i, name in enumerate(names[1:]):
                account = gc_account(Path(tmp) / f"gc-{i}.json", len(sent))
                lines += f"\n      collector, {name}: {account}"
        cpu_us = sum(used[1:]) / len(sent) * 1e6  # every party but the receiver
        return Outcome(label, lines, cpu_us, quantile(end_to_end(sent, received), 0.99))


@dataclass(frozen=True)
class Outcome:
    """One run's report, and the two figures the targets are ratios of."""

    label: str
    text: str
    cpu_us: float  # CPU per deployment of every party but the receiver
    p99_ms: float

    def against(self, baseline: Outcome) -> str:
        cpu, p99 = self.cpu_us / baseline.cpu_us, self.p99_ms / baseline.p99_ms
        against = baseline.label.rstrip(":")
        return f"{self.label:<30} CPU {cpu:4.2f}×  p99 {p99:4.2f}×  (against the {against})"


async def main(
    rate: int,
    seconds: float,
    mode: str,
    *,
    redis_stats: bool = False,
    gc_stats: bool = False,
    engine: bool = False,
) -> None:
    print(f"pipeline latency, {rate} deployments/s for {seconds:g} s, {machine()}")
    with redis_server() as url:
        hot, idle = await round_trip_cpu(url)
        stats = {"redis_stats": redis_stats, "gc_stats": gc_stats}
        print(
            f"  this machine: a redis-py round trip costs {hot:.0f} µs of CPU back to back, "
            f"{idle:.0f} µs after 20 ms idle"
        )
        relay = await run(url, "baseline 4-hop relay:", rate, seconds, None, **stats)
        print(relay.text)
        outcomes: list[tuple[Outcome, Outcome]] = []
        if mode in ("all", "one"):
            all_four = [",".join(WORKERS)]
            one = await run(url, "printery, 1 process:", rate, seconds, all_four, **stats)
            print(one.text)
            outcomes.append((one, relay))
        if mode in ("all", "four"):
            four = await run(url, "printery, 4 processes:", rate, seconds, WORKERS, **stats)
            print(four.text)
            outcomes.append((four, relay))
        if engine:
            # Where printery's CPU goes: the relay's own job under printery's engine
            # (bench/relay_hops.py), and the relay split into four processes as well.
            label = "engine alone, 1 process:"
            alone = await run(url, label, rate, seconds, [",".join(HOP_WORKERS)], **stats)
            print(alone.text)
            outcomes.append((alone, relay))
            if mode in ("all", "four"):
                split = await run(
                    url, "relay, 4 processes:", rate, seconds, None, relay_processes=4, **stats
                )
                print(split.text)
                outcomes.append((split, relay))
                outcomes.append((four, split))
        print("  ratios (targets: CPU per deployment ≤ 1.1× the relay's, p99 ≤ 2×)")
        for outcome, baseline in outcomes:
            print(f"      {outcome.against(baseline)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-receiver"]:
        serve_receiver(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1:2] == ["--serve-relay"]:
        hops = [int(h) for h in sys.argv[6].split(",")] if len(sys.argv) > 6 else [0, 1, 2, 3]
        serve_relay(sys.argv[2], sys.argv[3].split(","), sys.argv[4], sys.argv[5], hops)
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--rate", type=int, default=1000)
        parser.add_argument("--seconds", type=float, default=10)
        parser.add_argument("--mode", choices=("all", "one", "four"), default="all")
        parser.add_argument(
            "--redis-stats",
            action="store_true",
            help="per run: each process's system CPU, and Redis commands per deployment",
        )
        parser.add_argument(
            "--gc-stats",
            action="store_true",
            help="per printery process: what the garbage collector did once the workers ran",
        )
        parser.add_argument(
            "--engine",
            action="store_true",
            help="also the relay's own job as four printery workers, and the relay in 4 processes",
        )
        args: Any = parser.parse_args()
        anyio.run(
            functools.partial(
                main,
                args.rate,
                args.seconds,
                args.mode,
                redis_stats=args.redis_stats,
                gc_stats=args.gc_stats,
                engine=args.engine,
            )
        )
