"""The application's shared objects, by typed key: the handlers' modules import these, not app."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from printery.dashboard.auth import Auth, Identity
from printery.dashboard.layout import Layout
from printery.dashboard.sampler import Sampler
from printery.dashboard.security import NONCE
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys

__all__ = ["ADAPTER", "AUTH", "IDENTITY", "KEYS", "LAYOUT", "NONCE", "READ_ONLY", "SAMPLER"]

ADAPTER: Final = web.AppKey("adapter", StreamAdapter)
KEYS: Final = web.AppKey("keys", Keys)
LAYOUT: Final = web.AppKey("layout", Layout)  # the keys, and the partitions on a cluster
SAMPLER: Final = web.AppKey("sampler", Sampler)
AUTH: Final = web.AppKey("auth", Auth)

# Per request: who it is, and the nonce of this response's script.
IDENTITY: Final = web.RequestKey("identity", Identity)
READ_ONLY: Final = web.RequestKey("read_only", bool)
