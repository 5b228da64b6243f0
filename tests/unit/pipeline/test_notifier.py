"""The notifier's handler against scripted loopback webhooks: signature, retries, markers, audit."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import pytest
import structlog
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from printery.envelope import Event
from printery.errors import ConfigError, RedisUnavailable, RetryLater
from printery.message import Message
from printery.pipeline.notifier import NotifierWorker, sign
from printery.redis.adapter import StreamAdapter
from printery.redis.writes import Write
from printery.settings import load_settings
from tests.support.harness import make_deps
from tests.support.redis_server import free_port

pytestmark = pytest.mark.timeout(15)

SECRET = "s3cret"
FAST = {
    "NOTIFY_WEBHOOK_SECRET": SECRET,
    "NOTIFY_WEBHOOK_ATTEMPTS": "3",
    "NOTIFY_WEBHOOK_BACKOFF_MS": "1",
    "NOTIFY_WEBHOOK_BACKOFF_MAX_MS": "5",
    "NOTIFY_WEBHOOK_TIMEOUT": "0.2",
}


class Receiver:
    """A webhook answering with the next status of its script (the last repeats); keeps requests."""

    def __init__(self, *statuses: int, delay: float = 0.0) -> None:
        self.statuses = list(statuses)
        self.delay = delay
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((dict(request.headers), body))
        await anyio.sleep(self.delay)
        return web.Response(status=self.statuses[min(len(self.requests), len(self.statuses)) - 1])


@pytest.fixture
async def apps() -> AsyncIterator[Any]:
    """Serve aiohttp routes on a free loopback port; returns the base URL."""
    runners: list[web.AppRunner] = []

    async def start(routes: list[web.RouteDef]) -> str:
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def serve(apps: Any) -> Any:
    async def start(receiver: Receiver) -> Receiver:
        receiver.url = await apps([web.post("/hook", receiver.hook)]) + "/hook"
        return receiver

    return start


@pytest.fixture
async def notifiers(fake_adapter: StreamAdapter, prefix: str) -> AsyncIterator[Any]:
    made: list[NotifierWorker] = []

    def make(*urls: str, **env: str) -> NotifierWorker:
        worker = NotifierWorker(
            make_deps(fake_adapter, prefix, NOTIFY_WEBHOOK_URLS=",".join(urls), **{**FAST, **env})
        )
        made.append(worker)
        return worker

    yield make
    for worker in made:
        await worker.aclose()


OUTCOME = Event.create(
    "deployment.blocked",
    "dep-42",
    {
        "deployment_id": "dep-42",
        "service": "billing-api",
        "reasons": ["auth-api ^2.1.0: found 1.9.0"],
    },
    source="printery/dependency-checker",
    traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
)


def message(event: Event = OUTCOME, deliveries: int = 1) -> Message:
    raw = {k.encode(): v.encode() for k, v in event.to_fields().items()}
    return Message("s", "1-0", raw, deliveries)


def audit(writes: Sequence[Write], worker: NotifierWorker) -> list[Event]:
    return [
        Event.from_fields(dict(zip(map(str, w.args[::2]), map(str, w.args[1::2]), strict=True)))
        for w in writes
        if w.op == "XADD" and w.key == worker.keys.delivered
    ]


async def test_post_is_signed_structured_and_keyed(notifiers: Any, serve: Any) -> None:
    """The body is the structured CloudEvent; the signature is the HMAC of its exact bytes."""
    receiver = await serve(Receiver(204))
    await notifiers(receiver.url).handle(message())
    [(headers, body)] = receiver.requests
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Printery-Signature"] == expected == sign(SECRET, body)
    assert headers["Content-Type"].startswith("application/cloudevents+json")
    assert headers["Idempotency-Key"] == OUTCOME.id
    assert json.loads(body) == OUTCOME.to_structured()


async def test_no_secret_no_signature(notifiers: Any, serve: Any) -> None:
    """With NOTIFY_WEBHOOK_SECRET empty, the signature headers are left out, not sent empty."""
    receiver = await serve(Receiver(200))
    await notifiers(receiver.url, NOTIFY_WEBHOOK_SECRET="").handle(message())
    [(headers, _)] = receiver.requests
    signed = {"X-Printery-Signature", "webhook-id", "webhook-timestamp", "webhook-signature"}
    assert set() == signed & set(headers)


async def test_standard_webhooks_signature_verifies_with_the_spec_library(
    notifiers: Any, serve: Any
) -> None:
    """A delivered POST passes standardwebhooks' verify, keyed by the secret's bytes."""
    receiver = await serve(Receiver(204))
    await notifiers(receiver.url).handle(message())
    [(headers, body)] = receiver.requests
    verified = Webhook(SECRET.encode()).verify(body, headers)
    assert (OUTCOME.to_structured(), OUTCOME.id) == (verified, headers["webhook-id"])
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5


async def test_whsec_secret_is_read_as_base64(notifiers: Any, serve: Any) -> None:
    """A whsec_ secret is base64 after its prefix (the spec); X-Printery-Signature keeps its key."""
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    receiver = await serve(Receiver(204))
    await notifiers(receiver.url, NOTIFY_WEBHOOK_SECRET=secret).handle(message())
    [(headers, body)] = receiver.requests
    assert OUTCOME.to_structured() == Webhook(secret).verify(body, headers)
    assert sign(secret, body) == headers["X-Printery-Signature"]


async def test_each_retry_is_stamped_anew_and_an_old_request_is_refused(
    notifiers: Any, serve: Any
) -> None:
    """Every POST carries its own timestamp; one replayed ten minutes later fails verification."""
    receiver = await serve(Receiver(503, 204))
    worker = notifiers(receiver.url)
    stamps = iter([time.time() - 600, time.time()])
    assert worker.signer is not None
    worker.signer.clock = lambda: next(stamps)
    await worker.handle(message())
    [(old_headers, old_body), (headers, body)] = receiver.requests
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET.encode()).verify(old_body, old_headers)
    assert OUTCOME.to_structured() == Webhook(SECRET.encode()).verify(body, headers)
    assert old_headers["webhook-timestamp"] != headers["webhook-timestamp"]


def test_a_whsec_secret_that_is_not_base64_is_one_line_without_the_secret() -> None:
    """A whsec_ secret that is not base64 is a ConfigError naming the setting, not the value."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"NOTIFY_WEBHOOK_SECRET": "whsec_not*base64-canary"})
    assert "NOTIFY_WEBHOOK_SECRET" == caught.value.setting
    assert "canary" not in str(caught.value)


