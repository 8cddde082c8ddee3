"""
Who a process is, from ``/proc``: enough to tell a child the server started
from another process that was given the same pid later.

A process is identified by its pid, its start time (clock ticks after
boot, field 22 of ``/proc/<pid>/stat``) and the boot it started in
(``/proc/sys/kernel/random/boot_id``).  Linux only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessIdentity:
    """A process, as it can be recognised again after a restart."""

    pid: int
    start_ticks: int
    boot_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "start_ticks": self.start_ticks, "boot_id": self.boot_id}

    @classmethod
    def from_dict(cls, data: Any) -> ProcessIdentity:
        if not isinstance(data, dict):
            raise TypeError("a process identity must be an object")
        pid, ticks, boot = data.get("pid"), data.get("start_ticks"), data.get("boot_id")
        if type(pid) is not int or type(ticks) is not int or not isinstance(boot, str):
            raise TypeError("bad process identity")
        return cls(pid, ticks, boot)


@dataclass(frozen=True)
class StatFields:
    """The fields of ``/proc/<pid>/stat`` that the service uses."""

    state: str
    ppid: int
    pgrp: int
    start_ticks: int


def parse_stat(text: str) -> StatFields:
    """Parse ``/proc/<pid>/stat``; the command name may hold spaces and ')'."""
    rest = text.rsplit(")", 1)[1].split()
    # rest[0] is field 3 (state); field N is rest[N - 3].
    return StatFields(rest[0], int(rest[1]), int(rest[2]), int(rest[19]))


def all_processes(proc: Path = PROC) -> Iterator[tuple[int, StatFields]]:
    """``(pid, stat fields)`` of every process on the machine, as far as readable."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue


@functools.lru_cache(maxsize=4)
def read_boot_id(proc: Path = PROC) -> str:
    """This boot's id (read once: it does not change while the server runs)."""
    return (proc / "sys" / "kernel" / "random" / "boot_id").read_text().strip()


def identify(pid: int, proc: Path = PROC, boot_id: str | None = None) -> ProcessIdentity | None:
    """The identity of the live process ``pid``, or None (gone, or a zombie)."""
    try:
        fields = parse_stat((proc / str(pid) / "stat").read_text())
        boot = boot_id if boot_id is not None else read_boot_id(proc)
    except (OSError, ValueError, IndexError):
        return None
    if fields.state in ("Z", "X"):
        return None
    return ProcessIdentity(pid, fields.start_ticks, boot)


def is_alive(identity: ProcessIdentity, proc: Path = PROC) -> bool:
    """Whether the very process of ``identity`` still runs (not a reused pid)."""
    return identify(identity.pid, proc) == identity
