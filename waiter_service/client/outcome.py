"""
Exit codes: a script can tell a completed run from a failed or aborted one,
and both from a call that did not work.
"""

from __future__ import annotations

from enum import IntEnum

from .status import Snapshot


class ExitCode(IntEnum):
    """What ``waiter-client`` exits with (also listed in ``--help``)."""

    #: The command did what was asked; for run/status: the run completed.
    OK = 0
    #: The call did not work: a SOAP fault, no connection, a timeout, a bad
    #: WSDL, an answer that makes no sense, an abort of a run that had
    #: ended, a message that was not delivered.
    ERROR = 1
    #: Bad command line.
    USAGE = 2
    #: The run failed.
    FAILED = 3
    #: The run was aborted (by anybody, or by Ctrl-C during ``run``).
    ABORTED = 4
    #: ``status`` only: the run is still queued or running.
    NOT_FINISHED = 5
    #: A second Ctrl-C while ``run`` was aborting (the run may still go
    #: on), or Ctrl-C before the server answered ``run``'s start and knew
    #: no run to abort; Ctrl-C during any other command.
    INTERRUPTED = 130


EPILOG = """\
exit codes:
  0    done; for run and status: the run completed
  1    error: SOAP fault, no connection, timeout, bad WSDL or answer,
       abort of a run that had already ended, notify not delivered
  2    bad command line
  3    the run failed
  4    the run was aborted
  5    status: the run is still queued or running
  130  Ctrl-C twice: run stopped following before the abort was confirmed;
       or Ctrl-C before the run started (the server knew no run to abort)"""


def exit_code(snapshot: Snapshot, command: str) -> ExitCode:
    """
    The exit code for a run seen as ``snapshot`` at the end of ``command``.

    A start that queued or started the run did what was asked (0); a status
    of a run that is not over says so (5); a run's end decides for all.
    """
    if snapshot.state == "failed":
        return ExitCode.FAILED
    if snapshot.state == "aborted":
        return ExitCode.ABORTED
    if snapshot.state == "completed" or command == "start":
        return ExitCode.OK
    return ExitCode.NOT_FINISHED
