"""The notifier: every outcome to the log, and to each configured webhook.

::

    notification ─► log printery.deployment_outcome (always)
                 └► per NOTIFY_WEBHOOK_URLS url, concurrently:
                      marker set? ── yes ─► skip: an earlier delivery of this event got through
                      └ no ─► POST (retried with backoff on timeouts, connection errors, 5xx,
                              408 and 429) ─┬─ 2xx ─► delivered: marker to write
                                            ├─ other 4xx, 3xx ─► failed, for good
                                            └─ still failing ─► failed, for now
    any url failed for now ─► SET NX the delivered urls' markers (NOTIFY_MARKER_TTL), then
                              RetryLater: the runtime redelivers (delivered urls skip
                              thanks to the marker) and dead-letters after MAX_DELIVERIES
    otherwise ──────────────► notification.delivered / notification.failed per url
                              → keys.delivered, and the markers, in the commit with the ack

Each POST carries the CloudEvent in structured mode (``application/cloudevents+json``),
``Idempotency-Key: <event id>`` and, when ``NOTIFY_WEBHOOK_SECRET`` is set,
``X-Printery-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`` and the
Standard Webhooks ``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature``
headers, stamped per POST (printery.pipeline.signatures).

The markers that handlers running at once ask for are read in one ``MGET``
(printery.redis.coalesced): on a backlog, a round trip for several messages
rather than one per message and webhook.

The marker outlives the ack: it also keeps a duplicate of the event (an
upstream redelivery publishes the same event id again) from being POSTed
twice. It is written with the ack in one atomic commit, which saves a round
trip per delivery; when the message will be redelivered instead, the
delivered urls' markers are written before the redelivery. A marker that
cannot be written then (Redis away) does not undo the delivery: only the
redelivery it is for could POST again. A receiver may still see an event
twice (a crash between its 2xx and the commit): the ``Idempotency-Key`` is
there for that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import stamina
from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
from structlog import get_logger
from yarl import URL

from printery import __version__
from printery.envelope import Event, compact_json, now_rfc3339
from printery.errors import Permanent, RedisUnavailable, RetryLater
from printery.message import Message
from printery.pipeline.http_worker import HttpStreamWorker
from printery.pipeline.signatures import Signer, printery_signature
from printery.pipeline.timeline import timeline_writes
from printery.redis.coalesced import CoalescedGets
from printery.redis.writes import Write
from printery.settings import Settings, redact_url
from printery.worker import WorkerDeps

__all__ = ["Delivery", "NotifierWorker", "sign"]

_SOURCE = "printery/notifier"
_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
_RETRYABLE_4XX = frozenset({408, 429})  # timeouts and rate limits: the receiver asks us to retry
_ERROR_CHARS = 300


sign = printery_signature  # the name callers have imported from here


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one event at one webhook."""

    url: str
    delivered: bool
    status: int | None
    attempts: int
    error: str | None = None
    transient: bool = False  # failed, but a later delivery may get through
    earlier: bool = False  # skipped: the marker says an earlier delivery got through
    marker: tuple[str, str] | None = None  # (key, record) to write: this delivery got through

    def to_data(self, event: Event) -> dict[str, Any]:
        return {
            "event_id": event.id,
            "event_type": event.type,
            "deployment_id": event.subject,
            "url": redact_url(self.url),
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
            "earlier_delivery": self.earlier,
        }


