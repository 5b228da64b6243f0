"""The dashboard's own settings: where it listens, and the token that allows actions.

=================  ===================  ==============================================
flag               env var              default
=================  ===================  ==============================================
``--host``         ``DASHBOARD_HOST``   ``127.0.0.1``; any other address needs a token
``--port``         ``DASHBOARD_PORT``   ``8081``
                   ``DASHBOARD_TOKEN``  empty: read-only (every POST answers 405)
=================  ===================  ==============================================

Binding beyond loopback without a token is refused (exit 2): a dashboard that
anyone on the network can read shows every payload in the dead letters. The
token is held in :class:`Token`, whose ``repr`` and ``str`` never show it.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass

from printery.errors import ConfigError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DashboardConfig", "Token", "is_loopback"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081


class Token:
    """The secret that allows actions: compared in constant time, never printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value.encode()

    def matches(self, offered: str | bytes) -> bool:
        """Whether ``offered`` is the token; takes the same time wherever they differ."""
        given = offered.encode() if isinstance(offered, str) else offered
        return hmac.compare_digest(self._value, given)

    def key(self, purpose: bytes) -> bytes:
        """A key derived from the token for one purpose (the session and CSRF signatures)."""
        return hmac.new(self._value, b"printery.dashboard." + purpose, "sha256").digest()

    def __repr__(self) -> str:
        return "Token('***')"

    __str__ = __repr__


def is_loopback(host: str) -> bool:
    """Whether ``host`` only ever listens on this machine (``localhost``, 127/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """Checked settings; :meth:`load` raises ConfigError (one line, exit 2) when they are bad."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: Token | None = None

    @property
    def read_only(self) -> bool:
        return self.token is None

    @classmethod
    def load(
        cls,
        host: str | None = None,
        port: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> DashboardConfig:
        """Flags over environment over defaults."""
        env = os.environ if environ is None else environ
        host = host if host is not None else env.get("DASHBOARD_HOST", "").strip() or DEFAULT_HOST
        if port is None:
            raw = env.get("DASHBOARD_PORT", "").strip() or str(DEFAULT_PORT)
            try:
                port = int(raw)
            except ValueError:
                raise ConfigError("DASHBOARD_PORT", f"{raw!r} is not a port number") from None
        if not 0 <= port <= 65535:
            raise ConfigError("DASHBOARD_PORT", f"{port} is not a port number (0-65535)")
        secret = env.get("DASHBOARD_TOKEN", "")
        token = Token(secret) if secret else None
        if token is None and not is_loopback(host):
            raise ConfigError(
                "DASHBOARD_HOST",
                f"{host} is not a loopback address; set DASHBOARD_TOKEN to listen there",
            )
        return cls(host, port, token)
