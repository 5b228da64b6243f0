"""A deployment request (DESIGN §3, ``deployment.started``): its model and the validator's rules.

Pure — no I/O, no Redis — so the validator worker, ``printery publish`` and the
tests judge a request the same way. :func:`parse_data` turns the event's JSON
text into Python values within size, depth and element bounds;
:func:`validate_deployment` turns those values into a :class:`Deployment` or
raises :class:`Invalid` with every reason at once, so one rejection tells the
requester everything to fix. npm-style ranges are nodesemver's, in strict mode.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import nodesemver  # untyped: pyproject's mypy override lets it be Any

from printery.errors import PrinteryError

__all__ = [
    "Dependency",
    "Deployment",
    "HealthCheck",
    "Invalid",
    "ValidationRules",
    "host_allowed",
    "parse_data",
    "range_satisfied",
    "validate_deployment",
]

_MAX_DEPTH = 32
_MAX_ELEMENTS = 10_000
_MAX_DEPENDENCIES = 100
_MAX_REQUESTED_BY = 256
# npm's own MAX_LENGTH; it also bounds nodesemver's regexes, which are quadratic on long input.
_MAX_SEMVER_CHARS = 256
_MAX_URL_CHARS = 2048

_DEPLOYMENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_RANGE_OR = re.compile(r"\s*\|\|\s*")
# A string is consumed whole, so brackets inside it never count; a lone quote is an
# unterminated string, after which nothing is structure (and rescanning would be quadratic).
_WHITESPACE = re.compile(r"\s")
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+"|[\[\]{}]|"', re.DOTALL)
_NUMERIC_HOST = re.compile(r"[0-9][0-9a-fx.]*")
_METADATA_NAMES = frozenset({"metadata", "metadata.google.internal"})
_METADATA_IPS = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Dependency:
    """A service that must already run, in the same environment, at a version in ``range``."""

    service: str
    range: str


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How the health monitor decides the new version is up."""

    url: str
    expect_status: int = 200
    timeout_s: float = 2.0
    interval_s: float = 5.0
    healthy_threshold: int = 2
    deadline_s: float = 300.0


_DEFAULT_CHECK = HealthCheck(url="")


@dataclass(frozen=True, slots=True)
class Deployment:
    """A validated ``deployment.started`` request; no health check means healthy at once."""

    deployment_id: str
    service: str
    version: str
    environment: str
    requested_by: str | None
    dependencies: tuple[Dependency, ...]
    health_check: HealthCheck | None

    def to_data(self) -> dict[str, object]:
        """The DESIGN §3 shape again, so later stages re-validate what they are handed."""
        data: dict[str, object] = {
            "deployment_id": self.deployment_id,
            "service": self.service,
            "version": self.version,
            "environment": self.environment,
            "dependencies": [{"service": d.service, "version": d.range} for d in self.dependencies],
        }
        if self.requested_by is not None:
            data["requested_by"] = self.requested_by
        if self.health_check is not None:
            check = self.health_check
            data["health_check"] = {
                "url": check.url,
                "expect_status": check.expect_status,
                "timeout_s": check.timeout_s,
                "interval_s": check.interval_s,
                "healthy_threshold": check.healthy_threshold,
                "deadline_s": check.deadline_s,
            }
        return data


@dataclass(frozen=True, slots=True)
class ValidationRules:
    """Passed in from the settings, so the rules themselves stay free of I/O."""

    allowed_environments: frozenset[str] = frozenset({"development", "staging", "production"})
    allowed_host_globs: tuple[str, ...] = ("*",)
    max_message_bytes: int = 1_048_576


class Invalid(PrinteryError):
    """A request the validator refuses: every reason, so one rejection says all there is to fix."""

    def __init__(self, reasons: Sequence[str], deployment_id: str | None = None) -> None:
        self.reasons = list(reasons)
        self.deployment_id = deployment_id
        super().__init__("; ".join(self.reasons))

    def __reduce__(self) -> tuple[type[Invalid], tuple[list[str], str | None]]:
        # The default would rebuild from the joined message, splitting it into characters.
        return (Invalid, (self.reasons, self.deployment_id))


# --- JSON text -------------------------------------------------------------------------------


