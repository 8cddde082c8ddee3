"""
A child started by an earlier server, adopted after a restart.

The server cannot wait for it (it is not this process's child) nor read its
pipes (they died with the old server).  Instead the manager checks every
adopted run about once a second: is the very same process still alive
(:mod:`.procinfo`), and what progress did the program leave in its folder.
Signals go to its process group only after checking that the process is
still the one that was started, never to a reused pid.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .process import SignalGroup
from .procinfo import ProcessIdentity


class AdoptedChild:
    """The handle of an adopted run's process; its end is found by polling."""

    log = Logger()

    def __init__(
        self,
        identity: ProcessIdentity,
        clock: IReactorTime,
        signal_group: SignalGroup,
        is_alive: Callable[[ProcessIdentity], bool],
    ) -> None:
        self.identity = identity
        self.clock = clock
        self.signal_group = signal_group
        self.is_alive = is_alive
        self.ended = False
        self._kill_call: IDelayedCall | None = None

    def send_line(self, text: str) -> bool:
        return False

    def terminate(self, grace: float) -> None:
        if self.ended or self._kill_call is not None:
            return
        self._signal(signal.SIGTERM)
        self._kill_call = self.clock.callLater(grace, self._kill)

    def _kill(self) -> None:
        self._kill_call = None
        if not self.ended:
            self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if not self.is_alive(self.identity):
            return
        try:
            self.signal_group(self.identity.pid, signum)
        except (ProcessLookupError, PermissionError) as e:
            self.log.warn(
                "cannot signal adopted group {pid}: {error}", pid=self.identity.pid, error=str(e)
            )

    def check(self) -> bool:
        """Whether the process still runs; on its end, stop the kill timer."""
        if self.ended:
            return False
        if self.is_alive(self.identity):
            return True
        self.ended = True
        if self._kill_call is not None and self._kill_call.active():
            self._kill_call.cancel()
        self._kill_call = None
        return False
