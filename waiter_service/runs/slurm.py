"""
Runs on a Slurm cluster: submission, watching and cancelling through
Slurm's own commands, never blocking the reactor.

Why ``sbatch`` and not ``srun``: an ``srun`` is tied to the server by its
pipes; when the server dies, the next line a program prints kills or
orphans the job.  A batch job belongs to the cluster: it lives through a
server crash or upgrade, and the next server finds it again by its job id
(kept in the run's record) or, if the server died before it learnt the id,
by its job name (``<prefix><serviceID>``).

Each job runs a tiny POSIX shell wrapper, :data:`JOB_SCRIPT`, in the run's
folder: it runs the program, then writes the exit status and the time into
``.slurm-exit``.  So a run that ended while the server was down is recorded
with its true end, even after Slurm has forgotten the job (it keeps ended
jobs for ``MinJobAge``, 300 s by default, and accounting is often off).
The wrapper traps TERM so that it outlives a ``scancel``'s TERM long
enough to write that file; the program itself gets TERM, then KILL after
Slurm's ``KillWait``.

The server learns the state of all its jobs with one ``squeue`` per poll
(about every 2 s), progress from the run's folder (:meth:`Program.
read_progress`), as for a run adopted after a restart.  The run folder must
therefore be on a filesystem that the cluster's nodes share, at the same
path, and the program must be installed at the same path on the nodes.

This module has the pure parts (command lines, parsing, what an ended job
means) and the I/O (:class:`SlurmRunner`); :mod:`.manager` ties them to
runs.
"""

from __future__ import annotations

import os
import pwd
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .process import MAX_LINE
from .store import atomic_write, read_capped

#: Files a job leaves in its run's folder (dot names: not the program's).
SCRIPT_FILE = ".slurm-job.sh"
STDOUT_FILE = ".slurm.out"
STDERR_FILE = ".slurm.err"
EXIT_FILE = ".slurm-exit"

#: Exit status of the job script when the run's folder is not visible on
#: the node (the work folder is not shared with the cluster).
NO_FOLDER = 97

#: The job: in the run's folder (``$1``), run the program (the other
#: arguments, passed by ``sbatch``), then record how and when it ended.
JOB_SCRIPT = f"""\
#!/bin/sh
# Written by waiter_service.  Runs the program given as arguments in the
# run's folder, then records its exit status and the time in {EXIT_FILE},
# so that the service knows how the job ended even if it was not running
# then.  TERM (scancel) is trapped here so this shell outlives the program;
# the program gets it.
cd -- "$1" || {{ echo "the run's folder is not visible on $(hostname)" >&2; exit {NO_FOLDER}; }}
shift
rm -f {EXIT_FILE}
trap ':' TERM
"$@"
code=$?
printf '%s %s\\n' "$code" "$(date +%s.%N)" > {EXIT_FILE}.tmp && mv -f {EXIT_FILE}.tmp {EXIT_FILE}
exit "$code"
"""

#: Slurm job states after which a job never runs again.
ENDED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)
#: States in which the program runs (or is being cleaned up, or is
#: suspended: it has started and will go on).
RUNNING_STATES = frozenset(
    {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "SUSPENDED", "STOPPED", "RESIZING"}
)
#: Anything else (PENDING, REQUEUED, CONFIGURING...) waits in the cluster's queue.

#: sbatch options that would break how the service follows its jobs.
FORBIDDEN_ARGS = (
    "--wait",
    "-W",
    "--clusters",
    "-M",
    "--array",
    "-a",
    "--output",
    "-o",
    "--error",
    "-e",
    "--chdir",
    "-D",
    "--job-name",
    "-J",
    "--parsable",
    "--test-only",
    "--requeue",
    "--wrap",
    "--hold",
    "-H",
)

#: Why the cluster ended a job, for states that say more than the exit status.
_CLUSTER_ENDS = {
    "CANCELLED": "the job was cancelled on the cluster",
    "TIMEOUT": "the job reached its time limit on the cluster",
    "NODE_FAIL": "the cluster node running the job failed",
    "OUT_OF_MEMORY": "the job ran out of memory on the cluster",
    "PREEMPTED": "the job was preempted on the cluster",
    "BOOT_FAIL": "the cluster could not boot a node for the job",
    "DEADLINE": "the job missed its deadline on the cluster",
}