class _Transient(Exception):
    """A POST that may succeed if tried again."""

    def __init__(self, status: int | None, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class NotifierWorker(HttpStreamWorker):
    """Logs and delivers each outcome; see the module docstring."""

    name = "notifier"
    depends_on = ()
    default_concurrency = 5

    def __init__(self, deps: WorkerDeps) -> None:
        super().__init__(deps)
        self.urls = self.settings.webhook_urls
        self.secret = self.settings.notify_webhook_secret
        self.signer = Signer(self.secret) if self.secret else None
        self.log = get_logger(worker=self.name)
        self._routes: dict[str, _Route] = {}
        self.longest_delivery_s = _longest_delivery_s(self.settings)
        # The markers that handlers running at once ask for go in one MGET.
        self._markers = CoalescedGets(self.deps.adapter, lambda: self.handlers_running)

    @property
    def stream(self) -> str:
        return self.keys.notifications

    def new_session(self) -> aiohttp.ClientSession:
        # Webhooks usually live outside the cluster: honour HTTPS_PROXY / NO_PROXY (and
        # ~/.netrc), as trust_env=True would, but read them once per url and session:
        # trust_env reads them on every request, in two thread hops and a file read.
        self._routes = {url: _route(url) for url in self.urls}
        return aiohttp.ClientSession(trust_env=False)

    async def handle(self, message: Message) -> Sequence[Write]:
        event = message.event()
        try:
            data = event.data_object()
        except ValueError as exc:
            raise Permanent(f"data: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            data = {}
        reasons = data.get("reasons") if isinstance(data.get("reasons"), list) else []
        self.log.info(
            "printery.deployment_outcome",
            deployment_id=data.get("deployment_id") or event.subject,
            type=event.type,
            reasons=reasons,
            service=data.get("service"),
            version=data.get("version"),
            environment=data.get("environment"),
            event_id=event.id,
            deliveries=message.deliveries,
        )
        results = await self.deliver(event)
        pending = [r for r in results if r.transient]
        if pending:
            await self._keep_markers(event.id, results)
            raise RetryLater(
                "webhook delivery failed: "
                + "; ".join(f"{redact_url(r.url)}: {r.error}" for r in pending)
            )
        writes = [
            Write.xadd(
                self.keys.delivered,
                event.follow(
                    "notification.delivered" if r.delivered else "notification.failed",
                    r.to_data(event),
                    source=_SOURCE,
                ).to_fields(),
            )
            for r in results
        ]
        markers = [
            Write.set_once(key, record, self.settings.notify_marker_ttl)
            for key, record in (r.marker for r in results if r.marker is not None)
        ]
        return [*writes, *markers, *self._timeline(event, results)]

    async def deliver(self, event: Event) -> list[Delivery]:
        """POST ``event`` to every webhook at once; one result per url, in url order."""
        body = compact_json(event.to_structured()).encode()
        headers = {
            "Content-Type": _CONTENT_TYPE,
            "Idempotency-Key": event.id,
            "User-Agent": f"printery/{__version__}",
        }
        if self.signer is not None:
            headers.update(self.signer.body_headers(body))
        # Each delivery is bounded (timeouts, attempts, waits): promise the hang
        # detector progress within that bound, rather than beat through it.
        self.beat(within=self.longest_delivery_s)
        if len(self.urls) <= 1:  # the common case: no task group to set up
            return [await self._deliver_one(url, event.id, body, headers) for url in self.urls]
        results: dict[str, Delivery] = {}

        async def one(url: str) -> None:
            results[url] = await self._deliver_one(url, event.id, body, headers)

        try:
            async with anyio.create_task_group() as tg:
                for url in self.urls:
                    tg.start_soon(one, url)
        except ExceptionGroup as group:
            # A marker read failed (Redis away): the retry and the dead letter should
            # say so, not "unhandled errors in a TaskGroup".
            raise _first_error(group) from None
        return [results[url] for url in self.urls]

    async def _deliver_one(
        self, url: str, event_id: str, body: bytes, headers: dict[str, str]
    ) -> Delivery:
        marker = self._marker(event_id, url)
        earlier = await self._markers.get(marker)
        if earlier is not None:
            return Delivery(url, True, _int_or_none(earlier), 0, earlier=True)
        try:
            status, attempts = await self._post_until_final(url, event_id, body, headers)
        except _Transient as exc:
            attempts = self.settings.notify_webhook_attempts
            return Delivery(url, False, exc.status, attempts, exc.error, transient=True)
        if 200 <= status < 300:
            record = compact_json({"status": status, "attempts": attempts, "at": now_rfc3339()})
            return Delivery(url, True, status, attempts, marker=(marker, record))
        return Delivery(url, False, status, attempts, f"HTTP {status}: refused, not retried")

    def _marker(self, event_id: str, url: str) -> str:
        return self.keys.delivery_marker(event_id, hashlib.sha256(url.encode()).hexdigest()[:16])

    async def _post_until_final(
        self, url: str, event_id: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, int]:
        """POST until an answer that is not transient: (status, attempts).

        The first try goes straight out: nearly every POST succeeds at once, and
        setting up the retry loop would cost more than the POST itself.
        """
        try:
            return await self._post(url, event_id, body, headers), 1
        except _Transient as exc:
            failed = exc
        settings = self.settings
        first_wait = settings.notify_webhook_backoff_ms / 1000
        async for attempt in stamina.retry_context(
            on=_Transient,
            attempts=settings.notify_webhook_attempts,
            timeout=None,
            wait_initial=first_wait,
            wait_max=settings.notify_webhook_backoff_max_ms / 1000,
            wait_jitter=first_wait / 2,
        ):
            with attempt:
                if attempt.num == 1:
                    raise failed  # the try above: stamina waits, then tries again
                return await self._post(url, event_id, body, headers), attempt.num
        raise AssertionError("unreachable: retry_context raises when attempts run out")

    async def _keep_markers(self, event_id: str, results: Sequence[Delivery]) -> None:
        """Write the markers of the webhooks that took the event, before a redelivery.

        A marker that cannot be written (Redis away) does not undo the delivery:
        only the redelivery it is for would POST again.
        """
        for result in results:
            if result.marker is None:
                continue
            key, record = result.marker
            try:
                await self.deps.adapter.set_once(key, record, self.settings.notify_marker_ttl)
            except RedisUnavailable as exc:
                self.log.warning(
                    "printery.delivery_marker_not_written",
                    url=redact_url(result.url),
                    event_id=event_id,
                    error=str(exc),
                )

    async def _post(self, url: str, event_id: str, body: bytes, headers: dict[str, str]) -> int:
        timeout = self.settings.notify_webhook_timeout
        session = self.http()
        route = self._routes.get(url, _DIRECT)
        if route.headers is not None:
            headers = {**headers, **route.headers}
        if self.signer is not None:  # stamped per POST: a late retry is not "too old"
            headers = {**headers, **self.signer.attempt_headers(event_id, body)}
        try:
            async with session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
                proxy=route.proxy,
                proxy_headers=route.proxy_headers,
            ) as response:
                status = response.status
        except TimeoutError as exc:
            raise _Transient(None, f"timed out after {timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            raise _Transient(None, f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS]) from exc
        if status >= 500 or status in _RETRYABLE_4XX:
            raise _Transient(status, f"HTTP {status}")
        return status

    def _timeline(self, event: Event, results: list[Delivery]) -> list[Write]:
        if not results:
            status, message = "logged", f"{event.type} logged (no webhooks configured)"
        else:
            ok = sum(r.delivered for r in results)
            status = "delivered" if ok == len(results) else "failed"
            message = f"{event.type} delivered to {ok} of {len(results)} webhook(s)"
            refused = [f"{redact_url(r.url)}: {r.error}" for r in results if not r.delivered]
            if refused:
                message += "; " + "; ".join(refused)
        return timeline_writes(
            self.keys,
            event.subject,
            "notification",
            status,
            message,
            ttl_s=self.settings.timeline_ttl,
            record_status=False,
        )


def _longest_delivery_s(s: Settings) -> float:
    """The most a delivery can take: every POST times out, every wait is the longest."""
    posts = s.notify_webhook_attempts * s.notify_webhook_timeout
    longest_wait = (s.notify_webhook_backoff_max_ms + s.notify_webhook_backoff_ms / 2) / 1000
    markers = 2 * s.redis_socket_timeout  # the marker read; the write before a redelivery
    return posts + (s.notify_webhook_attempts - 1) * longest_wait + markers


def _first_error(group: BaseExceptionGroup[Exception]) -> BaseException:
    """The first error inside (nested) exception groups."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


@dataclass(frozen=True, slots=True)
class _Route:
    """How to reach one webhook, as ``trust_env=True`` would: proxy, and credentials."""

    proxy: URL | None = None
    proxy_headers: dict[str, str] | None = None  # sent to the proxy with CONNECT (https)
    headers: dict[str, str] | None = None  # added to each POST


_DIRECT = _Route()


def _route(url: str) -> _Route:
    """HTTP(S)_PROXY / NO_PROXY, and ~/.netrc (or NETRC) credentials, for ``url``.

    Credentials travel as headers, as aiohttp 3.14 asks (its ``auth`` and
    ``proxy_auth`` parameters go in aiohttp 4). A proxy's own credentials go
    with CONNECT for an https webhook; for an http one the proxy reads the
    POST itself, so they go there (aiohttp sends ``proxy_headers`` only with
    CONNECT).
    """
    target = URL(url)
    proxy: URL | None = None
    proxy_headers: dict[str, str] | None = None
    headers: dict[str, str] = {}
    with contextlib.suppress(LookupError):
        proxy, proxy_auth = get_env_proxy_for_url(target)
        if proxy_auth is not None:
            if target.scheme == "https":
                proxy_headers = {"Proxy-Authorization": proxy_auth.encode()}
            else:
                headers["Proxy-Authorization"] = proxy_auth.encode()
    if target.host is not None and target.user is None:
        with contextlib.suppress(LookupError):
            headers["Authorization"] = basicauth_from_netrc(netrc_from_env(), target.host).encode()
    return _Route(proxy, proxy_headers, headers or None)


def _int_or_none(record: str) -> int | None:
    try:
        status = json.loads(record).get("status")
    except (ValueError, AttributeError):
        return None
    return status if isinstance(status, int) else None
