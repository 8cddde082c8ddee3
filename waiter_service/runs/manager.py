"""
The runs of one server: start, status, abort, notify; the queue and the
limits; recovery at start, retention, and shutdown.

This is where a run's state lives while the server runs.  Polls are
answered from memory only; each change is saved to the run's folder: at
once for a start, a launch and an end; progress at most every
``flush_interval`` seconds, a few records per reactor turn.  The manager
takes the reactor as a parameter: tests drive it with
:mod:`waiter_service.testing`.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
import shutil
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, NoReturn, Protocol

from twisted.internet import defer
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..status_page import ClusterQueue, encode_page, render_status_page
from ..validation import InvalidInput, check_message, check_service_id
from . import procinfo
from .adopted import AdoptedChild
from .cluster_runs import ClusterRuns
from .process import ChildProtocol, SignalGroup
from .procinfo import ProcessIdentity
from .program import MissingOutput, Program
from .record import CorruptRecord, RunRecord, encode_outputs
from .recovery import INTERRUPTED, UNREADABLE, plan_recovery
from .retention import Tombstones, due_for_removal
from .run import Run
from .scrub import scrub_tail
from .slurm import (
    STDOUT_FILE,
    SlurmJob,
    SlurmRunner,
    read_new_lines,
)
from .state import RunState
from .store import RunExists, RunStore

UNSET = "UNSET"
UNCHANGED = "UNCHANGED"
COMPLETED = "COMPLETED"

RESULT_ENCODINGS = ("base64", "raw")
#: What a graceful stop does to running children: leave them running (the
#: next start adopts them) or stop them (their runs fail).
ON_STOP = ("keep", "stop")

TIME_LIMIT = "time limit"
#: Progress records saved per reactor turn by a flush.
FLUSH_BATCH = 20
STOPPED = "interrupted: the service stopped"

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class ProcessReactor(IReactorProcess, IReactorTime):
    """The reactor features the manager uses."""


class UnknownRun(Exception):
    """No run has this serviceID."""


class ExpiredRun(Exception):
    """The run existed, finished, and was removed by the retention sweep."""


class ServiceTrouble(Exception):
    """The server cannot do what was asked now (disk, spawning); safe text."""


class ServiceBusy(ServiceTrouble):
    """Every slot runs and the queue is full: try again later."""


class Owner(Protocol):
    """Who calls, when tokens are checked (an auth.checker.Identity)."""

    user: str
    project: str
    auth_url: str | None


#: Told ``(record, from_state, to_state)`` whenever a run changes state
#: (``from_state`` None: a new run); also for runs taken back at start, with
#: ``from_state == to_state``.  Must not raise; it runs on the reactor.
TransitionObserver = Callable[[RunRecord, RunState | None, RunState], None]


def _visible(record: Any, owner: Owner | None) -> bool:
    """
    A run is seen by its own project only, as known to the authentication
    manager that checked its start (by everyone when nothing is checked).
    """
    if owner is None:
        return True
    return record.owner_project == owner.project and record.auth_url in (None, owner.auth_url)


class StatusAnswer(NamedTuple):
    """What ``startWaiter`` and ``getServiceStatus`` return."""

    status: str
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Limits:
    """How much the server takes on, and how long it keeps it."""

    #: Runs whose children run at the same time; more wait in the queue.
    max_running: int = 32
    #: Runs that may wait; past it, a start is refused (ServiceBusy).
    max_queued: int = 1000
    #: Wall-clock seconds a run may run before it is stopped; None: no limit.
    max_seconds: float | None = None
    #: Seconds a finished run is kept before its folder is removed.
    retention: float = 7 * 86400


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


class RunManager:
    """All runs of one program in one server."""

    log = Logger()

    def __init__(
        self,
        reactor: ProcessReactor,
        store: RunStore,
        program: Program,
        *,
        limits: Limits | None = None,
        on_stop: str = "keep",
        result_encoding: str = "base64",
        kill_grace: float = 10.0,
        flush_interval: float = 10.0,
        tick_interval: float = 1.0,
        launcher: list[str] | None = None,
        signal_group: SignalGroup = os.killpg,
        child_env: Mapping[str, str] | None = None,
        identify: Callable[[int], ProcessIdentity | None] = procinfo.identify,
        is_alive: Callable[[ProcessIdentity], bool] = procinfo.is_alive,
        cluster: SlurmRunner | None = None,
        on_transition: TransitionObserver | None = None,
    ) -> None:
        if result_encoding not in RESULT_ENCODINGS:
            raise ValueError(f"result_encoding must be one of {RESULT_ENCODINGS}")
        if on_stop not in ON_STOP:
            raise ValueError(f"on_stop must be one of {ON_STOP}")
        self.reactor = reactor
        self.store = store
        self.program = program
        self.limits = limits or Limits()
        self.on_stop = on_stop
        self.result_encoding = result_encoding
        self.kill_grace = kill_grace
        self.launcher = find_launcher() if launcher is None else launcher
        self.signal_group = signal_group
        self.child_env = dict(_default_child_env() if child_env is None else child_env)
        self.identify = identify
        self.is_alive = is_alive
        #: Where new runs go: a Slurm cluster when given, else local children.
        self.cluster = cluster
        self.on_cluster = cluster is not None
        #: Submits, follows and ends the runs that the cluster runs.
        self.cluster_runs = ClusterRuns(self)
        #: Told of every state change of a run (metrics); see _moved.
        self.on_transition = on_transition
        self.runs: dict[str, Run] = {}
        self.active: dict[str, Run] = {}
        self.queue: deque[Run] = deque()
        self.tombstones = Tombstones(store.root)
        self._seq = 0
        self._stopping = False
        self._dirty: dict[str, Run] = {}
        self._flushing: IDelayedCall | None = None
        self._loops = [
            (LoopingCall(self.flush), flush_interval, False),
            (LoopingCall(self.tick), tick_interval, False),
            (LoopingCall(self.sweep), _sweep_interval(self.limits.retention), True),
        ]
        if cluster is not None and cluster.settings.poll_interval < tick_interval:
            # Polls more often than the tick: a loop of their own.
            poll = LoopingCall(self.cluster_runs.poll)
            self._loops.append((poll, cluster.settings.poll_interval, False))
        for loop, _, _ in self._loops:
            loop.clock = reactor

    # -- life of the manager ------------------------------------------------

    def start_service(self) -> None:
        """Prepare the work folder, take back earlier runs, start the loops."""
        self.store.prepare()
        self.tombstones.load()
        self.recover()
        for loop, interval, now in self._loops:
            loop.start(interval, now=now)

    def stop_service(self) -> Deferred[Any]:
        """
        Stop taking runs from the queue; with ``on_stop="stop"``, stop every
        running child (TERM, KILL after the grace period) and record those
        runs as failed.  With ``"keep"`` children go on and the next start
        adopts them.  Fires when done, all records saved.
        """
        self._stopping = True
        waiting = []
        if self.on_stop == "stop":
            for run in list(self.active.values()):
                if run.child is not None:
                    run.stopped_by = STOPPED
                    run.child.terminate(self.kill_grace)
                    ended = run.when_ended()
                    if isinstance(run.child, SlurmJob):
                        # Slurm may be slow or unreachable: wait so long, then
                        # leave the run as it is (the next server takes it back).
                        ended.addTimeout(self.cluster_runs.stop_wait(), self.reactor)
                        ended.addErrback(_timed_out)
                    waiting.append(ended)

        def done(_: object) -> None:
            for loop, _, _ in self._loops:
                if loop.running:
                    loop.stop()
            if self._flushing is not None and self._flushing.active():
                self._flushing.cancel()
            self.flush(batch=None)

        return gatherResults(waiting).addCallback(done)

    def recover(self) -> None:
        """Load every run of the work folder and carry on from where it was."""
        found: list[RunRecord | tuple[str, str]] = []
        for service_id in self.store.run_ids():
            try:
                found.append(self.store.load(service_id))
            except (CorruptRecord, OSError) as e:
                found.append((service_id, str(e)))
        plan = plan_recovery(found, self.is_alive)
        now = self.reactor.seconds()
        self._seq = plan.next_seq
        for record in plan.finished:
            self._register(record)
        for service_id, problem in plan.unreadable:
            self.log.error(
                "run {service_id}: unreadable record ({problem}); answered as failed",
                service_id=service_id,
                problem=problem,
            )
            owner = self.store.salvage_owner(service_id)
            self.store.set_aside(service_id)
            record = RunRecord(
                service_id,
                self.program.name,
                {},
                now,
                owner_user=owner.get("owner_user"),
                owner_project=owner.get("owner_project"),
                auth_url=owner.get("auth_url"),
            )
            record.fail(UNREADABLE, now)
            self._save(self._register(record))
            self._moved(record, None, "run {service_id} failed: {reason}")
        for record in plan.interrupted:
            run = self._register(record)
            self._end_unobserved(run, now, INTERRUPTED)
        for record in plan.cluster:
            self.cluster_runs.take_back(self._register(record))
        for record in plan.adopt:
            self._adopt(self._register(record))
        for record in plan.queued:
            self.queue.append(self._register(record))
            self._moved(record, RunState.QUEUED, "run {service_id} queued again after a restart")
        self.log.info(
            "recovered {total} runs: {finished} finished, {queued} queued, {adopted} adopted,"
            " {interrupted} interrupted, {unreadable} unreadable",
            total=len(found),
            finished=len(plan.finished),
            queued=len(plan.queued),
            adopted=len(plan.adopt) + len(plan.cluster),
            interrupted=len(plan.interrupted),
            unreadable=len(plan.unreadable),
        )
        self.dispatch()

    # -- SOAP operations -----------------------------------------------------

    def start(
        self,
        service_id: str | None,
        raw_inputs: Mapping[str, Any],
        extra_parameters: dict[str, str] | None = None,
        owner: Owner | None = None,
    ) -> StatusAnswer:
        """
        Start (or queue) a run, or answer for the one with this serviceID.

        ``owner`` is the identity of the caller when tokens are checked: the
        run then belongs to its project (None: tokens are not checked).
        """
        service_id = check_service_id(service_id)
        existing = self.runs.get(service_id)
        if existing is not None:
            if not _visible(existing.record, owner):
                raise InvalidInput("this serviceID was used before")
            return self._answer(existing, force_page=True)
        if service_id in self.tombstones:
            raise InvalidInput("this serviceID was used before")
        inputs = self.program.check_inputs(raw_inputs)
        if self._stopping:
            raise ServiceTrouble("the service is stopping; try again later")
        if len(self.active) >= self.limits.max_running and (
            len(self.queue) >= self.limits.max_queued
        ):
            raise ServiceBusy(
                f"the service is busy: {len(self.queue)} runs are waiting; try again later"
            )
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
            owner_user=owner.user if owner is not None else None,
            owner_project=owner.project if owner is not None else None,
            auth_url=owner.auth_url if owner is not None else None,
            queue_seq=self._seq,
        )
        run = Run(self, record, folder)
        if not self.queue and len(self.active) < self.limits.max_running:
            # A free slot: start at once, and write the record once, with
            # the child's pid.  (Were the server to die before that write,
            # the next start would find a folder without a record: a failed
            # run, never one started twice.)
            self._launch_now(run)
        else:
            try:
                self.store.save(record)
            except OSError as e:
                self.store.discard(service_id)
                self._trouble("cannot record the run", service_id, e)
            self.queue.append(run)
            self._moved(record, None, "run {service_id} queued", position=len(self.queue))
        self._seq += 1
        self.runs[service_id] = run
        return self._answer(run, force_page=True)

    def status(self, service_id: str | None, owner: Owner | None = None) -> StatusAnswer:
        """Answer a poll, from memory."""
        return self._answer(self._get(service_id, owner))

    def abort(self, service_id: str | None, owner: Owner | None = None) -> Deferred[bool]:
        """
        Stop a run; fires True once it has ended (a queued run at once), or
        False at once if it had already ended.
        """
        run = self._get(service_id, owner)
        record = run.record
        if not record.request_abort():
            return succeed(False)
        self.log.info(
            "run {service_id} abort requested",
            event="run_abort_requested",
            service_id=record.service_id,
        )
        if record.state is RunState.QUEUED:
            self.queue.remove(run)
            record.abort(self.reactor.seconds())
            self._save(run)
            self._moved(record, RunState.QUEUED, "run {service_id} aborted while queued")
            run.ended()
            return succeed(True)
        self._save(run)
        if run.child is not None:
            run.child.terminate(self.kill_grace)

        def stopped(_: None) -> bool:
            return run.record.state is RunState.ABORTED

        return run.when_ended().addCallback(stopped)

    def notify(
        self, service_id: str | None, message: str | None, owner: Owner | None = None
    ) -> str:
        """Pass ``message`` as one line to the running program's stdin."""
        run = self._get(service_id, owner)
        message = check_message(message)
        state = run.record.state
        if state is RunState.QUEUED:
            return "not delivered: the run has not started yet"
        if state.is_terminal or run.child is None:
            return f"not delivered: the run has already {state.value}"
        if run.record.abort_requested:
            return "not delivered: the run is being aborted"
        if isinstance(run.child, SlurmJob):
            return "not delivered: a run on the cluster takes no messages"
        if run.adopted:
            return "not delivered: the run was taken over after a restart and takes no messages"
        if not run.child.send_line(message):
            return "not delivered: the program has ended"
        self.log.info(
            "run {service_id} notified ({length} characters)",
            service_id=run.record.service_id,
            length=len(message),
        )
        return "delivered to the running program"

    # -- the queue -----------------------------------------------------------

    def dispatch(self) -> None:
        """Start queued runs while there are free slots, oldest first."""
        while self.queue and len(self.active) < self.limits.max_running and not self._stopping:
            run = self.queue.popleft()
            if run.record.state is not RunState.QUEUED:
                continue
            if not self._launch(run):
                self.queue.appendleft(run)  # try again at the next tick
                return

    def tick(self) -> None:
        """Every second: drive the queue, and watch adopted runs."""
        try:
            self._tick()
        except Exception:
            # Never let one bad run stop the loop that drives every run.
            self.log.failure("the periodic check of the runs failed")

    def _tick(self) -> None:
        if not self._stopping:
            self.dispatch()
        for run in [r for r in self.active.values() if r.adopted]:
            child = run.child
            assert isinstance(child, AdoptedChild)
            self._read_progress(run)
            if not child.check():
                self._end_unobserved(run, self.reactor.seconds(), None)
        for run in self.cluster_runs.runs():
            # The program's progress, from its folder, once a second: the
            # lines it printed (as from a local child's stdout), then what it
            # left in its own files, if it leaves anything.
            job = run.child
            assert isinstance(job, SlurmJob)
            if job.running:
                lines, job.out_offset = read_new_lines(run.folder / STDOUT_FILE, job.out_offset)
                for line in lines:
                    run.child_line(line)
                self._read_progress(run)
        self.cluster_runs.poll()

    def _launch_now(self, run: Run) -> None:
        """Start a new run's child at once; its first record has its pid."""
        self._spawn(run, self.reactor.seconds())
        try:
            self.store.save(run.record)
        except OSError as e:
            run.abandoned = True
            if run.child is not None:
                run.child.terminate(0)
            self.active.pop(run.record.service_id, None)
            self.store.discard(run.record.service_id)
            self._trouble("cannot record the run", run.record.service_id, e)
        self._begun(run)

    def _launch(self, run: Run) -> bool:
        """Start a queued run's child; False (try later) if it cannot be recorded."""
        now = self.reactor.seconds()
        launching = dataclasses.replace(run.record)
        launching.launching(now)
        if self.on_cluster:
            # A crash before sbatch answers must leave a record that says so.
            launching.runner = "slurm"
        try:
            self.store.save(launching)
        except OSError as e:
            self.log.error(
                "cannot record the start of run {service_id}: {error}; retrying",
                service_id=run.record.service_id,
                error=str(e),
            )
            return False
        self._spawn(run, now)
        self._save(run)
        self._begun(run)
        return True

    def _begun(self, run: Run) -> None:
        """After a spawn, recorded: the clock starts, or the failed start is over."""
        if run.record.state is RunState.RUNNING:
            self._arm_time_limit(run)
        else:
            run.ended()

    def _spawn(self, run: Run, now: float) -> None:
        """Start the child of a run (the record in memory only)."""
        # A new run is not in self.runs yet; a queued one is.
        before = RunState.QUEUED if run.record.service_id in self.runs else None
        run.record.launching(now)
        invocation = self.program.invocation(run.record.inputs, run.folder)
        if self.on_cluster:
            self.cluster_runs.submit(run, invocation, before, now)
            return
        argv = [*self.launcher, f"--chdir={run.folder}", *invocation.argv]
        env = {**self.child_env, **invocation.env}
        child = ChildProtocol(
            run, self.reactor, signal_group=self.signal_group, grace=self.kill_grace
        )
        try:
            transport = self.reactor.spawnProcess(child, argv[0], argv, env=env)
        except OSError as e:
            self.log.error(
                "run {service_id} could not start: {error}",
                service_id=run.record.service_id,
                error=str(e),
            )
            run.record.fail("the program could not be started", now)
            self._moved(run.record, before, "run {service_id} failed: {reason}")
            return
        run.child = child
        self.active[run.record.service_id] = run
        # The protocol took the pid when it connected: the transport forgets
        # it as soon as the child is reaped, which can already have happened.
        pid = child.pgid if child.pgid is not None else transport.pid
        if pid is not None:
            run.record.started(pid, self.identify(pid))
        self._moved(run.record, before, "run {service_id} started, pid {pid}", pid=pid)

    def _adopt(self, run: Run) -> None:
        identity = run.record.process
        assert identity is not None
        run.child = AdoptedChild(identity, self.reactor, self.signal_group, self.is_alive)
        run.adopted = True
        self.active[run.record.service_id] = run
        self._arm_time_limit(run)
        if run.record.abort_requested:
            run.child.terminate(self.kill_grace)
        self._moved(
            run.record, RunState.RUNNING, "run {service_id} adopted, pid {pid}", pid=identity.pid
        )

    def _arm_time_limit(self, run: Run) -> None:
        limit = self.limits.max_seconds
        if limit is None:
            return
        started = run.record.started_at or self.reactor.seconds()
        remaining = max(0.0, started + limit - self.reactor.seconds())
        run.deadline = self.reactor.callLater(remaining, self._time_is_up, run)

    def _time_is_up(self, run: Run) -> None:
        run.deadline = None
        if run.record.state is RunState.RUNNING and run.child is not None:
            self.log.warn(
                "run {service_id} passed the time limit; stopping it",
                service_id=run.record.service_id,
            )
            run.stopped_by = TIME_LIMIT
            run.child.terminate(self.kill_grace)

    def _read_progress(self, run: Run) -> None:
        progress = self.program.read_progress(run.folder)
        if progress is not None and run.record.record_progress(progress.percent, progress.message):
            self.mark_dirty(run)

    # -- the end of a run ----------------------------------------------------

    def finish(
        self,
        run: Run,
        exit_code: int | None,
        exit_signal: int | None,
        stderr_tail: list[str],
    ) -> None:
        """Record how a run's own child ended."""
        if run.abandoned:
            run.ended()
            return
        record = run.record
        now = self.reactor.seconds()
        stderr_tail = scrub_tail(stderr_tail, str(run.folder))
        if record.abort_requested:
            record.abort(now, exit_code, exit_signal, stderr_tail)
        elif run.stopped_by is not None:
            record.fail(run.stopped_by, now, exit_code, exit_signal, stderr_tail)
        elif exit_code == 0:
            self._complete(run, now, stderr_tail)
        elif exit_signal is not None:
            record.fail("the program was killed", now, None, exit_signal, stderr_tail)
        else:
            record.fail("the program failed", now, exit_code, None, stderr_tail)
        self._ended(run, exit_code=exit_code, exit_signal=exit_signal)

    def _end_unobserved(self, run: Run, now: float, interrupted: str | None) -> None:
        """
        End a run whose exit status cannot be known: its process ended while
        the server was down (``interrupted`` is then the reason to give if
        the program left no result), or it was adopted and has now gone.
        """
        record = run.record
        if record.abort_requested:
            record.abort(now)
        elif run.stopped_by is not None:
            record.fail(run.stopped_by, now)
        else:
            outputs = self._finished_outputs(run)
            if outputs is not None:
                self.log.info(
                    "run {service_id} finished out of sight; its files show it completed",
                    service_id=record.service_id,
                )
                record.complete(encode_outputs(outputs), now)
            else:
                record.fail(
                    interrupted
                    or "the program ended without its result"
                    " (its exit status is unknown after a restart)",
                    now,
                )
        self._ended(run)

    def _ended(self, run: Run, **details: Any) -> None:
        record = run.record
        if run.deadline is not None and run.deadline.active():
            run.deadline.cancel()
        run.deadline = None
        self.active.pop(record.service_id, None)
        self._dirty.pop(record.service_id, None)
        self._save(run)
        self._moved(
            record,
            RunState.RUNNING,
            "run {service_id} {to_state} after {elapsed:.1f} s",
            elapsed=record.elapsed(self.reactor.seconds()),
            **details,
        )
        run.ended()
        self.dispatch()

    def _moved(
        self, record: RunRecord, from_state: RunState | None, message: str, **details: Any
    ) -> None:
        """
        A run changed state: one structured ``run_transition`` event (``reason``:
        why it failed, if it did), then the transition observer.
        """
        self.log.info(
            message,
            event="run_transition",
            service_id=record.service_id,
            from_state=from_state.value if from_state is not None else None,
            to_state=record.state.value,
            reason=record.failure_reason,
            **details,
        )
        if self.on_transition is not None:
            try:
                self.on_transition(record, from_state, record.state)
            except Exception:
                self.log.failure("a run transition observer failed")

    def _complete(self, run: Run, now: float, stderr_tail: list[str]) -> None:
        try:
            outputs = self.program.collect_outputs(run.folder)
        except Exception as e:
            reason = _output_problem(e)
            if isinstance(e, MissingOutput | OSError | ValueError):
                self.log.warn(
                    "run {service_id} exited 0 but {reason}: {error}",
                    service_id=run.record.service_id,
                    reason=reason,
                    error=str(e),
                )
            else:
                self.log.failure(
                    "reading the outputs of run {service_id} failed",
                    service_id=run.record.service_id,
                )
            run.record.fail(reason, now, 0, None, stderr_tail)
            return
        run.record.complete(encode_outputs(outputs), now)

    def _finished_outputs(self, run: Run) -> dict[str, bytes] | None:
        try:
            return self.program.finished_outputs(run.folder)
        except Exception:
            self.log.failure(
                "checking the outputs of run {service_id} failed",
                service_id=run.record.service_id,
            )
            return None

    # -- retention -------------------------------------------------------------

    def sweep(self) -> None:
        """Remove finished runs older than the retention period."""
        now = self.reactor.seconds()
        retention = self.limits.retention
        expired = due_for_removal((r.record for r in self.runs.values()), now, retention)
        records = [self.runs.pop(service_id).record for service_id in expired]
        for service_id in expired:
            self.store.discard(service_id)
        before = len(self.tombstones.expired)
        self.tombstones.add(records, now)
        self.tombstones.forget_before(now - retention)
        if expired or len(self.tombstones.expired) != before:
            try:
                self.tombstones.save()
            except OSError as e:
                self.log.error("cannot save the list of expired runs: {error}", error=str(e))
            self.log.info("removed {count} expired runs", count=len(expired))

    # -- answers ---------------------------------------------------------------

    def auth_url_of(self, service_id: str | None) -> str | None:
        """The authentication manager that checked a run's start, if any."""
        run = self.runs.get(service_id) if isinstance(service_id, str) else None
        return run.record.auth_url if run is not None else None

    def _get(self, service_id: str | None, owner: Owner | None = None) -> Run:
        service_id = check_service_id(service_id)
        run = self.runs.get(service_id)
        if run is None or not _visible(run.record, owner):
            if run is None and self.tombstones.seen_by(service_id, owner):
                raise ExpiredRun(service_id)
            raise UnknownRun(service_id)
        return run

    def queue_position(self, run: Run) -> int | None:
        """1 for the next run to start, or None if the run is not queued."""
        if run.record.state is not RunState.QUEUED:
            return None
        try:
            return self.queue.index(run) + 1
        except ValueError:
            return None

    def _answer(self, run: Run, force_page: bool = False) -> StatusAnswer:
        record = run.record
        if record.state is RunState.COMPLETED:
            return StatusAnswer(COMPLETED, self._outputs(record))
        unset = (UNSET,) * len(self.program.output_names)
        position = self.queue_position(run)
        job = run.child if isinstance(run.child, SlurmJob) else None
        cluster = None
        if job is not None and job.pending and record.state is RunState.RUNNING:
            cluster = ClusterQueue(job.job_id or "", job.state or "", job.reason)
        shown = (record.version, position, cluster)
        if not force_page:
            # Only polls count: the first poll always gets the page.
            if run.delivered == shown:
                return StatusAnswer(UNCHANGED, unset)
            run.delivered = shown
        page = render_status_page(
            record, self.reactor.seconds(), queue_position=position, cluster=cluster
        )
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

    # -- records ---------------------------------------------------------------

    def _register(self, record: RunRecord) -> Run:
        run = Run(self, record, self.store.folder(record.service_id))
        self.runs[record.service_id] = run
        return run

    def mark_dirty(self, run: Run) -> None:
        """Progress changed: save it at the next flush."""
        self._dirty[run.record.service_id] = run

    def flush(self, batch: int | None = FLUSH_BATCH) -> None:
        """
        Save every record whose progress changed since the last flush, at
        most ``batch`` of them per reactor turn (so that a thousand runs'
        progress never holds polls back); ``batch=None``: all at once.
        """
        while self._dirty:
            for _ in range(len(self._dirty) if batch is None else batch):
                if not self._dirty:
                    return
                service_id = next(iter(self._dirty))
                self._save(self._dirty.pop(service_id))
            if self._dirty and batch is not None:
                if self._flushing is None or not self._flushing.active():
                    self._flushing = self.reactor.callLater(0, self.flush, batch)
                return

    def _save(self, run: Run) -> None:
        try:
            self.store.save(run.record)
        except OSError as e:
            self.log.error(
                "cannot save run {service_id}: {error}",
                service_id=run.record.service_id,
                error=str(e),
            )

    def _trouble(self, what: str, service_id: str, error: OSError) -> NoReturn:
        self.log.error(
            "{what} for run {service_id}: {error}",
            what=what,
            service_id=service_id,
            error=str(error),
        )
        raise ServiceTrouble(f"{what}; try again later") from None


def _timed_out(failure: Failure) -> Failure | None:
    """Swallow the timeout of a wait for a job's end; pass anything else on."""
    return None if isinstance(failure.value, defer.TimeoutError) else failure


def _output_problem(error: Exception) -> str:
    """The failure reason for outputs that could not be collected."""
    if isinstance(error, MissingOutput | FileNotFoundError):
        return "the program ended without writing its result"
    if isinstance(error, ValueError):
        return "the program's result is too large"
    return "the program's result could not be read"


def _sweep_interval(retention: float) -> float:
    """Sweep ten times per retention period, at least every hour and at most every second."""
    return min(3600.0, max(1.0, retention / 10))


def _default_child_env() -> dict[str, str]:
    """What children see of the server's environment: little."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("PATH", os.defpath)
    return env
