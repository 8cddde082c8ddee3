"""
Tests for ``<context-root>/metrics`` (waiter_service.ops.metrics) and the
run manager's transition hook that feeds it: in memory on the fake reactor,
then against a real twistd.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import requests
import zeep
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from twisted.logger import capturedLogs, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from waiter_service.ops.health import FolderProbe, FolderState, HealthResource
from waiter_service.ops.metrics import Metrics, MetricsResource
from waiter_service.programs.waiter import Waiter
from waiter_service.runs.manager import Limits, RunManager
from waiter_service.runs.record import RunRecord
from waiter_service.runs.state import RunState
from waiter_service.runs.store import RunStore
from waiter_service.soap.fast_status import FastStatus
from waiter_service.soap.operations import OUTCOMES
from waiter_service.soap.site import build_site
from waiter_service.testing import (
    FakeProcessReactor,
    HTTPResponse,
    SignalRecorder,
    http_request,
    parse_response,
    send_http_request,
)

from .e2e_server import CONTEXT_ROOT, Server
from .soap_messages import SOAP_HEADERS, envelope

OPERATIONS = ("startWaiter", "getServiceStatus", "abortService", "notifyService")
ROOT = b"/cloud/vm1"


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


class OpsTestCase(SynchronousTestCase):
    """A server's site in memory (fake reactor), with its health and metrics."""

    max_running = 1
    log_debug = False

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.root = Path(self.mktemp())
        self.groups = SignalRecorder()
        self.metrics = Metrics(OPERATIONS, OUTCOMES, "9.9.9", process_metrics=False)
        self.manager = RunManager(
            self.reactor,
            RunStore(self.root),
            Waiter(max_seconds=3600),
            limits=Limits(max_running=self.max_running),
            launcher=["/usr/bin/setsid", "/usr/bin/env"],
            signal_group=self.groups,
            identify=self.reactor.identify,
            is_alive=self.reactor.is_alive,
            on_transition=self.metrics.transition,
        )
        self.manager.start_service()
        self.metrics.watch(self.manager)
        self.folder_state = FolderState(None, 12345)
        self.probes = 0
        self.probe = FolderProbe(self.root, self.reactor, ttl=5.0, probe=self.fake_probe)
        self.health = HealthResource(self.manager, self.probe, self.reactor, "9.9.9")
        self.site = self.build(fast_path=True)

    def build(self, fast_path: bool, log_debug: bool | None = None) -> Any:
        return build_site(
            Waiter(),
            self.manager,
            ["cloud", "vm1"],
            reactor=self.reactor,
            fast_path=fast_path,
            on_call=self.metrics.call,
            extra={"health": self.health, "metrics": MetricsResource(self.metrics)},
            log_debug=self.log_debug if log_debug is None else log_debug,
        )

    def fake_probe(self, folder: Path) -> FolderState:
        self.probes += 1
        return self.folder_state

    def call(self, operation: str, site: Any = None, **fields: object) -> HTTPResponse:
        return http_request(
            site or self.site,
            b"POST",
            ROOT + b"/Waiter",
            envelope(operation, **fields),
            headers=SOAP_HEADERS,
        )

    def get(self, path: bytes, method: bytes = b"GET") -> HTTPResponse:
        return http_request(self.site, method, ROOT + path)

    def scrape(self) -> dict[Any, float]:
        response = self.get(b"/metrics")
        self.assertEqual(response.code, 200)
        return samples(response.body.decode("utf-8"))

    def abort(self, service_id: str) -> HTTPResponse:
        """abortService for a running run whose child then dies of TERM."""
        process = next(p for p in self.reactor.processes if p.pid is not None)
        _channel, transport = send_http_request(
            self.site,
            b"POST",
            ROOT + b"/Waiter",
            envelope("abortService", serviceID=service_id, sessionToken="t"),
            headers=SOAP_HEADERS,
        )
        process.killed(signal.SIGTERM)
        return parse_response(transport.value())


