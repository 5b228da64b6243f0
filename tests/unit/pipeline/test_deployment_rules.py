"""The validator's rules for a ``deployment.started`` request (docs/events.md), table by table."""

from __future__ import annotations

import copy
import json
import math
import pickle
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from printery.pipeline.deployment import (
    Dependency,
    Deployment,
    HealthCheck,
    Invalid,
    ValidationRules,
    parse_data,
)
from printery.pipeline.rules import validate_deployment
from printery.pipeline.targets import host_allowed, range_satisfied

RULES = ValidationRules()
DELETE = object()

DESIGN_EXAMPLE: dict[str, Any] = {
    "deployment_id": "dep-42",
    "service": "billing-api",
    "version": "1.4.2",
    "environment": "production",
    "requested_by": "ci@example.com",
    "dependencies": [
        {"service": "auth-api", "version": "^2.1.0"},
        {"service": "postgres", "version": ">=14.0.0"},
    ],
    "health_check": {
        "url": "http://billing-api.prod.svc:8080/healthz",
        "expect_status": 200,
        "timeout_s": 2,
        "interval_s": 5,
        "healthy_threshold": 2,
        "deadline_s": 300,
    },
}

MINIMAL: dict[str, Any] = {
    "deployment_id": "dep-1",
    "service": "billing-api",
    "version": "1.0.0",
    "environment": "staging",
}


def request(**changes: Any) -> dict[str, Any]:
    """The DESIGN example with fields replaced, or removed when given DELETE."""
    data = copy.deepcopy(DESIGN_EXAMPLE)
    for key, value in changes.items():
        if value is DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def check(**fields: Any) -> dict[str, Any]:
    """The DESIGN example with its health check's fields replaced or removed."""
    health = dict(DESIGN_EXAMPLE["health_check"])
    for key, value in fields.items():
        if value is DELETE:
            health.pop(key, None)
        else:
            health[key] = value
    return request(health_check=health)


def shown(value: str) -> str:
    """How a reason quotes a string: its repr, cut to 64 characters."""
    return repr(value if len(value) <= 64 else value[:61] + "...")


def reasons_for(data: object, rules: ValidationRules = RULES) -> list[str]:
    """Every reason the validator gives, or [] when it accepts."""
    try:
        validate_deployment(data, rules)
    except Invalid as exc:
        return exc.reasons
    return []


# --- the whole request -----------------------------------------------------------------------


def test_design_example_is_accepted_as_written() -> None:
    """The example of the design validates into exactly the model it describes."""
    expected = Deployment(
        deployment_id="dep-42",
        service="billing-api",
        version="1.4.2",
        environment="production",
        requested_by="ci@example.com",
        dependencies=(Dependency("auth-api", "^2.1.0"), Dependency("postgres", ">=14.0.0")),
        health_check=HealthCheck(
            url="http://billing-api.prod.svc:8080/healthz",
            expect_status=200,
            timeout_s=2.0,
            interval_s=5.0,
            healthy_threshold=2,
            deadline_s=300.0,
        ),
    )
    assert expected == validate_deployment(DESIGN_EXAMPLE, RULES)


def test_minimal_request_has_no_dependencies_and_no_health_check() -> None:
    """Only the four required fields are needed; the rest default to absent."""
    expected = Deployment("dep-1", "billing-api", "1.0.0", "staging", None, (), None)
    assert expected == validate_deployment(MINIMAL, RULES)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(DESIGN_EXAMPLE, id="design-example"),
        pytest.param(MINIMAL, id="minimal"),
        pytest.param(
            {**MINIMAL, "health_check": {"url": "https://x.example"}}, id="check-defaults"
        ),
        pytest.param(
            {**MINIMAL, "dependencies": [{"service": "db", "version": "1.2.3 - 2.3.4"}]},
            id="hyphen-range",
        ),
    ],
)
def test_to_data_round_trips_through_the_validator(data: dict[str, Any]) -> None:
    """to_data gives back a request that validates to the same Deployment, through JSON too."""
    deployment = validate_deployment(data, RULES)
    again = parse_data(json.dumps(deployment.to_data()), RULES.max_message_bytes)
    assert deployment == validate_deployment(again, RULES)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        pytest.param([], "array", id="array"),
        pytest.param("dep-42", "string", id="string"),
        pytest.param(42, "number", id="number"),
        pytest.param(True, "boolean", id="boolean"),
        pytest.param(None, "null", id="null"),
    ],
)
def test_request_must_be_an_object(data: object, kind: str) -> None:
    """Anything but a JSON object is refused with one reason naming its type."""
    assert [f"data: must be an object (got {kind})"] == reasons_for(data)


@pytest.mark.parametrize("field", ["deployment_id", "service", "version", "environment"])
def test_required_fields(field: str) -> None:
    """Each required field, when missing, is named in the one reason given."""
    assert [f"{field}: is required"] == reasons_for(request(**{field: DELETE}))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            {"deployment_id": 42}, "deployment_id: must be a string (got number)", id="id"
        ),
        pytest.param({"service": True}, "service: must be a string (got boolean)", id="service"),
        pytest.param({"version": None}, "version: must be a string (got null)", id="version"),
        pytest.param(
            {"environment": ["production"]},
            "environment: must be a string (got array)",
            id="environment",
        ),
        pytest.param(
            {"requested_by": 7}, "requested_by: must be a string (got number)", id="requested_by"
        ),
        pytest.param(
            {"dependencies": {"auth-api": "^2"}},
            "dependencies: must be an array (got object)",
            id="dependencies",
        ),
        pytest.param(
            {"health_check": "http://x.example"},
            "health_check: must be an object (got string)",
            id="health_check",
        ),
    ],
)
def test_field_types(changes: dict[str, Any], expected: str) -> None:
    """A field of the wrong JSON type is refused, naming the type that came."""
    assert [expected] == reasons_for(request(**changes))


