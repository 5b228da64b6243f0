"""The message a handler is given: one stream entry, decoded field by field."""

from __future__ import annotations

from dataclasses import dataclass, field

from printery.envelope import Event, MalformedEvent, decode_fields

__all__ = ["Message"]


@dataclass(slots=True)
class Message:
    """One entry as the handler sees it: raw fields, decoded fields, delivery count."""

    stream: str
    id: str
    raw: dict[bytes, bytes]
    deliveries: int
    fields: dict[str, str] = field(init=False)
    problems: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.fields, self.problems = decode_fields(self.raw)

    @property
    def size(self) -> int:
        return sum(map(len, self.raw)) + sum(map(len, self.raw.values()))

    def event(self) -> Event:
        """The CloudEvent, or MalformedEvent naming what is wrong (undecodable fields first)."""
        if self.problems:
            raise MalformedEvent("; ".join(self.problems), self.fields.get("subject") or None)
        return Event.from_fields(self.fields)
