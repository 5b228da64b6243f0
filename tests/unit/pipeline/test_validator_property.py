"""Property: any deployment.started entry, however malformed, ends validated, rejected or
dead-lettered, and nothing else ever escapes the validator's handler."""

from __future__ import annotations

import json
from typing import Any

import anyio
import fakeredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from printery.envelope import MalformedEvent
from printery.errors import Permanent
from printery.message import Message
from printery.pipeline.validator import ValidatorWorker
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys
from tests.support.harness import make_deps

pytestmark = pytest.mark.timeout(120)

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
_PLAUSIBLE = st.fixed_dictionaries(
    {},
    optional={
        "deployment_id": st.sampled_from(["dep-1", "", "x" * 200, "bad id"]) | st.text(max_size=12),
        "service": st.sampled_from(["billing-api", "Billing_API", ""]) | _JSON,
        "version": st.sampled_from(["1.4.2", "1.4", "v1"]) | _JSON,
        "environment": st.sampled_from(["production", "moon"]) | _JSON,
        "dependencies": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "service": _JSON | st.just("auth-api"),
                    "version": _JSON | st.sampled_from(["^2.1.0", "^^2", ">=14"]),
                },
            ),
            max_size=3,
        )
        | _JSON,
        "health_check": st.fixed_dictionaries(
            {},
            optional={
                "url": st.sampled_from(["http://h/x", "ftp://h", "http://169.254.169.254/"])
                | _JSON,
                "deadline_s": _JSON,
                "timeout_s": _JSON,
            },
        )
        | _JSON,
    },
)
_DATA = (
    _PLAUSIBLE.map(lambda d: json.dumps(d).encode())
    | _JSON.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=64)
)
_ATTRIBUTE = st.sampled_from(
    ["specversion", "id", "source", "type", "time", "subject", "datacontenttype", "traceparent"]
)
_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        b"specversion": st.sampled_from([b"1.0", b"0.3", b"\xff"]),
        b"id": st.sampled_from([b"e-1", b""]),
        b"source": st.just(b"tests"),
        b"type": st.sampled_from([b"deployment.started", b"deployment.exploded", b"\xfe"]),
        b"subject": st.sampled_from([b"dep-1", b"", b"\xff\xfe"]) | st.binary(max_size=8),
        b"traceparent": st.sampled_from(
            [b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", b"garbage"]
        ),
        b"data": _DATA,
    },
).flatmap(
    lambda base: st.dictionaries(
        _ATTRIBUTE.map(str.encode) | st.binary(max_size=6), st.binary(max_size=16), max_size=3
    ).map(lambda extra: {**extra, **base})
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=_FIELDS)
def test_any_entry_ends_validated_rejected_or_dead_lettered(fields: dict[bytes, bytes]) -> None:
    """The handler returns a validated or rejected event, or a dead-letter verdict; never else."""
    worker = ValidatorWorker(make_deps(StreamAdapter(fakeredis.FakeAsyncRedis()), "prop"))
    keys = Keys("prop")

    async def handle() -> Any:
        return await worker.handle(Message(keys.started, "1-0", fields, 1))

    try:
        writes = anyio.run(handle)
    except (Permanent, MalformedEvent):
        return  # dead-lettered with its reason
    events = [w for w in writes if w.op == "XADD"]
    kinds = {(w.key, dict(zip(w.args[::2], w.args[1::2], strict=True)).get("type")) for w in events}
    assert kinds in (
        {(keys.validated, "deployment.validated")},
        {(keys.notifications, "deployment.rejected")},
    )
