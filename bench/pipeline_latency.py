"""Pipeline latency: deployments published at a fixed rate, publish to webhook receipt.

printery: the four workers as four ``printery-workers`` processes (one per
worker, as in Kubernetes), a health endpoint on loopback that answers at once
(``healthy_threshold`` 1) and a webhook receiver on loopback, both in this
process. Baseline, in the same run at the same rate: a plain redis-py relay
of the same four hops (XREADGROUP, XADD to the next stream, XACK) whose last
hop POSTs to the same receiver. Reports p50/p99/max from publish to receipt.
Target: p99 under 20 ms at 1,000 deployments/s.

    python bench/pipeline_latency.py [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import redis.asyncio as aioredis
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, redis_server
from printery.envelope import Event
from printery.keys import Keys

ROOT = Path(__file__).resolve().parent.parent
WORKERS = ("validator", "dependency-checker", "health-monitor", "notifier")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """Health endpoint and webhook receiver; records when each deployment's outcome arrived."""

    def __init__(self) -> None:
        self.received: dict[str, float] = {}
        self.app = web.Application()
        self.app.add_routes([web.get("/healthz", self.health), web.post("/hook", self.hook)])

    async def health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.setdefault(str(body["subject"]), time.perf_counter())
        return web.Response(status=204)


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
        async with client.pipeline(transaction=False) as pipe:
            for _ in range(per_tick):
                deployment_id = f"{prefix}-{n}"
                pipe.xadd(stream, started(deployment_id, health_url))  # type: ignore[arg-type]
                n += 1
            now = time.perf_counter()
            await pipe.execute()
        for i in range(n - per_tick, n):
            sent[f"{prefix}-{i}"] = now
        await anyio.sleep(max(0.0, began + n / rate - time.perf_counter()))
    await client.aclose()
    return sent


async def relay(url: str, streams: list[str], hook: str) -> None:
    """The baseline: four plain hops, the last one POSTs to the receiver."""
    client = aioredis.Redis.from_url(url)
    for stream in streams:
        await client.xgroup_create(stream, "g", id="0", mkstream=True)

    async def hop(source: str, target: str | None, http: aiohttp.ClientSession) -> None:
        while True:
            reply = await client.xreadgroup("g", "c", {source: ">"}, count=100, block=1000)
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    if target is not None:
                        await client.xadd(target, fields)
                    else:
                        body = {"subject": fields[b"subject"].decode()}
                        async with http.post(hook, json=body) as response:
                            await response.read()
                    await client.xack(source, "g", entry_id)

    async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
        for source, target in zip(streams, [*streams[1:], None], strict=True):
            tg.start_soon(hop, source, target, http)


def percentiles(sent: dict[str, float], received: dict[str, float]) -> str:
    latencies = sorted((received[k] - t) * 1000 for k, t in sent.items() if k in received)
    if not latencies:
        return "nothing received"

    def at(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return (
        f"p50 {at(0.50):7.1f} ms  p99 {at(0.99):7.1f} ms  max {latencies[-1]:7.1f} ms  "
        f"({len(latencies)} of {len(sent)} received)"
    )


async def wait_received(receiver: Receiver, sent: dict[str, float], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and not all(k in receiver.received for k in sent):
        await anyio.sleep(0.1)  # an outside pipeline's progress: nothing in-process to await


async def main(rate: int, seconds: float) -> None:
    print(f"pipeline latency, {rate} deployments/s for {seconds:g} s, {machine()}")
    receiver = Receiver()
    runner = web.AppRunner(receiver.app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    health_url, hook = f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{port}/hook"
    with redis_server() as url:
        base_streams = [f"base:{n}" for n in range(4)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay, url, base_streams, hook)
            await anyio.sleep(0.5)
            sent = await publish(
                url, base_streams[0], "base", rate=rate, seconds=seconds, health_url=health_url
            )
            await wait_received(receiver, sent, 30)
            tg.cancel_scope.cancel()
        baseline = percentiles(sent, receiver.received)

        env = {
            **os.environ,
            "REDIS_URL": url,
            "STREAM_PREFIX": "lat",
            "HTTP_PORT": "0",
            "LOG_LEVEL": "error",
            "PYTHONPATH": str(ROOT),
            "HEALTH_CHECK_ALLOWED_HOSTS": "127.0.0.1",
            "NOTIFY_WEBHOOK_URLS": hook,
        }
        daemons = [
            subprocess.Popen(
                [sys.executable, str(ROOT / "cmd" / "printery-workers")],
                env={**env, "WORKER_MODE": worker, "CONSUMER_NAME": worker},
            )
            for worker in WORKERS
        ]
        await anyio.sleep(2)  # let the four processes start and create their groups
        sent = await publish(
            url, Keys("lat").started, "lat", rate=rate, seconds=seconds, health_url=health_url
        )
        await wait_received(receiver, sent, 60)
        for daemon in daemons:
            daemon.terminate()
        for daemon in daemons:
            daemon.wait(timeout=40)
        result = percentiles(sent, receiver.received)
    await runner.cleanup()
    print(f"  baseline plain 4-hop relay: {baseline}")
    print(f"  printery, 4 processes:      {result}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    args: Any = parser.parse_args()
    anyio.run(main, args.rate, args.seconds)
