"""``printery publish deployment`` and ``printery deployment``: flags, files, and failing well."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from printery.cli.main import build_parser, run
from printery.pipeline.publish import UsageProblem, deployment_data, new_traceparent, started_event
from tests.support.redis_server import free_port

pytestmark = pytest.mark.timeout(10)


def data_of(*argv: str) -> dict[str, Any]:
    return deployment_data(build_parser().parse_args(["publish", "deployment", *argv]))


def test_flags_describe_the_design_example() -> None:
    """Every flag lands where docs/events.md puts it."""
    data = data_of(
        "--id", "dep-42", "--service", "billing-api", "--version", "1.4.2",
        "--environment", "production", "--requested-by", "ci@example.com",
        "--depends-on", "auth-api@^2.1.0", "--depends-on", "postgres@>=14.0.0",
        "--health-url", "http://billing-api.prod.svc:8080/healthz", "--expect-status", "200",
        "--timeout", "2", "--interval", "5", "--healthy-threshold", "2", "--deadline", "300",
    )  # fmt: skip
    assert data == {
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
            "timeout_s": 2.0,
            "interval_s": 5.0,
            "healthy_threshold": 2,
            "deadline_s": 300.0,
        },
    }


def test_id_is_generated_from_the_service() -> None:
    """Without --id, the deployment id is the service plus a random suffix."""
    data = data_of("--service", "api", "--version", "1.0.0", "--environment", "staging")
    assert data["deployment_id"].startswith("api-")
    assert data != data_of("--service", "api", "--version", "1.0.0", "--environment", "staging")


def test_file_gives_the_data_object(tmp_path: Path) -> None:
    """--file reads the data object as JSON; --id still names it."""
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"service": "api", "version": "1.0.0", "environment": "dev"}))
    data = data_of("--file", str(path), "--id", "d-1")
    assert data == {
        "service": "api",
        "version": "1.0.0",
        "environment": "dev",
        "deployment_id": "d-1",
    }


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--service", "api"], "missing --version, --environment"),
        (
            ["--service", "a", "--version", "1.0.0", "--environment", "e", "--depends-on", "auth"],
            "--depends-on: expected SERVICE@RANGE",
        ),
        (
            ["--service", "a", "--version", "1.0.0", "--environment", "e", "--deadline", "3"],
            "--deadline need --health-url",
        ),
        (["--file", "x.json", "--service", "a"], "--file and --service exclude each other"),
        (["--file", "/nonexistent/x.json"], "--file: cannot read"),
    ],
    ids=["missing flags", "bad dependency", "tuning without url", "file and flags", "no file"],
)
def test_usage_problems_are_one_line(argv: list[str], problem: str) -> None:
    """Each way of misusing the flags is named plainly."""
    with pytest.raises(UsageProblem, match=problem):
        data_of(*argv)


@pytest.mark.parametrize(("content", "problem"), [("{nope", "is not JSON"), ("[1]", "JSON object")])
def test_file_must_hold_an_object(tmp_path: Path, content: str, problem: str) -> None:
    """A file that is not a JSON object is refused before anything is sent."""
    path = tmp_path / "event.json"
    path.write_text(content)
    with pytest.raises(UsageProblem, match=problem):
        data_of("--file", str(path))


def test_started_event_opens_a_trace() -> None:
    """The published event comes from printery/cli, is about the deployment, and starts a trace."""
    event = started_event({"deployment_id": "d-1"})
    assert (event.type, event.source, event.subject) == (
        "deployment.started",
        "printery/cli",
        "d-1",
    )
    assert event.traceparent is not None
    assert len(new_traceparent().split("-")) == 4


def test_invalid_request_is_refused_locally(capsys: pytest.CaptureFixture[str]) -> None:
    """The validator's rules run first: every reason is printed and nothing is published."""
    code = run(
        [
            "publish",
            "deployment",
            "--redis-url",
            f"redis://127.0.0.1:{free_port()}/0",
            "--service",
            "Bad_Name",
            "--version",
            "1",
            "--environment",
            "moon",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "service: must be a DNS-1123 label" in err
    assert "environment: must be one of" in err


@pytest.mark.parametrize(
    "argv",
    [
        [
            "publish",
            "deployment",
            "--service",
            "api",
            "--version",
            "1.0.0",
            "--environment",
            "staging",
        ],
        ["deployment", "dep-1"],
    ],
    ids=["publish", "deployment"],
)
@pytest.mark.parametrize("flag_first", [True, False], ids=["flag-before", "flag-after"])
def test_unreachable_redis_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], flag_first: bool
) -> None:
    """No Redis: one line naming the (redacted) URL and the reason, exit 2, no traceback."""
    url = ["--redis-url", f"redis://:hunter2@127.0.0.1:{free_port()}/0"]
    code = run([*url, *argv] if flag_first else [*argv, *url])
    err = capsys.readouterr().err
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("printery: cannot reach Redis at redis://:***@127.0.0.1:")
    assert "hunter2" not in err


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["status"],
        ["dlq"],
        ["dlq", "list"],
        ["dlq", "show"],
        ["dlq", "replay"],
        ["dlq", "purge"],
        ["config"],
        ["publish"],
        ["publish", "deployment"],
        ["deployment"],
        ["demo"],
    ],
    ids=lambda c: " ".join(c) or "printery",
)
def test_every_command_has_help_with_examples(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The 3 a.m. reader gets an example to copy from every ``--help``."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--help"])
    assert 0 == exited.value.code
    out = capsys.readouterr().out
    assert "example" in out, out
    assert "printery " in out.partition("example")[2], out
