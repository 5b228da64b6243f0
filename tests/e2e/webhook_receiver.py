"""A webhook receiver on a fixed loopback port that the end-to-end tests start, stop and steer.

Shared by every test that needs a sink for the notifier: start it late to play
a receiver that is down, change its answer to play one that fails, hold or
delay a subject to play a slow one.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.redis_server import free_port

__all__ = ["Post", "Receiver"]


@dataclass(frozen=True)
class Post:
    """One POST as the receiver saw it."""

    at: float  # time.monotonic() on arrival
    event_id: str
    subject: str
    status: int


class Receiver:
    """A webhook receiver on a fixed loopback port: start it late, stop it, change its answer.

    ``answer(subject)`` gives the status of each POST (200 unless told); a
    subject in ``hold`` is answered only once ``release`` is set, one in
    ``delay_s`` that many seconds late. Waiting on
    what arrived is waiting on a condition, never sleeping.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.posts: list[Post] = []
        self.answer: Callable[[str], int] = lambda subject: 200
        self.hold: set[str] = set()
        self.delay_s: dict[str, float] = {}
        self.release = threading.Event()
        self.outstanding: set[str] = set()
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                subject = str(body.get("subject", ""))
                if subject in receiver.hold:
                    receiver.note_outstanding(subject, True)
                    receiver.release.wait(timeout=60)
                if subject in receiver.delay_s:
                    time.sleep(receiver.delay_s[subject])  # the receiver's own slowness
                status = receiver.answer(subject)
                receiver.record(
                    Post(time.monotonic(), self.headers["Idempotency-Key"], subject, status)
                )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.note_outstanding(subject, False)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def record(self, post: Post) -> None:
        with self._changed:
            self.posts.append(post)
            self._changed.notify_all()

    def note_outstanding(self, subject: str, waiting: bool) -> None:
        with self._changed:
            (self.outstanding.add if waiting else self.outstanding.discard)(subject)
            self._changed.notify_all()

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 20) -> None:
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise AssertionError(f"receiver: not {what} within {timeout} s; saw {self.posts}")

    def of(self, event_id: str) -> list[Post]:
        with self._changed:
            return [p for p in self.posts if p.event_id == event_id]

    def delivered(self) -> Counter[str]:
        """Per event id, how many POSTs were answered 2xx."""
        with self._changed:
            return Counter(p.event_id for p in self.posts if 200 <= p.status < 300)