_JOB_ID = re.compile(r"[0-9]{1,18}")
_EPOCH = re.compile(r"[0-9]{1,12}")
#: ``<exit status> <seconds>[.<nanoseconds>]``; a ``date`` without ``%N``
#: leaves it as it is.
_EXIT_LINE = re.compile(
    r"(?P<code>[0-9]{1,3}) (?P<seconds>[0-9]{1,12})(?:\.(?P<fraction>[0-9]{1,9}|%N))?"
)
_WORD = re.compile(r"[A-Za-z0-9_./:+-]{1,64}")


@dataclass(frozen=True)
class SlurmSettings:
    """How jobs are submitted; every value comes from the operator."""

    partition: str | None = None
    time_limit: str | None = None
    cpus: int | None = None
    memory: str | None = None
    extra_args: tuple[str, ...] = ()
    job_prefix: str = "waiter-"
    poll_interval: float = 2.0
    command_timeout: float = 30.0
    sbatch: str = "sbatch"
    squeue: str = "squeue"
    scancel: str = "scancel"


class JobInfo(NamedTuple):
    """One line of ``squeue``."""

    job_id: str
    state: str
    reason: str
    name: str
    #: When the job started running (the epoch), None while it waits.
    started: float | None = None
    #: When the job ended (the epoch), None while it has not.
    ended: float | None = None
    #: The job's working directory: for a waiter job, its run's folder.
    folder: str = ""


class JobExit(NamedTuple):
    """What the job script recorded: the exit status and when."""

    code: int
    ended_at: float


class Outcome(NamedTuple):
    """How an ended job ends its run (abort and time limit aside)."""

    completed: bool
    reason: str | None
    exit_code: int | None
    exit_signal: int | None
    ended_at: float | None


#: What Slurm's commands (and, through ``sbatch``, the jobs) see of the
#: server's environment.
_CLUSTER_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "USER", "SLURM_CONF")


def cluster_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of Slurm's commands, from the server's."""
    env = {k: environ[k] for k in _CLUSTER_ENV if k in environ}
    env.setdefault("PATH", os.defpath)
    return env


def job_name(settings: SlurmSettings, service_id: str) -> str:
    """The job's name: how a server finds a job whose id it never learnt."""
    return f"{settings.job_prefix}{service_id}"


def sbatch_argv(
    settings: SlurmSettings, service_id: str, folder: Path, program_argv: Sequence[str]
) -> list[str]:
    """The ``sbatch`` command line that submits one run's program."""
    argv = [
        settings.sbatch,
        "--parsable",
        f"--job-name={job_name(settings, service_id)}",
        f"--chdir={folder}",
        f"--output={folder / STDOUT_FILE}",
        f"--error={folder / STDERR_FILE}",
    ]
    if settings.partition:
        argv.append(f"--partition={settings.partition}")
    if settings.time_limit:
        argv.append(f"--time={settings.time_limit}")
    if settings.cpus:
        argv.append(f"--cpus-per-task={settings.cpus}")
    if settings.memory:
        argv.append(f"--mem={settings.memory}")
    # A requeued job would run a second time after the service saw it end.
    argv.append("--no-requeue")
    argv.extend(settings.extra_args)
    argv.extend([str(folder / SCRIPT_FILE), str(folder)])
    argv.extend(program_argv)
    return argv


def check_extra_arg(argument: str) -> None:
    """Raise ValueError for an sbatch option the service cannot work with."""
    name = argument.split("=", 1)[0]
    if not argument.startswith("-") or any(c.isspace() for c in argument):
        raise ValueError("one sbatch option, such as --account=cfd")
    if name.startswith("--"):
        # sbatch takes any unambiguous start of a long option (--out=...).
        bad = len(name) > 2 and any(f.startswith(name) for f in FORBIDDEN_ARGS)
    else:
        bad = name[:2] in FORBIDDEN_ARGS
    if bad:
        raise ValueError(f"{name} would stop the service from following its jobs")


def squeue_argv(settings: SlurmSettings) -> list[str]:
    """
    One ``squeue`` for every job of this user, ended ones included (times
    as epoch seconds: the commands run with ``SLURM_TIME_FORMAT=%s``).
    """
    return [
        settings.squeue,
        "--me",
        "--states=all",
        "--noheader",
        "--format=%i|%T|%S|%e|%r|%Z|%j",
    ]


def parse_sbatch(output: str) -> str:
    """
    The job id from ``sbatch --parsable`` (``id`` or ``id;cluster``), on
    its last such line (a site's sbatch may print a banner first).
    """
    for line in reversed(output.strip().splitlines()):
        job_id = line.split(";", 1)[0].strip()
        if _JOB_ID.fullmatch(job_id):
            return job_id
    raise ValueError(f"sbatch gave no job id: {output.strip()[-80:]!r}")


