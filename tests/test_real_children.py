"""
Real children on the real reactor: an abort reaches the whole process group,
grandchildren included, even those that ignore TERM; children that crash,
flood their output or print garbage get a truthful, bounded record.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from waiter_service.runs.manager import RunManager
from waiter_service.runs.program import InputField, Invocation, MissingOutput
from waiter_service.runs.progress import Progress, parse_progress_line
from waiter_service.runs.state import RunState
from waiter_service.runs.store import RunStore

from .e2e_server import group_members, process_gone


class ShellProgram:
    """Runs a shell script; a stand-in for a real program with helpers of its own."""

    name = "Shell"
    start_operation = "startShell"
    input_fields = (InputField("script", str),)
    output_names = ("result",)

    def check_inputs(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        return dict(raw)

    def invocation(self, inputs: Mapping[str, Any], folder: Path) -> Invocation:
        return Invocation(["/bin/sh", "-c", inputs["script"]])

    def parse_line(self, line: str) -> Progress | None:
        return parse_progress_line(line)

    def collect_outputs(self, folder: Path) -> dict[str, bytes]:
        try:
            return {"result": (folder / "result").read_bytes()}
        except FileNotFoundError:
            raise MissingOutput("none") from None

    def read_progress(self, folder: Path) -> Progress | None:
        return None

    def finished_outputs(self, folder: Path) -> dict[str, bytes] | None:
        return None


def until(predicate: Any, timeout: float = 10.0) -> Deferred[None]:
    """Fires once ``predicate()`` is true; fails after ``timeout`` seconds."""
    deadline = reactor.seconds() + timeout

    @inlineCallbacks
    def poll() -> Any:
        while not predicate():
            if reactor.seconds() > deadline:
                raise AssertionError(f"timed out waiting for {predicate}")
            yield task.deferLater(reactor, 0.05, lambda: None)

    return poll()


class ShellTestCase(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).resolve()
        self.manager = RunManager(reactor, RunStore(self.root), ShellProgram(), kill_grace=0.5)
        self.manager.start_service()
        self.addCleanup(self.manager.stop_service)

    @inlineCallbacks
    def run_script(self, script: str) -> Any:
        """Run ``script`` to its end; the run's final record."""
        self.manager.start("shell_1", {"script": script})
        run = self.manager.runs["shell_1"]
        yield run.when_ended()
        return run.record


class ProcessGroupTests(ShellTestCase):
    @inlineCallbacks
    def abort_with_grandchild(self, script: str) -> Any:
        self.manager.start("shell_1", {"script": script})
        pid_file = self.root / "shell_1" / "grandchild.pid"
        yield until(lambda: pid_file.exists() and pid_file.read_text().strip())
        child = self.manager.runs["shell_1"].record.pid
        grandchild = int(pid_file.read_text())
        self.assertEqual(set(group_members(child)), {child, grandchild})
        stopped = yield self.manager.abort("shell_1")
        self.assertIs(stopped, True)
        yield until(lambda: process_gone(grandchild))
        self.assertTrue(process_gone(child))
        self.assertEqual(group_members(child), [])
        return self.manager.runs["shell_1"].record

    @inlineCallbacks
    def test_grandchild_gets_term(self) -> Any:
        """TERM reaches a grandchild through the child's process group."""
        record = yield self.abort_with_grandchild("sleep 300 & echo $! > grandchild.pid; wait")
        self.assertEqual(record.state, RunState.ABORTED)
        self.assertEqual(record.exit_signal, signal.SIGTERM)

    @inlineCallbacks
    def test_stubborn_group_is_killed(self) -> Any:
        """A group that ignores TERM is killed when the grace period is over."""
        started = reactor.seconds()
        record = yield self.abort_with_grandchild(
            "trap '' TERM; sleep 300 & echo $! > grandchild.pid; wait"
        )
        self.assertGreaterEqual(reactor.seconds() - started, 0.5)
        self.assertEqual(record.state, RunState.ABORTED)
        self.assertEqual(record.exit_signal, signal.SIGKILL)


