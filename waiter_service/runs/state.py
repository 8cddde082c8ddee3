"""The states of a run and the only transitions allowed between them."""

from __future__ import annotations

from enum import Enum


class RunState(str, Enum):
    """Where a run is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def is_terminal(self) -> bool:
        """A terminal state never changes again."""
        return self not in (RunState.QUEUED, RunState.RUNNING)


class InvalidTransition(Exception):
    """A state change that the state machine does not allow."""

    def __init__(self, current: RunState, new: RunState) -> None:
        super().__init__(f"a run cannot go from {current.value} to {new.value}")
        self.current = current
        self.new = new


_ALLOWED: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset({RunState.RUNNING, RunState.FAILED, RunState.ABORTED}),
    RunState.RUNNING: frozenset({RunState.COMPLETED, RunState.FAILED, RunState.ABORTED}),
    RunState.COMPLETED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.ABORTED: frozenset(),
}


def transition(current: RunState, new: RunState) -> RunState:
    """Return ``new`` if a run in ``current`` may move there, else raise."""
    if new not in _ALLOWED[current]:
        raise InvalidTransition(current, new)
    return new