def test_unknown_fields_are_ignored() -> None:
    """Extra fields, at the top and inside nested objects, neither fail nor change the result."""
    data = request(priority="high", labels={"team": "billing"})
    data["dependencies"][0]["optional"] = True
    data["health_check"]["method"] = "GET"
    assert validate_deployment(DESIGN_EXAMPLE, RULES) == validate_deployment(data, RULES)


@pytest.mark.parametrize("field", ["requested_by", "dependencies", "health_check"])
def test_null_optional_fields_mean_absent(field: str) -> None:
    """An optional field given as null is the same as leaving it out."""
    with_null = validate_deployment(request(**{field: None}), RULES)
    without = validate_deployment(request(**{field: DELETE}), RULES)
    assert without == with_null


def test_every_reason_is_listed() -> None:
    """A request with four faults gets four reasons, in field order, not just the first."""
    data = request(
        service="Billing_API",
        version="1.4",
        environment="qa",
        dependencies=[
            {"service": "auth-api", "version": "^2.1.0"},
            {"service": "db", "version": "^^2"},
        ],
    )
    expected = [
        "service: must be a DNS-1123 label (got 'Billing_API')",
        "version: must be a semantic version like 1.4.2 (got '1.4')",
        "environment: must be one of development, production, staging (got 'qa')",
        "dependencies[1].version: not a valid range (got '^^2')",
    ]
    assert expected == reasons_for(data)


def test_invalid_carries_reasons_and_message() -> None:
    """Invalid keeps the list of reasons and joins them into its message."""
    error = Invalid(["a: one", "b: two"], "dep-1")
    expected = (["a: one", "b: two"], "dep-1", "a: one; b: two")
    assert expected == (error.reasons, error.deployment_id, str(error))


def test_invalid_survives_pickling() -> None:
    """Invalid keeps its reasons and id through pickle and copy, not its joined message."""
    error = pickle.loads(pickle.dumps(Invalid(["a: one", "b: two"], "dep-1")))
    expected = (["a: one", "b: two"], "dep-1")
    assert expected == (error.reasons, error.deployment_id)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(request(service="Bad", version="x"), "dep-42", id="other-fields-bad"),
        pytest.param(request(health_check={"url": "ftp://x"}), "dep-42", id="nested-field-bad"),
        pytest.param(request(deployment_id="dep 42", service="Bad"), None, id="id-malformed"),
        pytest.param(request(deployment_id=DELETE, service="Bad"), None, id="id-missing"),
        pytest.param(request(deployment_id=7), None, id="id-not-a-string"),
        pytest.param(["dep-42"], None, id="not-an-object"),
    ],
)
def test_deployment_id_is_recovered_when_well_formed(data: object, expected: str | None) -> None:
    """A rejection carries the deployment id whenever that id is itself valid, else None."""
    with pytest.raises(Invalid) as caught:
        validate_deployment(data, RULES)
    assert expected == caught.value.deployment_id


# --- single fields ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        pytest.param("dep-42", True, id="plain"),
        pytest.param("a", True, id="one-char"),
        pytest.param("x" * 128, True, id="128-chars"),
        pytest.param("Gh.Run_7:attempt-2", True, id="every-allowed-char"),
        pytest.param("", False, id="empty"),
        pytest.param("x" * 129, False, id="129-chars"),
        pytest.param("dep 42", False, id="space"),
        pytest.param("dep/42", False, id="slash"),
        pytest.param("dép-42", False, id="non-ascii"),
        pytest.param("dep-42\n", False, id="trailing-newline"),
    ],
)
def test_deployment_id_form(value: str, ok: bool) -> None:
    """deployment_id is 1 to 128 characters of [A-Za-z0-9._:-]."""
    expected = (
        []
        if ok
        else [f"deployment_id: must be 1 to 128 characters of A-Za-z0-9._:- (got {shown(value)})"]
    )
    assert expected == reasons_for(request(deployment_id=value))


DNS_LABELS = [
    pytest.param("billing-api", True, id="plain"),
    pytest.param("a", True, id="one-char"),
    pytest.param("1api", True, id="leading-digit"),
    pytest.param("a" * 63, True, id="63-chars"),
    pytest.param("Billing_API", False, id="upper-and-underscore"),
    pytest.param("Billing", False, id="upper"),
    pytest.param("-api", False, id="leading-dash"),
    pytest.param("api-", False, id="trailing-dash"),
    pytest.param("a" * 64, False, id="64-chars"),
    pytest.param("", False, id="empty"),
    pytest.param("billing.api", False, id="dot"),
    pytest.param("billing api", False, id="space"),
    pytest.param("bïlling", False, id="non-ascii"),
    pytest.param("api\n", False, id="trailing-newline"),
]