class MisbehavingChildTests(ShellTestCase):
    @inlineCallbacks
    def test_crash(self) -> Any:
        """A child that crashes is a failed run that names the signal."""
        record = yield self.run_script("echo about to crash >&2; kill -SEGV $$")
        self.assertEqual(record.state, RunState.FAILED)
        self.assertEqual(record.exit_signal, signal.SIGSEGV)
        self.assertEqual(record.output_tail, ["about to crash"])

    @inlineCallbacks
    def test_flood(self) -> Any:
        """A child flooding stdout and stderr leaves a bounded record, all read."""
        record = yield self.run_script(
            "head -c 20000000 /dev/zero | tr '\\0' x; echo; "
            "head -c 20000000 /dev/zero | tr '\\0' '\\n' >&2; "
            "seq 1 100000 >&2; echo progress 77; exit 4"
        )
        self.assertEqual(record.exit_code, 4)
        self.assertEqual(record.percent, 77)
        self.assertEqual(len(record.output_tail), 20)
        self.assertEqual(record.output_tail[-1], "100000")
        self.assertLess(sum(len(line) for line in record.output_tail), 20 * 4096)

    @inlineCallbacks
    def test_garbage_progress(self) -> Any:
        """Garbage on stdout is ignored; only well-formed progress counts."""
        record = yield self.run_script(
            "echo progress 20; echo progress banana; echo progress 1e999; "
            "printf 'progress \\377\\376\\n'; echo 'progress -5'; echo progress 40; "
            "echo done > result"
        )
        self.assertEqual(record.state, RunState.COMPLETED)
        self.assertEqual(record.percent, 100)
        # Visible changes: launch, 20, -5 (shown as 0), 40, completed.
        self.assertEqual(record.version, 5)

    @inlineCallbacks
    def test_grandchild_finishing_the_work(self) -> Any:
        """Output written by a grandchild within the grace period still counts."""
        record = yield self.run_script("(sleep 0.2; echo late > result) & exit 0")
        self.assertEqual(record.state, RunState.COMPLETED)
        self.assertEqual(record.outputs, {"result": "bGF0ZQo="})

    @inlineCallbacks
    def test_grandchild_left_behind(self) -> Any:
        """Processes a child leaves running are stopped after the grace period."""
        started = reactor.seconds()
        record = yield self.run_script("sleep 300 & echo $! > grandchild.pid; exit 0")
        self.assertLess(reactor.seconds() - started, 5)
        grandchild = int((self.root / "shell_1" / "grandchild.pid").read_text())
        yield until(lambda: process_gone(grandchild))
        self.assertEqual(record.state, RunState.FAILED)
        self.assertEqual(record.exit_code, 0)

    @inlineCallbacks
    def test_escaped_helper_cannot_hold_the_run(self) -> Any:
        """A helper that left the group cannot keep a run open: its pipes are closed."""
        started = reactor.seconds()
        record = yield self.run_script("setsid sleep 30 & echo $! > helper.pid; sleep 0.1; exit 3")
        helper = int((self.root / "shell_1" / "helper.pid").read_text())
        self.addCleanup(lambda: process_gone(helper) or os.kill(helper, signal.SIGKILL))
        self.assertLess(reactor.seconds() - started, 5)
        self.assertEqual((record.state, record.exit_code), (RunState.FAILED, 3))

    @inlineCallbacks
    def test_abort_after_the_child_exited(self) -> Any:
        """An abort reaches the group even after the child itself has exited."""
        self.manager.start("shell_1", {"script": "sleep 300 & echo $! > gc.pid; exit 0"})
        pid_file = self.root / "shell_1" / "gc.pid"
        yield until(lambda: pid_file.exists() and pid_file.read_text().strip())
        run = self.manager.runs["shell_1"]
        yield until(lambda: run.child is not None and run.child.exited)
        stopped = yield self.manager.abort("shell_1")
        self.assertIs(stopped, True)
        self.assertTrue(process_gone(int(pid_file.read_text())))
