"""A deployment request (``deployment.started``): its model, and its JSON text read within bounds.

Pure — no I/O, no Redis — so the validator worker, ``printery publish`` and the
tests judge a request the same way. :func:`parse_data` turns the event's JSON
text into Python values within size, depth and element bounds;
:func:`~printery.pipeline.rules.validate_deployment` turns those values into a
:class:`Deployment` or raises :class:`Invalid` with every reason at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from printery.errors import PrinteryError

__all__ = [
    "DEPLOYMENT_ID",
    "Dependency",
    "Deployment",
    "HealthCheck",
    "Invalid",
    "ValidationRules",
    "parse_data",
]

_MAX_DEPTH = 32
_MAX_ELEMENTS = 10_000
DEPLOYMENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# A string is consumed whole, so brackets inside it never count; a lone quote is an
# unterminated string, after which nothing is structure (and rescanning would be quadratic).
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+"|[\[\]{}]|"', re.DOTALL)


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
        """The shape of docs/events.md again, so later stages re-validate what they are handed."""
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
        if isinstance(value, str) and DEPLOYMENT_ID.fullmatch(value):
            return value
    return None