def parse_data(text: str | bytes, max_bytes: int) -> object:
    """JSON text to Python values, refusing what could exhaust memory, time or the stack."""
    if len(text) > max_bytes:  # a str has at least one byte per character: refuse before encoding
        shown = f"at least {len(text)}" if isinstance(text, str) else str(len(text))
        raise Invalid([f"data: too large ({shown} bytes, the limit is {max_bytes})"])
    if isinstance(text, str):
        try:
            size = len(text.encode())
        except UnicodeEncodeError as exc:
            raise Invalid([f"data: not valid UTF-8 (lone surrogate at {exc.start})"]) from exc
        if size > max_bytes:
            raise Invalid([f"data: too large ({size} bytes, the limit is {max_bytes})"])
    else:
        try:
            text = bytes(text).decode()
        except UnicodeDecodeError as exc:
            raise Invalid([f"data: not valid UTF-8 (bad byte at {exc.start})"]) from exc
    if _too_deep(text):
        raise Invalid([f"data: nested deeper than {_MAX_DEPTH} levels"])
    try:
        # json.loads(text, parse_constant=...) builds a decoder per call; a BOM it refuses
        # with a message of its own, so that rare text still goes through json.loads.
        value = (
            json.loads(text, parse_constant=_refuse_constant)
            if text.startswith("\ufeff")
            else _DECODER.decode(text)
        )
    except json.JSONDecodeError as exc:
        message = exc.msg[:1].lower() + exc.msg[1:]
        raise Invalid(
            [f"data: not valid JSON ({message}; line {exc.lineno} column {exc.colno})"]
        ) from exc
    except _NotJson as exc:
        raise Invalid([f"data: not valid JSON ({exc})"]) from exc
    except ValueError as exc:  # past Python's limit on the digits of an int
        raise Invalid(["data: not valid JSON (a number with too many digits)"]) from exc
    # Every element takes at least one character: short texts need no count.
    if len(text) > _MAX_ELEMENTS and _too_many_elements(value):
        raise Invalid(
            [f"data: more than {_MAX_ELEMENTS} elements in its arrays and objects"],
            _recover_id(value),
        )
    return value


class _NotJson(ValueError):
    """What Python's json module accepts beyond the standard."""


