"""Event ids: random version 4 UUIDs, as the standard library writes them."""

from __future__ import annotations

import uuid

import pytest

from printery.envelope import Event, new_id

pytestmark = pytest.mark.timeout(30)


def test_new_id_is_a_version_4_rfc_4122_uuid_in_canonical_text() -> None:
    """Each id parses as a UUID of version 4 and the RFC 4122 variant, and prints back the same."""
    for _ in range(5000):
        text = new_id()
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_new_ids_do_not_repeat_and_cover_every_variant_digit() -> None:
    """100,000 ids are all distinct, and the variant digit takes each of 8, 9, a and b."""
    ids = [new_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert {i[19] for i in ids} == set("89ab")


def test_an_event_without_an_id_gets_a_new_one() -> None:
    """Two events made without an id get different version 4 ids."""
    first, second = Event(type="t", subject="s"), Event(type="t", subject="s")
    assert first.id != second.id
    assert uuid.UUID(first.id).version == 4
