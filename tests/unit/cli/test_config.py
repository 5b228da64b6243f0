"""``printery config``: the effective settings, where each came from, secrets redacted."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

from printery.cli.main import run
from printery.settings import Settings

pytestmark = pytest.mark.timeout(10)

PASSWORD = "pw-9f8e7d"  # a canary that must never be printed
WEBHOOK_SECRET = "whsec-4c3b2a"  # the same
_PER_WORKER = re.compile(r"^[A-Z0-9_]+_(HANG_TIMEOUT|CONCURRENCY)$")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No printery setting (nor a per-worker override) leaks in from the test's environment."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields or _PER_WORKER.match(name.upper()):
            monkeypatch.delenv(name)


def config(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(["config", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def config_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = config(capsys, "--json", *argv)
    assert (0, "") == (code, err)
    return dict(json.loads(out))


def test_defaults_are_reported_as_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """With nothing set, every setting is its default, and says so."""
    shown = config_json(capsys)
    assert {"value": "redis://localhost:6379/0", "source": "default"} == shown["REDIS_URL"]
    assert {"value": "printery", "source": "default"} == shown["STREAM_PREFIX"]
    assert {"default"} == {entry["source"] for entry in shown.values()}
    assert sorted(n.upper() for n in Settings.model_fields if n != "per_worker") == list(shown)


def test_environment_is_reported_as_env(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A variable from the environment shows its value and `env`; a per-worker one too."""
    monkeypatch.setenv("BATCH_SIZE", "50")
    monkeypatch.setenv("STREAM_PREFIX", "staging")
    monkeypatch.setenv("NOTIFIER_CONCURRENCY", "9")
    shown = config_json(capsys)
    assert {"value": "50", "source": "env"} == shown["BATCH_SIZE"]
    assert {"value": "staging", "source": "env"} == shown["STREAM_PREFIX"]
    assert {"value": "9", "source": "env"} == shown["NOTIFIER_CONCURRENCY"]


@pytest.mark.parametrize(
    "where",
    ["before", "after"],
    ids=["flags-before-the-command", "flags-after-the-command"],
)
def test_flags_override_the_environment_and_are_reported_as_flag(
    where: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--redis-url and --stream-prefix beat REDIS_URL and STREAM_PREFIX, shown as `flag`."""
    monkeypatch.setenv("REDIS_URL", "redis://from-env:6379/0")
    monkeypatch.setenv("STREAM_PREFIX", "from-env")
    flags = ["--redis-url", "redis://from-flag:6380/1", "--stream-prefix", "from-flag"]
    argv = [*flags, "config", "--json"] if where == "before" else ["config", "--json", *flags]
    code = run(argv)
    out, err = capsys.readouterr()
    shown = json.loads(out)
    assert (0, "") == (code, err)
    assert {"value": "redis://from-flag:6380/1", "source": "flag"} == shown["REDIS_URL"]
    assert {"value": "from-flag", "source": "flag"} == shown["STREAM_PREFIX"]


def test_text_shows_one_line_per_setting_with_its_source(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table: name, value, (source), names aligned; one line per setting."""
    monkeypatch.setenv("BATCH_SIZE", "50")
    code, out, err = config(capsys, "--stream-prefix", "blue")
    lines = out.splitlines()
    width = max(len(n) for n in Settings.model_fields if n != "per_worker")
    assert (0, "", len(Settings.model_fields) - 1) == (code, err, len(lines))
    assert f"{'BATCH_SIZE':<{width}}  50  (env)" in lines
    assert f"{'STREAM_PREFIX':<{width}}  blue  (flag)" in lines
    assert f"{'REDIS_URL':<{width}}  redis://localhost:6379/0  (default)" in lines


def test_secrets_are_redacted_in_text_and_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Redis password (in the URL or its query) and the webhook secret never print."""
    monkeypatch.setenv("REDIS_URL", f"redis://app:{PASSWORD}@redis:6379/0")
    monkeypatch.setenv("NOTIFY_WEBHOOK_SECRET", WEBHOOK_SECRET)
    shown = config_json(capsys)
    code, text, err = config(capsys)
    query_url = f"redis://redis:6379/0?password={PASSWORD}"
    _, from_flag, _ = config(capsys, "--redis-url", query_url)
    assert {"value": "redis://app:***@redis:6379/0", "source": "env"} == shown["REDIS_URL"]
    assert {"value": "***", "source": "env"} == shown["NOTIFY_WEBHOOK_SECRET"]
    assert "redis://redis:6379/0?password=***  (flag)" in from_flag
    assert (0, "") == (code, err)
    for output in (json.dumps(shown), text, from_flag):
        assert PASSWORD not in output
        assert WEBHOOK_SECRET not in output


INVALID = [
    ([], {"BATCH_SIZE": "0"}, "BATCH_SIZE: Input should be greater than or equal to 1 (got '0')"),
    (
        ["--redis-url", "http://redis:6379"],
        {},
        "REDIS_URL: must start with redis://, rediss:// or unix://",
    ),
    (
        ["--stream-prefix", "a b"],
        {},
        "STREAM_PREFIX: String should match pattern '^[A-Za-z0-9_.\\-]+$' (got 'a b')",
    ),
    ([], {"REDIS_URL": f"redis://:{PASSWORD}@redis:port/0"}, "REDIS_URL: has an invalid port"),
]


@pytest.mark.parametrize(
    ("argv", "env", "line"), INVALID, ids=["env", "url-flag", "prefix-flag", "url-with-password"]
)
def test_invalid_settings_are_one_line_and_exit_2(
    argv: list[str],
    env: dict[str, str],
    line: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An invalid setting is one stderr line naming it (never a secret), nothing else, exit 2."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (2, "", f"printery: {line}\n") == config(capsys, *argv)


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """`printery config --help` names the sources and shows examples."""
    with pytest.raises(SystemExit) as exited:
        run(["config", "--help"])
    out = capsys.readouterr().out
    assert 0 == exited.value.code
    assert "default, env or flag" in " ".join(out.split())
    assert "examples:\n  REDIS_URL=redis://:pw@redis:6379/0 printery config\n" in out
