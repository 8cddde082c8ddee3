"""
Tests for restart and crash recovery (fake reactor, fake process table):
a second manager on the same work folder takes over what the first left.
"""

from __future__ import annotations

import base64
import json
import signal
from typing import Any

from twisted.logger import globalLogPublisher

from waiter_service.runs.manager import COMPLETED, Limits, RunManager, UnknownRun
from waiter_service.runs.procinfo import ProcessIdentity
from waiter_service.runs.state import RunState
from waiter_service.testing import FAKE_BOOT_ID, FakeProcessReactor

from .test_manager import ManagerTestCase, page


class RecoveryTestCase(ManagerTestCase):
    def crash(self, **kwargs: Any) -> RunManager:
        """The server dies (SIGKILL) and a new one starts on the same folder."""
        for loop, _, _ in self.manager._loops:
            if loop.running:
                loop.stop()
        old = self.reactor
        self.reactor = FakeProcessReactor(first_pid=5000)
        self.reactor.alive = old.alive
        self.reactor.advance(old.seconds() + 5)
        self.manager = self.make_manager(**kwargs)
        self.manager.start_service()
        return self.manager

    def write_result(self, service_id: str, status: str = "100\n") -> None:
        (self.root / service_id / "result").write_bytes(b"Waited 60.0 of 60 seconds.\n")
        (self.root / service_id / "status").write_text(status)


class FinishedRunTests(RecoveryTestCase):
    def test_finished_runs_answer_as_before(self) -> None:
        """Completed, failed and aborted runs answer the same after a restart."""
        done = self.start("done")
        self.write_result("done")
        done.exit(0)
        failed = self.start("failed")
        failed.stderr(b"boom <b>\n")
        failed.exit(3)
        self.start("aborted")
        self.manager.abort("aborted")
        self.reactor.processes[-1].killed(signal.SIGTERM)
        before = {name: self.manager.status(name) for name in ("done", "failed", "aborted")}
        self.crash()
        after = {name: self.manager.status(name) for name in before}
        self.assertEqual(after["done"], before["done"])
        for name in ("failed", "aborted"):
            self.assertEqual(page(after[name]), page(before[name]))
        self.assertIn("exit status 3", page(after["failed"]))
        self.assertIn("boom &lt;b&gt;", page(after["failed"]))
        self.assertEqual(self.reactor.processes, [])


class AdoptionTests(RecoveryTestCase):
    def test_live_child_is_adopted(self) -> None:
        """A child still alive after a crash is adopted: progress, notify, abort."""
        process = self.start()
        pid = process.pid
        process.stdout(b"progress 30\n")
        self.reactor.advance(2)
        self.crash()
        run = self.manager.runs["run_1"]
        self.assertTrue(run.adopted)
        self.assertIn("30 %", page(self.manager.status("run_1")))
        (self.root / "run_1" / "status").write_text("55\n")
        self.reactor.advance(1)
        self.assertIn("55 %", page(self.manager.status("run_1")))
        self.assertIn("takes no messages", self.manager.notify("run_1", "finish"))
        d = self.manager.abort("run_1")
        self.assertEqual(self.groups.sent, [(pid, signal.SIGTERM)])
        self.assertNoResult(d)
        del self.reactor.alive[pid]
        self.reactor.advance(1)
        self.assertIs(self.successResultOf(d), True)
        self.assertEqual(self.saved()["state"], "aborted")
        self.assertEqual(self.reactor.processes, [])

    def test_adopted_child_completes(self) -> None:
        """An adopted child that finishes with its result is COMPLETED."""
        process = self.start()
        self.crash()
        self.write_result("run_1")
        del self.reactor.alive[process.pid]
        self.reactor.advance(1)
        answer = self.manager.status("run_1")
        self.assertEqual(answer.status, COMPLETED)
        self.assertEqual(base64.b64decode(answer.outputs[0]), b"Waited 60.0 of 60 seconds.\n")

    def test_adopted_child_dies(self) -> None:
        """An adopted child that ends without its result is failed, never COMPLETED."""
        process = self.start()
        self.crash()
        self.write_result("run_1", status="80\n")
        del self.reactor.alive[process.pid]
        self.reactor.advance(1)
        record = self.manager.runs["run_1"].record
        self.assertEqual(record.state, RunState.FAILED)
        self.assertIn("exit status is unknown", record.failure_reason)

    def test_adopted_child_ignores_term(self) -> None:
        """An adopted group that ignores TERM gets KILL after the grace period."""
        process = self.start()
        pid = process.pid
        self.crash()
        self.manager.abort("run_1")
        self.reactor.advance(10)
        self.assertEqual(self.groups.sent, [(pid, signal.SIGTERM), (pid, signal.SIGKILL)])

    def test_adopted_time_limit_counts_from_the_start(self) -> None:
        """The wall-time limit of an adopted run counts from its first start."""
        self.replace_manager(limits=Limits(max_seconds=60))
        process = self.start()
        self.reactor.advance(40)
        self.crash(limits=Limits(max_seconds=60))
        self.reactor.advance(14)
        self.assertEqual(self.groups.sent, [])
        self.reactor.advance(1)
        self.assertEqual(self.groups.sent, [(process.pid, signal.SIGTERM)])
        del self.reactor.alive[process.pid]
        self.reactor.advance(1)
        self.assertEqual(self.manager.runs["run_1"].record.failure_reason, "time limit")


