"""
Text from the network made safe to print on a terminal.

A status page, a fault message or a result is written by whoever runs the
server (or sits between it and us): an escape sequence in it could move
the cursor, rewrite earlier lines, retitle the window or worse.  Every such
text goes through :func:`one_line` or :func:`lines` before it is printed.
"""

from __future__ import annotations

import re

#: C0 controls (ESC among them), DEL, C1 controls, and the Unicode controls
#: that reorder or hide text (bidirectional overrides and isolates, line and
#: paragraph separators, zero-width joiners are harmless and kept).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_LINE_BREAK = re.compile("\r\n|[\r\n\u2028\u2029\x0b\x0c\x85]")


def one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line: breaks and tabs become spaces, controls go, cut at ``limit``."""
    flat = _LINE_BREAK.sub(" ", text).replace("\t", " ")
    clean = _UNSAFE.sub("", flat).strip()
    if len(clean) > limit:
        return clean[: limit - 1] + "…"
    return clean


def lines(text: str) -> list[str]:
    """``text`` as printable lines (a tab becomes spaces; other controls go)."""
    return [_UNSAFE.sub("", line.expandtabs(4)) for line in _LINE_BREAK.split(text)]
