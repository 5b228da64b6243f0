"""Metrics: every per-worker counter is exported at 0 before its first event."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from printery.daemon.metrics import Metrics
from printery.lifecycle import MessageHandled, Outcome, WorkerRestartScheduled, WorkerState
from printery.supervisor.manager import WorkerStatus
from tests.e2e.daemon import metric_value

pytestmark = pytest.mark.timeout(10)


def _status() -> dict[str, WorkerStatus]:
    return {
        name: WorkerStatus(name, WorkerState.STOPPED, 0, 0.0, 0.0, "")
        for name in ("validator", "notifier")
    }


def test_per_worker_counters_start_at_zero_for_every_worker() -> None:
    """A fresh daemon exports restarts, errors, hangs, messages by outcome and durations at 0."""
    text = generate_latest(Metrics(_status, list).registry).decode()
    for worker in ("validator", "notifier"):
        for sample in (
            "printery_worker_restarts_total",
            "printery_worker_errors_total",
            "printery_handlers_hung_total",
            "printery_message_duration_seconds_count",
        ):
            assert 0.0 == metric_value(text, sample, worker=worker), (sample, worker)
        for outcome in Outcome:
            assert 0.0 == metric_value(
                text, "printery_messages_total", worker=worker, outcome=outcome.value
            )


def test_events_count_on_the_series_that_started_at_zero() -> None:
    """The first restart and the first acked message count 1, on the same series."""
    metrics = Metrics(_status, list)
    metrics.sink(WorkerRestartScheduled("validator", 1, 0.1))
    metrics.sink(MessageHandled("validator", "s", "1-0", Outcome.ACKED, 0.002, 1))
    text = generate_latest(metrics.registry).decode()
    assert 1.0 == metric_value(text, "printery_worker_restarts_total", worker="validator")
    assert 1.0 == metric_value(text, "printery_messages_total", worker="validator", outcome="acked")
    assert 0.0 == metric_value(text, "printery_worker_restarts_total", worker="notifier")
