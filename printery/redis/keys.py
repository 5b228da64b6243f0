"""Every Redis key printery owns, in one place, under one prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["DEAD_SUFFIX", "Keys"]

DEAD_SUFFIX = ":dead"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names derived from ``STREAM_PREFIX``; see DESIGN §3."""

    prefix: str = "printery"

    @property
    def started(self) -> str:
        return f"{self.prefix}:deployment:started"

    @property
    def validated(self) -> str:
        return f"{self.prefix}:deployment:validated"

    @property
    def dependencies_satisfied(self) -> str:
        return f"{self.prefix}:deployment:dependencies-satisfied"

    @property
    def notifications(self) -> str:
        return f"{self.prefix}:notifications"

    @property
    def delivered(self) -> str:
        return f"{self.prefix}:notifications:delivered"

    @staticmethod
    def dead(stream: str) -> str:
        return f"{stream}{DEAD_SUFFIX}"

    def registry(self, environment: str) -> str:
        return f"{self.prefix}:registry:{environment}"

    def registry_requested(self, environment: str) -> str:
        """When the version in the registry was requested, per service: the latest wins."""
        return f"{self.registry(environment)}:requested_at"

    def deployment(self, deployment_id: str) -> str:
        return f"{self.prefix}:deployment:{deployment_id}"

    def heartbeat(self, consumer: str) -> str:
        return f"{self.prefix}:heartbeat:{consumer}"

    @property
    def heartbeat_pattern(self) -> str:
        return f"{self.prefix}:heartbeat:*"

    def trim_lock(self, stream: str) -> str:
        """Held by the one daemon trimming ``stream`` right now (DESIGN §6)."""
        return f"{self.prefix}:trim-lock:{stream}"

    def delivery_marker(self, event_id: str, url_digest: str) -> str:
        """Remembers that a webhook took an event, so a redelivery is not sent twice."""
        return f"{self.prefix}:notified:{event_id}:{url_digest}"

    def deployment_log(self, deployment_id: str) -> str:
        """The deployment's capped timeline log (a list of JSON entries)."""
        return f"{self.deployment(deployment_id)}:log"

    def timeline_collides(self, deployment_id: str) -> bool:
        """Whether this id's timeline keys would land on one of printery's own keys.

        ``<prefix>:deployment:<id>`` shares its namespace with the streams
        (``started``, ``validated``, ``dependencies-satisfied`` and their
        ``:dead`` letters), and ``<id>:log`` with another id's log.
        """
        first = deployment_id.split(":", 1)[0]
        return first in _STREAM_NAMES or deployment_id.endswith(":log")


def _stream_names() -> frozenset[str]:
    """The stream names under ``<prefix>:deployment:``; the same under every prefix."""
    keys = Keys()
    streams = (keys.started, keys.validated, keys.dependencies_satisfied)
    return frozenset(s.removeprefix(keys.deployment("")) for s in streams)


# Computed once: the validator asks for every message, twice.
_STREAM_NAMES: Final = _stream_names()
