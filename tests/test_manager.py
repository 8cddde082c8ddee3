"""Tests for waiter_service.runs.manager on a fake reactor and a fake clock."""

from __future__ import annotations

import base64
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.programs.waiter import SCRIPT, Waiter
from waiter_service.runs.manager import (
    COMPLETED,
    UNCHANGED,
    UNSET,
    Limits,
    RunManager,
    ServiceTrouble,
    StatusAnswer,
    UnknownRun,
)
from waiter_service.runs.program import InputError
from waiter_service.runs.state import RunState
from waiter_service.runs.store import RunStore
from waiter_service.testing import FakeProcess, FakeProcessReactor, SignalRecorder
from waiter_service.validation import InvalidInput

LAUNCHER = ["/usr/bin/setsid", "/usr/bin/env"]


def page(answer: StatusAnswer) -> str:
    """The HTML of a status answer."""
    return base64.b64decode(answer.status).decode("utf-8")


class ManagerTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.reactor.advance(1_000_000)
        self.root = Path(self.mktemp())
        self.store = RunStore(self.root)
        self.groups = SignalRecorder()
        self.manager = self.make_manager()
        self.manager.start_service()

    def make_manager(self, **kwargs: object) -> RunManager:
        options: dict[str, object] = {
            "kill_grace": 10.0,
            "flush_interval": 2.0,
            "launcher": LAUNCHER,
            "signal_group": self.groups,
            "child_env": {"PATH": "/usr/bin:/bin"},
            "identify": self.reactor.identify,
            "is_alive": self.reactor.is_alive,
        }
        options.update(kwargs)
        return RunManager(self.reactor, self.store, Waiter(max_seconds=600), **options)  # type: ignore[arg-type]

    def replace_manager(self, **kwargs: object) -> RunManager:
        """Stop the running manager and start one built with ``kwargs``."""
        self.successResultOf(self.manager.stop_service())
        self.manager = self.make_manager(**kwargs)
        self.manager.start_service()
        return self.manager

    def fill_disk(self) -> Callable[[], None]:
        """Every record save fails with ENOSPC, until the returned function is called."""
        real_save = self.store.save
        full = [True]

        def save(record: Any) -> None:
            if full[0]:
                raise OSError(28, "No space left on device")
            real_save(record)

        self.patch(self.store, "save", save)
        return lambda: full.__setitem__(0, False)

    def start(self, service_id: str = "run_1", seconds: int | None = 60) -> FakeProcess:
        self.manager.start(service_id, {"secondsToWait": seconds})
        return self.reactor.processes[-1]

    def saved(self, service_id: str = "run_1") -> dict[str, object]:
        return json.loads((self.root / service_id / "run.json").read_text())


