"""
Real children on the real reactor: an abort reaches the whole process group,
grandchildren included, even those that ignore TERM.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from waiter_service.runs.manager import RunManager
from waiter_service.runs.program import InputField, Invocation, MissingOutput
from waiter_service.runs.progress import Progress
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
        return None

    def collect_outputs(self, folder: Path) -> dict[str, bytes]:
        raise MissingOutput("none")


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


class ProcessGroupTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.root = Path(self.mktemp()).resolve()
        self.manager = RunManager(reactor, RunStore(self.root), ShellProgram(), kill_grace=0.5)
        self.manager.start_service()
        self.addCleanup(self.manager.stop_service)

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

    @inlineCallbacks
    def test_orphaned_grandchild_keeps_run_open(self) -> Any:
        """A child that exits leaving a grandchild on its pipes ends only when both do."""
        self.manager.start("shell_1", {"script": "sleep 1 & echo $! > grandchild.pid; exit 0"})
        run = self.manager.runs["shell_1"]
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(run.record.state, RunState.RUNNING)
        yield run.when_ended()
        grandchild = int((self.root / "shell_1" / "grandchild.pid").read_text())
        self.assertTrue(process_gone(grandchild))
        self.assertEqual(run.record.state, RunState.FAILED)