@pytest.mark.parametrize(("value", "ok"), DNS_LABELS)
def test_service_is_a_dns_label(value: str, ok: bool) -> None:
    """service is a DNS-1123 label: lowercase alnum and '-', alnum at both ends, ≤ 63."""
    expected = [] if ok else [f"service: must be a DNS-1123 label (got {value!r})"]
    assert expected == reasons_for(request(service=value))


@pytest.mark.parametrize(("value", "ok"), DNS_LABELS)
def test_dependency_service_is_a_dns_label(value: str, ok: bool) -> None:
    """A dependency's service follows the same DNS-1123 rule as the service itself."""
    data = request(service="checkout", dependencies=[{"service": value, "version": "^1.0.0"}])
    expected = [] if ok else [f"dependencies[0].service: must be a DNS-1123 label (got {value!r})"]
    assert expected == reasons_for(data)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        pytest.param("1.4.2", True, id="plain"),
        pytest.param("0.0.0", True, id="zeros"),
        pytest.param("10.20.30", True, id="multi-digit"),
        pytest.param("1.0.0-alpha", True, id="pre-release"),
        pytest.param("1.0.0-alpha.1", True, id="dotted-pre-release"),
        pytest.param("1.0.0-0.3.7", True, id="numeric-pre-release"),
        pytest.param("1.0.0-x.7.z.92", True, id="mixed-pre-release"),
        pytest.param("1.0.0+20130313144700", True, id="build"),
        pytest.param("1.0.0-beta+exp.sha.5114f85", True, id="pre-release-and-build"),
        pytest.param("1.0.0+001", True, id="build-leading-zero"),
        pytest.param("1.4", False, id="two-parts"),
        pytest.param("1", False, id="one-part"),
        pytest.param("1.4.2.0", False, id="four-parts"),
        pytest.param("v1.4.2", False, id="v-prefix"),
        pytest.param("=1.4.2", False, id="eq-prefix"),
        pytest.param("01.4.2", False, id="leading-zero"),
        pytest.param("1.0.0-01", False, id="pre-release-leading-zero"),
        pytest.param("1.4.2-", False, id="empty-pre-release"),
        pytest.param("1.4.2+", False, id="empty-build"),
        pytest.param("1.0.0-alpha..1", False, id="empty-identifier"),
        pytest.param(" 1.4.2", False, id="leading-space"),
        pytest.param("1.4.2\n", False, id="trailing-newline"),
        pytest.param("latest", False, id="word"),
        pytest.param("", False, id="empty"),
        pytest.param("1٣.0.0", False, id="non-ascii-digit"),
        pytest.param("1." * 200 + "0", False, id="very-long"),
    ],
)
def test_version_is_semver(value: str, ok: bool) -> None:
    """version is a SemVer 2.0 version, pre-release and build allowed, nothing looser."""
    expected = (
        [] if ok else [f"version: must be a semantic version like 1.4.2 (got {shown(value)})"]
    )
    assert expected == reasons_for(request(version=value))


@pytest.mark.parametrize(
    ("value", "rules", "ok"),
    [
        pytest.param("production", RULES, True, id="production"),
        pytest.param("staging", RULES, True, id="staging"),
        pytest.param("development", RULES, True, id="development"),
        pytest.param(
            "qa", ValidationRules(allowed_environments=frozenset({"qa"})), True, id="custom"
        ),
        pytest.param("qa", RULES, False, id="unknown"),
        pytest.param("Production", RULES, False, id="case-sensitive"),
        pytest.param("", RULES, False, id="empty"),
    ],
)
def test_environment_is_allowed(value: str, rules: ValidationRules, ok: bool) -> None:
    """environment must be one of rules.allowed_environments, exactly."""
    allowed = ", ".join(sorted(rules.allowed_environments))
    expected = [] if ok else [f"environment: must be one of {allowed} (got {value!r})"]
    assert expected == reasons_for(request(environment=value), rules)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("ci@example.com", [], id="email"),
        pytest.param("x" * 256, [], id="256-chars"),
        pytest.param("x" * 257, ["requested_by: at most 256 characters (got 257)"], id="257-chars"),
        pytest.param(
            "ci\ud800",
            ["requested_by: must be valid unicode text (has a lone surrogate)"],
            id="lone-surrogate",
        ),
    ],
)
def test_requested_by(value: str, expected: list[str]) -> None:
    """requested_by is an optional string of at most 256 characters."""
    assert expected == reasons_for(request(requested_by=value))


# --- dependencies ----------------------------------------------------------------------------


def deps(*items: object) -> dict[str, Any]:
    """The DESIGN example with these dependencies."""
    return request(dependencies=list(items))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(deps(), [], id="empty-list"),
        pytest.param(
            deps(*({"service": f"svc-{i}", "version": "^1.0.0"} for i in range(100))),
            [],
            id="100-entries",
        ),
        pytest.param(
            deps(*({"service": f"svc-{i}", "version": "^1.0.0"} for i in range(101))),
            ["dependencies: at most 100 entries (got 101)"],
            id="101-entries",
        ),
        pytest.param(
            deps("auth-api"), ["dependencies[0]: must be an object (got string)"], id="not-object"
        ),
        pytest.param(
            deps({"version": "^1.0.0"}), ["dependencies[0].service: is required"], id="no-service"
        ),
        pytest.param(
            deps({"service": "auth-api"}), ["dependencies[0].version: is required"], id="no-range"
        ),
        pytest.param(
            deps({"service": "auth-api", "version": 2}),
            ["dependencies[0].version: must be a string (got number)"],
            id="range-not-string",
        ),
        pytest.param(
            deps({"service": "billing-api", "version": "^1.0.0"}),
            ["dependencies[0].service: a service cannot depend on itself ('billing-api')"],
            id="self",
        ),
        pytest.param(
            deps(
                {"service": "auth-api", "version": "^2.1.0"},
                {"service": "db", "version": "^1.0.0"},
                {"service": "auth-api", "version": "^2.2.0"},
            ),
            ["dependencies[2].service: duplicate dependency 'auth-api' (also dependencies[0])"],
            id="duplicate",
        ),
    ],
)
def test_dependency_rules(data: dict[str, Any], expected: list[str]) -> None:
    """Dependencies: a list of at most 100 {service, version}, no self, no duplicate service."""
    assert expected == reasons_for(data)


