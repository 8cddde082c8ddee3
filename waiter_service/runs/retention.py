"""
Retention: finished runs are removed after a while, and remembered as
expired so that a late poll gets a clear answer.

The tombstones (serviceID, time of removal, project) live in
``<workdir>/.expired``, one JSON object per line, rewritten atomically; a
serviceID never starts with a dot, so the file cannot be mistaken for a
run.  A tombstone is kept for one more
retention period, then forgotten.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class Tombstone:
    """A removed run: when, and whose (so that only its project hears "expired")."""

    removed_at: float
    project: str | None = None
    auth_url: str | None = None


class Tombstones:
    """The serviceIDs of removed runs, kept in a file of the work folder."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / TOMBSTONES
        self.expired: dict[str, Tombstone] = {}

    def load(self) -> None:
        try:
            text = read_capped(self.path, 64 * 1024 * 1024).decode("utf-8", "replace")
        except FileNotFoundError:
            return
        for line in text.splitlines():
            try:
                item = json.loads(line)
                self.expired[str(item["id"])] = Tombstone(
                    float(item["at"]), item.get("project"), item.get("auth")
                )
            except (ValueError, KeyError, TypeError):
                continue

    def add(self, records: Iterable[RunRecord], now: float) -> None:
        for record in records:
            self.expired[record.service_id] = Tombstone(now, record.owner_project, record.auth_url)

    def forget_before(self, cutoff: float) -> None:
        self.expired = {k: v for k, v in self.expired.items() if v.removed_at >= cutoff}

    def save(self) -> None:
        lines = (
            json.dumps({"id": k, "at": v.removed_at, "project": v.project, "auth": v.auth_url})
            for k, v in self.expired.items()
        )
        atomic_write(self.path, "".join(f"{line}\n" for line in lines).encode(), durable=True)

    def __contains__(self, service_id: object) -> bool:
        return service_id in self.expired

    def seen_by(self, service_id: str, owner: Any) -> bool:
        """Whether ``owner`` may learn that this run expired (its own project's)."""
        tombstone = self.expired.get(service_id)
        if tombstone is None:
            return False
        if owner is None:
            return True
        return tombstone.project == owner.project and tombstone.auth_url in (None, owner.auth_url)
