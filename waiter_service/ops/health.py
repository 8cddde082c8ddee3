"""
``<context-root>/health``: is the server serving, and can it write its
work folder (a start that cannot write its run's record is refused, so a
server that cannot write is of no use to the workflow manager).

Answers JSON: status, version, uptime, runs by state, queue length,
children alive, and the work folder's state (writable, free bytes); HTTP
200 when serving, 503 with a reason when the work folder cannot be
written.  Health checks come often (a container engine, a load balancer):
the folder is probed with one tiny write, at most once per ``ttl`` seconds
of the reactor's clock, so the reactor never waits on the disk more than
once per period.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request

from ..runs.manager import RunManager
from .counts import count_runs
from .http import ReadOnlyResource

log = Logger()

#: The probe's file in the work folder (a dot name: never a serviceID).
PROBE_NAME = ".health-probe"


@dataclass(frozen=True)
class FolderState:
    """What the last probe found."""

    #: None when writable, else why not (safe to show: no path).
    problem: str | None
    #: Bytes free for the server's user, None if unknown.
    free_bytes: int | None


def probe_folder(folder: Path) -> FolderState:
    """Write, then remove, a few bytes in ``folder``; read its free space."""
    problem = None
    path = folder / PROBE_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"ok\n")
        finally:
            os.close(fd)
        os.unlink(path)
    except OSError as e:
        name = errno.errorcode.get(e.errno or 0, "error")
        problem = f"the work folder cannot be written ({name}: {e.strerror})"
    try:
        stats = os.statvfs(folder)
        free: int | None = stats.f_bavail * stats.f_frsize
    except OSError:
        free = None
    return FolderState(problem, free)


class FolderProbe:
    """:func:`probe_folder`, its answer kept for ``ttl`` seconds of ``clock``."""

    def __init__(
        self,
        folder: Path,
        clock: IReactorTime,
        ttl: float = 5.0,
        probe: Callable[[Path], FolderState] = probe_folder,
    ) -> None:
        self.folder = folder
        self.clock = clock
        self.ttl = ttl
        self.probe = probe
        self._last: FolderState | None = None
        self._checked_at = 0.0

    def state(self) -> FolderState:
        now = self.clock.seconds()
        if self._last is None or now - self._checked_at >= self.ttl:
            last, self._last = self._last, self.probe(self.folder)
            self._checked_at = now
            if self._last.problem != (last.problem if last is not None else None):
                if self._last.problem is not None:
                    log.error("health: {problem}", event="health", problem=self._last.problem)
                elif last is not None:
                    log.info("health: the work folder can be written again", event="health")
        return self._last


class HealthResource(ReadOnlyResource):
    """The health document of one server."""

    def __init__(
        self,
        manager: RunManager,
        probe: FolderProbe,
        clock: IReactorTime,
        version: str,
    ) -> None:
        super().__init__()
        self.manager = manager
        self.probe = probe
        self.clock = clock
        self.version = version
        self.started_at = clock.seconds()

    def document(self) -> tuple[int, dict[str, Any]]:
        """The HTTP code and the JSON document, as they stand now."""
        folder = self.probe.state()
        counts = count_runs(self.manager)
        serving = folder.problem is None
        document: dict[str, Any] = {
            "status": "ok" if serving else "unavailable",
            "version": self.version,
            "uptime_seconds": round(self.clock.seconds() - self.started_at, 3),
            "runs": counts.by_state,
            "queue_length": counts.queue_length,
            "children_alive": counts.children_alive,
            "workdir": {"writable": serving, "free_bytes": folder.free_bytes},
        }
        if not serving:
            document["reason"] = folder.problem
        return (200 if serving else 503), document

    def answer(self, request: Request) -> tuple[int, bytes, bytes]:
        code, document = self.document()
        body = json.dumps(document, sort_keys=True).encode("utf-8") + b"\n"
        return code, b"application/json", body