VALID_RANGES = [
    pytest.param("^2.1.0", id="caret"),
    pytest.param("~1.2", id="tilde-partial"),
    pytest.param("~1.2.3", id="tilde"),
    pytest.param(">=14.0.0", id="gte"),
    pytest.param(">=14", id="gte-partial"),
    pytest.param("<2.0.0", id="lt"),
    pytest.param(">=1.2.3 <2.0.0", id="comparator-set"),
    pytest.param("1.x", id="x-range"),
    pytest.param("1.2.*", id="star-range"),
    pytest.param("*", id="star"),
    pytest.param("x", id="x"),
    pytest.param("1.2.3 - 2.3.4", id="hyphen"),
    pytest.param("1.2.3", id="exact"),
    pytest.param("=1.2.3", id="exact-eq"),
    pytest.param("^1.0.0 || ^2.0.0", id="or"),
    pytest.param("^1.2.3-beta.1", id="pre-release"),
]

INVALID_RANGES = [
    pytest.param("^^2", id="double-caret"),
    pytest.param("abc", id="word"),
    pytest.param("latest", id="tag"),
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("||", id="lone-or"),
    pytest.param("1.2.3 ||", id="dangling-or"),
    pytest.param("|| 1.2.3", id="leading-or"),
    pytest.param("1.0.0 | 2.0.0", id="single-pipe"),
    pytest.param(">=", id="operator-only"),
    pytest.param("1.2.3.4", id="four-parts"),
    pytest.param("01.2.3", id="leading-zero"),
    pytest.param("^2 abc", id="trailing-garbage"),
    pytest.param("1.2.3 -", id="half-hyphen"),
    pytest.param("^1٣.0.0", id="non-ascii-digit"),
    pytest.param(">=1.0.0 " * 40, id="over-256-chars"),
]


@pytest.mark.parametrize("text", VALID_RANGES)
def test_dependency_range_forms_accepted(text: str) -> None:
    """Every npm range form parses, and the range is kept as given."""
    deployment = validate_deployment(deps({"service": "auth-api", "version": text}), RULES)
    assert (Dependency("auth-api", text),) == deployment.dependencies


@pytest.mark.parametrize("text", INVALID_RANGES)
def test_dependency_range_forms_refused(text: str) -> None:
    """Unparseable ranges, and ones nodesemver would read as 'any version', are refused."""
    expected = [f"dependencies[0].version: not a valid range (got {shown(text)})"]
    assert expected == reasons_for(deps({"service": "auth-api", "version": text}))


@pytest.mark.parametrize(
    ("range_text", "version", "expected"),
    [
        pytest.param("^2.1.0", "2.5.0", True, id="caret-inside"),
        pytest.param("^2.1.0", "2.1.0", True, id="caret-lower-bound"),
        pytest.param("^2.1.0", "2.0.9", False, id="caret-below"),
        pytest.param("^2.1.0", "3.0.0", False, id="caret-next-major"),
        pytest.param("^0.2.3", "0.2.9", True, id="caret-zero-major-inside"),
        pytest.param("^0.2.3", "0.3.0", False, id="caret-zero-major-next-minor"),
        pytest.param("~1.2.3", "1.2.9", True, id="tilde-inside"),
        pytest.param("~1.2.3", "1.3.0", False, id="tilde-next-minor"),
        pytest.param("~1.2", "1.2.0", True, id="tilde-partial-inside"),
        pytest.param("~1.2", "1.3.0", False, id="tilde-partial-next-minor"),
        pytest.param(">=14.0.0", "15.1.0", True, id="gte-above"),
        pytest.param(">=14.0.0", "14.0.0", True, id="gte-equal"),
        pytest.param(">=14.0.0", "13.9.9", False, id="gte-below"),
        pytest.param(">=1.2.3 <2.0.0", "1.9.0", True, id="set-inside"),
        pytest.param(">=1.2.3 <2.0.0", "2.0.0", False, id="set-upper-bound"),
        pytest.param("1.x", "1.9.9", True, id="x-range-inside"),
        pytest.param("1.x", "2.0.0", False, id="x-range-next-major"),
        pytest.param("1.2.*", "1.2.7", True, id="star-range-inside"),
        pytest.param("1.2.*", "1.3.0", False, id="star-range-next-minor"),
        pytest.param("*", "0.0.1", True, id="star-low"),
        pytest.param("*", "99.0.0", True, id="star-high"),
        pytest.param("1.2.3 - 2.3.4", "2.3.4", True, id="hyphen-inclusive"),
        pytest.param("1.2.3 - 2.3.4", "2.3.5", False, id="hyphen-above"),
        pytest.param("1.2.3", "1.2.3", True, id="exact-equal"),
        pytest.param("1.2.3", "1.2.4", False, id="exact-other"),
        pytest.param("1.2.3", "1.2.3+build.7", True, id="build-ignored"),
        pytest.param("^1.0.0 || ^2.0.0", "2.9.0", True, id="or-second"),
        pytest.param("^1.0.0 || ^2.0.0", "1.0.0", True, id="or-first"),
        pytest.param("^1.0.0 || ^2.0.0", "3.0.0", False, id="or-neither"),
        pytest.param("^2.1.0", "2.5.0-beta", False, id="pre-release-excluded"),
        pytest.param(">=2.5.0-beta.1", "2.5.0-beta.2", True, id="pre-release-same-tuple"),
    ],
)
def test_range_satisfied(range_text: str, version: str, expected: bool) -> None:
    """range_satisfied follows npm semantics for every range form."""
    assert expected == range_satisfied(range_text, version)


