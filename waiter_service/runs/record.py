"""
A run's record: everything known about one execution, as plain data.

The record lives in memory (polls read it there) and is saved as JSON in
the run's folder by :mod:`.store`.  Its methods change it as the run goes
on; each change that a user can see bumps :attr:`RunRecord.version`, which
is how a poll knows whether to answer ``UNCHANGED``.  Nothing here does I/O
or reads a clock: times are passed in.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .procinfo import ProcessIdentity
from .state import RunState, transition

#: The version of the JSON layout written by :meth:`RunRecord.to_dict`.
RECORD_FORMAT = 1


class CorruptRecord(ValueError):
    """A saved record that cannot be read back."""


@dataclass
class RunRecord:
    """One execution of a wrapped program, identified by its serviceID."""

    service_id: str
    program: str
    inputs: dict[str, Any]
    created_at: float
    extra_parameters: dict[str, str] = field(default_factory=dict)
    owner_user: str | None = None
    owner_project: str | None = None
    auth_url: str | None = None
    queue_seq: int = 0
    state: RunState = RunState.QUEUED
    percent: int = 0
    message: str = ""
    started_at: float | None = None
    pid: int | None = None
    process: ProcessIdentity | None = None
    #: Where the program runs: ``local`` (a child of the server) or
    #: ``slurm`` (a batch job, ``job_id`` once ``sbatch`` answered).
    runner: str = "local"
    job_id: str | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    failure_reason: str | None = None
    output_tail: list[str] = field(default_factory=list)
    outputs: dict[str, str] | None = None
    abort_requested: bool = False
    version: int = 0

    def _changed(self) -> None:
        self.version += 1

    def record_progress(self, percent: float, message: str | None = None) -> bool:
        """
        Take a progress report; return whether the visible status changed.

        The percentage is clamped to 0..100 and kept as a whole number (that
        is what the status page shows); reports after the end are ignored.
        """
        if self.state.is_terminal or math.isnan(percent):
            return False
        whole = int(min(100.0, max(0.0, percent)))
        text = self.message if message is None else message
        if whole == self.percent and text == self.message:
            return False
        self.percent = whole
        self.message = text
        self._changed()
        return True

    def launching(self, now: float) -> None:
        """The run leaves the queue: its child is about to be started."""
        self.state = transition(self.state, RunState.RUNNING)
        self.started_at = now
        self._changed()

    def started(self, pid: int, process: ProcessIdentity | None = None) -> None:
        """The child runs with this pid (and, where known, this identity)."""
        self.pid = pid
        self.process = process

    def submitted(self, job_id: str) -> None:
        """The cluster took the run's job under this id."""
        self.job_id = job_id

    def left_cluster_queue(self, now: float) -> None:
        """The run's job waited in the cluster's queue and runs now: its
        elapsed time (and the estimate of the time left) counts from now."""
        self.started_at = now
        self._changed()

    def request_abort(self) -> bool:
        """Note that an abort was asked for; False if the run has ended."""
        if self.state.is_terminal:
            return False
        if not self.abort_requested:
            self.abort_requested = True
            self._changed()
        return True

    def _end(
        self,
        state: RunState,
        now: float,
        exit_code: int | None,
        exit_signal: int | None,
        output_tail: list[str] | None,
    ) -> None:
        self.state = transition(self.state, state)
        self.ended_at = now
        self.exit_code = exit_code
        self.exit_signal = exit_signal
        if output_tail is not None:
            self.output_tail = list(output_tail)
        self._changed()

    def complete(self, outputs: dict[str, str], now: float) -> None:
        """The program succeeded and its outputs are known."""
        self._end(RunState.COMPLETED, now, 0, None, None)
        self.outputs = dict(outputs)
        self.percent = 100

    def fail(
        self,
        reason: str,
        now: float,
        exit_code: int | None = None,
        exit_signal: int | None = None,
        output_tail: list[str] | None = None,
    ) -> None:
        """The program failed (or could not start, or was interrupted)."""
        self._end(RunState.FAILED, now, exit_code, exit_signal, output_tail)
        self.failure_reason = reason

    def abort(
        self,
        now: float,
        exit_code: int | None = None,
        exit_signal: int | None = None,
        output_tail: list[str] | None = None,
    ) -> None:
        """The program was stopped because an abort was asked for."""
        self._end(RunState.ABORTED, now, exit_code, exit_signal, output_tail)

    def elapsed(self, now: float) -> float:
        """Seconds from the start (or creation) to the end, or to ``now``."""
        end = self.ended_at if self.ended_at is not None else now
        begin = self.started_at if self.started_at is not None else self.created_at
        return max(0.0, end - begin)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data, with its format version."""
        return {
            "format": RECORD_FORMAT,
            "service_id": self.service_id,
            "program": self.program,
            "inputs": self.inputs,
            "extra_parameters": self.extra_parameters,
            "owner_user": self.owner_user,
            "owner_project": self.owner_project,
            "auth_url": self.auth_url,
            "created_at": self.created_at,
            "queue_seq": self.queue_seq,
            "state": self.state.value,
            "percent": self.percent,
            "message": self.message,
            "started_at": self.started_at,
            "pid": self.pid,
            "process": self.process.to_dict() if self.process is not None else None,
            "runner": self.runner,
            "job_id": self.job_id,
            "ended_at": self.ended_at,
            "exit_code": self.exit_code,
            "exit_signal": self.exit_signal,
            "failure_reason": self.failure_reason,
            "output_tail": self.output_tail,
            "outputs": self.outputs,
            "abort_requested": self.abort_requested,
        }

    @classmethod
    def from_dict(cls, data: Any) -> RunRecord:
        """Read a record written by :meth:`to_dict`; raise CorruptRecord."""
        if not isinstance(data, dict):
            raise CorruptRecord("a run record must be a JSON object")
        if type(data.get("format")) is not int or data["format"] != RECORD_FORMAT:
            raise CorruptRecord(f"unknown record format {data.get('format')!r}")
        try:
            record = cls(
                service_id=_typed(data, "service_id", str),
                program=_typed(data, "program", str),
                inputs=_typed(data, "inputs", dict),
                extra_parameters=_typed(data, "extra_parameters", dict),
                owner_user=_optional(data, "owner_user", str),
                owner_project=_optional(data, "owner_project", str),
                auth_url=_optional(data, "auth_url", str),
                created_at=float(_typed(data, "created_at", (int, float))),
                queue_seq=_typed(data, "queue_seq", int),
                state=RunState(data["state"]),
                percent=_typed(data, "percent", int),
                message=_typed(data, "message", str),
                started_at=_optional(data, "started_at", (int, float)),
                pid=_optional(data, "pid", int),
                process=(
                    ProcessIdentity.from_dict(data["process"])
                    if data.get("process") is not None
                    else None
                ),
                # Records written before runners existed have neither.
                runner=_runner(data.get("runner", "local")),
                job_id=_job_id(_optional(data, "job_id", str)),
                ended_at=_optional(data, "ended_at", (int, float)),
                exit_code=_optional(data, "exit_code", int),
                exit_signal=_optional(data, "exit_signal", int),
                failure_reason=_optional(data, "failure_reason", str),
                output_tail=[str(line) for line in _typed(data, "output_tail", list)],
                outputs=_optional(data, "outputs", dict),
                abort_requested=_typed(data, "abort_requested", bool),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise CorruptRecord(f"bad run record: {e}") from None
        if not 0 <= record.percent <= 100:
            raise CorruptRecord("bad run record: percent out of range")
        return record


RUNNERS = ("local", "slurm")


def _runner(value: Any) -> str:
    if value not in RUNNERS:
        raise ValueError(f"unknown runner {value!r}")
    return str(value)


def _job_id(value: str | None) -> str | None:
    # It becomes an argument of scancel: digits only, never an option.
    if value is not None and not (value.isascii() and value.isdigit() and len(value) <= 18):
        raise ValueError("job_id must be a Slurm job number")
    return value


def _typed(data: dict[str, Any], key: str, kind: Any) -> Any:
    value = data[key]
    if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
        raise TypeError(f"{key} has the wrong type")
    return value


def _optional(data: dict[str, Any], key: str, kind: Any) -> Any:
    if data.get(key) is None:
        return None
    return _typed(data, key, kind)


def encode_outputs(outputs: Mapping[str, bytes]) -> dict[str, str]:
    """A program's outputs as a record keeps them: base64 text."""
    return {name: base64.b64encode(data).decode("ascii") for name, data in outputs.items()}
