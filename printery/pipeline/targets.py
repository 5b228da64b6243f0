"""Where a deployment points: its health URL's host, and its dependencies' version ranges.

Both are checked once per distinct value (cached): a service's health URL and
its dependencies' ranges recur with every deployment.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import nodesemver  # untyped: pyproject's mypy override lets it be Any

__all__ = [
    "encodable",
    "host_allowed",
    "kind_of",
    "parse_range",
    "parse_version",
    "range_satisfied",
    "show",
    "url_problem",
]

# npm's own MAX_LENGTH; it also bounds nodesemver's regexes, which are quadratic on long input.
_MAX_SEMVER_CHARS = 256
_MAX_URL_CHARS = 2048
_RANGE_OR = re.compile(r"\s*\|\|\s*")
_WHITESPACE = re.compile(r"\s")
_NUMERIC_HOST = re.compile(r"[0-9][0-9a-fx.]*")
_METADATA_NAMES = frozenset({"metadata", "metadata.google.internal"})
_METADATA_IPS = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_GLOB_CHARS = frozenset("*?[")


def url_problem(url: str, globs: Sequence[str]) -> str | None:
    if len(url) > _MAX_URL_CHARS:
        return f"at most {_MAX_URL_CHARS} characters (got {len(url)})"
    return _boundedurl_problem(url, tuple(globs))


@lru_cache(maxsize=1024)
def _boundedurl_problem(url: str, globs: tuple[str, ...]) -> str | None:
    """Pure in its arguments, and a service's health URL recurs with every deployment."""
    if len(url) > _MAX_URL_CHARS:
        return f"at most {_MAX_URL_CHARS} characters (got {len(url)})"
    # urlsplit silently drops tabs and newlines: what it checked would not be what was given.
    if not url.isprintable() or _WHITESPACE.search(url) or not encodable(url):
        return f"must not contain whitespace or control characters (got {show(url)})"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"not a valid URL (got {show(url)})"
    if parts.scheme not in ("http", "https"):
        return f"must be http or https (got {show(url)})"
    host = _normal_host(parts.hostname or "")
    if not host:
        return f"must name a host (got {show(url)})"
    if host_allowed(host, globs):
        return None
    if _restricted(host):
        return f"host {show(host)} is a link-local or metadata address"
    return f"host {show(host)} is not allowed (allowed: {', '.join(globs) or 'none'})"


# --- ranges and hosts ------------------------------------------------------------------------


def range_satisfied(range_text: str, version: str) -> bool:
    """npm's answer; False, never an exception, when either side does not parse."""
    if not isinstance(range_text, str) or not isinstance(version, str):
        return False
    return _satisfied(range_text, version)


@lru_cache(maxsize=4096)
def _satisfied(range_text: str, version: str) -> bool:
    """Cached: the same few ranges meet the same few deployed versions, check after check."""
    parsed_range = parse_range(range_text)
    parsed_version = parse_version(version)
    if parsed_range is None or parsed_version is None:
        return False
    try:
        return bool(parsed_range.test(parsed_version))
    except ValueError:
        return False


@lru_cache(maxsize=1024)
def parse_range(text: str) -> Any | None:
    """Strict mode: loose mode silently drops what it cannot read (``^2 abc`` means ``^2``)."""
    # nodesemver reads "" and a dangling "||" as "any version": too wide to be anyone's intent.
    # Its \d also matches non-ASCII digits, which int() then reads as numbers.
    if len(text) > _MAX_SEMVER_CHARS or not text.isascii():
        return None
    if not all(_RANGE_OR.split(text.strip())):
        return None
    try:
        return nodesemver.make_range(text, False)
    except ValueError:
        return None


@lru_cache(maxsize=1024)
def parse_version(text: str) -> Any | None:
    """SemVer 2.0 exactly: nodesemver alone would also take ``v1.2.3`` and surrounding blanks."""
    if len(text) > _MAX_SEMVER_CHARS:
        return None
    try:
        parsed = nodesemver.make_semver(text, False)
    except ValueError:
        return None
    build = "+" + ".".join(parsed.build) if parsed.build else ""
    return parsed if parsed.version + build == text else None


def host_allowed(host: str, globs: Sequence[str]) -> bool:
    """Whether a health check may call ``host``; metadata endpoints only when named outright."""
    name = _normal_host(host)
    if not name:
        return False
    if _restricted(name):
        # A wildcard must never reach the cloud's credential endpoint by accident.
        return any(_names_exactly(glob, name) for glob in globs)
    return any(fnmatch.fnmatchcase(name, _normal_host(glob)) for glob in globs)


def _normal_host(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.removesuffix(".")


def _as_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # a zone id changes no destination
    except ValueError:
        pass
    # Resolvers also take 2852039166, 0xa9fea9fe and 169.254.43518 for 169.254.169.254.
    if _NUMERIC_HOST.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _restricted(host: str) -> bool:
    if host in _METADATA_NAMES:
        return True
    address = _as_ip(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and (address.is_link_local or address in _METADATA_IPS)


def _names_exactly(glob: str, host: str) -> bool:
    pattern = _normal_host(glob)
    if not pattern or _GLOB_CHARS & set(pattern):
        return False
    if pattern == host:
        return True
    pattern_ip, host_ip = _as_ip(pattern), _as_ip(host)
    return pattern_ip is not None and pattern_ip == host_ip


# --- showing values in reasons ---------------------------------------------------------------


def kind_of(value: object) -> str:
    """JSON's name for the type, which is what the requester wrote."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def show(value: object) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 64 else value[:61] + "...")
    if isinstance(value, int) and value.bit_length() > 64:  # str() of a huge int can raise
        return "a very large integer"
    return repr(value)


def encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
