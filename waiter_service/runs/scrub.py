"""
What of a program's own output may reach a status page.

The page shows the end of the program's stderr (and its progress texts),
escaped.  Before that, tracebacks are reduced to their last line and
absolute paths outside the run's folder are cut to their last part: a page
must not show how the server's disk is laid out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_FRAME = re.compile(r'^\s*File ".*", line \d+')
_PATH = re.compile(r"""(?:^|(?<=[\s'"=(\[,]))/(?:[^\s/'"<>:,;()\[\]]+/)*[^\s/'"<>:,;()\[\]]*""")


def scrub_text(text: str, folder: str) -> str:
    """``text`` with absolute paths outside ``folder`` cut to ``…/last-part``."""

    def shown(match: re.Match[str]) -> str:
        path = match.group(0)
        if path == folder:
            return "."
        if path.startswith(folder + "/"):
            return path[len(folder) + 1 :]
        last = path.rstrip("/").rsplit("/", 1)[-1]
        return f"…/{last}" if last else "…"

    return _PATH.sub(shown, text)


def scrub_tail(lines: Iterable[str], folder: str) -> list[str]:
    """The lines without traceback frames, their paths scrubbed."""
    kept: list[str] = []
    in_frame = False
    for line in lines:
        if line.startswith("Traceback (most recent call last)"):
            continue
        if _FRAME.match(line):
            in_frame = True
            continue
        if in_frame and line.startswith("    "):
            in_frame = False
            continue
        in_frame = False
        kept.append(scrub_text(line, folder))
    return kept
