"""A health endpoint on loopback for real health-monitor processes to poll.

``GET /health/<name>`` answers 503 until ``up`` is set, then 200, each after
``delay`` seconds; it remembers every name that asked. It runs in a thread, as
the daemons under test are other processes.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["HealthEndpoint"]


class HealthEndpoint:
    def __init__(self, *, delay: float = 0.0) -> None:
        self.up = threading.Event()
        self.delay = delay
        self.asked: set[str] = set()
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with endpoint._lock:
                    endpoint.asked.add(self.path.rsplit("/", 1)[-1])
                if endpoint.delay:
                    time.sleep(endpoint.delay)  # a slow service, in the server's own thread
                self.send_response(200 if endpoint.up.is_set() else 503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def deployment(self, n: int, *, deadline_s: float, **more: object) -> dict[str, object]:
        """Deployment ``dep-<n>`` whose health check polls ``/health/<n>`` here."""
        return {
            "deployment_id": f"dep-{n}",
            "service": f"svc-{n}",
            "version": "1.0.0",
            "environment": "staging",
            **more,
            "dependencies": [],
            "health_check": {
                "url": f"{self.base}/health/{n}",
                "expect_status": 200,
                "timeout_s": 2,
                "interval_s": 0.2,
                "healthy_threshold": 1,
                "deadline_s": deadline_s,
            },
        }

    def asked_by(self) -> int:
        with self._lock:
            return len(self.asked)

    def __enter__(self) -> HealthEndpoint:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
