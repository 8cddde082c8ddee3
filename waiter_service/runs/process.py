"""
The ``ProcessProtocol`` that watches one child, and stops it on request.

It turns the child's pipes into events for its owner (a run): the process
id once started, each line of stdout, and the end with the exit status and
the last lines of stderr.  Memory stays bounded whatever the child prints:
lines are cut at ``max_line`` bytes and only the last ``tail_lines`` lines
of stderr are kept.

Stopping follows Twisted's procmon: TERM to the child's whole process group
(the child runs in a session of its own, see :mod:`.manager`), then KILL
after a grace period, on timers that are always cancelled when the child
ends.  The group is remembered from the start, so it can still be signalled
after the child itself has exited and been reaped.

A child "ends" (``processEnded``) once it is reaped *and* its pipes are
closed.  Processes it leaves behind keep the pipes open: when the child has
exited and they are still there after the grace period, they are stopped
the same way, and a grace period after the KILL the pipes are closed on the
server's side, so that a run always ends.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Callable
from typing import Protocol

from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

#: Longest line kept from a child, in bytes; the rest of the line is dropped.
MAX_LINE = 4096
#: How many of the last stderr lines are kept for the failure page.
TAIL_LINES = 20


class ChildEvents(Protocol):
    """What a :class:`ChildProtocol` tells the run that owns it."""

    def child_line(self, line: str) -> None:
        """One line of the child's stdout, without its end of line."""

    def child_ended(
        self, exit_code: int | None, exit_signal: int | None, stderr_tail: list[str]
    ) -> None:
        """The child was reaped and all its output has arrived."""


SignalGroup = Callable[[int, int], None]


class _LineSplitter:
    """Bytes in, whole lines out; a line longer than ``limit`` is cut."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._dropping = False

    def feed(self, data: bytes) -> list[str]:
        lines: list[str] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            piece = data[start:] if end < 0 else data[start:end]
            if not self._dropping:
                room = self.limit - len(self._buffer)
                self._buffer += piece[:room]
                if len(piece) > room:
                    lines.append(self._take())
                    self._dropping = True
            if end < 0:
                return lines
            if self._dropping:
                self._dropping = False
            else:
                lines.append(self._take())
            start = end + 1

    def flush(self) -> list[str]:
        """The last line, if the child ended without a newline."""
        if self._buffer:
            return [self._take()]
        return []

    def _take(self) -> str:
        line = self._buffer.decode("utf-8", "replace").rstrip("\r")
        self._buffer = bytearray()
        return line


class ChildProtocol(ProcessProtocol):
    """Watches one child process for one run."""

    log = Logger()

    def __init__(
        self,
        events: ChildEvents,
        clock: IReactorTime,
        signal_group: SignalGroup = os.killpg,
        grace: float = 10.0,
        max_line: int = MAX_LINE,
        tail_lines: int = TAIL_LINES,
    ) -> None:
        self.events = events
        self.clock = clock
        self.signal_group = signal_group
        self.grace = grace
        self.pgid: int | None = None
        self.exited = False
        self.ended = False
        self._stdout = _LineSplitter(max_line)
        self._stderr = _LineSplitter(max_line)
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._timers: dict[str, IDelayedCall] = {}

    def connectionMade(self) -> None:
        # The child runs through setsid: its pid is its process group's id.
        self.pgid = getattr(self.transport, "pid", None)

    def outReceived(self, data: bytes) -> None:
        for line in self._stdout.feed(data):
            self.events.child_line(line)

    def errReceived(self, data: bytes) -> None:
        self._tail.extend(self._stderr.feed(data))

    def send_line(self, text: str) -> bool:
        """Write one line to the child's stdin; False once it has exited."""
        if self.exited or self.ended or self.transport is None:
            return False
        self.transport.write(text.encode("utf-8") + b"\n")
        return True

    def terminate(self, grace: float | None = None) -> None:
        """TERM to the process group now, KILL after ``grace`` seconds."""
        if self.ended or "kill" in self._timers or "abandon" in self._timers:
            return
        grace = self.grace if grace is None else grace
        self._signal(signal.SIGTERM)
        self._later("kill", grace, self._kill, grace)

    def processExited(self, reason: Failure) -> None:
        self.exited = True
        if not self.ended and "kill" not in self._timers:
            self._later("linger", self.grace, self._leftovers)

    def _leftovers(self) -> None:
        self.log.warn(
            "child {pgid} exited, but processes it left still hold its output: stopping them",
            pgid=self.pgid,
        )
        self.terminate()

    def _kill(self, grace: float) -> None:
        self.log.warn("group {pgid} ignored TERM: sending KILL", pgid=self.pgid)
        self._signal(signal.SIGKILL)
        self._later("abandon", grace, self._abandon)

    def _abandon(self) -> None:
        self.log.error(
            "group {pgid} still holds the child's output after KILL: closing it", pgid=self.pgid
        )
        if self.transport is not None:
            self.transport.loseConnection()

    def _later(self, name: str, delay: float, f: Callable[..., None], *args: object) -> None:
        def fire() -> None:
            del self._timers[name]
            if not self.ended:
                f(*args)

        self._timers[name] = self.clock.callLater(delay, fire)

    def _signal(self, signum: int) -> None:
        if self.pgid is None or self.transport is None:
            return
        try:
            self.signal_group(self.pgid, signum)
            return
        except ProcessLookupError:
            # No such group: between spawn and setsid() (then the child
            # itself is signalled), or the whole group is gone.
            pass
        except PermissionError:
            self.log.error("not allowed to signal group {pgid}", pgid=self.pgid)
        if not self.exited:
            try:
                self.transport.signalProcess(signum)
            except (ProcessExitedAlready, OSError):
                pass

    def processEnded(self, reason: Failure) -> None:
        self.ended = True
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        for line in self._stdout.flush():
            self.events.child_line(line)
        self._tail.extend(self._stderr.flush())
        exit_code, exit_signal = exit_status(reason)
        self.events.child_ended(exit_code, exit_signal, list(self._tail))


def exit_status(reason: Failure) -> tuple[int | None, int | None]:
    """``(exit code, signal)`` from the reason ``processEnded`` was given."""
    value = reason.value
    if isinstance(value, ProcessDone):
        return 0, None
    if isinstance(value, ProcessTerminated):
        return value.exitCode, value.signal
    return None, None