RESULTS = [
    ("accepted", (200,), "notification.delivered", 200, 1),
    ("5xx then accepted", (503, 502, 200), "notification.delivered", 200, 3),
    ("rate limited then accepted", (429, 204), "notification.delivered", 204, 2),
    ("4xx is permanent", (404,), "notification.failed", 404, 1),
    ("a redirect is not followed", (302,), "notification.failed", 302, 1),
]


@pytest.mark.parametrize(
    ("script", "kind", "status", "attempts"),
    [case[1:] for case in RESULTS],
    ids=[case[0] for case in RESULTS],
)
async def test_answers_decide_the_result(  # noqa: PLR0917 - pytest passes fixtures and parameters by name
    notifiers: Any, serve: Any, script: tuple[int, ...], kind: str, status: int, attempts: int
) -> None:
    """5xx and 429 are retried with backoff; other 4xx fail at once; each result is audited."""
    receiver = await serve(Receiver(*script))
    worker = notifiers(receiver.url)
    writes = await worker.handle(message())
    [record] = audit(writes, worker)
    data = record.data_object()
    assert (record.type, data["status"], data["attempts"]) == (kind, status, attempts)
    assert len(receiver.requests) == attempts
    assert data["event_id"] == OUTCOME.id
    assert record.subject == "dep-42"


@pytest.mark.parametrize(
    ("receiver", "error"),
    [(Receiver(500), "HTTP 500"), (Receiver(200, delay=1.0), "timed out after 0.2 s")],
    ids=["5xx every time", "too slow every time"],
)
async def test_transient_failure_after_the_retries_means_retry_later(
    notifiers: Any, serve: Any, receiver: Receiver, error: str
) -> None:
    """When the retries run out on a transient fault, the message is left for redelivery."""
    await serve(receiver)
    with pytest.raises(RetryLater, match=error):
        await notifiers(receiver.url).handle(message())
    assert len(receiver.requests) == 3


async def test_unreachable_webhook_means_retry_later(notifiers: Any) -> None:
    """A refused connection is transient too."""
    with pytest.raises(RetryLater, match="ClientConnectorError"):
        await notifiers(f"http://127.0.0.1:{free_port()}/hook").handle(message())


async def markers_in_redis(adapter: StreamAdapter, worker: NotifierWorker) -> list[str]:
    return [k async for k in adapter.client.scan_iter(match=f"{worker.keys.prefix}:notified:*")]


def markers_in(writes: Sequence[Write]) -> list[Write]:
    return [w for w in writes if w.op == "SET_NX"]