class StartTests(ManagerTestCase):
    def test_start_answers_at_once(self) -> None:
        """A start answers a 0 % status page and UNSET, with the child running."""
        answer = self.manager.start("run_1", {"secondsToWait": 60})
        self.assertEqual(answer.outputs, (UNSET,))
        self.assertIn("0 %", page(answer))
        self.assertIn("Running", page(answer))
        self.assertEqual(len(self.reactor.processes), 1)

    def test_child_command(self) -> None:
        """The child runs the waiter in a session of its own, inside its folder."""
        process = self.start(seconds=7)
        folder = str(self.root.resolve() / "run_1")
        self.assertEqual(process.executable, LAUNCHER[0])
        self.assertEqual(
            process.args[:6],
            [*LAUNCHER, f"--chdir={folder}", Waiter().python, "-I", "-S"],
        )
        self.assertEqual(
            process.args[6:], [str(SCRIPT), "7", f"{folder}/status", f"{folder}/result"]
        )

    def test_child_environment_is_minimal(self) -> None:
        """Children do not inherit the server's environment (secrets included)."""
        self.patch(os, "environ", {"PATH": "/x", "API_SECRET": "s3cret", "LANG": "C.UTF-8"})
        manager = RunManager(
            self.reactor, self.store, Waiter(), launcher=LAUNCHER, signal_group=self.groups
        )
        manager.start("run_env", {"secondsToWait": 1})
        self.assertEqual(self.reactor.processes[-1].env, {"PATH": "/x", "LANG": "C.UTF-8"})

    def test_record_saved_before_answer(self) -> None:
        """The run's record, with the child's pid, is on disk when start answers."""
        process = self.start()
        saved = self.saved()
        self.assertEqual(saved["state"], "running")
        self.assertEqual(saved["pid"], process.pid)
        self.assertEqual(saved["inputs"], {"secondsToWait": 60})

    def test_default_seconds(self) -> None:
        """A missing secondsToWait means the tutorial's 300 seconds."""
        process = self.start(seconds=None)
        self.assertEqual(process.args[7], "300")

    def test_extra_parameters_kept(self) -> None:
        """Parsed extraParameters are kept in the run's record."""
        self.manager.start("run_1", {"secondsToWait": 1}, {"WFM": "http://wfm"})
        self.assertEqual(self.saved()["extra_parameters"], {"WFM": "http://wfm"})

    def test_bad_service_id_creates_nothing(self) -> None:
        """An unsafe serviceID is refused before anything is created or started."""
        for bad in ("../evil", "/tmp/x", "", None, "a" * 200):
            self.assertRaises(InvalidInput, self.manager.start, bad, {"secondsToWait": 1})
        self.assertEqual(list(self.root.iterdir()), [])
        self.assertEqual(self.reactor.processes, [])

    def test_bad_seconds_creates_nothing(self) -> None:
        """Negative or too long waits are refused before anything is created."""
        for bad in (-1, 601):
            self.assertRaises(InputError, self.manager.start, "run_1", {"secondsToWait": bad})
        self.assertEqual(list(self.root.iterdir()), [])
        self.assertEqual(self.reactor.processes, [])

    def test_second_start_is_a_status(self) -> None:
        """Starting an existing serviceID starts nothing and answers its status."""
        process = self.start()
        process.stdout(b"progress 40\n")
        answer = self.manager.start("run_1", {"secondsToWait": 5})
        self.assertEqual(len(self.reactor.processes), 1)
        self.assertIn("40 %", page(answer))

    def test_folder_left_from_before(self) -> None:
        """A serviceID whose folder exists from an earlier server is refused."""
        (self.root / "old_run").mkdir()
        self.assertRaises(InvalidInput, self.manager.start, "old_run", {"secondsToWait": 1})
        self.assertEqual(self.reactor.processes, [])

    def test_spawn_failure(self) -> None:
        """A child that cannot be started gives a failed run, never a crash."""
        self.reactor.spawn_error = OSError(2, "No such file")
        answer = self.manager.start("run_1", {"secondsToWait": 1})
        self.assertIn("could not be started", page(answer))
        self.assertEqual(self.saved()["state"], "failed")

    def test_disk_failure_at_start(self) -> None:
        """When the record cannot be written, start faults and leaves nothing."""
        self.fill_disk()
        error = self.assertRaises(ServiceTrouble, self.manager.start, "run_1", {"secondsToWait": 1})
        self.assertNotIn("space", str(error))
        self.assertFalse((self.root / "run_1").exists())
        # The child, started before its first record, was stopped at once.
        (process,) = self.reactor.processes
        self.assertEqual(self.groups.sent, [(process.pid, signal.SIGTERM)])
        self.reactor.advance(0)
        self.assertEqual(self.groups.sent[-1], (process.pid, signal.SIGKILL))
        process.killed(signal.SIGKILL)
        self.assertNotIn("run_1", self.manager.runs)
        self.assertEqual(self.manager.active, {})
        timers = [c for c in self.reactor.getDelayedCalls() if "LoopingCall" not in repr(c)]
        self.assertEqual(timers, [])

    def test_retry_after_disk_failure(self) -> None:
        """A retried start is not disturbed by the end of the first attempt's child."""
        free_disk = self.fill_disk()
        self.assertRaises(ServiceTrouble, self.manager.start, "run_1", {"secondsToWait": 9})
        free_disk()
        self.manager.start("run_1", {"secondsToWait": 9})
        first, second = self.reactor.processes
        first.killed(signal.SIGKILL)
        self.assertIn("run_1", self.manager.active)
        self.assertEqual(self.saved()["state"], "running")
        self.assertEqual(self.saved()["pid"], second.pid)

    def test_disk_failure_when_queued(self) -> None:
        """A start that must queue, on a full disk, faults before anything is started."""
        self.replace_manager(limits=Limits(max_running=1))
        self.start("run_a")
        self.fill_disk()
        self.assertRaises(ServiceTrouble, self.manager.start, "run_b", {"secondsToWait": 1})
        self.assertFalse((self.root / "run_b").exists())
        self.assertEqual(len(self.reactor.processes), 1)


