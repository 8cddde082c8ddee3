"""
The runs of one server: start, status, abort, notify, and shutdown.

This is where a run's state lives while the server runs.  Polls are
answered from memory only; each change is saved to the run's folder (at
once for a start and an end, at most every ``flush_interval`` seconds for
progress).  The manager takes the reactor as a parameter: tests drive it
with :mod:`waiter_service.testing`.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ..status_page import encode_page, render_status_page
from ..validation import InvalidInput, check_message, check_service_id
from .process import ChildProtocol, SignalGroup
from .program import MissingOutput, Program
from .record import RunRecord
from .state import RunState
from .store import RunExists, RunStore

UNSET = "UNSET"
UNCHANGED = "UNCHANGED"
COMPLETED = "COMPLETED"

#: Largest output file read back at the end of a run (they travel in SOAP).
MAX_OUTPUT_BYTES = 10 * 1024 * 1024

RESULT_ENCODINGS = ("base64", "raw")

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class ProcessReactor(IReactorProcess, IReactorTime):
    """The reactor features the manager uses."""


class UnknownRun(Exception):
    """No run has this serviceID."""


class ServiceTrouble(Exception):
    """The server cannot do what was asked now (disk, spawning); safe text."""


class StatusAnswer(NamedTuple):
    """What ``startWaiter`` and ``getServiceStatus`` return."""

    status: str
    outputs: tuple[str, ...]


def find_launcher() -> list[str]:
    """
    The command prefix that starts a child in a session (and so a process
    group) of its own, in its run's folder: ``setsid env --chdir=DIR``.
    """
    setsid = shutil.which("setsid")
    env = shutil.which("env")
    if setsid is None or env is None:
        raise RuntimeError("the setsid and env commands are needed (util-linux, coreutils)")
    return [setsid, env]


class Run:
    """One run: its record, its child, and who waits for its end."""

    def __init__(self, manager: RunManager, record: RunRecord, folder: Path) -> None:
        self.manager = manager
        self.record = record
        self.folder = folder
        self.child: ChildProtocol | None = None
        self.delivered_version: int | None = None
        self.interrupted_by_shutdown = False
        self._end_waiters: list[Deferred[None]] = []

    def when_ended(self) -> Deferred[None]:
        """A Deferred that fires when the run reaches a final state."""
        if self.record.state.is_terminal:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._end_waiters.append(d)
        return d

    def child_line(self, line: str) -> None:
        progress = self.manager.program.parse_line(line)
        if progress is not None and self.record.record_progress(progress.percent, progress.message):
            self.manager.mark_dirty(self)

    def child_ended(
        self, exit_code: int | None, exit_signal: int | None, stderr_tail: list[str]
    ) -> None:
        self.manager.finish(self, exit_code, exit_signal, stderr_tail)
        waiters, self._end_waiters = self._end_waiters, []
        for d in waiters:
            d.callback(None)


class RunManager:
    """All runs of one program in one server."""

    log = Logger()

    def __init__(
        self,
        reactor: ProcessReactor,
        store: RunStore,
        program: Program,
        *,
        result_encoding: str = "base64",
        kill_grace: float = 10.0,
        flush_interval: float = 2.0,
        launcher: list[str] | None = None,
        signal_group: SignalGroup = os.killpg,
        child_env: Mapping[str, str] | None = None,
    ) -> None:
        if result_encoding not in RESULT_ENCODINGS:
            raise ValueError(f"result_encoding must be one of {RESULT_ENCODINGS}")
        self.reactor = reactor
        self.store = store
        self.program = program
        self.result_encoding = result_encoding
        self.kill_grace = kill_grace
        self.launcher = find_launcher() if launcher is None else launcher
        self.signal_group = signal_group
        self.child_env = dict(_default_child_env() if child_env is None else child_env)
        self.runs: dict[str, Run] = {}
        self._dirty: dict[str, Run] = {}
        self._flusher = LoopingCall(self.flush)
        self._flusher.clock = reactor
        self._flush_interval = flush_interval

    # -- life of the manager ------------------------------------------------

    def start_service(self) -> None:
        """Prepare the work folder and start saving progress periodically."""
        self.store.prepare()
        self._flusher.start(self._flush_interval, now=False)

    def stop_service(self) -> Deferred[Any]:
        """
        Stop every running child (TERM, then KILL after the grace period) and
        record those runs as failed; fires when all have ended.
        """
        if self._flusher.running:
            self._flusher.stop()
        waiting = []
        for run in list(self.runs.values()):
            if run.record.state is RunState.RUNNING and run.child is not None:
                run.interrupted_by_shutdown = True
                run.child.terminate(self.kill_grace)
                waiting.append(run.when_ended())
        d = gatherResults(waiting)
        d.addCallback(lambda _: self.flush())
        return d

    # -- SOAP operations -----------------------------------------------------

    def start(
        self,
        service_id: str | None,
        raw_inputs: Mapping[str, Any],
        extra_parameters: dict[str, str] | None = None,
    ) -> StatusAnswer:
        """Start a run, or answer for the one that has this serviceID."""
        service_id = check_service_id(service_id)
        existing = self.runs.get(service_id)
        if existing is not None:
            return self._answer(existing, force_page=True)
        inputs = self.program.check_inputs(raw_inputs)
        try:
            folder = self.store.create(service_id)
        except RunExists:
            raise InvalidInput("this serviceID was used before") from None
        except OSError as e:
            self._trouble("cannot create the run's folder", service_id, e)
        record = RunRecord(
            service_id=service_id,
            program=self.program.name,
            inputs=dict(inputs),
            created_at=self.reactor.seconds(),
            extra_parameters=dict(extra_parameters or {}),
        )
        try:
            self.store.save(record)
        except OSError as e:
            self.store.discard(service_id)
            self._trouble("cannot record the run", service_id, e)
        run = Run(self, record, folder)
        self.runs[service_id] = run
        self._spawn(run, inputs)
        return self._answer(run, force_page=True)

    def status(self, service_id: str | None) -> StatusAnswer:
        """Answer a poll, from memory."""
        return self._answer(self._get(service_id))

    def abort(self, service_id: str | None) -> Deferred[bool]:
        """
        Stop a run; fires True once its child has ended, or False at once if
        the run had already ended.
        """
        run = self._get(service_id)
        if not run.record.request_abort():
            return succeed(False)
        self._save(run)
        self.log.info("run {service_id} abort requested", service_id=run.record.service_id)
        if run.child is not None:
            run.child.terminate(self.kill_grace)

        def stopped(_: None) -> bool:
            return run.record.state is RunState.ABORTED

        return run.when_ended().addCallback(stopped)

    def notify(self, service_id: str | None, message: str | None) -> str:
        """Pass ``message`` as one line to the running program's stdin."""
        run = self._get(service_id)
        message = check_message(message)
        if run.record.state.is_terminal or run.child is None:
            return f"not delivered: the run has already {run.record.state.value}"
        if run.record.abort_requested:
            return "not delivered: the run is being aborted"
        if not run.child.send_line(message):
            return "not delivered: the program has ended"
        self.log.info(
            "run {service_id} notified ({length} characters)",
            service_id=run.record.service_id,
            length=len(message),
        )
        return "delivered to the running program"

    # -- inside ----------------------------------------------------------------

    def _get(self, service_id: str | None) -> Run:
        run = self.runs.get(check_service_id(service_id))
        if run is None:
            raise UnknownRun(service_id)
        return run

    def _trouble(self, what: str, service_id: str, error: OSError) -> NoReturn:
        self.log.error(
            "{what} for run {service_id}: {error}",
            what=what,
            service_id=service_id,
            error=str(error),
        )
        raise ServiceTrouble(f"{what}; try again later") from None

    def _spawn(self, run: Run, inputs: Mapping[str, Any]) -> None:
        invocation = self.program.invocation(inputs, run.folder)
        argv = [*self.launcher, f"--chdir={run.folder}", *invocation.argv]
        env = {**self.child_env, **invocation.env}
        child = ChildProtocol(run, self.reactor, signal_group=self.signal_group)
        try:
            transport = self.reactor.spawnProcess(child, argv[0], argv, env=env)
        except OSError as e:
            self.log.error(
                "run {service_id} could not start: {error}",
                service_id=run.record.service_id,
                error=str(e),
            )
            run.record.fail("the program could not be started", self.reactor.seconds())
            self._save(run)
            return
        run.child = child
        run.record.started(transport.pid)
        self._save(run)
        self.log.info(
            "run {service_id} started, pid {pid}",
            service_id=run.record.service_id,
            pid=transport.pid,
        )

    def finish(
        self,
        run: Run,
        exit_code: int | None,
        exit_signal: int | None,
        stderr_tail: list[str],
    ) -> None:
        """Record how a run's child ended: the one place runs end."""
        record = run.record
        now = self.reactor.seconds()
        if record.abort_requested:
            record.abort(now, exit_code, exit_signal, stderr_tail)
        elif run.interrupted_by_shutdown:
            record.fail(
                "interrupted: the service stopped", now, exit_code, exit_signal, stderr_tail
            )
        elif exit_code == 0:
            self._complete(run, now, stderr_tail)
        elif exit_signal is not None:
            record.fail("the program was killed", now, None, exit_signal, stderr_tail)
        else:
            record.fail("the program failed", now, exit_code, None, stderr_tail)
        self._dirty.pop(record.service_id, None)
        self._save(run)
        self.log.info(
            "run {service_id} {state} after {elapsed:.1f} s",
            service_id=record.service_id,
            state=record.state.value,
            elapsed=record.elapsed(now),
            exit_code=exit_code,
            exit_signal=exit_signal,
        )

    def _complete(self, run: Run, now: float, stderr_tail: list[str]) -> None:
        try:
            outputs = self.program.collect_outputs(run.folder)
        except (MissingOutput, OSError, ValueError) as e:
            if isinstance(e, MissingOutput) or isinstance(e, FileNotFoundError):
                reason = "the program ended without writing its result"
            elif isinstance(e, ValueError):
                reason = "the program's result is too large"
            else:
                reason = "the program's result could not be read"
            self.log.warn(
                "run {service_id} exited 0 but {reason}: {error}",
                service_id=run.record.service_id,
                reason=reason,
                error=str(e),
            )
            run.record.fail(reason, now, 0, None, stderr_tail)
            return
        encoded = {name: base64.b64encode(data).decode("ascii") for name, data in outputs.items()}
        run.record.complete(encoded, now)

    def _answer(self, run: Run, force_page: bool = False) -> StatusAnswer:
        record = run.record
        if record.state is RunState.COMPLETED:
            return StatusAnswer(COMPLETED, self._outputs(record))
        unset = (UNSET,) * len(self.program.output_names)
        if not force_page:
            # Only polls count: the first poll always gets the page.
            if run.delivered_version == record.version:
                return StatusAnswer(UNCHANGED, unset)
            run.delivered_version = record.version
        page = render_status_page(record, self.reactor.seconds())
        return StatusAnswer(encode_page(page), unset)

    def _outputs(self, record: RunRecord) -> tuple[str, ...]:
        stored = record.outputs or {}
        values = []
        for name in self.program.output_names:
            value = stored.get(name, "")
            if self.result_encoding == "raw":
                text = base64.b64decode(value).decode("utf-8", "replace")
                value = _NOT_XML.sub("\ufffd", text)
            values.append(value)
        return tuple(values)

    def mark_dirty(self, run: Run) -> None:
        """Progress changed: save it at the next flush."""
        self._dirty[run.record.service_id] = run

    def flush(self) -> None:
        """Save every record whose progress changed since the last flush."""
        dirty, self._dirty = self._dirty, {}
        for run in dirty.values():
            self._save(run)

    def _save(self, run: Run) -> None:
        try:
            self.store.save(run.record)
        except OSError as e:
            self.log.error(
                "cannot save run {service_id}: {error}",
                service_id=run.record.service_id,
                error=str(e),
            )


def _default_child_env() -> dict[str, str]:
    """What children see of the server's environment: little."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("PATH", os.defpath)
    return env