def _refuse_constant(name: str) -> object:
    raise _NotJson(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _too_deep(text: str) -> bool:
    """Scan brackets without parsing, so a bracket bomb costs a regex pass, not the stack."""
    if text.count("[") + text.count("{") <= _MAX_DEPTH:
        return False  # not enough openers anywhere, strings included, to go too deep
    depth = 0
    for match in _JSON_TOKEN.finditer(text):
        lexeme = match.group()
        if lexeme in ("[", "{"):
            depth += 1
            if depth > _MAX_DEPTH:
                return True
        elif lexeme in ("]", "}"):
            depth -= 1
        elif lexeme == '"':
            break
    return False


def _too_many_elements(value: object) -> bool:
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            count += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            count += len(item)
            stack.extend(item)
        if count > _MAX_ELEMENTS:
            return True
    return False


def _recover_id(data: object) -> str | None:
    """The id a rejection is filed under; only a well-formed one, as it becomes an event subject."""
    if isinstance(data, Mapping):
        value = data.get("deployment_id")
        if isinstance(value, str) and _DEPLOYMENT_ID.fullmatch(value):
            return value
    return None


# --- the rules -------------------------------------------------------------------------------


def validate_deployment(data: object, rules: ValidationRules) -> Deployment:
    """Check every rule, collecting every failure, so the requester fixes all in one round."""
    if not isinstance(data, Mapping):
        raise Invalid([f"data: must be an object (got {_kind(data)})"])
    reasons: list[str] = []
    deployment_id = _string(data, "deployment_id", "deployment_id", reasons, required=True)
    if deployment_id is not None and not _DEPLOYMENT_ID.fullmatch(deployment_id):
        reasons.append(
            "deployment_id: must be 1 to 128 characters of A-Za-z0-9._:- "
            f"(got {_show(deployment_id)})"
        )
        deployment_id = None
    service = _string(data, "service", "service", reasons, required=True)
    if service is not None and not _DNS_LABEL.fullmatch(service):
        reasons.append(f"service: must be a DNS-1123 label (got {_show(service)})")
        service = None
    version = _string(data, "version", "version", reasons, required=True)
    if version is not None and _parse_version(version) is None:
        reasons.append(f"version: must be a semantic version like 1.4.2 (got {_show(version)})")
    environment = _string(data, "environment", "environment", reasons, required=True)
    if environment is not None and environment not in rules.allowed_environments:
        allowed = ", ".join(sorted(rules.allowed_environments))
        reasons.append(f"environment: must be one of {allowed} (got {_show(environment)})")
    requested_by = _string(data, "requested_by", "requested_by", reasons, required=False)
    if requested_by is not None and len(requested_by) > _MAX_REQUESTED_BY:
        reasons.append(
            f"requested_by: at most {_MAX_REQUESTED_BY} characters (got {len(requested_by)})"
        )
    elif requested_by is not None and not _encodable(requested_by):
        reasons.append("requested_by: must be valid unicode text (has a lone surrogate)")
    dependencies = _dependencies(data.get("dependencies"), service, reasons)
    health_check = _health_check(data.get("health_check"), rules, reasons)
    if (
        reasons
        or deployment_id is None
        or service is None
        or version is None
        or environment is None
    ):
        raise Invalid(reasons, deployment_id)
    return Deployment(
        deployment_id=deployment_id,
        service=service,
        version=version,
        environment=environment,
        requested_by=requested_by,
        dependencies=dependencies,
        health_check=health_check,
    )


def _dependencies(value: object, service: str | None, reasons: list[str]) -> tuple[Dependency, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        reasons.append(f"dependencies: must be an array (got {_kind(value)})")
        return ()
    if len(value) > _MAX_DEPENDENCIES:
        reasons.append(f"dependencies: at most {_MAX_DEPENDENCIES} entries (got {len(value)})")
        return ()
    found: list[Dependency] = []
    first_at: dict[str, int] = {}
    for index, item in enumerate(value):
        path = f"dependencies[{index}]"
        if not isinstance(item, Mapping):
            reasons.append(f"{path}: must be an object (got {_kind(item)})")
            continue
        name = _string(item, "service", f"{path}.service", reasons, required=True)
        if name is not None and not _DNS_LABEL.fullmatch(name):
            reasons.append(f"{path}.service: must be a DNS-1123 label (got {_show(name)})")
            name = None
        elif name is not None and name == service:
            reasons.append(f"{path}.service: a service cannot depend on itself ({_show(name)})")
            name = None
        elif name is not None and name in first_at:
            reasons.append(
                f"{path}.service: duplicate dependency {_show(name)} "
                f"(also dependencies[{first_at[name]}])"
            )
            name = None
        elif name is not None:
            first_at[name] = index
        text = _string(item, "version", f"{path}.version", reasons, required=True)
        if text is not None and _parse_range(text) is None:
            reasons.append(f"{path}.version: not a valid range (got {_show(text)})")
            text = None
        if name is not None and text is not None:
            found.append(Dependency(service=name, range=text))
    return tuple(found)


def _health_check(value: object, rules: ValidationRules, reasons: list[str]) -> HealthCheck | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        reasons.append(f"health_check: must be an object (got {_kind(value)})")
        return None
    before = len(reasons)
    url = _string(value, "url", "health_check.url", reasons, required=True)
    if url is not None:
        problem = _url_problem(url, rules.allowed_host_globs)
        if problem:
            reasons.append(f"health_check.url: {problem}")
    default = _DEFAULT_CHECK
    expect_status = _integer(value, "expect_status", reasons, default.expect_status, (100, 599))
    threshold = _integer(value, "healthy_threshold", reasons, default.healthy_threshold, (1, 100))
    timeout_s = _seconds(value, "timeout_s", reasons, default.timeout_s, 60)
    interval_s = _seconds(value, "interval_s", reasons, default.interval_s, 3600)
    deadline_s = _seconds(value, "deadline_s", reasons, default.deadline_s, 86_400)
    if timeout_s is not None and deadline_s is not None and deadline_s < timeout_s:
        reasons.append(
            f"health_check.deadline_s: must be at least timeout_s "
            f"(got {_show(deadline_s)} < {_show(timeout_s)})"
        )
    if (
        len(reasons) > before
        or url is None
        or expect_status is None
        or threshold is None
        or timeout_s is None
        or interval_s is None
        or deadline_s is None
    ):
        return None
    return HealthCheck(url, expect_status, timeout_s, interval_s, threshold, deadline_s)


def _string(
    data: Mapping[Any, Any], key: str, path: str, reasons: list[str], *, required: bool
) -> str | None:
    """A missing required field and a wrongly typed one get different reasons; null is absent."""
    if key not in data:
        if required:
            reasons.append(f"{path}: is required")
        return None
    value = data[key]
    if value is None and not required:
        return None
    if not isinstance(value, str):
        reasons.append(f"{path}: must be a string (got {_kind(value)})")
        return None
    return value


def _integer(
    data: Mapping[Any, Any], key: str, reasons: list[str], default: int, bounds: tuple[int, int]
) -> int | None:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):  # JSON true is no status code
        got = _show(value) if isinstance(value, float) else _kind(value)
        reasons.append(f"health_check.{key}: must be an integer (got {got})")
        return None
    low, high = bounds
    if not low <= value <= high:
        reasons.append(f"health_check.{key}: must be from {low} to {high} (got {_show(value)})")
        return None
    return value


def _seconds(
    data: Mapping[Any, Any], key: str, reasons: list[str], default: float, high: int
) -> float | None:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        reasons.append(f"health_check.{key}: must be a number (got {_kind(value)})")
        return None
    if not 0 < value <= high:  # written this way round so NaN fails too
        reasons.append(
            f"health_check.{key}: must be more than 0 and at most {high} (got {_show(value)})"
        )
        return None
    return float(value)


def _url_problem(url: str, globs: Sequence[str]) -> str | None:
    if len(url) > _MAX_URL_CHARS:
        return f"at most {_MAX_URL_CHARS} characters (got {len(url)})"
    return _bounded_url_problem(url, tuple(globs))


@lru_cache(maxsize=1024)
def _bounded_url_problem(url: str, globs: tuple[str, ...]) -> str | None:
    """Pure in its arguments, and a service's health URL recurs with every deployment."""
    if len(url) > _MAX_URL_CHARS:
        return f"at most {_MAX_URL_CHARS} characters (got {len(url)})"
    # urlsplit silently drops tabs and newlines: what it checked would not be what was given.
    if not url.isprintable() or _WHITESPACE.search(url) or not _encodable(url):
        return f"must not contain whitespace or control characters (got {_show(url)})"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"not a valid URL (got {_show(url)})"
    if parts.scheme not in ("http", "https"):
        return f"must be http or https (got {_show(url)})"
    host = _normal_host(parts.hostname or "")
    if not host:
        return f"must name a host (got {_show(url)})"
    if host_allowed(host, globs):
        return None
    if _restricted(host):
        return f"host {_show(host)} is a link-local or metadata address"
    return f"host {_show(host)} is not allowed (allowed: {', '.join(globs) or 'none'})"


# --- ranges and hosts ------------------------------------------------------------------------


def range_satisfied(range_text: str, version: str) -> bool:
    """npm's answer; False, never an exception, when either side does not parse."""
    if not isinstance(range_text, str) or not isinstance(version, str):
        return False
    return _satisfied(range_text, version)


@lru_cache(maxsize=4096)
def _satisfied(range_text: str, version: str) -> bool:
    """Cached: the same few ranges meet the same few deployed versions, check after check."""
    parsed_range = _parse_range(range_text)
    parsed_version = _parse_version(version)
    if parsed_range is None or parsed_version is None:
        return False
    try:
        return bool(parsed_range.test(parsed_version))
    except ValueError:
        return False


@lru_cache(maxsize=1024)
def _parse_range(text: str) -> Any | None:
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
def _parse_version(text: str) -> Any | None:
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


def _kind(value: object) -> str:
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


def _show(value: object) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 64 else value[:61] + "...")
    if isinstance(value, int) and value.bit_length() > 64:  # str() of a huge int can raise
        return "a very large integer"
    return repr(value)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