class MetricsTests(OpsTestCase):
    def test_content_type(self) -> None:
        """/metrics answers Prometheus' text format 0.0.4, never cached."""
        response = self.get(b"/metrics")
        self.assertEqual(
            response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8"
        )
        self.assertEqual(response.headers["cache-control"], "no-store")
        self.assertIn(b'waiter_build_info{version="9.9.9"} 1.0', response.body)

    def test_start_poll_abort(self) -> None:
        """After a start, three polls and an abort, every counter says so."""
        self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait=60)
        for _ in range(3):
            self.call("getServiceStatus", serviceID="s1", sessionToken="t")
        self.assertEqual(self.abort("s1").code, 200)
        found = self.scrape()
        calls = "waiter_soap_call_duration_seconds_count"
        self.assertEqual(value(found, calls, operation="startWaiter", outcome="ok"), 1)
        self.assertEqual(value(found, calls, operation="getServiceStatus", outcome="ok"), 3)
        self.assertEqual(value(found, calls, operation="abortService", outcome="ok"), 1)
        self.assertEqual(value(found, calls, operation="notifyService", outcome="ok"), 0)
        self.assertEqual(value(found, "waiter_runs_started_total"), 1)
        self.assertEqual(value(found, "waiter_runs_finished_total", state="aborted"), 1)
        self.assertEqual(value(found, "waiter_runs_finished_total", state="completed"), 0)
        self.assertEqual(value(found, "waiter_runs", state="aborted"), 1)
        self.assertEqual(value(found, "waiter_children_alive"), 0)

    def test_refused_calls_are_counted_and_logged(self) -> None:
        """
        Calls Spyne refuses before any operation runs (schema, XML, unknown
        operation) are counted and logged too, with a bounded label set.
        """
        with capturedLogs() as events:
            bad = self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait="abc")
            self.assertEqual(bad.code, 500)
            http_request(self.site, b"POST", ROOT + b"/Waiter", b"<not xml", headers=SOAP_HEADERS)
            self.call("dropDatabase\u00e9", serviceID="s1", sessionToken="t")
        found = self.scrape()
        calls = "waiter_soap_call_duration_seconds_count"
        refused = {}
        for (name, pairs), count in found.items():
            labels = dict(pairs)
            if name == calls and count and labels["outcome"] != "ok":
                refused[(labels["operation"], labels["outcome"])] = count
        self.assertEqual(
            refused,
            {
                ("startWaiter", "Client.SchemaValidationError"): 1,
                ("other", "Client.XMLSyntaxError"): 1,
                ("other", "Client.SchemaValidationError"): 1,
            },
        )
        logged = [e for e in events if e.get("event") == "soap_call"]
        self.assertEqual(len(logged), 3)
        self.assertEqual({e["operation"] for e in logged}, {"startWaiter", "unknown"})
        self.assertNotIn("dropDatabase", repr(logged))

    def test_gauges_follow_the_runs(self) -> None:
        """Runs by state, queue length and children alive are read at scrape time."""
        self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait=60)
        self.call("startWaiter", serviceID="s2", sessionToken="t", secondsToWait=60)
        self.call("startWaiter", serviceID="s3", sessionToken="t", secondsToWait=60)
        found = self.scrape()
        self.assertEqual(value(found, "waiter_runs", state="running"), 1)
        self.assertEqual(value(found, "waiter_runs", state="queued"), 2)
        self.assertEqual(value(found, "waiter_queue_length"), 2)
        self.assertEqual(value(found, "waiter_children_alive"), 1)
        self.assertEqual(value(found, "waiter_max_running"), 1)
        (self.root / "s1" / "result").write_bytes(b"done\n")
        self.reactor.processes[0].exit(0)
        found = self.scrape()
        self.assertEqual(value(found, "waiter_runs", state="completed"), 1)
        self.assertEqual(value(found, "waiter_runs", state="running"), 1)
        self.assertEqual(value(found, "waiter_queue_length"), 1)
        self.assertEqual(value(found, "waiter_runs_started_total"), 2)
        self.assertEqual(value(found, "waiter_runs_finished_total", state="completed"), 1)

    def test_fast_path_polls_are_counted(self) -> None:
        """Polls answered by the fast path and by Spyne are both counted."""
        answered = []
        real_render = FastStatus.render

        def render(fast: FastStatus, *args: Any) -> Any:
            answered.append(args[1])
            return real_render(fast, *args)

        self.patch(FastStatus, "render", render)
        self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait=60)
        self.call("getServiceStatus", serviceID="s1", sessionToken="t")
        self.call("getServiceStatus", serviceID="nobody", sessionToken="t")
        slow = self.build(fast_path=False)
        self.call("getServiceStatus", site=slow, serviceID="s1", sessionToken="t")
        self.assertEqual(answered, ["s1", "nobody"])
        found = self.scrape()
        calls = "waiter_soap_call_duration_seconds_count"
        self.assertEqual(value(found, calls, operation="getServiceStatus", outcome="ok"), 2)
        self.assertEqual(
            value(found, calls, operation="getServiceStatus", outcome="Client.UnknownServiceID"),
            1,
        )

    def test_labels_are_bounded(self) -> None:
        """Outcomes are fault codes; serviceIDs never reach a label; unknowns are 'other'."""
        self.call("getServiceStatus", serviceID="no-such-run-4711", sessionToken="t")
        self.call("startWaiter", serviceID="../../etc/passwd", sessionToken="t")
        self.metrics.call("madeUpOperation", "Client.Whatever", 0.5)
        body = self.get(b"/metrics").body.decode("utf-8")
        self.assertNotIn("no-such-run-4711", body)
        self.assertNotIn("passwd", body)
        found = samples(body)
        calls = "waiter_soap_call_duration_seconds_count"
        self.assertEqual(
            value(found, calls, operation="startWaiter", outcome="Client.InvalidInput"), 1
        )
        self.assertEqual(value(found, calls, operation="other", outcome="other"), 1)
        outcomes = {dict(labels)["outcome"] for (name, labels) in found if name == calls}
        self.assertLessEqual(outcomes, OUTCOMES | {"other"})

    def test_histogram_buckets(self) -> None:
        """A call's duration lands in the right bucket of its operation."""
        self.metrics.call("notifyService", "ok", 0.003)
        found = self.scrape()
        bucket = "waiter_soap_call_duration_seconds_bucket"
        labels = {"operation": "notifyService", "outcome": "ok"}
        self.assertEqual(value(found, bucket, le="0.0025", **labels), 0)
        self.assertEqual(value(found, bucket, le="0.005", **labels), 1)
        self.assertAlmostEqual(
            value(found, "waiter_soap_call_duration_seconds_sum", **labels), 0.003
        )

    def test_own_registry(self) -> None:
        """Two servers' metrics in one process neither collide nor touch the global registry."""
        other = Metrics(OPERATIONS, OUTCOMES, "1.0", process_metrics=True)
        other.call("startWaiter", "ok", 0.01)
        self.assertNotIn(b'operation="startWaiter",outcome="ok"} 1.0', self.metrics.exposition())
        self.assertIn(b'_count{operation="startWaiter",outcome="ok"} 1.0', other.exposition())
        self.assertIn(b"process_resident_memory_bytes", other.exposition())
        self.assertIsNone(REGISTRY.get_sample_value("waiter_runs_started_total"))

    def test_only_get(self) -> None:
        """/metrics takes GET and HEAD only; nothing lives below it."""
        self.assertEqual(self.get(b"/metrics", b"POST").code, 405)
        self.assertEqual(self.get(b"/metrics", b"HEAD").code, 200)
        self.assertEqual(self.get(b"/metrics/x").code, 404)


