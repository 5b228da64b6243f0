"""Prometheus metrics on a registry owned by the app instance, fed by lifecycle events.

Counters and the histogram follow events; gauges that describe *now*
(worker up, uptime, stream lag) are read at scrape time, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from printery import __version__
from printery.lifecycle import (
    ChildSpawned,
    ChildStopped,
    HandlerHung,
    HandlerRaised,
    LifecycleEvent,
    MessageHandled,
    Outcome,
    RedisConnectivity,
    StreamTrimmed,
    WorkerCrashed,
    WorkerRestartScheduled,
    WorkerState,
)
from printery.redis.replies import GroupStats
from printery.supervisor.manager import WorkerStatus

__all__ = ["Metrics"]

_DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


class _LiveCollector(Collector):
    """Worker and stream gauges computed at scrape time."""

    def __init__(
        self,
        status: Callable[[], Mapping[str, WorkerStatus]],
        streams: Callable[[], Iterable[GroupStats]],
        lengths: Mapping[str, int],
    ) -> None:
        self._status = status
        self._streams = streams
        self._lengths = lengths

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "printery_worker_up", "1 when the worker is running", labels=["worker"]
        )
        uptime = GaugeMetricFamily(
            "printery_worker_uptime_seconds",
            "Seconds since the worker last started running",
            labels=["worker"],
        )
        state = GaugeMetricFamily(
            "printery_worker_state", "1 for the worker's current state", labels=["worker", "state"]
        )
        for name, status in self._status().items():
            up.add_metric([name], 1.0 if status.state is WorkerState.RUNNING else 0.0)
            uptime.add_metric([name], status.uptime_s)
            for candidate in WorkerState:
                state.add_metric([name, candidate.value], float(status.state is candidate))
        pending = GaugeMetricFamily(
            "printery_stream_pending", "Entries delivered, not acked", labels=["stream", "group"]
        )
        lag = GaugeMetricFamily(
            "printery_stream_lag",
            "Entries not yet delivered to the group",
            labels=["stream", "group"],
        )
        length = GaugeMetricFamily(
            "printery_stream_length", "Entries in the stream", labels=["stream"]
        )
        # Every retained stream as of the last trim pass; the consumed ones read fresh.
        lengths = dict(self._lengths)
        for stats in self._streams():
            pending.add_metric([stats.stream, stats.group], stats.pending)
            if stats.lag is not None:
                lag.add_metric([stats.stream, stats.group], stats.lag)
            lengths[stats.stream] = stats.length
        for stream, entries in sorted(lengths.items()):
            length.add_metric([stream], entries)
        yield from (up, uptime, state, pending, lag, length)


class Metrics:
    """Every metric of docs/operations.md; ``sink`` subscribes to the lifecycle hub."""

    def __init__(
        self,
        status: Callable[[], Mapping[str, WorkerStatus]],
        streams: Callable[[], Iterable[GroupStats]],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "printery_messages", "Messages handled, by outcome", ["worker", "outcome"], registry=r
        )
        self.duration = Histogram(
            "printery_message_duration_seconds",
            "Time from handler start to commit",
            ["worker"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.restarts = Counter(
            "printery_worker_restarts", "Worker restarts", ["worker"], registry=r
        )
        self.errors = Counter(
            "printery_worker_errors", "Worker crashes and handler errors", ["worker"], registry=r
        )
        self.hung = Counter(
            "printery_handlers_hung",
            "Handlers cut after no progress for their hang timeout (their message retried)",
            ["worker"],
            registry=r,
        )
        self.redis_up = Gauge(
            "printery_redis_up", "1 when Redis answered the last attempt", registry=r
        )
        # Workers in their own processes (printery.processes): their children.
        self.children = Gauge(
            "printery_worker_children", "Child processes alive", ["worker"], registry=r
        )
        self.spawns = Counter(
            "printery_worker_child_spawns", "Child processes started", ["worker"], registry=r
        )
        self.kills = Counter(
            "printery_worker_child_kills",
            "Child processes killed by the daemon, by reason (timeout, rss, tasks, protocol, "
            "heartbeat, start, shutdown)",
            ["worker", "reason"],
            registry=r,
        )
        self.build = Info("printery_build", "The running printery", registry=r)
        self.build.info({"version": __version__})
        self.trimmed = Counter(
            "printery_stream_trimmed",
            "Entries removed by retention",
            ["stream"],
            registry=r,
        )
        self.redis_up.set(1)
        self._lengths: dict[str, int] = {}
        r.register(_LiveCollector(status, streams, self._lengths))
        self._per_message: dict[tuple[str, Outcome], tuple[Any, Any]] = {}
        for worker in status():
            self._at_zero(worker)

    def _at_zero(self, worker: str) -> None:
        """Every per-worker counter at 0 from the first scrape, not from the first event.

        A series that appears only with its first increment hides that increment
        from ``increase()`` and ``rate()`` (there is no earlier sample to compare)
        and from an outside check that looks for it on a fresh daemon.
        """
        for outcome in Outcome:
            self.messages.labels(worker, outcome.value)
        self.duration.labels(worker)
        self.restarts.labels(worker)
        self.errors.labels(worker)
        self.hung.labels(worker)

    def sink(self, event: LifecycleEvent) -> None:
        match event:
            case MessageHandled(worker=worker, outcome=outcome, duration_s=duration):
                children = self._per_message.get((worker, outcome))
                if children is None:  # labels() costs a lookup under a lock: once per pair
                    children = (
                        self.messages.labels(worker, outcome.value),
                        self.duration.labels(worker),
                    )
                    self._per_message[worker, outcome] = children
                children[0].inc()
                children[1].observe(duration)
            case WorkerRestartScheduled(worker=worker):
                self.restarts.labels(worker).inc()
            case WorkerCrashed(worker=worker) | HandlerRaised(worker=worker):
                self.errors.labels(worker).inc()
            case HandlerHung(worker=worker):
                self.hung.labels(worker).inc()
                self.errors.labels(worker).inc()
            case RedisConnectivity(up=up):
                self.redis_up.set(1 if up else 0)
            case ChildSpawned(worker=worker):
                self.spawns.labels(worker).inc()
                self.children.labels(worker).inc()
            case ChildStopped(worker=worker, reason=reason, killed=killed):
                self.children.labels(worker).dec()
                if killed:
                    self.kills.labels(worker, reason).inc()
            case StreamTrimmed(stream=stream, trimmed=trimmed, length=entries):
                self.trimmed.labels(stream).inc(trimmed)
                self._lengths[stream] = entries
