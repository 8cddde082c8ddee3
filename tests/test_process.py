"""Tests for waiter_service.runs.process: one child's pipes, end and stopping."""

from __future__ import annotations

import signal

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.runs.process import ChildProtocol
from waiter_service.testing import FakeProcess, FakeProcessReactor, SignalRecorder


class Events:
    """Records what a ChildProtocol reports."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ended: list[tuple[int | None, int | None, list[str]]] = []

    def child_line(self, line: str) -> None:
        self.lines.append(line)

    def child_ended(
        self, exit_code: int | None, exit_signal: int | None, stderr_tail: list[str]
    ) -> None:
        self.ended.append((exit_code, exit_signal, stderr_tail))


class ChildProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.events = Events()
        self.groups = SignalRecorder()
        self.protocol = ChildProtocol(
            self.events,
            self.reactor,
            signal_group=self.groups,
            grace=10,
            max_line=16,
            tail_lines=3,
        )
        self.reactor.spawnProcess(self.protocol, "prog", ["prog"])
        self.process: FakeProcess = self.reactor.processes[0]

    def test_lines_across_chunks(self) -> None:
        """Stdout arrives in arbitrary chunks; the owner gets whole lines."""
        self.process.stdout(b"progress 1")
        self.process.stdout(b"0\npro")
        self.process.stdout(b"gress 20\r\n\n")
        self.assertEqual(self.events.lines, ["progress 10", "progress 20", ""])

    def test_long_line_is_cut(self) -> None:
        """A line longer than max_line is cut, and the rest of it dropped."""
        self.process.stdout(b"x" * 40)
        self.process.stdout(b"y" * 40 + b"\nnext\n")
        self.assertEqual(self.events.lines, ["x" * 16, "next"])

    def test_invalid_utf8_is_replaced(self) -> None:
        """Bytes that are not UTF-8 do not break the line."""
        self.process.stdout(b"a\xffb\n")
        self.assertEqual(self.events.lines, ["a\ufffdb"])

    def test_last_line_without_newline(self) -> None:
        """A last line without a newline still reaches the owner at the end."""
        self.process.stdout(b"progress 99")
        self.process.exit(0)
        self.assertEqual(self.events.lines, ["progress 99"])

    def test_stderr_tail(self) -> None:
        """Only the last tail_lines lines of stderr are kept, in order."""
        self.process.stderr(b"one\ntwo\nthree\nfour\nfi")
        self.process.stderr(b"ve")
        self.process.exit(3)
        self.assertEqual(self.events.ended, [(3, None, ["three", "four", "five"])])

    def test_end_states(self) -> None:
        """A clean exit, an exit status and a signal are told apart."""
        self.process.exit(0)
        other = ChildProtocol(self.events, self.reactor, signal_group=self.groups)
        self.reactor.spawnProcess(other, "prog", ["prog"])
        self.reactor.processes[1].killed(signal.SIGSEGV)
        self.assertEqual(self.events.ended, [(0, None, []), (None, signal.SIGSEGV, [])])

    def test_terminate_escalates(self) -> None:
        """TERM goes to the group at once, KILL only when the grace is over."""
        pid = self.process.pid
        self.protocol.terminate(10)
        self.assertEqual(self.groups.sent, [(pid, signal.SIGTERM)])
        self.reactor.advance(9)
        self.assertEqual(self.groups.sent, [(pid, signal.SIGTERM)])
        self.reactor.advance(1)
        self.assertEqual(self.groups.sent, [(pid, signal.SIGTERM), (pid, signal.SIGKILL)])

    def test_end_cancels_kill(self) -> None:
        """A child that ends within the grace period is not killed later."""
        pid = self.process.pid
        self.protocol.terminate(10)
        self.reactor.advance(3)
        self.process.killed(signal.SIGTERM)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.reactor.advance(20)
        self.assertEqual(self.groups.sent, [(pid, signal.SIGTERM)])

    def test_terminate_twice(self) -> None:
        """A second terminate neither signals again nor restarts the timer."""
        self.protocol.terminate(10)
        self.reactor.advance(5)
        self.protocol.terminate(10)
        self.reactor.advance(5)
        self.assertEqual([s for _, s in self.groups.sent], [signal.SIGTERM, signal.SIGKILL])

    def test_terminate_after_end(self) -> None:
        """Terminating a child that has ended sends nothing."""
        self.process.exit(0)
        self.protocol.terminate(10)
        self.assertEqual(self.groups.sent, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_no_group_yet(self) -> None:
        """Before the child has a group of its own, the child itself is signalled."""
        self.groups.missing_groups.add(self.process.pid)
        self.protocol.terminate(10)
        self.assertEqual(self.process.signals, [signal.SIGTERM])

    def test_send_line(self) -> None:
        """A message reaches stdin as one line; none after the end."""
        self.assertTrue(self.protocol.send_line("finish"))
        self.process.exit(0)
        self.assertFalse(self.protocol.send_line("again"))
        self.assertEqual(bytes(self.process.stdin), b"finish\n")

    def test_leftovers_are_stopped(self) -> None:
        """Processes holding the pipes after the child exits get TERM, KILL, then closed pipes."""
        pgid = self.process.pid
        self.process.exit(0, pipes_open=True)
        self.reactor.advance(9)
        self.assertEqual((self.groups.sent, self.events.ended), ([], []))
        self.reactor.advance(1)
        self.assertEqual(self.groups.sent, [(pgid, signal.SIGTERM)])
        self.reactor.advance(10)
        self.assertEqual(self.groups.sent[-1], (pgid, signal.SIGKILL))
        self.assertEqual(self.events.ended, [])
        self.reactor.advance(10)
        self.assertEqual(self.events.ended, [(0, None, [])])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_leftovers_that_finish(self) -> None:
        """Helpers that close the pipes within the grace period are left alone."""
        self.process.exit(0, pipes_open=True)
        self.reactor.advance(5)
        self.process.close_pipes()
        self.assertEqual(self.events.ended, [(0, None, [])])
        self.assertEqual(self.groups.sent, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_group_signalled_after_exit(self) -> None:
        """After the child is reaped, abort still signals its group by the remembered id."""
        pgid = self.process.pid
        self.process.exit(0, pipes_open=True)
        self.protocol.terminate(10)
        self.assertEqual(self.groups.sent, [(pgid, signal.SIGTERM)])
        self.assertEqual(self.process.signals, [])

    def test_no_message_after_exit(self) -> None:
        """Once the child has exited, messages are refused even if pipes are open."""
        self.process.exit(0, pipes_open=True)
        self.assertFalse(self.protocol.send_line("finish"))
