"""``printery``: the operator's command; this module is its argparse wiring.

Commands that talk to Redis connect once and ping first: an unreachable Redis
is one line, ``printery: cannot reach Redis at <url>: <why>``, one that refuses
the credentials (or a wrong URL: TLS, database index) ``printery: REDIS_URL
(<url>): <why>``, and exit 2. A bad ``--redis-url`` (or any setting) is one line naming it, exit 2.

The commands live in their own modules: ``status`` (printery.admin.status), ``dlq``
(printery.admin.dlq), ``publish`` (printery.pipeline.publish), ``deployment``
(printery.pipeline.timeline), ``demo`` (printery.cli.demo); ``config`` is here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

import anyio

from printery import __version__
from printery.admin import deployments, dlq, status
from printery.admin.dlq_partitions import run_partitioned
from printery.errors import ConfigError, RedisError, RedisPermanent, RedisUnavailable
from printery.pipeline.deployment import Invalid
from printery.pipeline.publish import (
    UsageProblem,
    add_publish_parser,
    deployment_data,
    publish_started,
    started_event,
)
from printery.pipeline.rules import validate_deployment
from printery.pipeline.timeline import format_timeline, read_timeline
from printery.pipeline.validator import rules_from
from printery.processes.task import run_task_command
from printery.redis.adapter import StreamAdapter
from printery.redis.cluster import open_adapter, partitions_of, start_adapter
from printery.redis.keys import Keys
from printery.settings import SECRET_FIELDS, Settings, environment_only_help, load_settings

__all__ = ["main", "run"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="printery",
        description="Operate printery: see the whole system, re-drive dead letters, "
        "publish deployments, check the configuration, run the demo.",
        epilog="examples:\n"
        "  printery status\n"
        "  printery dlq list started\n"
        "  printery --redis-url redis://:pw@redis:6379/0 config\n"
        "  printery <command> --help\n\n" + environment_only_help({"redis_url", "stream_prefix"}),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(print_help=parser.print_help)
    parser.add_argument("--version", action="version", version=f"printery {__version__}")
    parser.add_argument(
        "--redis-url",
        dest="redis_url",
        default=None,
        help="redis://, rediss:// or unix:// URL [REDIS_URL]",
    )
    parser.add_argument(
        "--stream-prefix",
        dest="stream_prefix",
        default=None,
        help="prefix of every Redis key [STREAM_PREFIX]",
    )
    # The same two flags after the subcommand too; SUPPRESS keeps a subparser's
    # default from overwriting a value given before the subcommand.
    common = _Parser(add_help=False)
    common.add_argument(
        "--redis-url",
        dest="redis_url",
        default=argparse.SUPPRESS,
        help="redis://, rediss:// or unix:// URL [REDIS_URL]",
    )
    common.add_argument(
        "--stream-prefix",
        dest="stream_prefix",
        default=argparse.SUPPRESS,
        help="prefix of every Redis key [STREAM_PREFIX]",
    )
    # Not required: a bare `printery` prints this help instead of a usage error.
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    status.add_status_parser(sub, common)
    dlq.add_dlq_parser(sub, common)
    config = sub.add_parser(
        "config",
        parents=[common],
        help="print the effective settings, secrets redacted",
        description="Print the effective settings (environment, then flags) and where each "
        "came from: default, env or flag. Passwords and secrets are redacted. Exit 2 "
        "with one line naming the setting if they are invalid.",
        epilog="examples:\n"
        "  REDIS_URL=redis://:pw@redis:6379/0 printery config\n"
        "  printery config --stream-prefix staging --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config.add_argument("--json", action="store_true", help="print JSON")
    add_publish_parser(sub, common)
    deployments.add_deployments_parser(sub, common)
    deployment = sub.add_parser(
        "deployment",
        parents=[common],
        help="print a deployment's timeline",
        description="Print what each stage did with a deployment: its current status, "
        "then the timeline log.",
        epilog="example: printery deployment billing-api-3f2a9c1d --json",
    )
    deployment.add_argument("deployment_id", metavar="ID")
    deployment.add_argument("--json", action="store_true", help="print JSON")
    task = sub.add_parser(
        "task",
        parents=[common],
        help="print what a worker in its own processes did with one message",
        description="Print a message's task record: status, progress, "
        "timestamps, result or error, deliveries, then the progress and log lines.",
        epilog="example: printery task 3f2a9c1d-… --json",
    )
    task.add_argument("event_id", metavar="EVENT_ID")
    task.add_argument("--json", action="store_true", help="print JSON")
    check = sub.add_parser(
        "worker-check",
        help="run a worker's command against the protocol cases, without Redis",
        description="Run a worker of the workers file (NAME), or any command (-- COMMAND…), "
        "against the pool protocol's cases; one line per case, exit 0 only if all pass.",
        epilog="examples:\n"
        "  printery worker-check --workers-file workers.toml thumbnailer\n"
        "  printery worker-check -- node examples/node-worker/worker.js\n"
        "  printery worker-check --oneshot -- ./seed_worker.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("--workers-file", dest="workers_file", default=None, help="[WORKERS_FILE]")
    check.add_argument("--oneshot", action="store_true", help="-- COMMAND runs in oneshot mode")
    check.add_argument(
        "--task-timeout", dest="task_timeout_s", type=float, default=None, help="seconds per case"
    )
    check.add_argument("--verbose", action="store_true", help="also show the child's stderr")
    check.add_argument("target", nargs=argparse.REMAINDER, metavar="NAME | -- COMMAND…")
    demo = sub.add_parser(
        "demo",
        help="run the pipeline and its supervisor on a throwaway Redis and show what happened",
        description="Run the four workers in-process on a throwaway redis-server (or the "
        "valkey-server of pip install 'printery[demo]'), publish sample deployments that end "
        "healthy, rejected, blocked and unhealthy, print each one's timeline and outcome; then "
        "show the supervisor: a crash restarted with backoff, a poison message dead-lettered, "
        "a drain handing work back. Exit 2 when no server can be found.",
        epilog="examples:\n  printery demo\n  printery demo --verbose",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--verbose", action="store_true", help="also show the workers' logs")
    dashboard = sub.add_parser(
        "dashboard",
        parents=[common],
        help="serve a live web page of the installation",
        description="Serve a web page that shows every daemon, worker, stream, dead letter, "
        "deployment and task live, read from Redis. Read-only unless DASHBOARD_TOKEN is set; "
        "a host other than loopback needs the token.",
        epilog="examples:\n"
        "  printery dashboard\n"
        "  DASHBOARD_TOKEN=$(openssl rand -hex 24) printery dashboard --host 0.0.0.0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dashboard.add_argument("--host", default=None, help="address to listen on [DASHBOARD_HOST]")
    dashboard.add_argument("--port", type=int, default=None, help="port [DASHBOARD_PORT]")
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None or (args.command == "dlq" and args.action is None):
        args.print_help()
        return 0
    if args.command == "demo":
        from printery.cli.demo import run_demo  # noqa: PLC0415 - aiohttp servers load only for the demo

        return run_demo(verbose=args.verbose)
    if args.command == "worker-check":
        from printery.processes.check import worker_check_command  # noqa: PLC0415 - its own room

        return worker_check_command(
            list(args.target),
            workers_file=args.workers_file or os.environ.get("WORKERS_FILE"),
            oneshot=args.oneshot,
            task_timeout_s=args.task_timeout_s,
            verbose=args.verbose,
        )
    try:
        settings = load_settings({"redis_url": args.redis_url, "stream_prefix": args.stream_prefix})
    except ConfigError as exc:
        print(f"printery: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        if settings.workers_file:  # a bad workers file is a bad setting like any other
            from printery.processes.workers_file import load_workers_file  # noqa: PLC0415

            try:
                load_workers_file(settings.workers_file)
            except ConfigError as exc:
                print(f"printery: {exc}", file=sys.stderr)
                return 2
        flags = {name for name in ("redis_url", "stream_prefix") if getattr(args, name) is not None}
        return _config(settings, flags, as_json=args.json)
    if args.command == "status":
        return _with_redis(settings, lambda a: status.run(a, settings, args))
    if args.command == "dlq":
        try:
            request = dlq.dlq_request(args, Keys(settings.stream_prefix))
        except UsageProblem as exc:
            print(f"printery: {exc}", file=sys.stderr)
            return 2
        if settings.cluster:  # a stage's dead letters are one stream per partition
            base, parts = Keys(settings.stream_prefix), partitions_of(settings).all
            return _with_redis(settings, lambda a: run_partitioned(a, request, base, parts))
        return _with_redis(settings, lambda a: dlq.run(a, request))
    if args.command == "publish":
        return _publish(settings, args)
    if args.command == "deployment":
        return _with_redis(settings, lambda a: _deployment(a, settings, args))
    if args.command == "deployments":
        keys = Keys(settings.stream_prefix)
        parts = partitions_of(settings).all if settings.cluster else ()
        return _with_redis(settings, lambda a: deployments.run(a, keys, args, partitions=parts))
    if args.command == "task":
        keys = Keys(settings.stream_prefix)
        parts = partitions_of(settings).all if settings.cluster else ()
        return _with_redis(
            settings,
            lambda a: run_task_command(a, keys, args.event_id, as_json=args.json, partitions=parts),
        )
    if args.command == "dashboard":
        from printery.dashboard.serve import serve  # noqa: PLC0415 - the web page loads only here

        return serve(settings, args.host, args.port)
    return 2  # pragma: no cover - argparse requires a known command


def _with_redis(settings: Settings, command: Callable[[StreamAdapter], Awaitable[int]]) -> int:
    """Connect, ping, run ``command``; an unreachable Redis is one line and exit 2."""

    async def go() -> int:
        adapter = open_adapter(settings, client_name="printery:cli")
        try:
            # REDIS_MODE and PARTITIONS against what the installation recorded: exit 2 if not.
            await start_adapter(adapter, settings)
            await adapter.ping()
            return await command(adapter)
        finally:
            await adapter.close()

    try:
        return anyio.run(go)
    except ConfigError as exc:
        print(f"printery: {exc}", file=sys.stderr)
        return 2
    except RedisUnavailable as exc:
        print(
            f"printery: cannot reach Redis at {settings.redis_url_redacted}: {exc}",
            file=sys.stderr,
        )
        return 2
    except RedisPermanent as exc:  # reached, and refused (credentials, ACL) or a wrong URL
        print(f"printery: REDIS_URL ({settings.redis_url_redacted}): {exc}", file=sys.stderr)
        return 2
    except RedisError as exc:
        print(f"printery: Redis at {settings.redis_url_redacted} refused: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nprintery: interrupted", file=sys.stderr)
        return 130


def _publish(settings: Settings, args: argparse.Namespace) -> int:
    try:
        data = deployment_data(args)
    except UsageProblem as exc:
        print(f"printery: {exc}", file=sys.stderr)
        return 2
    if args.validate:
        try:
            validate_deployment(data, rules_from(settings))
        except Invalid as exc:
            print("printery: the deployment would be rejected:", file=sys.stderr)
            for reason in exc.reasons:
                print(f"  - {reason}", file=sys.stderr)
            print("  (--no-validate publishes it anyway)", file=sys.stderr)
            return 2
    event = started_event(data)
    wait_s = args.wait_timeout if args.wait_timeout is not None else 600.0 if args.wait else None
    if wait_s is not None and not wait_s > 0:
        print(f"printery: --wait-timeout must be above 0 (got {wait_s:g})", file=sys.stderr)
        return 2

    async def publish(adapter: StreamAdapter) -> int:
        # In cluster mode, into the partition the deployment's id hashes to.
        keys = partitions_of(settings).of(event.subject)
        entry_id = await publish_started(adapter, keys, event)
        print(event.subject, flush=True)
        if wait_s is None:
            return 0

        def say(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        return await deployments.follow(
            adapter, keys, event.subject, entry_id, timeout_s=wait_s, say=say
        )

    return _with_redis(settings, publish)


async def _deployment(adapter: StreamAdapter, settings: Settings, args: argparse.Namespace) -> int:
    # On a cluster, the timeline is in the partition the deployment's id hashes to.
    keys = partitions_of(settings).of(args.deployment_id)
    timeline = await read_timeline(adapter, keys, args.deployment_id)
    if timeline is None:
        print(
            f"printery: no timeline for deployment {args.deployment_id!r} "
            "(unknown, or expired after TIMELINE_TTL)",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(timeline.to_json(), indent=2))
    else:
        print(format_timeline(timeline))
    return 0


def _config(settings: Settings, flags: set[str], *, as_json: bool) -> int:
    rows: list[tuple[str, str, str]] = []
    for name in sorted(Settings.model_fields, key=str.upper):  # sorted as shown
        if name == "per_worker":
            continue
        value = getattr(settings, name)
        if name == "redis_url":
            shown = settings.redis_url_redacted
        elif name in SECRET_FIELDS:
            shown = "***" if value else ""
        else:
            shown = str(value)
        env = name.upper()
        source = "flag" if name in flags else "env" if env in os.environ else "default"
        rows.append((env, shown, source))
    for worker, overrides in sorted(settings.per_worker.items()):
        for what, raw in sorted(overrides.items()):
            rows.append((f"{worker.upper().replace('-', '_')}_{what}", raw, "env"))
    if as_json:
        print(json.dumps({env: {"value": v, "source": s} for env, v, s in rows}, indent=2))
    else:
        width = max(len(env) for env, _, _ in rows)
        for env, shown, source in rows:
            print(f"{env:<{width}}  {shown}  ({source})")
    return 0