def parse_squeue(output: str) -> dict[str, JobInfo]:
    """``squeue`` lines (``id|state|start|end|reason|folder|name``) by job
    id; junk skipped."""
    jobs = {}
    for line in output.splitlines():
        parts = line.strip().split("|", 6)
        if len(parts) != 7:
            continue
        job_id, state, start, end, reason, folder, name = (p.strip() for p in parts)
        if not _JOB_ID.fullmatch(job_id) or not _WORD.fullmatch(state):
            continue
        reason = reason if _WORD.fullmatch(reason) else ""
        # For a job that has not started (or ended), Slurm's times are guesses.
        started = _epoch(start) if state in RUNNING_STATES | ENDED_STATES else None
        ended = _epoch(end) if state in ENDED_STATES else None
        jobs[job_id] = JobInfo(job_id, state, reason, name, started, ended, folder)
    return jobs


def _epoch(text: str) -> float | None:
    return float(text) if _EPOCH.fullmatch(text) and text != "0" else None


def read_exit(folder: Path) -> JobExit | None:
    """What the job script recorded in the run's folder, if anything."""
    try:
        text = read_capped(folder / EXIT_FILE, 100).decode("ascii")
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    match = _EXIT_LINE.fullmatch(text.strip())
    if match is None or int(match["code"]) > 255:
        return None
    fraction = match["fraction"] if (match["fraction"] or "").isdigit() else "0"
    return JobExit(int(match["code"]), float(f"{match['seconds']}.{fraction}"))


def read_new_lines(
    path: Path, offset: int | None, limit: int = 65536
) -> tuple[list[str], int | None]:
    """
    The whole lines a job has added to its output file since ``offset``
    (None: never read; then only the end of the file is read), at most
    ``limit`` bytes per call, and the offset to read from next time.  A
    line longer than ``limit`` is skipped; a file that shrank is read again
    from its start.  Nothing (and the same offset) if the file is missing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return [], offset
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return [], offset
        size = info.st_size
        start = max(0, size - limit) if offset is None else offset
        if start > size:
            start = 0  # truncated or replaced
        os.lseek(fd, start, os.SEEK_SET)
        data = os.read(fd, min(limit, size - start))
    except OSError:
        return [], offset
    finally:
        os.close(fd)
    end = data.rfind(b"\n")
    if end < 0:
        # No whole line yet; a line that fills the whole window is dropped.
        return [], start + len(data) if len(data) == limit else start
    chunk = data[: end + 1]
    lines = chunk.decode("utf-8", "replace").splitlines()
    if offset is None and start > 0 and lines:
        lines = lines[1:]  # the first line was cut
    return [line[:MAX_LINE] for line in lines], start + len(chunk)


def read_tail(path: Path, lines: int = 20, limit: int = 8192) -> list[str]:
    """The last ``lines`` lines of a job's output file (at most ``limit``
    bytes from its end); nothing if it is missing or not a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        size = os.fstat(fd).st_size
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []
        os.lseek(fd, max(0, size - limit), os.SEEK_SET)
        data = os.read(fd, limit)
    except OSError:
        return []
    finally:
        os.close(fd)
    text = data.decode("utf-8", "replace").splitlines()
    if size > limit and text:
        text = text[1:]  # the first line was cut
    return [line[:MAX_LINE] for line in text[-lines:]]


def write_job_script(folder: Path) -> None:
    """Put the job script in the run's folder (it must be on shared disk)."""
    atomic_write(folder / SCRIPT_FILE, JOB_SCRIPT.encode("ascii"))
    (folder / SCRIPT_FILE).chmod(0o755)


def outcome(state: str | None, recorded: JobExit | None) -> Outcome:
    """
    What an ended job means for its run, from Slurm's last word on it (None
    once Slurm has forgotten it) and what the job script recorded (None
    when the script itself was killed or never ran).
    """
    ended_at = recorded.ended_at if recorded is not None else None
    code = recorded.code if recorded is not None else None
    signal = code - 128 if code is not None and code > 128 else None
    exit_code = None if signal is not None else code
    if state in _CLUSTER_ENDS:
        return Outcome(False, _CLUSTER_ENDS[state], exit_code, signal, ended_at)
    if code == 0:
        return Outcome(True, None, 0, None, ended_at)
    if signal is not None:
        return Outcome(False, "the program was killed", None, signal, ended_at)
    if code is not None:
        return Outcome(False, "the program failed", code, None, ended_at)
    return Outcome(False, None, None, None, None)


# -- running commands -----------------------------------------------------------


