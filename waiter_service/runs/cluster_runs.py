"""
The runs of a :class:`~.manager.RunManager` that a Slurm cluster runs.

A part of the manager kept in a module of its own: it submits runs as
batch jobs, takes them back after a restart, follows them with one
``squeue`` per poll and ends them as Slurm and the job script say.  It
works on the manager's runs and records, through the manager's own
methods (saving, transitions, the end of a run); :mod:`.slurm` has the
commands, the parsing and the job script.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from twisted.logger import Logger

from .program import Invocation
from .record import encode_outputs
from .run import Run
from .scrub import scrub_tail
from .slurm import (
    ENDED_STATES,
    RUNNING_STATES,
    STDERR_FILE,
    JobInfo,
    SlurmJob,
    SlurmRunner,
    SlurmSettings,
    SubmissionUnknown,
    cluster_env,
    outcome,
    read_exit,
    read_tail,
    write_job_script,
)
from .state import RunState

if TYPE_CHECKING:
    from .manager import RunManager


class ClusterRuns:
    """The manager's runs on a Slurm cluster."""

    log = Logger()

    def __init__(self, manager: RunManager) -> None:
        self.manager = manager

    def slurm(self) -> SlurmRunner:
        """The cluster's runner (one with default settings for runs that a
        server with ``--runner slurm`` left, if this one has none)."""
        if self.manager.cluster is None:
            self.manager.cluster = SlurmRunner(
                self.manager.reactor, SlurmSettings(), cluster_env(os.environ)
            )
        return self.manager.cluster

    def submit(self, run: Run, invocation: Invocation, before: RunState | None, now: float) -> None:
        """Submit a run's program as a batch job (the record in memory only)."""
        record = run.record
        record.runner = "slurm"
        try:
            write_job_script(run.folder)
        except OSError as e:
            self.log.error(
                "run {service_id}: cannot write its job script: {error}",
                service_id=record.service_id,
                error=str(e),
            )
            record.fail("the program could not be submitted to the cluster", now)
            self.manager._moved(record, before, "run {service_id} failed: {reason}")
            return
        job = SlurmJob(self.slurm(), record.service_id, folder=str(run.folder))
        run.child = job
        self.manager.active[record.service_id] = run
        self.manager._moved(record, before, "run {service_id} submitted to the cluster")
        job.runner.submit(job, run.folder, invocation.argv, invocation.env).addCallbacks(
            lambda job_id: self._submitted(run, job_id),
            # Never from inside this call: ending the run here would start
            # the next queued one from within dispatch().
            lambda failure: self.manager.reactor.callLater(
                0, self._not_submitted, run, failure.value
            ),
        )

    def _submitted(self, run: Run, job_id: str) -> None:
        if run.abandoned or run.record.state.is_terminal:
            return
        run.record.submitted(job_id)
        self.manager._save(run)
        self.log.info(
            "run {service_id} is job {job_id} on the cluster",
            service_id=run.record.service_id,
            job_id=job_id,
        )

    def _not_submitted(self, run: Run, error: BaseException) -> None:
        job = run.child
        assert isinstance(job, SlurmJob)
        if isinstance(error, SubmissionUnknown) and not run.abandoned:
            # The job may exist: look for it by name for a while.
            self.log.warn(
                "run {service_id}: {error}; looking for its job by name",
                service_id=run.record.service_id,
                error=str(error),
            )
            self._search_by_name(job)
            return
        self.log.error(
            "run {service_id} could not be submitted: {error}",
            service_id=run.record.service_id,
            error=str(error),
        )
        if run.abandoned:
            job.runner.cancel_by_name(job)
            return
        if run.record.state.is_terminal:
            return
        job.ended = True
        now = self.manager.reactor.seconds()
        if run.record.abort_requested:
            run.record.abort(now)
        elif run.stopped_by is not None:
            run.record.fail(run.stopped_by, now)
        else:
            run.record.fail("the cluster did not take the job (the service's log says why)", now)
        self.manager._ended(run)

    def _search_by_name(self, job: SlurmJob) -> None:
        """Find the job by name (and folder) until sbatch surely is done."""
        settings = job.runner.settings
        job.search_until = (
            self.manager.reactor.seconds() + settings.command_timeout + 3 * settings.poll_interval
        )

    def stop_wait(self) -> float:
        """How long a graceful stop waits for cancelled jobs to end."""
        poll = self.slurm().settings.poll_interval
        return self.manager.kill_grace + max(30.0, 5 * poll)

    def take_back(self, run: Run) -> None:
        """After a restart: a run on the cluster; the next poll says how it is."""
        record = run.record
        run.child = SlurmJob(
            self.slurm(),
            record.service_id,
            job_id=record.job_id,
            folder=str(run.folder),
        )
        self.manager.active[record.service_id] = run
        if record.job_id is None:
            # Its server died while sbatch ran: that sbatch may still submit.
            self._search_by_name(run.child)
        self.manager._arm_time_limit(run)
        if record.abort_requested:
            run.child.terminate(self.manager.kill_grace)
        self.manager._moved(
            record,
            RunState.RUNNING,
            "run {service_id} taken back: job {job_id} on the cluster",
            job_id=record.job_id,
        )

    def runs(self) -> list[Run]:
        """The runs the cluster runs now."""
        return [r for r in self.manager.active.values() if isinstance(r.child, SlurmJob)]

    def poll(self) -> None:
        """About every ``poll_interval``: one ``squeue`` for every job."""
        cluster = self.manager.cluster
        now = self.manager.reactor.seconds()
        if cluster is None or not cluster.due(now) or not self.runs():
            return
        answered = cluster.poll(now).addCallback(self._answered)
        answered.addErrback(
            lambda failure: self.log.failure("handling the cluster's answer failed", failure)
        )

    def _answered(self, answer: tuple[int, dict[str, JobInfo]] | None) -> None:
        if answer is None:
            return
        number, jobs = answer
        now = self.manager.reactor.seconds()
        for run in self.runs():
            job = run.child
            assert isinstance(job, SlurmJob)
            if job.ended:
                continue
            if job.cancel_wanted and not job.cancelled and job.job_id is not None:
                job.runner.cancel(job)  # an earlier scancel failed: again
            info = job.runner.find(job, jobs)
            if info is None:
                self._not_listed(run, job, number, now)
                continue
            job.missing = 0
            if job.job_id is None:
                # Submitted by a server that died before it learnt the id.
                job.job_id = info.job_id
                run.record.submitted(info.job_id)
                self.manager._save(run)
                if job.cancel_wanted:
                    job.runner.cancel(job)
            if (job.pending or job.state is None) and info.state in RUNNING_STATES:
                # Out of the cluster's queue: the run's time starts when the
                # job started (Slurm's word, on this server's clock).
                started = min(now, info.started or now)
                run.record.left_cluster_queue(max(started, run.record.started_at or started))
                self.manager._save(run)
                if run.deadline is not None and run.deadline.active():
                    # --max-seconds counts from there too.
                    run.deadline.cancel()
                    self.manager._arm_time_limit(run)
            was_running = job.running
            job.state, job.reason = info.state, info.reason
            if info.state in ENDED_STATES:
                self._job_ended(run, info.state, now, info.ended)
            elif job.running and not was_running:
                # It just started: its progress now (then each tick reads it).
                self.manager._read_progress(run)

    def _not_listed(self, run: Run, job: SlurmJob, poll: int, now: float) -> None:
        """A poll that does not list a run's job."""
        if job.job_id is None:
            if job.search_until is None:
                return  # sbatch has not answered yet
            if now < job.search_until:
                return  # an sbatch may still be submitting it
            # Never found: cancel anything of that name that shows up late.
            job.runner.cancel_by_name(job)
            self._job_ended(run, None, now)
            return
        if poll < job.seen_from_poll:
            return  # this poll began before sbatch answered
        job.missing += 1
        if job.missing >= 2:  # gone from two polls in a row: Slurm forgot it
            self._job_ended(run, None, now)

    def _job_ended(
        self, run: Run, state: str | None, now: float, slurm_end: float | None = None
    ) -> None:
        """
        A run's job ended (``state``: Slurm's word, None once it has
        forgotten the job): record its true end, from what the job script
        wrote in the run's folder.
        """
        job = run.child
        assert isinstance(job, SlurmJob)
        job.ended = True
        record = run.record
        ended = outcome(state, read_exit(run.folder))
        # The job script's time, else Slurm's; never before the start nor
        # after now (the nodes' clocks may differ from this server's).
        end = ended.ended_at if ended.ended_at is not None else slurm_end
        at = now if end is None else min(now, end)
        at = max(at, record.started_at or at)
        tail = scrub_tail(read_tail(run.folder / STDERR_FILE), str(run.folder))
        code, signal = ended.exit_code, ended.exit_signal
        if record.abort_requested:
            record.abort(at, code, signal, tail)
        elif run.stopped_by is not None:
            record.fail(run.stopped_by, at, code, signal, tail)
        elif ended.completed:
            self.manager._complete(run, at, tail)
        elif ended.reason is not None:
            record.fail(ended.reason, at, code, signal, tail)
        else:
            outputs = self.manager._finished_outputs(run)
            if outputs is not None:
                record.complete(encode_outputs(outputs), at)
            else:
                record.fail(
                    "the job ended on the cluster without recording its exit status"
                    " (is the work folder shared with the cluster's nodes?)",
                    at,
                    None,
                    None,
                    tail,
                )
        self.manager._ended(run, job_id=job.job_id, slurm_state=state)
