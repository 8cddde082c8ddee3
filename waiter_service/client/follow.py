"""
Following a run to its end, as ``run`` does: poll every ``interval``
seconds, show each change, stop at completed, failed or aborted.

No I/O of its own: the poll and the display are given, so a test drives it
with a list of answers and a display that records what it was shown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .status import Snapshot


class Display(Protocol):
    """Where a followed run is shown (a live bar, plain lines, JSON lines)."""

    def changed(self, snapshot: Snapshot) -> None:
        """The run looks different from the last time."""

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass before the next poll (a bar may redraw meanwhile)."""


class Follower:
    """
    Polls a run and shows its changes; ``last`` is what was seen last, for
    whoever must carry on after an interruption (Ctrl-C aborts the run).
    """

    def __init__(self, poll: Callable[[Snapshot], Snapshot], display: Display) -> None:
        self._poll = poll
        self._display = display
        self.last: Snapshot | None = None

    def see(self, snapshot: Snapshot) -> None:
        """Take in one snapshot; show it if anything changed."""
        if self.last is None or not snapshot.same_as(self.last):
            self._display.changed(snapshot)
        self.last = snapshot

    def follow(self, first: Snapshot, interval: float) -> Snapshot:
        """Poll from ``first`` until the run is over; its final snapshot."""
        self.see(first)
        current = first
        while not current.finished:
            self._display.wait(interval)
            current = self._poll(current)
            self.see(current)
        return current
