"""Prometheus metrics for the engine: `worker --metrics-port` and `--run-once --metrics-textfile`.

`EngineMetrics` owns its own CollectorRegistry (never prometheus_client's global one), so tests
and several managers in one process never collide. Counters and the duration histogram are fed
by a quick synchronous EventBus subscriber (no I/O); the gauges read from the store are
refreshed by `await metrics.refresh(store)`. Labels carry job types, states, outcomes and
breaker keys only: never a database URL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from os import PathLike
from typing import TYPE_CHECKING, Any, cast
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
    write_to_textfile,
)

from dealertui.engine.events import (
    EngineEvent,
    EventBus,
    HistoryPruned,
    JobBlocked,
    JobFailed,
    JobRetrying,
    JobStarted,
    JobSucceeded,
    LeasesRescued,
    ScheduleFired,
    StatsTick,
)
from dealertui.errors import UsageError
from dealertui.model import ALL_STATES, ProcessingStats

if TYPE_CHECKING:
    from dealertui.store import JobStore

#: 1 ms .. 10 min, roughly x2.5 per step
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
BREAKER_STATES = ("closed", "open", "half_open")
#: the label of an event without a job type (every engine event carries one today)
UNKNOWN_TYPE = "unknown"

_OUTCOMES: dict[type, str] = {
    JobSucceeded: "succeeded",
    JobFailed: "failed",
    JobRetrying: "retrying",
    JobBlocked: "blocked",
}


class MetricsServer:
    """A running /metrics endpoint: `.host`, `.port` (the bound ones) and `.close()`."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self.httpd = httpd
        self.thread = thread
        # a TCP server's address is (host, port[, ...]) with a str host; bytes is AF_UNIX's
        self.host: str = cast(str, httpd.server_address[0])
        self.port: int = httpd.server_address[1]

    def close(self) -> None:
        """Stop serving, close the listening socket and join the server thread."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class EngineMetrics:
    """The engine's Prometheus metrics, on a registry of their own (`.registry`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.started = Counter("dealertui_jobs_started", "Jobs claimed and started",
                               ["job_type"], registry=r)
        self.finished = Counter(
            "dealertui_jobs_finished",
            "Job outcomes recorded (succeeded, failed, retrying, blocked)",
            ["job_type", "outcome"], registry=r,
        )
        self.duration = Histogram("dealertui_job_duration_seconds",
                                  "Run time of succeeded jobs", ["job_type"],
                                  buckets=DURATION_BUCKETS, registry=r)
        self.jobs = Gauge("dealertui_jobs", "Jobs in the store by state and job type",
                          ["state", "job_type"], registry=r)
        self.throughput = Gauge("dealertui_throughput_jobs_per_second",
                                "Processed jobs per second in the current run", registry=r)
        self.in_flight = Gauge("dealertui_in_flight_jobs",
                               "Jobs this process is running now", registry=r)
        self.breaker_open = Gauge("dealertui_breaker_open",
                                  "1 when the circuit breaker is open, else 0", ["key"],
                                  registry=r)
        self.breaker_state = Gauge("dealertui_breaker_state",
                                   "1 for the breaker's current state, 0 for the others",
                                   ["key", "state"], registry=r)
        self.lease_rescues = Counter("dealertui_lease_rescues",
                                     "Running jobs taken back after their lease expired",
                                     registry=r)
        self._jobs_labels: set[tuple[str, str]] = set()
        self._open_labels: set[tuple[str]] = set()
        self._state_labels: set[tuple[str, str]] = set()

    # -- fed by the engine --------------------------------------------------------------------

    def subscribe(self, bus: EventBus) -> Callable[[], None]:
        """Follow *bus*; returns the function that unsubscribes again."""
        return bus.subscribe(self.on_event)

    def on_event(self, event: EngineEvent) -> None:
        """The EventBus subscriber: counter and gauge updates only, no I/O."""
        if isinstance(event, StatsTick):
            self.observe_stats(event.stats, event.in_flight)
            return
        if isinstance(event, LeasesRescued):
            self.record_rescues(event.count)
            return
        if isinstance(event, ScheduleFired):
            return  # its pipelines' jobs are counted as they run
        if isinstance(event, HistoryPruned):
            return  # history, not throughput
        job_type = event.job_type or UNKNOWN_TYPE
        if isinstance(event, JobStarted):
            self.started.labels(job_type).inc()
            self.in_flight.inc()
            return
        outcome = _OUTCOMES.get(type(event))
        if outcome is None:
            return
        self.finished.labels(job_type, outcome).inc()
        if outcome != "blocked":  # blocked descendants never ran here
            self.in_flight.dec()
        if isinstance(event, JobSucceeded):
            self.duration.labels(job_type).observe(max(event.duration_s, 0.0))

    def observe_stats(self, stats: ProcessingStats, in_flight: int | None = None) -> None:
        """Throughput (and in-flight jobs) from a run's stats: ticks, or the final stats."""
        self.throughput.set(stats.throughput_jobs_per_s)
        if in_flight is not None:
            self.in_flight.set(in_flight)

    def record_rescues(self, n: int) -> None:
        """Count *n* jobs whose expired lease was rescued."""
        if n > 0:
            self.lease_rescues.inc(n)

    # -- read from the store ------------------------------------------------------------------

    async def refresh(self, store: JobStore) -> None:
        """Re-read job counts (store.status()) and breaker states (store.breaker_states())."""
        status = await store.status()
        counts: dict[tuple[str, str], int] = {}
        for job_type, by_state in status["by_type"].items():
            for state in ALL_STATES:
                counts[(state, job_type)] = int(by_state.get(state, 0))
        self._jobs_labels = _replace(self.jobs, counts, self._jobs_labels)

        rows = [(str(b["key"]), str(b["state"])) for b in await store.breaker_states()]
        open_: dict[tuple[str], int] = {}
        states: dict[tuple[str, str], int] = {}
        for key, state in rows:
            open_[(key,)] = int(state == "open")
            for s in dict.fromkeys((*BREAKER_STATES, state)):
                states[(key, s)] = int(s == state)
        self._open_labels = _replace(self.breaker_open, open_, self._open_labels)
        self._state_labels = _replace(self.breaker_state, states, self._state_labels)

    # -- exposition ---------------------------------------------------------------------------

    def serve(self, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Serve /metrics on host:port (loopback unless told otherwise) in a daemon thread.

        Port 0 picks a free port (see `.port` on the result). Call `.close()` to stop.
        """
        try:
            httpd, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:  # in use, no such address, not ours to bind
            reason = exc.strerror or str(exc)
            raise UsageError(f"cannot serve metrics on {host}:{port}: {reason}.") from None
        return MetricsServer(httpd, thread)

    def write_textfile(self, path: str | PathLike[str]) -> None:
        """Write the node_exporter textfile format to *path* (temp file + atomic rename)."""
        write_to_textfile(str(path), self.registry)


def _replace(metric: Gauge, values: dict[Any, int], old: set[Any]) -> set[Any]:
    """Set every labelled value, then drop label sets that vanished (no empty scrape between)."""
    for labels, value in values.items():
        metric.labels(*labels).set(value)
    for labels in old - values.keys():
        try:
            metric.remove(*labels)
        except KeyError:
            pass
    return set(values)
