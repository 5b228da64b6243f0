"""Take docs/dashboard.png from a real run: two daemons, messages flowing, a few dead letters.

Starts a redis-server of its own, two ``printery-workers`` running the test
suite's echo worker, a publisher at a varying rate, and ``printery dashboard``;
after ``--seconds`` it asks headless chromium for a screenshot of the overview.

    python scripts/dashboard_screenshot.py [--seconds 150] [--out docs/dashboard.png]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, ECHO
from tests.e2e.daemon import Daemon
from tests.support.dashboard_process import DashboardProcess
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent


def main(seconds: float, out: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="printery-shot-"))
    server = RedisServer(tmp / "redis")
    server.start()
    prefix = "printery"
    env = {
        "REDIS_URL": server.url,
        "STREAM_PREFIX": prefix,
        "WORKER_MODE": ECHO,
        "BLOCK_MS": "200",
        "HEARTBEAT_INTERVAL": "1",
        "MAX_DELIVERIES": "2",
    }
    client = redis.Redis.from_url(server.url)
    daemons = [Daemon(tmp / f"d{i}", {**env, "CONSUMER_NAME": f"worker-pod-{i}"}) for i in range(2)]
    stop = threading.Event()

    def publish() -> None:
        n = 0
        while not stop.is_set():
            client.xadd(f"{prefix}:test:in", {"n": str(n), "sleep": "0.3"})
            n += 1
            stop.wait(0.02 + 0.08 * ((n // 300) % 3))  # the rate changes every few hundred

    try:
        for d in daemons:
            d.start()
        for d in daemons:
            d.wait_ready()
        for i in range(3):
            data = json.dumps({"file": f"img-{i}.png", "size": 1024 * i})
            client.xadd(
                f"{prefix}:test:in",
                {
                    "fail": "permanent",
                    "type": "media.uploaded",
                    "subject": f"upload-{i}",
                    "data": data,
                },
            )
        with DashboardProcess(
            tmp / "dashboard", {"REDIS_URL": server.url, "STREAM_PREFIX": prefix}
        ) as dash:
            feeder = threading.Thread(target=publish)
            feeder.start()
            time.sleep(seconds)
            subprocess.run(  # noqa: S603 - our own argv, no shell
                [
                    CHROMIUM,
                    *CHROMIUM_ARGS,
                    f"--user-data-dir={tmp / 'profile'}",
                    "--hide-scrollbars",
                    "--window-size=1400,820",
                    f"--screenshot={out}",
                    dash.url + "/",
                ],
                capture_output=True,
                timeout=60,
                check=True,
            )
            stop.set()
            feeder.join()
    finally:
        stop.set()
        for d in daemons:
            d.kill()
        server.stop()
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    args = parser.parse_args()
    main(args.seconds, args.out.resolve())