class InterruptedTests(RecoveryTestCase):
    def test_gone_child_is_interrupted(self) -> None:
        """A run whose child died with the server is failed, "interrupted"."""
        process = self.start()
        del self.reactor.alive[process.pid]
        self.crash()
        record = self.manager.runs["run_1"].record
        self.assertEqual(record.state, RunState.FAILED)
        self.assertEqual(record.failure_reason, "interrupted: the service restarted")
        self.assertEqual(self.saved()["state"], "failed")
        self.assertEqual(self.reactor.processes, [])

    def test_child_that_finished_while_down(self) -> None:
        """A child that finished while the server was down is COMPLETED with its result."""
        process = self.start()
        self.write_result("run_1")
        del self.reactor.alive[process.pid]
        self.crash()
        self.assertEqual(self.manager.status("run_1").status, COMPLETED)

    def test_reused_pid_is_not_adopted(self) -> None:
        """A live process with the run's pid but another start time is not the child."""
        process = self.start()
        pid = process.pid
        self.reactor.alive[pid] = ProcessIdentity(pid, 999_999, FAKE_BOOT_ID)
        self.crash()
        self.assertEqual(self.manager.runs["run_1"].record.state, RunState.FAILED)
        self.manager.abort("run_1")
        self.assertEqual(self.groups.sent, [])

    def test_started_without_pid(self) -> None:
        """A run recorded as running but without a pid is never started twice."""
        process = self.start()
        data = json.loads((self.root / "run_1" / "run.json").read_text())
        data.update(pid=None, process=None)
        (self.root / "run_1" / "run.json").write_text(json.dumps(data))
        del self.reactor.alive[process.pid]
        self.crash()
        self.assertEqual(self.manager.runs["run_1"].record.state, RunState.FAILED)
        self.assertEqual(self.reactor.processes, [])


class QueueRecoveryTests(RecoveryTestCase):
    def test_queue_survives_restart_in_order(self) -> None:
        """Queued runs come back in their order and start as slots free."""
        self.replace_manager(limits=Limits(max_running=1))
        first = self.start("run_a")
        for name in ("run_b", "run_c", "run_d"):
            self.manager.start(name, {"secondsToWait": 5})
        self.crash(limits=Limits(max_running=1))
        self.assertTrue(self.manager.runs["run_a"].adopted)
        self.assertIn("position 2", page(self.manager.status("run_c")))
        del self.reactor.alive[first.pid]
        self.reactor.advance(1)
        self.assertEqual(self.manager.runs["run_b"].record.state, RunState.RUNNING)
        self.assertEqual(len(self.reactor.processes), 1)
        self.assertIn("position 1", page(self.manager.status("run_c")))

    def test_sequence_continues(self) -> None:
        """Runs started after a restart queue behind those from before."""
        self.replace_manager(limits=Limits(max_running=1))
        self.start("run_a")
        self.manager.start("run_b", {"secondsToWait": 5})
        self.crash(limits=Limits(max_running=1))
        self.manager.start("run_c", {"secondsToWait": 5})
        self.assertIn("position 2", page(self.manager.status("run_c")))


