"""
How ``run`` shows a run while it goes on: a live bar rewritten in place on a
terminal, plain lines when stdout is a file or a pipe, JSON lines for
scripts.  The clock, the sleep and the terminal width are given, so tests
need neither a terminal nor time to pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from .bar import describe, format_elapsed, progress_line
from .report import json_line, snapshot_json
from .status import Snapshot

#: Carriage return, and "erase to the end of the line".
_REWRITE, _ERASE = "\r", "\x1b[K"


class _Timed:
    def __init__(self, out: TextIO, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.out = out
        self.clock = clock
        self.sleep = sleep
        self.started = clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def wait(self, seconds: float) -> None:
        self.sleep(seconds)

    def close(self) -> None:
        """Leave the terminal ready for the final report."""


class LiveBar(_Timed):
    """One line, redrawn with a carriage return, several times a second."""

    def __init__(
        self,
        out: TextIO,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        columns: Callable[[], int],
        unicode: bool,
        tick: float = 0.25,
    ) -> None:
        super().__init__(out, clock, sleep)
        self.columns = columns
        self.unicode = unicode
        self.tick = tick
        self.snapshot: Snapshot | None = None
        self.drawn = False

    def changed(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.draw()

    def wait(self, seconds: float) -> None:
        """Sleep in ticks, redrawing so that the elapsed time moves."""
        deadline = self.clock() + seconds
        while (left := deadline - self.clock()) > 0:
            self.sleep(min(self.tick, left))
            self.draw()

    def draw(self) -> None:
        if self.snapshot is None:
            return
        line = progress_line(self.snapshot, self.elapsed(), self.columns(), self.unicode)
        self.out.write(_REWRITE + line + _ERASE)
        self.out.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.out.write(_REWRITE + _ERASE)
            self.out.flush()
            self.drawn = False


class PlainLines(_Timed):
    """A line for each change, nothing rewritten: for files, pipes and logs."""

    def changed(self, snapshot: Snapshot) -> None:
        self.out.write(f"{describe(snapshot)}  {format_elapsed(self.elapsed())}\n")
        self.out.flush()


class JsonLines(_Timed):
    """
    A JSON object for each change while the run is queued or running
    (``"event": "change"``); its end is the caller's final object.
    """

    def __init__(
        self,
        out: TextIO,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        service_id: str,
    ) -> None:
        super().__init__(out, clock, sleep)
        self.service_id = service_id

    def changed(self, snapshot: Snapshot) -> None:
        if snapshot.finished:
            return
        self.out.write(
            json_line(
                command="run",
                event="change",
                serviceID=self.service_id,
                elapsed=round(self.elapsed(), 1),
                **snapshot_json(snapshot),
            )
            + "\n"
        )
        self.out.flush()