class StatusTests(ManagerTestCase):
    def test_unknown(self) -> None:
        """A poll for a serviceID that was never started is UnknownRun."""
        self.assertRaises(UnknownRun, self.manager.status, "nobody")

    def test_unsafe_id_on_status(self) -> None:
        """An unsafe serviceID on a poll is refused as bad input."""
        self.assertRaises(InvalidInput, self.manager.status, "../run_1")

    def test_unchanged(self) -> None:
        """A poll answers UNCHANGED until the state or the progress changes."""
        process = self.start()
        first = self.manager.status("run_1")
        self.assertIn("0 %", page(first))
        self.assertEqual(self.manager.status("run_1"), StatusAnswer(UNCHANGED, (UNSET,)))
        process.stdout(b"progress 42.7 halfway there\n")
        changed = self.manager.status("run_1")
        self.assertIn("42 %", page(changed))
        self.assertIn("halfway there", page(changed))
        process.stdout(b"progress 42.9\nnot a progress line\n")
        self.assertEqual(self.manager.status("run_1").status, UNCHANGED)

    def test_completed(self) -> None:
        """Exit 0 with a result file answers COMPLETED and the base64 result."""
        process = self.start()
        (self.root / "run_1" / "result").write_bytes(b"waited\n")
        process.exit(0)
        answer = self.manager.status("run_1")
        self.assertEqual(answer, StatusAnswer(COMPLETED, (base64.b64encode(b"waited\n").decode(),)))
        self.assertEqual(self.saved()["state"], "completed")

    def test_completed_raw(self) -> None:
        """With the raw encoding the result is sent as text, made XML-safe."""
        self.replace_manager(result_encoding="raw")
        process = self.start()
        (self.root / "run_1" / "result").write_bytes("done é\x01\n".encode())
        process.exit(0)
        self.assertEqual(self.manager.status("run_1"), StatusAnswer(COMPLETED, ("done é\ufffd\n",)))

    def test_exit_zero_without_result(self) -> None:
        """A child that exits 0 but wrote no result is failed, never COMPLETED."""
        process = self.start()
        process.exit(0)
        answer = self.manager.status("run_1")
        self.assertNotEqual(answer.status, COMPLETED)
        self.assertIn("without writing its result", page(answer))
        self.assertEqual(self.manager.runs["run_1"].record.state, RunState.FAILED)

    def test_result_too_large(self) -> None:
        """A result over the program's limit fails the run, with a reason that says so."""
        process = self.start()
        (self.root / "run_1" / "result").write_bytes(b"x" * (1024 * 1024 + 1))
        process.exit(0)
        html = page(self.manager.status("run_1"))
        self.assertIn("result is too large", html)
        self.assertEqual(self.manager.runs["run_1"].record.state, RunState.FAILED)

    def test_failed_child(self) -> None:
        """A non-zero exit shows the status and the escaped end of stderr."""
        process = self.start()
        (self.root / "run_1" / "result").write_bytes(b"stale")
        process.stderr(b"Traceback\n<script>alert(1)</script>\n")
        process.exit(2)
        html = page(self.manager.status("run_1"))
        self.assertIn("Failed", html)
        self.assertIn("exit status 2", html)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", html)
        self.assertNotIn("<script>", html)
        self.assertEqual(self.manager.status("run_1").status, UNCHANGED)

    def test_killed_child(self) -> None:
        """A child killed by a signal is a failed run that says so."""
        process = self.start()
        process.killed(signal.SIGKILL)
        html = page(self.manager.status("run_1"))
        self.assertIn("killed by signal 9", html)

    def test_runs_are_isolated(self) -> None:
        """Progress and the end of one run do not touch another."""
        first = self.start("run_a")
        self.start("run_b")
        first.stdout(b"progress 70\n")
        (self.root / "run_a" / "result").write_bytes(b"a")
        first.exit(0)
        self.assertEqual(self.manager.status("run_a").status, COMPLETED)
        self.assertIn("0 %", page(self.manager.status("run_b")))

    def test_flush_in_batches(self) -> None:
        """A flush saves a batch of records per reactor turn, then the rest."""
        processes = [self.start(f"run_{i:02}") for i in range(30)]
        for process in processes:
            process.stdout(b"progress 50\n")
        saved = []
        real_save = self.store.save
        self.patch(self.store, "save", lambda record: saved.append(record) or real_save(record))
        self.manager.flush()
        self.assertEqual(len(saved), 20)
        self.reactor.advance(0)
        self.assertEqual(len(saved), 30)
        self.assertEqual(self.saved("run_29")["percent"], 50)

    def test_progress_flushed_periodically(self) -> None:
        """Progress reaches the disk at the next flush, not on every line."""
        process = self.start()
        process.stdout(b"progress 30\n")
        self.assertEqual(self.saved()["percent"], 0)
        self.reactor.advance(2)
        self.assertEqual(self.saved()["percent"], 30)