class CommandResult(NamedTuple):
    code: int | None
    stdout: str
    stderr: str
    #: The output was longer than the cap and was cut.
    truncated: bool = False


class CommandFailed(Exception):
    """A Slurm command that did not work; its text is safe to log."""


class SubmissionUnknown(CommandFailed):
    """sbatch may have submitted the job, but its id is not known."""


class _Collect(ProcessProtocol):
    """Gathers a short command's output (capped) and its exit status."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.size = 0
        self.done: Deferred[CommandResult] = Deferred()
        self.timer: IDelayedCall | None = None
        self.truncated = False

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if self.size + len(data) > self.limit:
            self.truncated = True
        if self.size >= self.limit:
            return
        data = data[: self.limit - self.size]
        self.size += len(data)
        (self.out if childFD == 1 else self.err).append(data)

    def processEnded(self, reason: Failure) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        code: int | None = None
        if isinstance(reason.value, ProcessDone):
            code = 0
        elif isinstance(reason.value, ProcessTerminated):
            code = reason.value.exitCode
        self.done.callback(
            CommandResult(
                code,
                b"".join(self.out).decode("utf-8", "replace"),
                b"".join(self.err).decode("utf-8", "replace"),
                self.truncated,
            )
        )


def run_command(
    reactor: Any,
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float,
    limit: int = 4 << 20,
) -> Deferred[CommandResult]:
    """Run a short command; KILLed after ``timeout`` seconds."""
    collect = _Collect(limit)
    try:
        transport = reactor.spawnProcess(collect, argv[0], list(argv), env=dict(env))
    except OSError as e:
        return _failed(CommandFailed(f"{argv[0]} could not be started: {e.strerror}"))

    def kill() -> None:
        try:
            transport.signalProcess("KILL")
        except Exception:  # it ended meanwhile
            pass

    collect.timer = reactor.callLater(timeout, kill)
    return collect.done


def _user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def _failed(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(error)
    return d


def first_line(text: str) -> str:
    """The first non-empty line of a command's message, shortened."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return "no message"


# -- the runner ----------------------------------------------------------------------


@dataclass(eq=False)
class SlurmJob:
    """
    A run's job on the cluster: the :class:`~.run.ChildHandle` of a run
    that the cluster runs.  ``job_id`` is None while ``sbatch`` answers (or
    after a restart, until the job is found by name).
    """

    runner: SlurmRunner
    service_id: str
    job_id: str | None = None
    #: The run's folder, where the job works (absolute).
    folder: str = ""
    #: Slurm's last word on the job: its state and the reason (if pending).
    state: str | None = None
    reason: str = ""
    ended: bool = False
    #: Successive polls that did not list a job whose id is known.
    missing: int = 0
    #: For a job whose id is unknown (sbatch's answer was lost, or the
    #: server died while sbatch ran): look for it by name until then.
    search_until: float | None = None
    #: How far the job's stdout (``.slurm.out``) has been read.
    out_offset: int | None = None
    #: Which poll first could have seen the job (an earlier one could not).
    seen_from_poll: int = 0
    cancel_wanted: bool = False
    cancelled: bool = False

    def send_line(self, text: str) -> bool:
        return False  # a batch job has no stdin

    def terminate(self, grace: float) -> None:
        """Cancel the job: Slurm sends TERM, then KILL after its KillWait."""
        if self.ended:
            return
        self.cancel_wanted = True
        if self.job_id is not None:
            self.runner.cancel(self)

    @property
    def pending(self) -> bool:
        """Waiting in the cluster's queue (not yet running there)."""
        return self.state is not None and self.state not in RUNNING_STATES | ENDED_STATES

    @property
    def searching(self) -> bool:
        """Its id unknown, it is looked for by name (and folder)."""
        return self.job_id is None and self.search_until is not None

    @property
    def running(self) -> bool:
        """The program runs (as far as the last poll knows)."""
        return self.state in RUNNING_STATES


