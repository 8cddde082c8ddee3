"""
What the client prints: aligned ``key  value`` lines for people, one JSON
object for scripts.  Pure functions of a snapshot.

Texts from the server are made printable (:mod:`.text`) for people; JSON
keeps them exact, and ``json.dumps`` writes ASCII only, so no control
character reaches a terminal that shows it.
"""

from __future__ import annotations

import json
from typing import Any

from .bar import describe, format_elapsed
from .status import Snapshot
from .text import lines, one_line

_WIDTH = 9


def field(key: str, value: str) -> str:
    return f"{key:<{_WIDTH - 1}} {value}"


def block(key: str, text_lines: list[str]) -> list[str]:
    """``key`` and the first line, the other lines indented under it."""
    if not text_lines:
        return [field(key, "")]
    return [field(key, text_lines[0])] + [" " * _WIDTH + line for line in text_lines[1:]]


def human_report(service_id: str, snapshot: Snapshot, elapsed: float | None = None) -> list[str]:
    """The lines that show a run to a person (``elapsed``: how long ``run`` followed it)."""
    out = [field("run", one_line(service_id)), field("state", describe(snapshot))]
    if elapsed is not None:
        out.append(field("time", format_elapsed(elapsed)))
    if snapshot.reason:
        out.append(field("reason", one_line(snapshot.reason)))
    if snapshot.ended:
        out.append(field("ended", one_line(snapshot.ended)))
    if snapshot.output:
        out += block("output", [line for item in snapshot.output for line in lines(item)])
    if snapshot.state == "completed":
        if snapshot.result is None:
            out.append(field("result", "(none on the page)"))
        else:
            key = "result" if snapshot.result.decoded else "result (as sent)"
            out += block(key, lines(snapshot.result.text.rstrip("\n")))
    return out


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    """A snapshot's fields as JSON values."""
    percent = snapshot.percent
    return {
        "state": snapshot.state,
        "percent": int(percent) if percent is not None and percent.is_integer() else percent,
        "position": snapshot.position,
        "cluster": snapshot.cluster,
        "reason": snapshot.reason,
        "ended": snapshot.ended,
        "output": list(snapshot.output),
        "result": snapshot.result.text if snapshot.result else None,
        "result_decoded": snapshot.result.decoded if snapshot.result else None,
        "unchanged": snapshot.unchanged,
    }


def json_line(**fields: Any) -> str:
    """One JSON object on one line, ASCII only."""
    return json.dumps(fields, ensure_ascii=True, separators=(", ", ": "))
