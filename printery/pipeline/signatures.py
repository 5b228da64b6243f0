"""Webhook signatures: ``X-Printery-Signature`` and the Standard Webhooks headers.

Two forms, both keyed by ``NOTIFY_WEBHOOK_SECRET``, both on every POST:

``X-Printery-Signature: sha256=<hex HMAC-SHA256 of the body>``
    printery's own, kept as it always was; the key is the secret's UTF-8 bytes,
    whatever they look like. It signs the body alone, so a captured request
    verifies again if it is replayed later.

``webhook-id`` / ``webhook-timestamp`` / ``webhook-signature`` (https://www.standardwebhooks.com)
    ``webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, where
    the id is the event id and the timestamp the POST's Unix seconds. A receiver
    that checks the timestamp against its clock (the libraries allow five minutes)
    turns a replayed request away, and one that remembers ids drops duplicates.
    The key is read as the spec says: a ``whsec_`` secret is base64 after the
    prefix (``whsec_`` + base64 of 24 to 64 random bytes, as the libraries make
    them); any other secret's UTF-8 bytes are the key, so a receiver built on a
    Standard Webhooks library passes those bytes, not the string.

The headers are made per POST, not per event: a retry a minute later carries
its own timestamp, so a receiver's tolerance window never rejects a late retry.
Signing is a few lines of stdlib ``hmac``; the ``standardwebhooks`` package
verifies it in the tests (see the README's dependency table for why it is not a
runtime dependency).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable

__all__ = ["STANDARD_PREFIX", "Signer", "printery_signature", "standard_key"]

STANDARD_PREFIX = "whsec_"


def printery_signature(secret: str, body: bytes) -> str:
    """The ``X-Printery-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_key(secret: str) -> bytes:
    """The Standard Webhooks key of ``secret``: base64 after ``whsec_``, else its UTF-8 bytes.

    Raises ValueError when a ``whsec_`` secret is not base64 (the settings say so at start).
    """
    if not secret.startswith(STANDARD_PREFIX):
        return secret.encode()
    try:
        return base64.b64decode(secret.removeprefix(STANDARD_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("starts with whsec_ but the rest is not base64") from None


class Signer:
    """Signs each POST in both forms with one secret; ``clock`` is injectable for tests."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time) -> None:
        self.secret = secret
        self.key = standard_key(secret)
        self.clock = clock

    def body_headers(self, body: bytes) -> dict[str, str]:
        """The headers that depend on the body alone: the same on every POST of an event."""
        return {"X-Printery-Signature": printery_signature(self.secret, body)}

    def attempt_headers(self, event_id: str, body: bytes) -> dict[str, str]:
        """The Standard Webhooks headers of one POST, stamped now."""
        timestamp = str(int(self.clock()))
        signed = b"%s.%s.%s" % (event_id.encode(), timestamp.encode(), body)
        digest = hmac.new(self.key, signed, hashlib.sha256).digest()
        return {
            "webhook-id": event_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        }
