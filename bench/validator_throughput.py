"""Validator throughput: the real validator against the plain redis-py pass-through loop.

The validator parses and checks each ``deployment.started`` entry (schema,
DNS-1123 service, semver, ranges, health-check host) and emits
``deployment.validated`` plus the deployment's timeline, all in the commit
with the ack. The baseline is the same hand-rolled loop as in
``runtime_throughput.py``, which only decodes and re-emits. Target: at least
0.5 × the baseline.

    python bench/validator_throughput.py [--messages 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, process_cpu_s, redis_server
from bench.runtime_throughput import baseline, fill, run_until_handled
from printery.pipeline.validator import ValidatorWorker
from printery.redis.adapter import StreamAdapter, connect
from printery.redis.keys import Keys
from printery.settings import load_settings
from printery.worker import WorkerDeps


async def validator_run(url: str, prefix: str, count: int) -> float:
    settings = load_settings({}, {"STREAM_PREFIX": prefix})
    adapter = StreamAdapter(connect(url, socket_timeout=5, connect_timeout=2))
    worker = ValidatorWorker(WorkerDeps(settings, adapter, Keys(prefix), "c"))
    elapsed = await run_until_handled(worker, count)
    validated = await adapter.client.xlen(Keys(prefix).validated)
    await adapter.close()
    if validated != count:
        raise SystemExit(f"bench: {validated} of {count} deployments validated; check the sample")
    return count / elapsed


async def main(count: int, rounds: int) -> None:
    print(f"validator throughput, {count} messages, {rounds} rounds, {machine()}")
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    with redis_server() as url:
        for r in range(rounds):  # the ratio is taken within a round, then the median
            await fill(url, f"base{r}:in", count)
            began = process_cpu_s()
            base = await baseline(url, f"base{r}:in", count)
            base_cpu = (process_cpu_s() - began) / count * 1e6
            await fill(url, Keys(f"v{r}").started, count)
            began = process_cpu_s()
            rate = await validator_run(url, f"v{r}", count)
            rate_cpu = (process_cpu_s() - began) / count * 1e6
            ratios.append(rate / base)
            cpu_ratios.append(base_cpu / rate_cpu)
            print(
                f"  round {r + 1}: baseline pass-through loop {base:9,.0f} msg/s, "
                f"printery validator (concurrency 1) {rate:9,.0f} msg/s ({rate / base:.2f} x); "
                f"CPU per message {base_cpu:.0f} and {rate_cpu:.0f} µs"
            )
    print(
        f"  printery validator: {statistics.median(ratios):.2f} x baseline (median); "
        f"by CPU per message: {statistics.median(cpu_ratios):.2f} x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    anyio.run(main, args.messages, args.rounds)