@pytest.mark.parametrize(
    ("range_text", "version"),
    [
        pytest.param("^^2", "2.0.0", id="bad-range"),
        pytest.param("", "1.0.0", id="empty-range"),
        pytest.param("1.0.0 ||", "1.0.0", id="dangling-or"),
        pytest.param("^2.1.0", "garbage", id="bad-version"),
        pytest.param("^2.1.0", "", id="empty-version"),
        pytest.param("^2.1.0", "2.5", id="partial-version"),
        pytest.param("^2.1.0", "v2.5.0", id="v-prefixed-version"),
        pytest.param(None, "1.0.0", id="range-none"),
        pytest.param("^1.0.0", 5, id="version-number"),
        pytest.param(["^1"], {"v": 1}, id="containers"),
    ],
)
def test_range_satisfied_is_false_for_unparseable_input(range_text: Any, version: Any) -> None:
    """range_satisfied answers False, never raises, when either side does not parse."""
    assert range_satisfied(range_text, version) is False


# --- the health check ------------------------------------------------------------------------


def test_health_check_defaults() -> None:
    """A health check with only a url gets the documented defaults."""
    deployment = validate_deployment(request(health_check={"url": "http://api.svc/h"}), RULES)
    assert HealthCheck("http://api.svc/h", 200, 2.0, 5.0, 2, 300.0) == deployment.health_check


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("expect_status", 100, id="status-100"),
        pytest.param("expect_status", 599, id="status-599"),
        pytest.param("expect_status", 204, id="status-204"),
        pytest.param("timeout_s", 0.001, id="timeout-tiny"),
        pytest.param("timeout_s", 60, id="timeout-60"),
        pytest.param("interval_s", 0.5, id="interval-fraction"),
        pytest.param("interval_s", 3600, id="interval-3600"),
        pytest.param("healthy_threshold", 1, id="threshold-1"),
        pytest.param("healthy_threshold", 100, id="threshold-100"),
        pytest.param("deadline_s", 86_400, id="deadline-86400"),
        pytest.param("deadline_s", 2, id="deadline-equals-timeout"),
    ],
)
def test_health_check_bounds_accepted(field: str, value: float) -> None:
    """Values on and inside each bound are accepted and kept."""
    deployment = validate_deployment(check(**{field: value}), RULES)
    assert value == getattr(deployment.health_check, field)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        pytest.param("expect_status", 99, "must be from 100 to 599 (got 99)", id="status-99"),
        pytest.param("expect_status", 600, "must be from 100 to 599 (got 600)", id="status-600"),
        pytest.param("expect_status", True, "must be an integer (got boolean)", id="status-bool"),
        pytest.param("expect_status", 200.0, "must be an integer (got 200.0)", id="status-float"),
        pytest.param("expect_status", "200", "must be an integer (got string)", id="status-str"),
        pytest.param(
            "timeout_s", 0, "must be more than 0 and at most 60 (got 0)", id="timeout-zero"
        ),
        pytest.param(
            "timeout_s", -1.5, "must be more than 0 and at most 60 (got -1.5)", id="timeout-neg"
        ),
        pytest.param(
            "timeout_s", 60.5, "must be more than 0 and at most 60 (got 60.5)", id="timeout-61"
        ),
        pytest.param(
            "timeout_s", math.nan, "must be more than 0 and at most 60 (got nan)", id="timeout-nan"
        ),
        pytest.param("timeout_s", False, "must be a number (got boolean)", id="timeout-bool"),
        pytest.param("timeout_s", "2", "must be a number (got string)", id="timeout-str"),
        pytest.param(
            "interval_s", 0, "must be more than 0 and at most 3600 (got 0)", id="interval-zero"
        ),
        pytest.param(
            "interval_s", 3601, "must be more than 0 and at most 3600 (got 3601)", id="interval-big"
        ),
        pytest.param(
            "interval_s",
            math.inf,
            "must be more than 0 and at most 3600 (got inf)",
            id="interval-inf",
        ),
        pytest.param("healthy_threshold", 0, "must be from 1 to 100 (got 0)", id="threshold-zero"),
        pytest.param(
            "healthy_threshold", 101, "must be from 1 to 100 (got 101)", id="threshold-101"
        ),
        pytest.param(
            "healthy_threshold", True, "must be an integer (got boolean)", id="threshold-bool"
        ),
        pytest.param(
            "healthy_threshold", 2.0, "must be an integer (got 2.0)", id="threshold-float"
        ),
        pytest.param(
            "deadline_s", 0, "must be more than 0 and at most 86400 (got 0)", id="deadline-zero"
        ),
        pytest.param(
            "deadline_s",
            86_401,
            "must be more than 0 and at most 86400 (got 86401)",
            id="deadline-big",
        ),
        pytest.param(
            "deadline_s", 1, "must be at least timeout_s (got 1.0 < 2.0)", id="deadline-lt-timeout"
        ),
    ],
)
def test_health_check_bounds_refused(field: str, value: object, expected: str) -> None:
    """Values outside each bound, and of the wrong type (bool is not an int), are refused."""
    assert [f"health_check.{field}: {expected}"] == reasons_for(check(**{field: value}))


