"""Footprint: idle RSS of a daemon running all four workers, and time from start to /ready.

Baseline, in the same run: a bare Python process that imports the same
libraries (redis, aiohttp, prometheus-client, structlog, pydantic) and idles,
so the ratio shows what printery adds on top of its dependencies. Targets:
idle RSS under 80 MB, start to /ready under 2 s.

    python bench/footprint.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, machine, redis_server

ROOT = Path(__file__).resolve().parent.parent
BASELINE = (
    "import redis.asyncio, aiohttp, prometheus_client, structlog, pydantic_settings, anyio, time;"
    "print('ready', flush=True); time.sleep(60)"
)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def wait_ready(port: int, deadline_s: float) -> float:
    """Seconds until /ready answers 200 (polling an external process: nothing to await)."""
    began = time.monotonic()
    while time.monotonic() - began < deadline_s:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=0.5) as r:
                if r.status == 200:
                    return time.monotonic() - began
        except OSError:
            pass
        time.sleep(0.005)
    raise SystemExit("bench: the daemon did not become ready")


def main() -> None:
    print(f"footprint, {machine()}")
    with redis_server() as url:
        began = time.monotonic()
        base = subprocess.Popen([sys.executable, "-c", BASELINE], stdout=subprocess.PIPE)
        assert base.stdout is not None
        base.stdout.readline()
        base_start = time.monotonic() - began
        time.sleep(1)
        base_rss = rss_mb(base.pid)
        base.kill()
        base.wait()

        port = free_port()
        env = {
            **os.environ,
            "REDIS_URL": url,
            "HTTP_PORT": str(port),
            "HTTP_HOST": "127.0.0.1",
            "WORKER_MODE": "all",
            "STREAM_PREFIX": "footprint",
            "LOG_LEVEL": "warn",
            "PYTHONPATH": str(ROOT),
        }
        began = time.monotonic()
        daemon = subprocess.Popen(
            [sys.executable, str(ROOT / "cmd" / "printery-workers")],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        wait_ready(port, 30)
        ready_s = time.monotonic() - began
        time.sleep(3)  # idle: every worker blocked in XREADGROUP
        daemon_rss = rss_mb(daemon.pid)
        daemon.terminate()
        code = daemon.wait(timeout=30)
    print(
        f"  baseline (interpreter + the same libraries): {base_rss:6.1f} MB RSS, "
        f"imports done in {base_start:.2f} s"
    )
    print(
        f"  printery-workers, all four workers, idle:     {daemon_rss:6.1f} MB RSS "
        f"({daemon_rss / base_rss:.2f} x baseline; target < 80 MB)"
    )
    print(
        f"  process start to /ready 200:                  {ready_s:6.2f} s "
        f"({ready_s / base_start:.2f} x the baseline's imports; target < 2 s); exit {code}"
    )


if __name__ == "__main__":
    main()
