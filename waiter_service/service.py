"""The twistd service that owns the runs: started first, stopped last."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service

from .runs.manager import RunManager


class RunManagerService(Service):
    """Starts the run manager with the server and stops its children at the end."""

    def __init__(self, manager: RunManager) -> None:
        self.manager = manager

    def startService(self) -> None:
        self.manager.start_service()
        super().startService()

    def stopService(self) -> Any:
        super().stopService()
        return self.manager.stop_service()