def test_health_check_url_is_required() -> None:
    """A health check without a url is refused."""
    expected = ["health_check.url: is required"]
    assert expected == reasons_for(check(url=DELETE))


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://billing-api.prod.svc:8080/healthz", id="http-port-path"),
        pytest.param("https://status.example.com", id="https-no-path"),
        pytest.param("HTTPS://Status.Example.COM/h?x=1", id="upper-case"),
        pytest.param("http://[::1]:8080/h", id="ipv6-loopback"),
        pytest.param("http://10.0.0.5/h", id="private-ipv4"),
        pytest.param("http://169.255.0.1/h", id="next-to-link-local"),
    ],
)
def test_health_check_url_accepted(url: str) -> None:
    """http and https URLs with a host, under the default '*' glob, are accepted."""
    expected: list[str] = []
    assert expected == reasons_for(check(url=url))


@pytest.mark.parametrize(
    ("url", "globs", "expected"),
    [
        pytest.param(
            "ftp://x.example/", ("*",), "must be http or https (got 'ftp://x.example/')", id="ftp"
        ),
        pytest.param(
            "x.example/h", ("*",), "must be http or https (got 'x.example/h')", id="no-scheme"
        ),
        pytest.param("http:///h", ("*",), "must name a host (got 'http:///h')", id="no-host"),
        pytest.param("http://[::1/", ("*",), "not a valid URL (got 'http://[::1/')", id="bad-ipv6"),
        pytest.param(
            "http://x:99999/", ("*",), "not a valid URL (got 'http://x:99999/')", id="port-range"
        ),
        pytest.param(
            "http://x:ab/", ("*",), "not a valid URL (got 'http://x:ab/')", id="port-word"
        ),
        pytest.param(
            "http://a b/",
            ("*",),
            "must not contain whitespace or control characters (got 'http://a b/')",
            id="space",
        ),
        pytest.param(
            "http://x\t.example/",
            ("*",),
            "must not contain whitespace or control characters (got 'http://x\\t.example/')",
            id="tab",
        ),
        pytest.param(
            "http://x.example/" + "a" * 2048,
            ("*",),
            "at most 2048 characters (got 2065)",
            id="long",
        ),
        pytest.param(
            "http://169.254.169.254/latest/meta-data/",
            ("*",),
            "host '169.254.169.254' is a link-local or metadata address",
            id="aws-metadata",
        ),
        pytest.param(
            "http://evil.example/h",
            ("*.prod.svc", "*.internal"),
            "host 'evil.example' is not allowed (allowed: *.prod.svc, *.internal)",
            id="not-in-globs",
        ),
        pytest.param(
            "http://metadata.google.internal/",
            ("*.internal",),
            "host 'metadata.google.internal' is a link-local or metadata address",
            id="gcp-metadata-under-glob",
        ),
    ],
)
def test_health_check_url_refused(url: str, globs: tuple[str, ...], expected: str) -> None:
    """Non-http(s), host-less, malformed, oversized, disallowed and metadata URLs are refused."""
    rules = ValidationRules(allowed_host_globs=globs)
    assert [f"health_check.url: {expected}"] == reasons_for(check(url=url), rules)


