"""``printery publish deployment``: a ``deployment.started`` event, from flags or a JSON file.

The request is checked with the validator's own rules before it is sent, so a
typo is reported at once, in the terminal, rather than as a rejection later
(``--no-validate`` sends it regardless, to exercise the validator).
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import uuid
from typing import Any

from printery.envelope import Event
from printery.redis.adapter import StreamAdapter
from printery.redis.keys import Keys

__all__ = [
    "UsageProblem",
    "add_publish_parser",
    "deployment_data",
    "new_traceparent",
    "publish_started",
    "started_event",
]

SOURCE = "printery/cli"
_FLAGS: tuple[tuple[str, str, type, str, str], ...] = (
    # flag, dest, type, metavar, help
    ("--file", "file", str, "PATH", "the data object as JSON ('-' reads stdin)"),
    ("--id", "deployment_id", str, "ID", "deployment id (default: <service>-<random>)"),
    ("--service", "service", str, "NAME", "the service: a DNS-1123 label"),
    ("--version", "service_version", str, "VERSION", "semver, e.g. 1.4.2"),
    ("--environment", "target_environment", str, "ENV", "e.g. staging"),
    ("--requested-by", "requested_by", str, "WHO", "who asked, e.g. ci@example.com"),
    ("--health-url", "health_url", str, "URL", "the URL the health monitor polls"),
    ("--expect-status", "expect_status", int, "CODE", "healthy status code (default 200)"),
    ("--healthy-threshold", "healthy_threshold", int, "N", "successes in a row (default 2)"),
    ("--interval", "interval_s", float, "SECONDS", "between polls (default 5)"),
    ("--timeout", "timeout_s", float, "SECONDS", "per health poll (default 2)"),
    ("--deadline", "deadline_s", float, "SECONDS", "to turn healthy (default 300)"),
)
_HEALTH_FLAGS = ("expect_status", "healthy_threshold", "interval_s", "timeout_s", "deadline_s")


class UsageProblem(ValueError):
    """The flags or the file do not describe a request: one line, exit 2."""


def add_publish_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """``publish deployment …`` under the ``printery`` parser's subcommands."""
    publish = sub.add_parser(
        "publish",
        help="publish an event into the pipeline",
        description="Publish an event into the pipeline; prints its deployment id.",
        epilog="examples:\n"
        "  printery publish deployment --service billing-api --version 1.4.2 "
        "--environment staging\n"
        "  printery publish deployment --help",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = publish.add_subparsers(dest="kind", required=True)
    dep = kinds.add_parser(
        "deployment",
        parents=[common],
        help="publish a deployment.started event",
        description="Publish a deployment.started event to <prefix>:deployment:started "
        "and print the deployment id.",
        epilog="examples:\n"
        "  printery publish deployment --service billing-api --version 1.4.2 "
        "--environment staging --depends-on auth-api@^2.1.0 "
        "--health-url http://billing-api:8080/healthz\n"
        "  printery publish deployment --file dep.json --wait --wait-timeout 900 "
        "|| exit $?   # gate CI on the outcome",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, dest, kind, metavar, text in _FLAGS:
        dep.add_argument(flag, dest=dest, type=kind, metavar=metavar, help=text)
    dep.add_argument(
        "--depends-on",
        action="append",
        default=[],
        metavar="SERVICE@RANGE",
        help="a dependency, e.g. auth-api@^2.1.0 (repeatable)",
    )
    dep.add_argument(
        "--no-validate",
        dest="validate",
        action="store_false",
        help="send the request even if it breaks the validator's rules",
    )
    # --timeout is the health check's per-poll timeout (above): the wait's bound is its own flag.
    dep.add_argument(
        "--wait",
        action="store_true",
        help="follow the deployment to its outcome and exit by it: 0 healthy, "
        "1 rejected, blocked or unhealthy, 3 no outcome within --wait-timeout",
    )
    dep.add_argument(
        "--wait-timeout",
        dest="wait_timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long --wait waits (default 600; implies --wait)",
    )


def deployment_data(args: argparse.Namespace) -> dict[str, Any]:
    """The ``deployment.started`` data the flags (or the file) describe."""
    if args.file is not None:
        given = [f"--{n}" for n in ("service", "version", "environment") if _flag(args, n)]
        if given or args.depends_on or args.health_url:
            raise UsageProblem(
                f"--file and {', '.join(given) or 'the request flags'} exclude each other"
            )
        data = _read_file(args.file)
    else:
        missing = [f"--{n}" for n in ("service", "version", "environment") if not _flag(args, n)]
        if missing:
            raise UsageProblem(f"missing {', '.join(missing)} (or give --file)")
        data = {
            "service": args.service,
            "version": args.service_version,
            "environment": args.target_environment,
            "dependencies": [_dependency(spec) for spec in args.depends_on],
        }
        if args.requested_by:
            data["requested_by"] = args.requested_by
        check = _health_check(args)
        if check is not None:
            data["health_check"] = check
    if args.deployment_id:
        data["deployment_id"] = args.deployment_id
    if "deployment_id" not in data:
        service = data.get("service")
        stem = service if isinstance(service, str) and service else "deployment"
        data["deployment_id"] = f"{stem}-{uuid.uuid4().hex[:8]}"
    return data


def new_traceparent() -> str:
    """A fresh W3C trace for the deployment: every stage's events carry it."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def started_event(data: dict[str, Any]) -> Event:
    subject = data.get("deployment_id")
    return Event.create(
        "deployment.started",
        subject if isinstance(subject, str) else "",
        data,
        source=SOURCE,
        traceparent=new_traceparent(),
    )


async def publish_started(adapter: StreamAdapter, keys: Keys, event: Event) -> str:
    """Add the event to the ``started`` stream; returns the entry id."""
    return await adapter.add(keys.started, event.to_fields())


def _flag(args: argparse.Namespace, name: str) -> str | None:
    attribute = {"version": "service_version", "environment": "target_environment"}.get(name, name)
    value = getattr(args, attribute)
    return value if isinstance(value, str) else None


def _read_file(path: str) -> dict[str, Any]:
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        raise UsageProblem(f"--file: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageProblem(f"--file: {path} is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageProblem(f"--file: {path} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageProblem(f"--file: {path} must hold a JSON object (the event's data)")
    return data


def _dependency(spec: str) -> dict[str, str]:
    service, at, version = spec.partition("@")
    if not at or not service.strip() or not version.strip():
        raise UsageProblem(
            f"--depends-on: expected SERVICE@RANGE, like auth-api@^2.1.0 (got {spec!r})"
        )
    return {"service": service.strip(), "version": version.strip()}


def _health_check(args: argparse.Namespace) -> dict[str, Any] | None:
    tuning = {
        name: getattr(args, name) for name in _HEALTH_FLAGS if getattr(args, name) is not None
    }
    if args.health_url is None:
        if tuning:
            flags = ", ".join("--" + n.removesuffix("_s").replace("_", "-") for n in tuning)
            raise UsageProblem(f"{flags} need --health-url")
        return None
    return {"url": args.health_url, **tuning}
