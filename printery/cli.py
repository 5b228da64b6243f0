"""``printery``: the operator's command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from printery import __version__
from printery.errors import ConfigError
from printery.settings import SECRET_FIELDS, Settings, load_settings

__all__ = ["main", "run"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="printery", description="Operate printery: inspect, publish, demo.")
    parser.add_argument("--version", action="version", version=f"printery {__version__}")
    parser.add_argument("--redis-url", dest="redis_url", default=None,
                        help="redis://, rediss:// or unix:// URL [REDIS_URL]")
    sub = parser.add_subparsers(dest="command", required=True)
    config = sub.add_parser("config", help="print the effective settings, secrets redacted",
                            description="Print the effective settings and where each came "
                            "from; exit 2 if they are invalid.",
                            epilog="example: REDIS_URL=redis://:pw@redis:6379/0 printery config")
    config.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings({"redis_url": args.redis_url})
    except ConfigError as exc:
        print(f"printery: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        return _config(settings, args.redis_url is not None, as_json=args.json)
    return 2  # pragma: no cover - argparse requires a known command


def _config(settings: Settings, redis_url_flag: bool, *, as_json: bool) -> int:
    rows: list[tuple[str, str, str]] = []
    for name in sorted(Settings.model_fields):
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
        source = ("flag" if name == "redis_url" and redis_url_flag
                  else "env" if env in os.environ else "default")
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