@pytest.mark.parametrize(
    ("host", "globs", "expected"),
    [
        pytest.param("billing-api.prod.svc", ["*"], True, id="star"),
        pytest.param("billing-api.prod.svc", ["*.prod.svc"], True, id="suffix-glob"),
        pytest.param("API.Prod.SVC", ["*.prod.svc"], True, id="host-case-insensitive"),
        pytest.param("api.prod.svc", ["*.PROD.svc"], True, id="glob-case-insensitive"),
        pytest.param("api.prod.svc.", ["*.prod.svc"], True, id="trailing-dot"),
        pytest.param("api-7.svc", ["api-[0-9].svc"], True, id="glob-class-match"),
        pytest.param("evil.example", ["*.prod.svc"], False, id="no-match"),
        pytest.param("billing-api.prod.svc", [], False, id="no-globs"),
        pytest.param("", ["*"], False, id="empty-host"),
        pytest.param("10.0.0.1", ["*"], True, id="private-ip"),
        pytest.param("169.254.169.254", ["*"], False, id="aws-metadata-star"),
        pytest.param("169.254.169.254", ["169.254.*"], False, id="aws-metadata-wildcard"),
        pytest.param("169.254.169.254", ["169.254.169.254"], True, id="aws-metadata-named"),
        pytest.param("169.254.1.1", ["*"], False, id="link-local-v4"),
        pytest.param("169.254.1.1", ["169.254.1.1"], True, id="link-local-v4-named"),
        pytest.param("2852039166", ["*"], False, id="metadata-as-decimal"),
        pytest.param("0xa9fea9fe", ["*"], False, id="metadata-as-hex"),
        pytest.param("2852039166", ["169.254.169.254"], True, id="decimal-named-dotted"),
        pytest.param("fe80::1", ["*"], False, id="link-local-v6"),
        pytest.param("[fe80::1]", ["*"], False, id="link-local-v6-bracketed"),
        pytest.param("fe80::1%eth0", ["*"], False, id="link-local-v6-zone"),
        pytest.param("FE80:0::1", ["fe80::1"], True, id="link-local-v6-named"),
        pytest.param("::ffff:169.254.169.254", ["*"], False, id="v4-mapped-metadata"),
        pytest.param("fd00:ec2::254", ["*"], False, id="aws-metadata-v6"),
        pytest.param("fd00:ec2::254", ["fd00:ec2::254"], True, id="aws-metadata-v6-named"),
        pytest.param("100.100.100.200", ["*"], False, id="alibaba-metadata"),
        pytest.param("metadata", ["*"], False, id="metadata-short-name"),
        pytest.param("metadata", ["metadata"], True, id="metadata-short-name-named"),
        pytest.param("metadata.google.internal", ["*"], False, id="gcp-metadata"),
        pytest.param("Metadata.Google.Internal.", ["*"], False, id="gcp-metadata-spelled-out"),
        pytest.param("metadata.google.internal", ["*.internal"], False, id="gcp-under-glob"),
        pytest.param(
            "metadata.google.internal", ["METADATA.google.internal"], True, id="gcp-named"
        ),
    ],
)
def test_host_allowed(host: str, globs: list[str], expected: bool) -> None:
    """Hosts match the globs case-insensitively; link-local and metadata hosts only when named."""
    assert expected == host_allowed(host, globs)


# --- JSON text -------------------------------------------------------------------------------


def nested(depth: int) -> list[Any]:
    """An empty list inside depth - 1 more lists."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}, id="object"
        ),
        pytest.param(b'{"a": "\xc3\xa9"}', {"a": "é"}, id="utf8-bytes"),
        pytest.param("[" * 32 + "]" * 32, nested(32), id="depth-32"),
        pytest.param(json.dumps(["[" * 40 + '\\"{']), ["[" * 40 + '\\"{'], id="brackets-in-string"),
        pytest.param("[" + ",".join(["0"] * 10_000) + "]", [0] * 10_000, id="10000-elements"),
    ],
)
def test_parse_data_accepts(text: str | bytes, expected: object) -> None:
    """Well-formed JSON within the bounds parses to the same Python value."""
    assert expected == parse_data(text, RULES.max_message_bytes)


@pytest.mark.parametrize(
    ("text", "max_bytes", "expected"),
    [
        pytest.param(
            "x" * 1025,
            1024,
            "data: too large (at least 1025 bytes, the limit is 1024)",
            id="str-too-large",
        ),
        pytest.param(
            b"[" * 1025,
            1024,
            "data: too large (1025 bytes, the limit is 1024)",
            id="checked-before-depth",
        ),
        pytest.param(
            b"\xff" * 1025,
            1024,
            "data: too large (1025 bytes, the limit is 1024)",
            id="checked-before-utf8",
        ),
        pytest.param(
            '"' + "é" * 600 + '"',
            1024,
            "data: too large (1202 bytes, the limit is 1024)",
            id="counts-bytes-not-chars",
        ),
        pytest.param(
            b'{"a": "\xff"}', 1024, "data: not valid UTF-8 (bad byte at 7)", id="bad-utf8"
        ),
        pytest.param(
            '"\ud800"', 1024, "data: not valid UTF-8 (lone surrogate at 1)", id="lone-surrogate"
        ),
        pytest.param(
            "", 1024, "data: not valid JSON (expecting value; line 1 column 1)", id="empty"
        ),
        pytest.param(
            "{'a': 1}",
            1024,
            "data: not valid JSON "
            "(expecting property name enclosed in double quotes; line 1 column 2)",
            id="single-quotes",
        ),
        pytest.param(
            '{"a": 1',
            1024,
            "data: not valid JSON (expecting ',' delimiter; line 1 column 8)",
            id="truncated",
        ),
        pytest.param(
            '"\\"[[[',
            1024,
            "data: not valid JSON (unterminated string starting at; line 1 column 1)",
            id="unterminated",
        ),
        pytest.param("[NaN]", 1024, "data: not valid JSON (NaN is not a JSON number)", id="nan"),
        pytest.param(
            "-Infinity",
            1024,
            "data: not valid JSON (-Infinity is not a JSON number)",
            id="infinity",
        ),
        pytest.param(
            "9" * 5000,
            10_000,
            "data: not valid JSON (a number with too many digits)",
            id="huge-int",
        ),
        pytest.param(
            "[" * 33 + "]" * 33, 1024, "data: nested deeper than 32 levels", id="depth-33"
        ),
        pytest.param(
            '{"a":' * 33 + "1" + "}" * 33,
            1024,
            "data: nested deeper than 32 levels",
            id="object-depth-33",
        ),
        pytest.param(
            "[" + ",".join(["0"] * 10_001) + "]",
            1_048_576,
            "data: more than 10000 elements in its arrays and objects",
            id="10001-elements",
        ),
        pytest.param(
            json.dumps([[0] * 5000, {str(i): 0 for i in range(5000)}]),
            1_048_576,
            "data: more than 10000 elements in its arrays and objects",
            id="10002-elements-in-total",
        ),
    ],
)
def test_parse_data_refuses(text: str | bytes, max_bytes: int, expected: str) -> None:
    """Oversized, non-UTF-8, non-JSON, too deep and too broad input is refused with one reason."""
    with pytest.raises(Invalid) as caught:
        parse_data(text, max_bytes)
    assert [expected] == caught.value.reasons


@pytest.mark.parametrize(
    "bomb",
    [
        pytest.param("[" * 100_000, id="arrays"),
        pytest.param(b"[" * 100_000, id="arrays-bytes"),
        pytest.param('{"a":' * 100_000, id="objects"),
        pytest.param("[" * 100_000 + "]" * 100_000, id="balanced"),
    ],
)
def test_parse_data_refuses_a_nesting_bomb_at_once(bomb: str | bytes) -> None:
    """100k nested brackets are refused for depth in milliseconds, never with RecursionError."""
    started = time.perf_counter()
    with pytest.raises(Invalid) as caught:
        parse_data(bomb, RULES.max_message_bytes)
    expected = (["data: nested deeper than 32 levels"], True)
    assert expected == (caught.value.reasons, time.perf_counter() - started < 1.0)


def test_parse_data_recovers_the_id_of_a_too_broad_request() -> None:
    """A request refused for its element count still carries its deployment id."""
    text = json.dumps({**MINIMAL, "padding": [0] * 10_001})
    with pytest.raises(Invalid) as caught:
        parse_data(text, RULES.max_message_bytes)
    expected = "dep-1"
    assert expected == caught.value.deployment_id


# --- properties ------------------------------------------------------------------------------


def json_of(floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    """Any JSON-able value: scalars, and lists and objects of them, nested."""
    return st.recursive(
        st.none() | st.booleans() | st.integers() | floats | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=12), children, max_size=4)
        ),
        max_leaves=12,
    )


json_values = json_of(st.floats())


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly plausible values, sometimes any JSON value at all."""
    return st.integers(0, 7).flatmap(lambda pick: json_values if pick == 0 else strategy)


