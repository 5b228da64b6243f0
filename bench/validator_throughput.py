"""Validator throughput: the real validator against the plain redis-py pass-through loop.

The validator parses and checks each ``deployment.started`` entry (schema,
DNS-1123 service, semver, ranges, health-check host) and emits
``deployment.validated`` plus the deployment's timeline, all in the commit
with the ack. The baseline is the same hand-rolled loop as in
``runtime_throughput.py``, which only decodes and re-emits. Target: at least
0.5 × the baseline.

    python bench/validator_throughput.py [--messages 50000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, redis_server
from bench.runtime_throughput import baseline, fill, run_until_handled
from printery.adapter import StreamAdapter, connect
from printery.keys import Keys
from printery.settings import load_settings
from printery.validator import ValidatorWorker
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


async def main(count: int) -> None:
    print(f"validator throughput, {count} messages, {machine()}")
    with redis_server() as url:
        await fill(url, "base:in", count)
        base = await baseline(url, "base:in", count)
        await fill(url, Keys("v").started, count)
        began = time.perf_counter()
        rate = await validator_run(url, "v", count)
        print(f"  baseline redis-py pass-through loop: {base:9,.0f} msg/s")
        print(
            f"  printery validator (concurrency 1):  {rate:9,.0f} msg/s "
            f"({rate / base:.2f} x baseline; {time.perf_counter() - began:.1f} s)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    anyio.run(main, parser.parse_args().messages)