class AbortTests(ManagerTestCase):
    def test_abort_running(self) -> None:
        """Abort signals the group and answers True once the child has ended."""
        process = self.start()
        pid = process.pid
        d = self.manager.abort("run_1")
        self.assertNoResult(d)
        self.assertEqual(self.groups.sent, [(pid, signal.SIGTERM)])
        self.assertIn("Stopping", page(self.manager.status("run_1")))
        process.killed(signal.SIGTERM)
        self.assertIs(self.successResultOf(d), True)
        html = page(self.manager.status("run_1"))
        self.assertIn("Aborted", html)
        self.assertEqual(self.saved()["state"], "aborted")

    def test_abort_escalates_to_kill(self) -> None:
        """A child that ignores TERM is killed when the grace period is over."""
        process = self.start()
        pid = process.pid
        d = self.manager.abort("run_1")
        self.reactor.advance(9.9)
        self.assertEqual(self.groups.sent, [(pid, signal.SIGTERM)])
        self.reactor.advance(0.1)
        self.assertEqual(self.groups.sent[-1], (pid, signal.SIGKILL))
        process.killed(signal.SIGKILL)
        self.assertIs(self.successResultOf(d), True)

    def test_abort_ended(self) -> None:
        """Aborting a run that has ended answers False and changes nothing."""
        process = self.start()
        (self.root / "run_1" / "result").write_bytes(b"r")
        process.exit(0)
        self.assertIs(self.successResultOf(self.manager.abort("run_1")), False)
        self.assertEqual(self.manager.status("run_1").status, COMPLETED)
        self.assertEqual(self.groups.sent, [])

    def test_abort_while_finishing(self) -> None:
        """A child that exits 0 after the abort was asked for is aborted, not completed."""
        process = self.start()
        d = self.manager.abort("run_1")
        (self.root / "run_1" / "result").write_bytes(b"r")
        process.exit(0)
        self.assertIs(self.successResultOf(d), True)
        self.assertEqual(self.manager.runs["run_1"].record.state, RunState.ABORTED)

    def test_abort_twice(self) -> None:
        """Two aborts send one TERM and both answer True at the end."""
        process = self.start()
        first = self.manager.abort("run_1")
        second = self.manager.abort("run_1")
        process.killed(signal.SIGTERM)
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)), (True, True))
        self.assertEqual(len(self.groups.sent), 1)

    def test_abort_unknown(self) -> None:
        """Aborting an unknown serviceID is UnknownRun."""
        self.assertRaises(UnknownRun, self.manager.abort, "nobody")


