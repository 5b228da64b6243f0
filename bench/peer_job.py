"""The job every peer of ``peers.py`` does per entry, in the standard library only.

Decode the entry's ``data`` (JSON), build one ``deployment.validated``
CloudEvent carrying it, as the fields of a stream entry. (FastStream decodes
``data`` itself: a field named ``data`` is its message body, so its handler
receives the decoded object and calls :func:`event_for`.) The raw redis-py
loop, FastStream's consumers and printery's pass-through worker all call this
one function, so they differ only in how they read, publish and acknowledge.
It imports nothing from printery: FastStream's process runs it from an
environment of its own, without printery installed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["event_for", "output_fields"]


def output_fields(fields: Mapping[bytes, bytes]) -> dict[str, str]:
    """The output event for one input entry's fields: decode ``data``, then :func:`event_for`."""
    return event_for(json.loads(fields[b"data"]))


def event_for(data: Mapping[str, Any]) -> dict[str, str]:
    """The output event's fields for a decoded ``data`` (FastStream hands its handler this)."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "bench",
        "type": "deployment.validated",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "subject": data["deployment_id"],
        "datacontenttype": "application/json",
        "data": json.dumps(data, separators=(",", ":")),
    }
