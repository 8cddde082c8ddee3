"""One run while the server holds it: its record, its child, its waiters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall

from .record import RunRecord

if TYPE_CHECKING:
    from .manager import RunManager


class ChildHandle(Protocol):
    """What the manager does with a run's process, started or adopted."""

    ended: bool

    def terminate(self, grace: float) -> None:
        """TERM to the process group now, KILL after ``grace`` seconds."""

    def send_line(self, text: str) -> bool:
        """One line to the program's stdin; False if that is not possible."""


class Run:
    """A run and the live objects around its record."""

    def __init__(self, manager: RunManager, record: RunRecord, folder: Path) -> None:
        self.manager = manager
        self.record = record
        self.folder = folder
        self.child: ChildHandle | None = None
        self.adopted = False
        #: What the last page sent showed: (record version, queue position,
        #: cluster queue state); a poll answers UNCHANGED while it is the same.
        self.delivered: tuple[object, ...] | None = None
        self.stopped_by: str | None = None
        #: A start that failed after its child was spawned: the run was
        #: given up (folder removed); its child's end must touch nothing.
        self.abandoned = False
        self.deadline: IDelayedCall | None = None
        self._end_waiters: list[Deferred[None]] = []

    def when_ended(self) -> Deferred[None]:
        """A Deferred that fires when the run reaches a final state."""
        if self.record.state.is_terminal:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._end_waiters.append(d)
        return d

    def ended(self) -> None:
        """Fire every ``when_ended`` Deferred (the record is final now)."""
        waiters, self._end_waiters = self._end_waiters, []
        for d in waiters:
            d.callback(None)

    # ChildEvents, from the ChildProtocol of a child this server started.

    def child_line(self, line: str) -> None:
        progress = self.manager.program.parse_line(line)
        if progress is not None and self.record.record_progress(progress.percent, progress.message):
            self.manager.mark_dirty(self)

    def child_ended(
        self, exit_code: int | None, exit_signal: int | None, stderr_tail: list[str]
    ) -> None:
        self.manager.finish(self, exit_code, exit_signal, stderr_tail)
