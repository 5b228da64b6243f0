"""docs/events.md is true: its verifier checks its captured webhook, its entries parse.

The page's examples were captured from a real run; these tests read them from
the page itself, so an edit that breaks one (a changed byte in the body, a
verifier that no longer works) fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from printery.envelope import Event
from printery.pipeline.deployment import ValidationRules
from printery.pipeline.notifier import sign
from printery.pipeline.rules import validate_deployment

pytestmark = pytest.mark.timeout(10)

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text(encoding="utf-8")
SECRET = "whsec-demo-secret"  # the NOTIFY_WEBHOOK_SECRET the page says the capture used


def block(language: str, containing: str) -> str:
    """The one fenced block of ``language`` on the page whose text contains ``containing``."""
    found = [b for b in re.findall(rf"```{language}\n(.*?)```", PAGE, re.DOTALL) if containing in b]
    assert 1 == len(found), f"{language} block with {containing!r}"
    return found[0]


def captured_post() -> tuple[dict[str, str], bytes]:
    head, body = block("http", "POST ").split("\n\n", 1)
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
    return headers, body.rstrip("\n").encode()


def verifier() -> Callable[[str, bytes, str], bool]:
    namespace: dict[str, Any] = {}
    exec(block("python", "def verify"), namespace)  # the page's own code, as a reader copies it
    return cast(Callable[[str, bytes, str], bool], namespace["verify"])


def test_the_pages_verifier_accepts_the_captured_webhook() -> None:
    """verify() from the page is True for the captured body and X-Printery-Signature."""
    headers, body = captured_post()
    assert True is verifier()(SECRET, body, headers["X-Printery-Signature"])
    assert len(body) == int(headers["Content-Length"])


def test_the_pages_verifier_refuses_a_changed_body_or_secret() -> None:
    """One changed byte, or another secret, makes verify() False."""
    headers, body = captured_post()
    verify = verifier()
    tampered = body.replace(b'"version":"1.4.4"', b'"version":"1.4.5"')
    assert (False, False) == (
        verify(SECRET, tampered, headers["X-Printery-Signature"]),
        verify("another-secret", body, headers["X-Printery-Signature"]),
    )


def test_the_pages_verifier_agrees_with_the_notifier() -> None:
    """What the notifier signs today, the page's verifier accepts: the two cannot drift."""
    body = b'{"type":"deployment.rejected"}'
    assert True is verifier()(SECRET, body, sign(SECRET, body))


def test_the_captured_post_is_the_event_in_structured_mode() -> None:
    """The body is one CloudEvent with data as an object; Idempotency-Key is its id."""
    headers, body = captured_post()
    event = json.loads(body)
    assert ("1.0", "deployment.healthy", headers["Idempotency-Key"]) == (
        event["specversion"],
        event["type"],
        event["id"],
    )
    assert "application/cloudevents+json; charset=utf-8" == headers["Content-Type"]
    assert event["subject"] == event["data"]["deployment_id"]


def xrange_fields() -> dict[str, str]:
    """The entry of the page's XRANGE block, as the field → value mapping Redis holds."""
    entry_id, *values = [
        json.loads(quoted)
        for quoted in re.findall(r'\d+\) (".*")$', block("", "XRANGE"), re.MULTILINE)
    ]
    assert re.fullmatch(r"\d+-\d+", entry_id)
    return dict(zip(values[::2], values[1::2], strict=True))


def test_the_pages_stream_entry_is_a_deployment_the_validator_accepts() -> None:
    """The XRANGE entry reads as a CloudEvent whose data passes every validation rule."""
    event = Event.from_fields(xrange_fields())
    deployment = validate_deployment(json.loads(event.data), ValidationRules())
    assert ("deployment.started", "billing-api-fcd9c171") == (event.type, event.subject)
    assert ("billing-api", "1.4.2", "staging") == (
        deployment.service,
        deployment.version,
        deployment.environment,
    )