class NotifyTests(ManagerTestCase):
    def test_notify_running(self) -> None:
        """A message reaches the running program's stdin as one line."""
        process = self.start()
        self.assertEqual(self.manager.notify("run_1", "finish"), "delivered to the running program")
        self.assertEqual(bytes(process.stdin), b"finish\n")

    def test_notify_refuses_bad_messages(self) -> None:
        """Messages with line breaks or control characters never reach stdin."""
        process = self.start()
        for bad in ("two\nlines", "nul\x00", "", "x" * 5000, None):
            self.assertRaises(InvalidInput, self.manager.notify, "run_1", bad)
        self.assertEqual(bytes(process.stdin), b"")

    def test_notify_ended(self) -> None:
        """A message for an ended run is not delivered, and the answer says so."""
        process = self.start()
        process.exit(1)
        self.assertEqual(
            self.manager.notify("run_1", "finish"), "not delivered: the run has already failed"
        )

    def test_notify_unknown(self) -> None:
        """Notifying an unknown serviceID is UnknownRun."""
        self.assertRaises(UnknownRun, self.manager.notify, "nobody", "hi")


class StopTests(ManagerTestCase):
    def test_stop_policy_stop(self) -> None:
        """With on_stop=stop, stopping the server stops children and records why."""
        self.replace_manager(on_stop="stop")
        running = self.start("run_a")
        done = self.start("run_b")
        (self.root / "run_b" / "result").write_bytes(b"r")
        done.exit(0)
        d = self.manager.stop_service()
        self.assertNoResult(d)
        self.assertEqual(self.groups.sent, [(running.pid, signal.SIGTERM)])
        running.killed(signal.SIGTERM)
        self.successResultOf(d)
        record = self.manager.runs["run_a"].record
        self.assertEqual(record.state, RunState.FAILED)
        self.assertEqual(record.failure_reason, "interrupted: the service stopped")
        self.assertEqual(self.saved("run_b")["state"], "completed")
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_policy_keep(self) -> None:
        """With on_stop=keep (the default), children are left running for the next start."""
        running = self.start("run_a")
        running.stdout(b"progress 25\n")
        self.successResultOf(self.manager.stop_service())
        self.assertEqual(self.groups.sent, [])
        self.assertEqual(self.saved("run_a")["state"], "running")
        self.assertEqual(self.saved("run_a")["percent"], 25)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_no_start_while_stopping(self) -> None:
        """A start that arrives while the server stops is refused, nothing created."""
        self.manager.stop_service()
        self.assertRaises(ServiceTrouble, self.manager.start, "late", {"secondsToWait": 1})
        self.assertFalse((self.root / "late").exists())