class SlurmRunner:
    """Submits, watches and cancels jobs with Slurm's commands."""

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        settings: SlurmSettings,
        env: Mapping[str, str],
        command: Callable[..., Deferred[CommandResult]] = run_command,
    ) -> None:
        self.reactor = reactor
        self.settings = settings
        self.env = dict(env)
        self.command = command
        self.polls = 0
        self._polling = False
        self._last_poll = float("-inf")
        self._complaint: str | None = None

    def _run(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Deferred[CommandResult]:
        env = {**self.env, **(env or {}), "SLURM_TIME_FORMAT": "%s"}
        return self.command(self.reactor, argv, env, self.settings.command_timeout)

    def submit(
        self,
        job: SlurmJob,
        folder: Path,
        program_argv: Sequence[str],
        program_env: Mapping[str, str] | None = None,
    ) -> Deferred[str]:
        """
        Submit a run's program (``sbatch`` passes its environment on to the
        job); fires with the job id, or fails with CommandFailed.
        """
        argv = sbatch_argv(self.settings, job.service_id, folder, program_argv)

        def answered(result: CommandResult) -> str:
            if result.code is None:
                raise SubmissionUnknown("sbatch did not answer in time")
            if result.code != 0:
                raise CommandFailed(f"sbatch refused the job: {first_line(result.stderr)}")
            try:
                job_id = parse_sbatch(result.stdout)
            except ValueError as e:
                raise SubmissionUnknown(str(e)) from None
            job.job_id = job_id
            job.state = "PENDING"  # where every job starts
            job.seen_from_poll = self.polls + 1
            if job.cancel_wanted:
                self.cancel(job)
            return job_id

        return self._run(argv, program_env).addCallback(answered)

    def cancel(self, job: SlurmJob) -> None:
        """``scancel`` the job (once); failures are logged, the poll goes on."""
        if job.cancelled or job.job_id is None:
            return
        job.cancelled = True
        job_id = job.job_id

        def answered(result: CommandResult) -> None:
            if result.code != 0:
                job.cancelled = False  # try again at the next terminate
                self.log.warn(
                    "scancel {job_id} failed: {error}",
                    job_id=job_id,
                    error=first_line(result.stderr),
                )

        def failed(failure: Failure) -> None:
            job.cancelled = False
            self.log.warn("scancel {job_id} failed: {error}", job_id=job_id, error=failure.value)

        self._run([self.settings.scancel, job_id]).addCallbacks(answered, failed)

    def cancel_by_name(self, job: SlurmJob) -> None:
        """
        ``scancel`` any job of this user with the run's name: for a job that
        sbatch may have submitted without the service learning its id.
        """
        argv = [
            self.settings.scancel,
            f"--name={job_name(self.settings, job.service_id)}",
            f"--user={_user()}",
        ]
        self._run(argv).addErrback(
            lambda failure: self.log.warn("scancel by name failed: {error}", error=failure.value)
        )

    def due(self, now: float) -> bool:
        """Whether a poll should start now (none running, interval passed)."""
        return not self._polling and now - self._last_poll >= self.settings.poll_interval

    def poll(self, now: float) -> Deferred[tuple[int, dict[str, JobInfo]] | None]:
        """
        One ``squeue``: fires with (poll number, jobs by id), or None when
        the cluster did not answer (logged once until it answers again).
        """
        self._polling = True
        self._last_poll = now
        self.polls += 1
        number = self.polls

        def answered(result: CommandResult) -> tuple[int, dict[str, JobInfo]] | None:
            if result.code != 0:
                self._complain(f"squeue failed: {first_line(result.stderr)}")
                return None
            if result.truncated:
                # A cut list would make the jobs past the cut look gone.
                self._complain("squeue's answer was too long and was cut")
                return None
            if self._complaint is not None:
                self.log.info("squeue answers again")
                self._complaint = None
            return number, parse_squeue(result.stdout)

        def failed(failure: Failure) -> None:
            self._complain(f"squeue failed: {failure.value}")

        def over(result: Any) -> Any:
            self._polling = False
            return result

        return self._run(squeue_argv(self.settings)).addCallbacks(answered, failed).addBoth(over)

    def _complain(self, text: str) -> None:
        if text != self._complaint:
            self.log.error("{error}; runs on the cluster keep their last state", error=text)
        self._complaint = text

    def find(self, job: SlurmJob, jobs: Mapping[str, JobInfo]) -> JobInfo | None:
        """
        The squeue line of ``job``: by id, or for a recovered job whose id
        was never recorded, by its name *and* its run's folder (another
        service of the same user may use the same serviceID, never the
        same folder).
        """
        name = job_name(self.settings, job.service_id)

        def ours(info: JobInfo) -> bool:
            return info.name == name and (not info.folder or info.folder == job.folder)

        if job.job_id is not None:
            info = jobs.get(job.job_id)
            # A job id that now names another job (ids restart when a
            # cluster loses its state) is not this run's job.
            return info if info is not None and ours(info) else None
        if not job.searching:
            return None
        found = [info for info in jobs.values() if ours(info) and info.folder == job.folder]
        if not found:
            return None
        # The newest job of that name (ids grow).
        return max(found, key=lambda info: int(info.job_id))
