"""The validator on a three-primary Redis Cluster against one standalone redis-server.

Same machine, same run: each round fills a standalone server's ``started``
stream and, on a cluster of three primaries built like the tests' fixture,
the twelve partition streams (each deployment in the partition its id hashes
to), then runs the real validator (concurrency 1) until it has handled them
all. Target: cluster at least 0.7 x standalone. Each run also gives the
bench process's CPU per message (the validator runs in it; the servers do
not), steadier than msg/s on a shared machine, and the messages per commit
script call (``INFO commandstats``: calls of EVALSHA); the summary's CPU
ratio is standalone's CPU per message over the cluster's, read like the
throughput ratio (below 1: the cluster costs more). Then, with the
validator idle, it counts on each primary the connections the daemon's
client holds and how many of them sit in a blocking XREADGROUP
(``CLIENT LIST``).

    python bench/cluster.py [--messages 12000] [--rounds 3] [--partitions 12]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import deployment_fields, machine, process_cpu_s, redis_server
from bench.runtime_throughput import fill
from printery.lifecycle import Hub, LifecycleEvent, MessageHandled
from printery.pipeline.validator import ValidatorWorker
from printery.redis.adapter import StreamAdapter, connect
from printery.redis.cluster import open_adapter, partitions_of, start_adapter
from printery.redis.keys import Keys
from printery.settings import Settings, load_settings
from printery.supervisor.manager import WorkerManager
from printery.worker import WorkerDeps
from tests.support.redis_cluster import RedisCluster

CLIENT_NAME = "printery:bench"


async def fill_partitions(url: str, settings: Settings, count: int) -> None:
    """``count`` deployments, each XADDed to the partition its id hashes to."""
    client = aioredis.RedisCluster.from_url(url)
    parts = partitions_of(settings)
    for start in range(0, count, 1000):
        async with client.pipeline(transaction=False) as pipe:
            for n in range(start, min(count, start + 1000)):
                fields = deployment_fields(n)
                pipe.xadd(parts.of(f"dep-{n}").started, fields)  # type: ignore[arg-type]
            await pipe.execute()
    await client.aclose()


async def run(
    adapter: StreamAdapter, settings: Settings, prefix: str, count: int, after: Any
) -> tuple[float, float]:
    """Run the validator until it handled ``count``; ``after()`` runs while it idles.

    Returns msg/s and this process's CPU µs per message over the same span.
    """
    worker = ValidatorWorker(WorkerDeps(settings, adapter, Keys(prefix), "bench"))
    done = anyio.Event()
    handled = 0

    def on_event(event: LifecycleEvent) -> None:
        nonlocal handled
        if isinstance(event, MessageHandled):
            handled += 1
            if handled == count:
                done.set()

    manager = WorkerManager(emit=Hub([on_event]))
    manager.register(worker)
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        began, cpu = time.perf_counter(), process_cpu_s()
        await manager.start_all()
        with anyio.fail_after(600):
            await done.wait()
        elapsed, cpu = time.perf_counter() - began, process_cpu_s() - cpu
        await after()
        await manager.stop_all()
        tg.cancel_scope.cancel()
    return count / elapsed, cpu / count * 1e6


async def evalsha_calls(ports: list[int], reset: bool = False) -> int:
    """Calls of EVALSHA (the commit script) on these servers since the last reset."""
    calls = 0
    for port in ports:
        client = aioredis.Redis(port=port, decode_responses=True)
        if reset:
            await client.config_resetstat()
        else:
            stats: dict[str, Any] = await client.info("commandstats")
            calls += int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
        await client.aclose()
    return calls


async def connections(cluster: RedisCluster) -> list[tuple[int, int, int]]:
    """Per primary: (port, connections named CLIENT_NAME, of them blocked in a read)."""
    found = []
    for node in cluster.primaries:
        client = aioredis.Redis(port=node.port, decode_responses=True)
        clients: list[dict[str, Any]] = await client.client_list()
        await client.aclose()
        ours = [c for c in clients if c.get("name") == CLIENT_NAME]
        blocked = [c for c in ours if "b" in str(c.get("flags", ""))]
        found.append((node.port, len(ours), len(blocked)))
    return found


async def main(count: int, rounds: int, partitions: int) -> None:
    print(
        f"validator, standalone against a 3-primary cluster ({partitions} partitions), "
        f"{count} messages, {machine()}"
    )
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: redis-server is not installed (apt-get install redis-server)")
    ratios: list[float] = []
    cpu: dict[str, list[float]] = {"standalone": [], "cluster": []}
    batch: dict[str, list[float]] = {"standalone": [], "cluster": []}
    seen: list[tuple[int, int, int]] = []
    calls: list[int] = []  # EVALSHA calls of the cluster run, taken as it idles
    with redis_server() as url, tempfile.TemporaryDirectory() as data:
        cluster = RedisCluster(Path(data), primaries=3, binary=binary)
        cluster.start()
        ports = {
            "standalone": [int(url.rsplit(":", 1)[1].split("/")[0])],
            "cluster": [node.port for node in cluster.primaries],
        }
        try:
            for r in range(rounds):
                prefix = f"s{r}"
                plain = load_settings({}, {"STREAM_PREFIX": prefix})
                await fill(url, Keys(prefix).started, count)
                adapter = StreamAdapter(connect(url, socket_timeout=5, connect_timeout=2))
                await evalsha_calls(ports["standalone"], reset=True)
                standalone, spent = await run(
                    adapter, plain, prefix, count, anyio.lowlevel.checkpoint
                )
                cpu["standalone"].append(spent)
                batch["standalone"].append(count / await evalsha_calls(ports["standalone"]))
                await adapter.close()

                prefix = f"c{r}"
                env = {
                    "REDIS_URL": cluster.url,
                    "REDIS_MODE": "cluster",
                    "STREAM_PREFIX": prefix,
                    "PARTITIONS": str(partitions),
                }
                settings = load_settings({}, env)
                await fill_partitions(cluster.url, settings, count)
                adapter = open_adapter(settings, client_name=CLIENT_NAME)
                await start_adapter(adapter, settings)
                await evalsha_calls(ports["cluster"], reset=True)

                async def idle() -> None:
                    calls.append(await evalsha_calls(ports["cluster"]))
                    await anyio.sleep(1.5)  # every partition's consumer back in its blocking read
                    seen[:] = await connections(cluster)

                calls.clear()
                clustered, spent = await run(adapter, settings, prefix, count, idle)
                cpu["cluster"].append(spent)
                batch["cluster"].append(count / calls[0])
                validated = sum(
                    [await adapter.length(k.validated) for k in partitions_of(settings).all]
                )
                await adapter.close()
                if validated != count:
                    raise SystemExit(f"bench: {validated} of {count} validated on the cluster")
                ratios.append(clustered / standalone)
                print(
                    f"  round {r + 1}: standalone {standalone:6,.0f} msg/s "
                    f"{cpu['standalone'][-1]:4.0f} µs CPU/msg {batch['standalone'][-1]:3.0f} "
                    f"msg/commit, cluster {clustered:6,.0f} msg/s {cpu['cluster'][-1]:4.0f} "
                    f"µs CPU/msg {batch['cluster'][-1]:3.0f} msg/commit: "
                    f"{clustered / standalone:.2f} x"
                )
        finally:
            cluster.stop()
    print(f"  cluster: {statistics.median(ratios):.2f} x standalone (median; target >= 0.7)")
    print(
        "  CPU per message (median): "
        f"standalone {statistics.median(cpu['standalone']):.0f} µs, "
        f"cluster {statistics.median(cpu['cluster']):.0f} µs "
        f"({statistics.median(cpu['standalone']) / statistics.median(cpu['cluster']):.2f} x); "
        "messages per commit: "
        f"standalone {statistics.median(batch['standalone']):.0f}, "
        f"cluster {statistics.median(batch['cluster']):.0f}"
    )
    for port, total, blocked in seen:
        print(f"  primary :{port}: {total} connections of the validator, {blocked} in XREADGROUP")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=12_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=12)
    args = parser.parse_args()
    anyio.run(main, args.messages, args.rounds, args.partitions)