async def test_marker_prevents_a_second_send(
    notifiers: Any, serve: Any, fake_adapter: StreamAdapter
) -> None:
    """On redelivery, a webhook that already took the event is skipped; the other is retried."""
    took_it, flaky = await serve(Receiver(200)), await serve(Receiver(503, 503, 503, 200))
    worker = notifiers(took_it.url, flaky.url)
    with pytest.raises(RetryLater):
        await worker.handle(message(deliveries=1))
    # Before the redelivery, the marker of the webhook that took it is in Redis already.
    [kept] = await markers_in_redis(fake_adapter, worker)
    assert 0 < await fake_adapter.client.ttl(kept) <= 7 * 86400
    writes = await worker.handle(message(deliveries=2))
    assert len(took_it.requests) == 1
    assert len(flaky.requests) == 4
    first, second = audit(writes, worker)
    assert first.data_object()["earlier_delivery"] is True
    assert (second.type, second.data_object()["attempts"]) == ("notification.delivered", 1)
    # The other marker goes with the ack, in the commit.
    [committed] = markers_in(writes)
    assert committed.key != kept
    assert json.loads(committed.args[0])["status"] == 200
    assert committed.args[1] == str(7 * 86400)


async def test_markers_of_a_full_delivery_go_with_the_ack(
    notifiers: Any, serve: Any, fake_adapter: StreamAdapter
) -> None:
    """Every webhook took it: one commit writes the markers, no round trip of their own."""
    one, two = await serve(Receiver(200)), await serve(Receiver(204))
    worker = notifiers(one.url, two.url)
    writes = await worker.handle(message())
    assert [] == await markers_in_redis(fake_adapter, worker)
    assert [200, 204] == [json.loads(w.args[0])["status"] for w in markers_in(writes)]


async def test_refused_webhook_sets_no_marker(
    notifiers: Any, serve: Any, fake_adapter: StreamAdapter
) -> None:
    """Only a 2xx writes the marker: a refusal is not a delivery."""
    receiver = await serve(Receiver(400))
    worker = notifiers(receiver.url)
    writes = await worker.handle(message())
    assert [] == await markers_in_redis(fake_adapter, worker)
    assert [] == markers_in(writes)


async def test_every_outcome_is_logged(notifiers: Any) -> None:
    """The log gets printery.deployment_outcome with the id, type and reasons, webhooks or not."""
    worker = notifiers()
    with structlog.testing.capture_logs() as logs:
        writes = await worker.handle(message())
    [entry] = [e for e in logs if e["event"] == "printery.deployment_outcome"]
    assert (entry["deployment_id"], entry["type"], entry["reasons"]) == (
        "dep-42",
        "deployment.blocked",
        ["auth-api ^2.1.0: found 1.9.0"],
    )
    assert audit(writes, worker) == []
    [log] = [w for w in writes if w.op == "RPUSH"]
    assert json.loads(log.args[0])["status"] == "logged"


async def test_notification_does_not_overwrite_the_deployment_status(
    notifiers: Any, serve: Any
) -> None:
    """The timeline gains a notification entry; the deployment's status stays its outcome."""
    receiver = await serve(Receiver(200))
    writes = await notifiers(receiver.url).handle(message())
    [fields] = [dict(zip(w.args[::2], w.args[1::2], strict=True)) for w in writes if w.op == "HSET"]
    assert "status" not in fields
    assert "notification_at" in fields


