"""Tests for the queue, the limits and retention of the run manager (fake reactor)."""

from __future__ import annotations

import signal

from waiter_service.runs.manager import (
    COMPLETED,
    UNCHANGED,
    ExpiredRun,
    Limits,
    ServiceBusy,
    UnknownRun,
)
from waiter_service.runs.retention import parse_duration
from waiter_service.runs.state import RunState
from waiter_service.validation import InvalidInput

from .test_manager import ManagerTestCase, page


class QueueTests(ManagerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.replace_manager(limits=Limits(max_running=2, max_queued=2))

    def test_runs_beyond_the_limit_wait(self) -> None:
        """Past max_running, runs are queued with their position, nothing started."""
        self.start("run_a")
        self.start("run_b")
        third = self.manager.start("run_c", {"secondsToWait": 5})
        fourth = self.manager.start("run_d", {"secondsToWait": 5})
        self.assertEqual(len(self.reactor.processes), 2)
        self.assertIn("Queued, position 1", page(third))
        self.assertIn("Queued, position 2", page(fourth))
        self.assertEqual(self.saved("run_c")["state"], "queued")

    def test_queue_is_fifo(self) -> None:
        """A freed slot goes to the oldest queued run; the others move up."""
        first = self.start("run_a")
        self.start("run_b")
        self.manager.start("run_c", {"secondsToWait": 5})
        self.manager.start("run_d", {"secondsToWait": 5})
        self.assertIn("position 2", page(self.manager.status("run_d")))
        self.assertEqual(self.manager.status("run_d").status, UNCHANGED)
        first.exit(1)
        self.assertEqual(len(self.reactor.processes), 3)
        self.assertEqual(self.reactor.processes[-1].args[-3], "5")
        self.assertEqual(self.manager.runs["run_c"].record.state, RunState.RUNNING)
        self.assertIn("position 1", page(self.manager.status("run_d")))

    def test_queue_full(self) -> None:
        """Past max_queued, a start is refused as busy and nothing is created."""
        for name in ("run_a", "run_b", "run_c", "run_d"):
            self.manager.start(name, {"secondsToWait": 5})
        error = self.assertRaises(ServiceBusy, self.manager.start, "run_e", {"secondsToWait": 5})
        self.assertIn("try again later", str(error))
        self.assertFalse((self.root / "run_e").exists())

    def test_abort_queued(self) -> None:
        """Aborting a queued run ends it at once; it never starts."""
        self.start("run_a")
        self.start("run_b")
        self.manager.start("run_c", {"secondsToWait": 5})
        self.assertIs(self.successResultOf(self.manager.abort("run_c")), True)
        self.assertEqual(self.saved("run_c")["state"], "aborted")
        self.reactor.processes[0].exit(1)
        self.assertEqual(len(self.reactor.processes), 2)

    def test_notify_queued(self) -> None:
        """A message for a queued run is not delivered, and the answer says so."""
        self.start("run_a")
        self.start("run_b")
        self.manager.start("run_c", {"secondsToWait": 5})
        answer = self.manager.notify("run_c", "finish")
        self.assertEqual(answer, "not delivered: the run has not started yet")

    def test_queue_driven_by_the_server(self) -> None:
        """A run whose start cannot be recorded stays queued and starts on a later tick."""
        self.replace_manager(limits=Limits(max_running=1))
        first = self.start("run_a")
        self.manager.start("run_b", {"secondsToWait": 5})
        free_disk = self.fill_disk()
        first.exit(1)
        self.assertEqual(len(self.reactor.processes), 1)
        self.assertEqual(self.manager.runs["run_b"].record.state, RunState.QUEUED)
        free_disk()
        self.reactor.advance(1)
        self.assertEqual(len(self.reactor.processes), 2)
        self.assertEqual(self.saved("run_b")["state"], "running")


class TimeLimitTests(ManagerTestCase):
    def test_time_limit(self) -> None:
        """A run past max_seconds is stopped like an abort and fails with "time limit"."""
        self.replace_manager(limits=Limits(max_seconds=30))
        process = self.start()
        pid = process.pid
        self.reactor.advance(29)
        self.assertEqual(self.groups.sent, [])
        self.reactor.advance(1)
        self.assertEqual(self.groups.sent, [(pid, signal.SIGTERM)])
        process.killed(signal.SIGTERM)
        record = self.manager.runs["run_1"].record
        self.assertEqual((record.state, record.failure_reason), (RunState.FAILED, "time limit"))
        self.assertIn("time limit", page(self.manager.status("run_1")))

    def test_time_limit_cancelled_at_the_end(self) -> None:
        """A run that ends in time leaves no timer behind."""
        self.replace_manager(limits=Limits(max_seconds=30))
        process = self.start()
        (self.root / "run_1" / "result").write_bytes(b"r")
        process.exit(0)
        self.reactor.advance(60)
        self.assertEqual(self.groups.sent, [])
        self.assertEqual(self.manager.status("run_1").status, COMPLETED)


class RetentionTests(ManagerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.replace_manager(limits=Limits(retention=100))

    def finish_run(self, service_id: str) -> None:
        process = self.start(service_id)
        (self.root / service_id / "result").write_bytes(b"r")
        process.exit(0)

    def test_expired_runs_are_removed(self) -> None:
        """Finished runs older than the retention are removed; polls say expired."""
        self.finish_run("old")
        self.reactor.advance(50)
        self.finish_run("young")
        self.reactor.advance(60)
        self.assertFalse((self.root / "old").exists())
        self.assertTrue((self.root / "young").exists())
        self.assertRaises(ExpiredRun, self.manager.status, "old")
        self.assertRaises(UnknownRun, self.manager.status, "never")
        self.assertRaises(InvalidInput, self.manager.start, "old", {"secondsToWait": 1})

    def test_running_runs_are_kept(self) -> None:
        """A run that is still running is never removed, however old."""
        self.start("long")
        self.reactor.advance(1000)
        self.assertTrue((self.root / "long").exists())

    def test_expired_survives_restart(self) -> None:
        """After a restart, a poll for an expired run still says expired."""
        self.finish_run("old")
        self.reactor.advance(200)
        self.replace_manager(limits=Limits(retention=100))
        self.assertRaises(ExpiredRun, self.manager.status, "old")

    def test_tombstones_are_forgotten(self) -> None:
        """A tombstone is kept one more retention period, then forgotten."""
        self.finish_run("old")
        self.reactor.advance(150)
        self.assertRaises(ExpiredRun, self.manager.status, "old")
        self.reactor.advance(150)
        self.assertRaises(UnknownRun, self.manager.status, "old")

    def test_expired_only_for_its_project(self) -> None:
        """Another project hears "unknown", not "expired", about a removed run."""
        from waiter_service.auth.checker import Identity

        ann = Identity("ann", "p1", "http://a")
        self.manager.start("theirs", {"secondsToWait": 5}, None, ann)
        (self.root / "theirs" / "result").write_bytes(b"r")
        self.reactor.processes[-1].exit(0)
        self.reactor.advance(200)
        self.assertRaises(ExpiredRun, self.manager.status, "theirs", ann)
        for other in (Identity("eve", "p2", "http://a"), Identity("ann", "p1", "http://b")):
            self.assertRaises(UnknownRun, self.manager.status, "theirs", other)

    def test_durations(self) -> None:
        """Durations are seconds, or a number with s, m, h, d or w."""
        self.assertEqual(parse_duration("7d"), 7 * 86400)
        self.assertEqual(parse_duration("90"), 90)
        self.assertEqual(parse_duration("1.5h"), 5400)
        for bad in ("", "7 days", "-1d", "d"):
            self.assertRaises(ValueError, parse_duration, bad)
