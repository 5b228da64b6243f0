"""The log sink: each lifecycle event a log line, the per-message one only when it is shown."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from printery.daemon.logs import configure_logging, log_sink, resolve_format
from printery.lifecycle import HandlerHung, MessageHandled, Outcome, WorkerCrashed

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def handled(outcome: Outcome) -> MessageHandled:
    return MessageHandled("validator", "s", "1-0", outcome, 0.01, 1, "")


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("debug", ["printery.message_acked", "printery.message_retried"]),
        ("info", ["printery.message_retried"]),
    ],
)
def test_an_acked_message_is_logged_only_at_debug(level: str, expected: list[str]) -> None:
    configure_logging(level, "production")
    sink = log_sink("c1")
    with structlog.testing.capture_logs() as logs:
        sink(handled(Outcome.ACKED))
        sink(handled(Outcome.RETRIED))
    assert expected == [e["event"] for e in logs]


def test_a_crash_carries_its_traceback_as_lines_on_a_console(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Development logs render a crash's traceback as lines, production keeps it as one string."""
    trace = 'Traceback (most recent call last):\n  File "w.py", line 3\nValueError: boom\n'
    configure_logging("info", "development", "console")
    log_sink("c1")(WorkerCrashed("echo", "crash", "ValueError: boom", trace))
    console = capsys.readouterr().err
    assert '  File "w.py", line 3' in console.splitlines()
    structlog.reset_defaults()
    configure_logging("info", "production")
    log_sink("c1")(WorkerCrashed("echo", "crash", "ValueError: boom", trace))
    [line] = capsys.readouterr().err.splitlines()
    assert trace == json.loads(line)["exception"]


def test_a_hang_names_its_message() -> None:
    """A cut handler's log line names the worker, stream, message id and subject."""
    configure_logging("info", "production")
    with structlog.testing.capture_logs() as logs:
        log_sink("c1")(HandlerHung("echo", "p:in", "5-0", "dep-1", 2.0))
    [line] = logs
    assert ("printery.handler_hung", "echo", "p:in", "5-0", "dep-1") == (
        line["event"],
        line["worker"],
        line["stream"],
        line["message_id"],
        line["subject"],
    )


@pytest.mark.parametrize(
    ("log_format", "environment", "terminal", "expected"),
    [
        ("auto", "development", True, "console"),
        ("auto", "development", False, "json"),
        ("auto", "staging", True, "console"),
        ("auto", "staging", False, "json"),
        ("auto", "production", True, "json"),
        ("console", "production", False, "console"),
        ("json", "development", True, "json"),
    ],
)
def test_log_format_auto_is_console_on_a_terminal_json_otherwise_and_in_production(
    log_format: str, environment: str, terminal: bool, expected: str
) -> None:
    """LOG_FORMAT=auto: console on a terminal, else JSON, JSON in production; json/console win."""
    assert expected == resolve_format(log_format, environment, terminal=terminal)
