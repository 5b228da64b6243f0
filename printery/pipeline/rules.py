"""The validator's rules for a deployment request: every reason at once, so one rejection says all.

npm-style ranges are nodesemver's, in strict mode (:mod:`printery.pipeline.targets`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from printery.pipeline.deployment import (
    DEPLOYMENT_ID,
    Dependency,
    Deployment,
    HealthCheck,
    Invalid,
    ValidationRules,
)
from printery.pipeline.targets import (
    encodable,
    kind_of,
    parse_range,
    parse_version,
    show,
    url_problem,
)

__all__ = ["validate_deployment"]

_MAX_DEPENDENCIES = 100
_MAX_REQUESTED_BY = 256
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DEFAULT_CHECK = HealthCheck(url="")


# --- the rules -------------------------------------------------------------------------------


def validate_deployment(data: object, rules: ValidationRules) -> Deployment:
    """Check every rule, collecting every failure, so the requester fixes all in one round."""
    if not isinstance(data, Mapping):
        raise Invalid([f"data: must be an object (got {kind_of(data)})"])
    reasons: list[str] = []
    deployment_id = _string(data, "deployment_id", "deployment_id", reasons, required=True)
    if deployment_id is not None and not DEPLOYMENT_ID.fullmatch(deployment_id):
        reasons.append(
            "deployment_id: must be 1 to 128 characters of A-Za-z0-9._:- "
            f"(got {show(deployment_id)})"
        )
        deployment_id = None
    service = _string(data, "service", "service", reasons, required=True)
    if service is not None and not _DNS_LABEL.fullmatch(service):
        reasons.append(f"service: must be a DNS-1123 label (got {show(service)})")
        service = None
    version = _string(data, "version", "version", reasons, required=True)
    if version is not None and parse_version(version) is None:
        reasons.append(f"version: must be a semantic version like 1.4.2 (got {show(version)})")
    environment = _string(data, "environment", "environment", reasons, required=True)
    if environment is not None and environment not in rules.allowed_environments:
        allowed = ", ".join(sorted(rules.allowed_environments))
        reasons.append(f"environment: must be one of {allowed} (got {show(environment)})")
    requested_by = _string(data, "requested_by", "requested_by", reasons, required=False)
    if requested_by is not None and len(requested_by) > _MAX_REQUESTED_BY:
        reasons.append(
            f"requested_by: at most {_MAX_REQUESTED_BY} characters (got {len(requested_by)})"
        )
    elif requested_by is not None and not encodable(requested_by):
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
        reasons.append(f"dependencies: must be an array (got {kind_of(value)})")
        return ()
    if len(value) > _MAX_DEPENDENCIES:
        reasons.append(f"dependencies: at most {_MAX_DEPENDENCIES} entries (got {len(value)})")
        return ()
    found: list[Dependency] = []
    first_at: dict[str, int] = {}
    for index, item in enumerate(value):
        path = f"dependencies[{index}]"
        if not isinstance(item, Mapping):
            reasons.append(f"{path}: must be an object (got {kind_of(item)})")
            continue
        name = _string(item, "service", f"{path}.service", reasons, required=True)
        if name is not None and not _DNS_LABEL.fullmatch(name):
            reasons.append(f"{path}.service: must be a DNS-1123 label (got {show(name)})")
            name = None
        elif name is not None and name == service:
            reasons.append(f"{path}.service: a service cannot depend on itself ({show(name)})")
            name = None
        elif name is not None and name in first_at:
            reasons.append(
                f"{path}.service: duplicate dependency {show(name)} "
                f"(also dependencies[{first_at[name]}])"
            )
            name = None
        elif name is not None:
            first_at[name] = index
        text = _string(item, "version", f"{path}.version", reasons, required=True)
        if text is not None and parse_range(text) is None:
            reasons.append(f"{path}.version: not a valid range (got {show(text)})")
            text = None
        if name is not None and text is not None:
            found.append(Dependency(service=name, range=text))
    return tuple(found)


def _health_check(value: object, rules: ValidationRules, reasons: list[str]) -> HealthCheck | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        reasons.append(f"health_check: must be an object (got {kind_of(value)})")
        return None
    before = len(reasons)
    url = _string(value, "url", "health_check.url", reasons, required=True)
    if url is not None:
        problem = url_problem(url, rules.allowed_host_globs)
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
            f"(got {show(deadline_s)} < {show(timeout_s)})"
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
        reasons.append(f"{path}: must be a string (got {kind_of(value)})")
        return None
    return value


def _integer(
    data: Mapping[Any, Any], key: str, reasons: list[str], default: int, bounds: tuple[int, int]
) -> int | None:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):  # JSON true is no status code
        got = show(value) if isinstance(value, float) else kind_of(value)
        reasons.append(f"health_check.{key}: must be an integer (got {got})")
        return None
    low, high = bounds
    if not low <= value <= high:
        reasons.append(f"health_check.{key}: must be from {low} to {high} (got {show(value)})")
        return None
    return value


def _seconds(
    data: Mapping[Any, Any], key: str, reasons: list[str], default: float, high: int
) -> float | None:
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        reasons.append(f"health_check.{key}: must be a number (got {kind_of(value)})")
        return None
    if not 0 < value <= high:  # written this way round so NaN fails too
        reasons.append(
            f"health_check.{key}: must be more than 0 and at most {high} (got {show(value)})"
        )
        return None
    return float(value)
