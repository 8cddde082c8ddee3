"""
Retention: finished runs are removed after a while, and remembered as
expired so that a late poll gets a clear answer.

The tombstones (serviceID, time of removal) live in ``<workdir>/.expired``,
one per line, rewritten atomically; a serviceID never starts with a dot, so
the file cannot be mistaken for a run.  A tombstone is kept for one more
retention period, then forgotten.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from .record import RunRecord
from .store import atomic_write, read_capped

TOMBSTONES = ".expired"
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` -> seconds."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 12h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def due_for_removal(records: Iterable[RunRecord], now: float, retention: float) -> list[str]:
    """The serviceIDs of finished runs that ended more than ``retention`` ago."""
    return [
        r.service_id
        for r in records
        if r.state.is_terminal and r.ended_at is not None and now - r.ended_at > retention
    ]


class Tombstones:
    """The serviceIDs of removed runs, kept in a file of the work folder."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / TOMBSTONES
        self.expired: dict[str, float] = {}

    def load(self) -> None:
        try:
            text = read_capped(self.path, 64 * 1024 * 1024).decode("utf-8", "replace")
        except FileNotFoundError:
            return
        for line in text.splitlines():
            service_id, _, when = line.partition(" ")
            try:
                self.expired[service_id] = float(when)
            except ValueError:
                continue

    def add(self, service_ids: Iterable[str], now: float) -> None:
        for service_id in service_ids:
            self.expired[service_id] = now

    def forget_before(self, cutoff: float) -> None:
        self.expired = {k: v for k, v in self.expired.items() if v >= cutoff}

    def save(self) -> None:
        text = "".join(f"{k} {v:.0f}\n" for k, v in self.expired.items())
        atomic_write(self.path, text.encode("utf-8"), durable=True)

    def __contains__(self, service_id: object) -> bool:
        return service_id in self.expired
