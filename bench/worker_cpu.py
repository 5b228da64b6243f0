"""CPU per message of each pipeline worker, hot, against the pass-through loop.

Each worker works through a backlog of its own input, made in this run by
the stage before it: ``deployment.started`` → validator → dependency-checker
(its registry holds the dependency) → health-monitor (an endpoint that
answers at once, ``healthy_threshold`` 1) → notifier (a webhook). The health
endpoint and the webhook answer from another process, so the CPU counted
here is the worker's, redis-py's and the event loop's. The baseline is the
pass-through loop of ``runtime_throughput.py`` over as many messages.

The pipeline benchmark's CPU per deployment includes waking up between
messages, which on a VM can cost more than the work; this one does not. It
is the figure to watch for a change in one worker's code.

    python bench/worker_cpu.py [--messages 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, machine, process_cpu_s, redis_server, stop_processes
from bench.pipeline_latency import wait_http
from bench.runtime_throughput import baseline, fill, run_until_handled
from printery.daemon.logs import configure_logging
from printery.pipeline.dependency_checker import DependencyCheckerWorker
from printery.pipeline.health_monitor import HealthMonitorWorker
from printery.pipeline.notifier import NotifierWorker
from printery.pipeline.validator import ValidatorWorker
from printery.redis.adapter import StreamAdapter, connect
from printery.redis.keys import Keys
from printery.settings import load_settings
from printery.worker import StreamWorker, WorkerDeps

WORKERS: tuple[type[StreamWorker], ...] = (
    ValidatorWorker,
    DependencyCheckerWorker,
    HealthMonitorWorker,
    NotifierWorker,
)


async def one_round(url: str, prefix: str, count: int, port: int) -> dict[str, float]:
    """CPU µs per message: the baseline loop, then each worker on the previous one's output."""
    health_url, hook = f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{port}/hook"
    keys = Keys(prefix)
    client = aioredis.Redis.from_url(url)
    await client.hset(keys.registry("production"), "auth-api", "2.3.0")  # meets ^2.1.0
    await client.aclose()
    check = {"url": health_url, "healthy_threshold": 1, "interval_s": 1}
    await fill(url, keys.started, count, health_check=check)

    await fill(url, f"{prefix}:base", count)
    began = process_cpu_s()
    await baseline(url, f"{prefix}:base", count)
    cpu = {"baseline loop": (process_cpu_s() - began) / count * 1e6}

    settings = load_settings(
        {},
        {
            "STREAM_PREFIX": prefix,
            "HEALTH_CHECK_ALLOWED_HOSTS": "127.0.0.1",
            "NOTIFY_WEBHOOK_URLS": hook,
        },
    )
    adapter = StreamAdapter(connect(url, socket_timeout=5, connect_timeout=2))
    for kind in WORKERS:
        alone = type(kind.__name__, (kind,), {"depends_on": ()})  # its input is made already
        worker = alone(WorkerDeps(settings, adapter, keys, "bench"))
        began = process_cpu_s()
        await run_until_handled(worker, count)
        cpu[worker.name] = (process_cpu_s() - began) / count * 1e6
    outcomes = await adapter.client.xlen(keys.delivered)
    await adapter.close()
    if outcomes != count:
        raise SystemExit(f"bench: {outcomes} of {count} deployments reached the webhook")
    return cpu


async def main(count: int, rounds: int) -> None:
    print(f"worker CPU, {count} messages, {rounds} rounds, {machine()}")
    configure_logging("error")  # as the pipeline benchmark runs the daemons: LOG_LEVEL=error
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp, redis_server() as url:
        script = str(Path(__file__).with_name("pipeline_latency.py"))
        receiver = subprocess.Popen(  # the pipeline benchmark's health endpoint and webhook
            [sys.executable, script, "--serve-receiver", str(port), str(Path(tmp) / "r.json")]
        )
        try:
            await anyio.to_thread.run_sync(
                wait_http, f"http://127.0.0.1:{port}/healthz", 30, receiver
            )
            results = [await one_round(url, f"w{r}", count, port) for r in range(rounds)]
        finally:
            stop_processes([receiver])
    print("  CPU µs per message, hot (median of the rounds; x = the baseline loop's)")
    base = statistics.median(r["baseline loop"] for r in results)
    for name in results[0]:
        values = [r[name] for r in results]
        median = statistics.median(values)
        rounds_text = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {name:<20}{median:7.0f} µs  ({median / base:4.1f} x; rounds: {rounds_text})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.messages, args.rounds)