async def test_a_slow_webhook_is_progress_not_a_hang(
    notifiers: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before it POSTs, a delivery promises progress within the longest it may take."""
    receiver = await serve(Receiver(200, delay=0.5))
    worker = notifiers(receiver.url, NOTIFY_WEBHOOK_TIMEOUT="2", NOTIFIER_HANG_TIMEOUT="0.15")
    promises: list[tuple[float, int]] = []
    monkeypatch.setattr(
        worker, "beat", lambda within=0.0: promises.append((within, len(receiver.requests)))
    )
    await worker.handle(message())
    assert len(receiver.requests) == 1
    assert [(worker.longest_delivery_s, 0)] == promises


async def test_the_promise_is_bounded_by_the_longest_a_delivery_may_take(
    notifiers: Any,
) -> None:
    """Every POST timing out and every wait the longest: past that, a stuck one is hung."""
    worker = notifiers("http://127.0.0.1:9/hook", NOTIFIER_HANG_TIMEOUT="0.15")
    # 3 POSTs of 0.2 s, 2 waits of at most 5.5 ms, and two marker round trips.
    assert worker.longest_delivery_s == pytest.approx(3 * 0.2 + 2 * 0.0055 + 2 * 5)


async def test_a_marker_lost_to_redis_is_retried_under_its_own_name(
    notifiers: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis away while the marker is read: the handler raises that, not an ExceptionGroup."""
    receiver = await serve(Receiver(200))
    worker = notifiers(receiver.url)

    async def unavailable(key: str) -> str | None:
        raise RedisUnavailable("Connection refused")

    monkeypatch.setattr(worker.deps.adapter, "get", unavailable)
    with pytest.raises(RedisUnavailable, match="Connection refused"):
        await worker.handle(message())
    assert receiver.requests == []


async def test_a_marker_not_written_does_not_undo_the_delivery(
    notifiers: Any, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis away before a redelivery: the retry still says why, the delivery stands."""
    took_it, failing = await serve(Receiver(200)), await serve(Receiver(503))
    worker = notifiers(took_it.url, failing.url)

    async def unavailable(key: str, value: str, ttl_s: int) -> bool:
        raise RedisUnavailable("Timeout reading from redis")

    monkeypatch.setattr(worker.deps.adapter, "set_once", unavailable)
    with structlog.testing.capture_logs() as logs, pytest.raises(RetryLater, match="HTTP 503"):
        await worker.handle(message())
    assert len(took_it.requests) == 1
    [warning] = [e for e in logs if e["event"].startswith("printery.delivery_marker")]
    assert (warning["event"], warning["event_id"]) == (
        "printery.delivery_marker_not_written",
        OUTCOME.id,
    )


class Proxy:
    """A forward proxy that answers for any webhook itself: keeps what it was asked to forward."""

    def __init__(self) -> None:
        self.forwarded: list[tuple[str, str]] = []  # (method, request target)
        self.credentials: list[str | None] = []  # Proxy-Authorization, per request
        self.url = ""

    async def forward(self, request: web.Request) -> web.Response:
        await request.read()
        self.forwarded.append((request.method, str(request.url)))
        self.credentials.append(request.headers.get("Proxy-Authorization"))
        return web.Response(status=204)


@pytest.fixture
async def proxy(apps: Any, monkeypatch: pytest.MonkeyPatch) -> Proxy:
    """A proxy on loopback, named by HTTP_PROXY, and nothing exempt from it."""
    proxy = Proxy()
    proxy.url = await apps([web.route("*", "/{tail:.*}", proxy.forward)])
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)
    return proxy


async def test_webhooks_go_through_the_proxy_the_environment_names(
    notifiers: Any, proxy: Proxy
) -> None:
    """HTTP_PROXY is honoured: webhooks outside the cluster are reached through it."""
    unreachable = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: only the proxy answers
    worker = notifiers(unreachable)
    writes = await worker.handle(message())
    [record] = audit(writes, worker)
    assert record.type == "notification.delivered"
    assert proxy.forwarded == [("POST", unreachable)]
    assert proxy.credentials == [None]


async def test_proxy_credentials_in_the_environment_are_sent_to_the_proxy(
    notifiers: Any, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY=http://user:password@host gives the proxy a Proxy-Authorization header."""
    with_credentials = proxy.url.replace("http://", "http://relay:s3cr3t@")
    monkeypatch.setenv("HTTP_PROXY", with_credentials)
    monkeypatch.setenv("http_proxy", with_credentials)
    await notifiers(f"http://127.0.0.1:{free_port()}/hook").handle(message())
    assert proxy.credentials == ["Basic " + base64.b64encode(b"relay:s3cr3t").decode()]


async def test_no_proxy_exempts_a_webhook(
    notifiers: Any, serve: Any, proxy: Proxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host in NO_PROXY is POSTed to directly."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    receiver = await serve(Receiver(204))
    await notifiers(receiver.url).handle(message())
    assert len(receiver.requests) == 1
    assert proxy.forwarded == []


async def test_netrc_credentials_are_sent_to_their_host(
    notifiers: Any, serve: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A webhook without credentials in its URL gets the ones ~/.netrc (or NETRC) holds for it."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login printery password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    receiver = await serve(Receiver(204))
    await notifiers(receiver.url).handle(message())
    [(headers, _)] = receiver.requests
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"printery:hunter2").decode()


async def test_proxy_credentials_for_an_https_webhook_go_with_connect(
    notifiers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An https webhook is reached through a CONNECT tunnel: the proxy's credentials go there."""
    heads: list[bytes] = []

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, f"http://relay:s3cr3t@127.0.0.1:{port}")
    worker = notifiers("https://hooks.example.com/deploys", NOTIFY_WEBHOOK_ATTEMPTS="1")
    async with server:
        with pytest.raises(RetryLater, match="407"):
            await worker.handle(message())
    [head] = heads
    assert head.startswith(b"CONNECT hooks.example.com:443 HTTP/1.1\r\n")
    expected = "Basic " + base64.b64encode(b"relay:s3cr3t").decode()
    assert f"Proxy-Authorization: {expected}".encode() in head