class TransitionTests(OpsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.seen: list[tuple[str, str | None, str]] = []
        self.manager.on_transition = self.record

    def record(self, record: RunRecord, old: RunState | None, new: RunState) -> None:
        self.seen.append((record.service_id, old.value if old else None, new.value))

    def test_every_transition(self) -> None:
        """The manager reports starts, queueing, launches, ends and aborts, in order."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        for service_id in ("a", "b", "c"):
            self.manager.start(service_id, {"secondsToWait": 60})
        self.manager.abort("c")
        self.reactor.processes[0].exit(3)
        self.manager.abort("b")
        self.reactor.processes[1].killed(signal.SIGTERM)
        expected = [
            ("a", None, "running"),
            ("b", None, "queued"),
            ("c", None, "queued"),
            ("c", "queued", "aborted"),
            ("a", "running", "failed"),
            ("b", "queued", "running"),
            ("b", "running", "aborted"),
        ]
        self.assertEqual(self.seen, expected)
        logged = [
            (e["service_id"], e["from_state"], e["to_state"])
            for e in events
            if e.get("event") == "run_transition"
        ]
        self.assertEqual(logged, expected)
        failed = next(e for e in events if e.get("to_state") == "failed")
        self.assertEqual(failed["reason"], "the program failed")

    def test_spawn_failure(self) -> None:
        """A program that cannot be started goes straight to failed."""
        self.reactor.spawn_error = OSError("no such program")
        self.manager.start("a", {"secondsToWait": 60})
        self.assertEqual(self.seen, [("a", None, "failed")])

    def test_restart(self) -> None:
        """At start, an adopted run is running to running and a queued one queued to queued."""
        self.manager.on_transition = self.metrics.transition
        for service_id in ("a", "b"):
            self.manager.start(service_id, {"secondsToWait": 60})
        self.manager.stop_service()
        again = RunManager(
            self.reactor,
            RunStore(self.root),
            Waiter(max_seconds=3600),
            limits=Limits(max_running=1),
            launcher=["/usr/bin/setsid", "/usr/bin/env"],
            signal_group=self.groups,
            identify=self.reactor.identify,
            is_alive=self.reactor.is_alive,
            on_transition=self.record,
        )
        again.start_service()
        self.addCleanup(again.stop_service)
        self.assertEqual(self.seen, [("a", "running", "running"), ("b", "queued", "queued")])
        for old, new in [(RunState.RUNNING, RunState.RUNNING), (RunState.QUEUED, RunState.QUEUED)]:
            self.metrics.transition(again.runs["a"].record, old, new)
        self.assertEqual(value(self.scrape(), "waiter_runs_started_total"), 1)

    def test_observer_errors_are_contained(self) -> None:
        """An observer that raises is logged; the run goes on."""

        def broken(*args: Any) -> None:
            raise KeyError("boom")

        self.manager.on_transition = broken
        self.manager.start("a", {"secondsToWait": 60})
        self.assertEqual(self.manager.runs["a"].record.state, RunState.RUNNING)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)


class MetricsEndToEndTests(SynchronousTestCase):
    def test_real_server(self) -> None:
        """A real twistd counts a start, polls and an abort, and serves them at /metrics."""
        server = Server(Path(self.mktemp()).resolve(), "--kill-grace", "3")
        self.addCleanup(server.cleanup)
        soap = zeep.Client(server.url + "?wsdl").service
        soap.startWaiter(serviceID="m1", sessionToken="t", secondsToWait=600)
        for _ in range(4):
            soap.getServiceStatus(serviceID="m1", sessionToken="t")
        self.assertIs(soap.abortService(serviceID="m1", sessionToken="t"), True)
        url = f"http://127.0.0.1:{server.port}{CONTEXT_ROOT}/metrics"
        response = requests.get(url, timeout=10)
        self.assertEqual(response.status_code, 200)
        found = samples(response.text)
        calls = "waiter_soap_call_duration_seconds_count"
        self.assertEqual(value(found, calls, operation="startWaiter", outcome="ok"), 1)
        self.assertEqual(value(found, calls, operation="getServiceStatus", outcome="ok"), 4)
        self.assertEqual(value(found, calls, operation="abortService", outcome="ok"), 1)
        self.assertEqual(value(found, "waiter_runs_started_total"), 1)
        self.assertEqual(value(found, "waiter_runs_finished_total", state="aborted"), 1)
        self.assertEqual(value(found, "waiter_children_alive"), 0)
        self.assertGreater(value(found, "process_resident_memory_bytes"), 0)
