"""The twistd service that owns the runs: started first, stopped last."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.logger import Logger

from .auth.checker import OpenAccess, TokenChecker
from .runs.manager import RunManager


class RunManagerService(Service):
    """Starts the run manager with the server and stops its children at the end."""

    log = Logger()

    def __init__(self, manager: RunManager, checker: TokenChecker | None = None) -> None:
        self.manager = manager
        self.checker = checker or OpenAccess()

    def startService(self) -> None:
        if not self.checker.enabled:
            self.log.warn(
                "*** SESSION TOKENS ARE NOT CHECKED: anyone who reaches this port can start,"
                " watch and abort any run. Give --auth-wsdl to check them. ***"
            )
        self.manager.start_service()
        super().startService()

    def stopService(self) -> Any:
        super().stopService()
        return self.manager.stop_service()