class RaceTests(ManagerTestCase):
    def test_poll_between_exit_and_end(self) -> None:
        """Between the child's exit and its end (pipes still open) a poll says running."""
        process = self.start()
        (self.root / "run_1" / "result").write_bytes(b"r")
        from twisted.internet.error import ProcessDone
        from twisted.python.failure import Failure

        process.proto.processExited(Failure(ProcessDone(0)))
        self.assertIn("Running", page(self.manager.status("run_1")))
        process.exit(0)
        self.assertEqual(self.manager.status("run_1").status, COMPLETED)

    def test_abort_between_exit_and_end(self) -> None:
        """An abort after the exit but before the end gives one final state: aborted."""
        process = self.start()
        from twisted.internet.error import ProcessDone
        from twisted.python.failure import Failure

        process.proto.processExited(Failure(ProcessDone(0)))
        self.groups.missing_groups.add(process.pid)
        d = self.manager.abort("run_1")
        process.exit(0)
        self.assertIs(self.successResultOf(d), True)
        self.assertEqual(self.manager.runs["run_1"].record.state, RunState.ABORTED)
        self.assertEqual(len(self.reactor.processes), 1)

    def test_abort_after_end(self) -> None:
        """An abort that arrives just after the end answers False; the state stays."""
        process = self.start()
        process.exit(2)
        self.assertIs(self.successResultOf(self.manager.abort("run_1")), False)
        self.assertEqual(self.manager.runs["run_1"].record.state, RunState.FAILED)


class BrokenProgramTests(ManagerTestCase):
    def test_output_reader_raises(self) -> None:
        """A program whose output reader has a bug gives a failed run, never a stuck one."""

        class BrokenWaiter(Waiter):
            def collect_outputs(self, folder: object) -> dict[str, bytes]:
                raise KeyError("bug")

        self.successResultOf(self.manager.stop_service())
        self.manager = RunManager(
            self.reactor,
            self.store,
            BrokenWaiter(),
            launcher=LAUNCHER,
            signal_group=self.groups,
            identify=self.reactor.identify,
            is_alive=self.reactor.is_alive,
        )
        self.manager.start_service()
        process = self.start()
        d = self.manager.runs["run_1"].when_ended()
        process.exit(0)
        self.successResultOf(d)
        self.assertIn("could not be read", page(self.manager.status("run_1")))
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)


class QuickChildTests(ManagerTestCase):
    def test_child_reaped_before_spawn_returns(self) -> None:
        """A child reaped before spawnProcess returns still gets its pid recorded and ends."""
        real_spawn = self.reactor.spawnProcess

        def spawn_and_reap(*args: Any, **kwargs: Any) -> Any:
            process = real_spawn(*args, **kwargs)
            (self.root / "run_1" / "result").write_bytes(b"r")
            process.exit(0, pipes_open=True)  # reaped at once; pipes close later
            return process

        self.patch(self.reactor, "spawnProcess", spawn_and_reap)
        self.manager.start("run_1", {"secondsToWait": 0})
        self.assertEqual(self.saved()["pid"], 1000)
        self.reactor.processes[0].close_pipes()
        self.assertEqual(self.manager.status("run_1").status, COMPLETED)
        self.manager.start("run_2", {"secondsToWait": 0})
        self.assertEqual(len(self.reactor.processes), 2)


class OwnershipTests(ManagerTestCase):
    def test_other_projects_see_nothing(self) -> None:
        """A run is seen by its own project, as known to its own authentication manager."""
        from waiter_service.auth.checker import Identity

        ann = Identity("ann", "p1", "http://a")
        self.manager.start("run_1", {"secondsToWait": 5}, None, ann)
        self.assertEqual(self.saved()["owner_user"], "ann")
        self.manager.status("run_1", Identity("bob", "p1", "http://a"))
        for stranger in (Identity("eve", "p2", "http://a"), Identity("ann", "p1", "http://b")):
            self.assertRaises(UnknownRun, self.manager.status, "run_1", stranger)
            self.assertRaises(UnknownRun, self.manager.abort, "run_1", stranger)
            self.assertRaises(UnknownRun, self.manager.notify, "run_1", "x", stranger)
            self.assertRaises(
                InvalidInput, self.manager.start, "run_1", {"secondsToWait": 1}, None, stranger
            )
        self.assertEqual(len(self.reactor.processes), 1)