class CorruptRecordTests(RecoveryTestCase):
    def test_corrupt_records(self) -> None:
        """Torn, garbage, foreign or missing records are failed runs; the server starts."""
        good = self.start("good")
        self.write_result("good")
        good.exit(0)
        samples = {
            "torn": b'{"format":1,"service_id":"torn","prog',
            "garbage": b"\x00\xff\xfe not json",
            "future": json.dumps({"format": 99}).encode(),
            "wrongtype": json.dumps({"format": 1, "service_id": "wrongtype"}).encode(),
            "foreign": (self.root / "good" / "run.json").read_bytes(),
        }
        for name, content in samples.items():
            (self.root / name).mkdir()
            (self.root / name / "run.json").write_bytes(content)
        (self.root / "empty").mkdir()
        (self.root / ".not-a-run").mkdir()
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.crash()
        for name in [*samples, "empty"]:
            record = self.manager.runs[name].record
            self.assertEqual(record.state, RunState.FAILED, name)
            self.assertIn("could not be read", page(self.manager.status(name)))
        self.assertEqual(self.manager.status("good").status, COMPLETED)
        self.assertEqual((self.root / "torn" / "run.json.corrupt").read_bytes(), samples["torn"])
        logged = {e.get("service_id") for e in events if "problem" in e}
        self.assertEqual(logged, {*samples, "empty"})
        self.assertNotIn(".not-a-run", self.manager.runs)

    def test_unreadable_keeps_its_owner(self) -> None:
        """A record whose owner can still be read is failed for that owner only."""
        from waiter_service.auth.checker import Identity

        (self.root / "owned").mkdir(parents=True)
        (self.root / "owned" / "run.json").write_text(
            json.dumps({"format": 1, "owner_project": "p1", "auth_url": "http://a", "x": 1})
        )
        self.crash()
        mine = Identity("ann", "p1", "http://a")
        self.assertIn("could not be read", page(self.manager.status("owned", mine)))
        self.assertRaises(
            UnknownRun, self.manager.status, "owned", Identity("eve", "p2", "http://a")
        )

    def test_unreadable_reported_once(self) -> None:
        """A bad record is replaced by a failed one: the next start is quiet."""
        (self.root / "torn").mkdir(parents=True)
        (self.root / "torn" / "run.json").write_bytes(b"{")
        self.crash()
        self.crash()
        self.assertEqual(self.manager.runs["torn"].record.state, RunState.FAILED)
        self.assertTrue((self.root / "torn" / "run.json.corrupt").exists())


class DiskFullTests(RecoveryTestCase):
    def test_progress_on_a_full_disk(self) -> None:
        """When the disk is full, the last good record stays and polls stay right."""
        process = self.start()
        process.stdout(b"progress 10\n")
        self.reactor.advance(2)
        import waiter_service.runs.store as store_module

        real_replace = store_module.os.replace

        def full(*args: object) -> None:
            raise OSError(28, "No space left on device")

        self.patch(store_module.os, "replace", full)
        process.stdout(b"progress 60\n")
        self.reactor.advance(2)
        self.assertEqual(self.saved()["percent"], 10)
        self.assertIn("60 %", page(self.manager.status("run_1")))
        self.assertEqual(sorted(p.name for p in (self.root / "run_1").iterdir()), ["run.json"])
        self.patch(store_module.os, "replace", real_replace)
        self.reactor.advance(2)
        process.stdout(b"progress 70\n")
        self.reactor.advance(2)
        self.assertEqual(self.saved()["percent"], 70)
