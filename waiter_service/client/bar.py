"""
The live progress line of ``run`` on a terminal: a pure function of what is
known and how wide the terminal is, so that it can be tested without one.

    running  [██████████▌         ]  52 %  1 min 4 s

The line never reaches the last column (a terminal would wrap it and the
carriage return would no longer rewrite it).
"""

from __future__ import annotations

from ..status_page import format_duration
from .status import Snapshot
from .text import one_line

#: Eighths of a cell, for a smooth bar on terminals that show Unicode.
_EIGHTHS = " ▏▎▍▌▋▊▉█"
_MIN_BAR, _MAX_BAR = 10, 50


def format_elapsed(seconds: float) -> str:
    """``75.2`` -> ``1 min 15 s``; ``3720`` -> ``1 h 2 min``: as the status page says it."""
    return format_duration(seconds)


def render_bar(percent: float, cells: int, unicode: bool = True) -> str:
    """A bar of exactly ``cells`` characters, filled to ``percent``."""
    percent = min(100.0, max(0.0, percent))
    if not unicode:
        filled = int(cells * percent / 100)
        return "#" * filled + "-" * (cells - filled)
    eighths = int(cells * 8 * percent / 100)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (_EIGHTHS[part] if part else "")
    return bar + " " * (cells - len(bar))


def describe(snapshot: Snapshot) -> str:
    """The state in a few words: ``running, 52 %``, ``queued, position 3``."""
    if snapshot.state is None:
        return "queued or running, unchanged since the previous poll"
    if snapshot.state == "running" and snapshot.cluster is not None:
        # page_cluster cleans it already; cleaned again because this text goes
        # straight to a terminal and a Snapshot may be built by anyone.
        return f"queued on the cluster ({one_line(snapshot.cluster, 120)})"
    if snapshot.state == "running" and snapshot.percent is not None:
        return f"running, {int(snapshot.percent)} %"
    if snapshot.state == "queued" and snapshot.position is not None:
        return f"queued, position {snapshot.position}"
    return snapshot.state


def progress_line(snapshot: Snapshot, elapsed: float, width: int, unicode: bool = True) -> str:
    """The whole progress line for a terminal ``width`` columns wide."""
    room = max(0, width - 1)
    time = format_elapsed(elapsed)
    if snapshot.state == "running" and snapshot.percent is not None:
        before, after = "running  [", f"] {int(snapshot.percent):3d} %  {time}"
        cells = min(_MAX_BAR, room - len(before) - len(after))
        if cells >= _MIN_BAR:
            return before + render_bar(snapshot.percent, cells, unicode) + after
    text = f"{describe(snapshot)}  {time}"
    return text if len(text) <= room else text[:room]
