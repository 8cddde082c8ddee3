"""
What a starting server makes of the records it finds in the work folder.

:func:`plan_recovery` is pure: given the records (or the reason one could
not be read) and a way to tell whether a recorded process still lives, it
says what becomes of each run.  The manager carries the plan out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .procinfo import ProcessIdentity
from .record import RunRecord
from .state import RunState

#: Reasons given to runs that a restart finds in a state they cannot go on from.
INTERRUPTED = "interrupted: the service restarted"
UNREADABLE = "the run's record could not be read after a restart"


@dataclass
class RecoveryPlan:
    """The runs found at start, sorted by what happens to them."""

    finished: list[RunRecord] = field(default_factory=list)
    queued: list[RunRecord] = field(default_factory=list)
    adopt: list[RunRecord] = field(default_factory=list)
    #: Running on a Slurm cluster: the cluster is asked what became of them.
    cluster: list[RunRecord] = field(default_factory=list)
    interrupted: list[RunRecord] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    next_seq: int = 0


def plan_recovery(
    found: Iterable[RunRecord | tuple[str, str]],
    is_alive: Callable[[ProcessIdentity], bool],
) -> RecoveryPlan:
    """
    Sort what was found: ``RunRecord``s, or ``(serviceID, problem)`` pairs
    for folders whose record could not be read.

    - final runs stay as they are;
    - queued runs go back in the queue, in their original order;
    - a running run on a Slurm cluster is taken back, and the cluster asked
      (by job id, or by job name if the id was never recorded);
    - a running run whose very process still lives is adopted;
    - a running run whose process is gone (or was never recorded: the
      server stopped between writing "running" and starting the child) is
      interrupted, never started a second time.
    """
    plan = RecoveryPlan()
    for item in found:
        if isinstance(item, tuple):
            plan.unreadable.append(item)
            continue
        record = item
        plan.next_seq = max(plan.next_seq, record.queue_seq + 1)
        if record.state.is_terminal:
            plan.finished.append(record)
        elif record.state is RunState.QUEUED:
            plan.queued.append(record)
        elif record.runner == "slurm":
            plan.cluster.append(record)
        elif record.process is not None and is_alive(record.process):
            plan.adopt.append(record)
        else:
            plan.interrupted.append(record)
    plan.queued.sort(key=lambda r: (r.queue_seq, r.created_at, r.service_id))
    return plan