dependency_items = st.fixed_dictionaries(
    {
        "service": maybe(st.sampled_from(["auth-api", "postgres", "billing-api", "Bad_Name"])),
        "version": maybe(
            st.sampled_from(["^2.1.0", ">=14", "1.x", "1.2.3 - 2", "~1.2", "^^2", ""])
        ),
    },
)
health_checks = st.fixed_dictionaries(
    {
        "url": maybe(
            st.sampled_from(
                [
                    "http://api.svc/h",
                    "https://[::1]/",
                    "http://169.254.169.254/",
                    "ftp://x",
                    "http://[x",
                ]
            )
        ),
    },
    optional={
        "expect_status": maybe(st.integers(90, 610)),
        "timeout_s": maybe(st.floats(-1, 65)),
        "interval_s": maybe(st.floats(-1, 3700)),
        "healthy_threshold": maybe(st.integers(0, 101)),
        "deadline_s": maybe(st.floats(-1, 87_000)),
    },
)
requests = st.fixed_dictionaries(
    {
        "deployment_id": maybe(st.sampled_from(["dep-42", "gh:run.7_a", "dep 42"])),
        "service": maybe(st.sampled_from(["billing-api", "checkout", "Billing_API"])),
        "version": maybe(st.sampled_from(["1.4.2", "1.0.0-rc.1+b.7", "1.4"])),
        "environment": maybe(st.sampled_from(["production", "staging", "qa"])),
    },
    optional={
        "requested_by": maybe(st.text(max_size=300)),
        "dependencies": maybe(st.lists(maybe(dependency_items), max_size=3)),
        "health_check": maybe(health_checks),
        "extra": json_values,
    },
)


def accept_or_explain(data: object) -> None:
    """Validate; an accepted request must round-trip, a refused one must say why."""
    try:
        deployment = validate_deployment(data, RULES)
    except Invalid as exc:
        reasons = exc.reasons
    else:
        reasons = ["(accepted)"]
        assert deployment == validate_deployment(deployment.to_data(), RULES)
    assert reasons


@settings(max_examples=200, deadline=None, database=None)
@given(json_values)
def test_any_json_value_is_accepted_or_invalid(data: object) -> None:
    """validate_deployment on any JSON value returns a Deployment or raises Invalid, only."""
    accept_or_explain(data)


@settings(max_examples=200, deadline=None, database=None)
@given(requests)
def test_any_request_shaped_value_is_accepted_or_invalid(data: object) -> None:
    """Near-valid requests reach every rule and still only ever pass or raise Invalid."""
    accept_or_explain(data)


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_parse_data_on_any_bytes_raises_only_invalid(raw: bytes) -> None:
    """parse_data on arbitrary bytes returns a value or raises Invalid, never anything else."""
    try:
        parse_data(raw, 1024)
    except Invalid as exc:
        reasons = exc.reasons
    else:
        reasons = ["(parsed)"]
    assert reasons


@settings(max_examples=200, deadline=None, database=None)
@given(json_of(st.floats(allow_nan=False, allow_infinity=False)))
def test_parse_data_reads_back_any_small_json(value: object) -> None:
    """Whatever json.dumps writes within the bounds, parse_data reads back unchanged."""
    assert value == parse_data(json.dumps(value), RULES.max_message_bytes)
