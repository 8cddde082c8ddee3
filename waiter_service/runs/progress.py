"""
Progress reports that a wrapped program prints, one per line on stdout.

The convention of this project: ``progress <percent> [text]``, e.g.
``progress 42.5 meshing part 3 of 7``.  Any other line is ordinary output.
A program with another convention gives its own parser (see
:class:`waiter_service.runs.program.Program`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Longest status text kept from one report (the rest is cut).
MAX_MESSAGE = 200


@dataclass(frozen=True)
class Progress:
    """One report: a percentage and, optionally, a short text."""

    percent: float
    message: str | None = None


def parse_progress_line(line: str) -> Progress | None:
    """Return the report in ``line``, or None if it is not one."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2 or parts[0].lower() != "progress":
        return None
    try:
        percent = float(parts[1].rstrip("%"))
    except ValueError:
        return None
    if not math.isfinite(percent):
        return None
    message = parts[2][:MAX_MESSAGE] if len(parts) == 3 else None
    return Progress(percent, message)
