"""
``<context-root>/metrics``: the server in Prometheus' text format.

- ``waiter_runs{state}``, ``waiter_queue_length``, ``waiter_children_alive``,
  ``waiter_max_running``, ``waiter_max_queued``: gauges read from the run
  manager when scraped (nothing to keep in step with it);
- ``waiter_runs_started_total`` (programs started by this server) and
  ``waiter_runs_finished_total{state}`` (completed, failed, aborted): fed by
  the manager's run transitions;
- ``waiter_soap_call_duration_seconds{operation,outcome}``: a histogram of
  every SOAP call that reached an operation, polls of the fast path
  included (its ``_count`` is the number of calls).  Labels come from fixed
  sets: the four operations, ``ok`` and the fault codes; anything else is
  ``other``, and a serviceID is never a label;
- ``waiter_build_info{version}`` and the ``process_*`` metrics of the
  server's process.

Each :class:`Metrics` has a registry of its own (never the library's global
one), so that several servers, or tests, in one process do not collide.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web.server import Request

from ..runs.manager import RunManager
from ..runs.record import RunRecord
from ..runs.state import RunState
from .counts import count_runs
from .http import ReadOnlyResource

OTHER = "other"

#: From a fast poll (about a millisecond) to an abort that waits for the
#: kill grace period (10 s by default).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

_FINISHED = [s for s in RunState if s.is_terminal]


class Metrics:
    """The metrics of one server, and the hooks that feed them."""

    def __init__(
        self,
        operations: Iterable[str],
        outcomes: Iterable[str],
        version: str,
        process_metrics: bool = True,
    ) -> None:
        self.operations = frozenset(operations)
        self.outcomes = frozenset(outcomes) | {"ok"}
        self.manager: RunManager | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.calls = Histogram(
            "waiter_soap_call_duration_seconds",
            "Time to answer a SOAP call, by operation (other: Spyne refused it before"
            " telling which) and outcome (ok or the fault code).",
            ["operation", "outcome"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.started = Counter(
            "waiter_runs_started",
            "Runs whose program this server started.",
            registry=self.registry,
        )
        self.finished = Counter(
            "waiter_runs_finished",
            "Runs that ended while this server held them, by final state.",
            ["state"],
            registry=self.registry,
        )
        Info("waiter_build", "The service's version.", registry=self.registry).info(
            {"version": version}
        )
        for state in _FINISHED:
            self.finished.labels(state.value)
        # The hot path: one dict lookup, not the library's locked label lookup.
        self._call_series = {
            (operation, "ok"): self.calls.labels(operation, "ok") for operation in self.operations
        }
        self.registry.register(_ManagerCollector(self))
        if process_metrics:
            ProcessCollector(registry=self.registry)

    def watch(self, manager: RunManager) -> None:
        """Read gauges from ``manager`` (built after these metrics: it reports to them)."""
        self.manager = manager

    def transition(
        self, record: RunRecord, from_state: RunState | None, to_state: RunState
    ) -> None:
        """A run changed state (``RunManager``'s ``on_transition``)."""
        if to_state is RunState.RUNNING and from_state is not RunState.RUNNING:
            self.started.inc()
        elif to_state.is_terminal and from_state is not to_state:
            self.finished.labels(to_state.value).inc()

    def call(self, operation: str, outcome: str, duration: float) -> None:
        """A SOAP call was answered (``Operations``' ``on_call``)."""
        key = (operation, outcome)
        series = self._call_series.get(key)
        if series is None:
            labels = (
                operation if operation in self.operations else OTHER,
                outcome if outcome in self.outcomes else OTHER,
            )
            series = self.calls.labels(*labels)
            if labels == key:  # only known pairs are kept: the cache stays small
                self._call_series[key] = series
        series.observe(duration)

    def exposition(self) -> bytes:
        """Everything, in the Prometheus text format 0.0.4."""
        return generate_latest(self.registry)


class _ManagerCollector(Collector):
    """The gauges, read from the run manager at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        manager = self.metrics.manager
        counts = count_runs(manager)
        runs = GaugeMetricFamily(
            "waiter_runs", "Runs held by the server, by state.", labels=["state"]
        )
        for state, count in counts.by_state.items():
            runs.add_metric([state], count)
        yield runs
        yield GaugeMetricFamily(
            "waiter_queue_length", "Runs waiting for a free slot.", value=counts.queue_length
        )
        yield GaugeMetricFamily(
            "waiter_children_alive",
            "Programs running (started or adopted) that have not ended yet.",
            value=counts.children_alive,
        )
        if manager is not None:
            yield GaugeMetricFamily(
                "waiter_max_running",
                "Runs whose programs may run at once (--max-running).",
                value=manager.limits.max_running,
            )
            yield GaugeMetricFamily(
                "waiter_max_queued",
                "Runs that may wait (--max-queued).",
                value=manager.limits.max_queued,
            )


class MetricsResource(ReadOnlyResource):
    """Serves :meth:`Metrics.exposition`."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def answer(self, request: Request) -> tuple[int, bytes, bytes]:
        return 200, CONTENT_TYPE_PLAIN_0_0_4.encode("ascii"), self.metrics.exposition()
