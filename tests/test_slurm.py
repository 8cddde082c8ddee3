"""
Tests for waiter_service.runs.slurm and the manager's runs on a cluster,
with Slurm's commands faked (tests/test_slurm_end_to_end.py uses a real
cluster).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from waiter_service.programs.waiter import Waiter
from waiter_service.runs.manager import COMPLETED, Limits, RunManager, StatusAnswer
from waiter_service.runs.record import CorruptRecord, RunRecord
from waiter_service.runs.recovery import plan_recovery
from waiter_service.runs.slurm import (
    EXIT_FILE,
    JOB_SCRIPT,
    NO_FOLDER,
    SCRIPT_FILE,
    STDERR_FILE,
    STDOUT_FILE,
    CommandFailed,
    CommandResult,
    JobExit,
    SlurmRunner,
    SlurmSettings,
    check_extra_arg,
    cluster_env,
    outcome,
    parse_sbatch,
    parse_squeue,
    read_exit,
    read_new_lines,
    read_tail,
    run_command,
    sbatch_argv,
)
from waiter_service.runs.state import RunState
from waiter_service.runs.store import RunStore
from waiter_service.testing import FakeProcessReactor, SignalRecorder


class CommandLineTests(SynchronousTestCase):
    def test_sbatch_argv(self) -> None:
        """Every setting becomes one sbatch option; the program comes last."""
        settings = SlurmSettings(
            partition="cfd",
            time_limit="2:00:00",
            cpus=4,
            memory="8G",
            extra_args=("--account=proj", "--qos=low"),
        )
        argv = sbatch_argv(settings, "run_1", Path("/w/run_1"), ["/usr/bin/python3", "x.py"])
        self.assertEqual(
            argv,
            [
                "sbatch",
                "--parsable",
                "--job-name=waiter-run_1",
                "--chdir=/w/run_1",
                "--output=/w/run_1/.slurm.out",
                "--error=/w/run_1/.slurm.err",
                "--partition=cfd",
                "--time=2:00:00",
                "--cpus-per-task=4",
                "--mem=8G",
                "--no-requeue",
                "--account=proj",
                "--qos=low",
                f"/w/run_1/{SCRIPT_FILE}",
                "/w/run_1",
                "/usr/bin/python3",
                "x.py",
            ],
        )

    def test_sbatch_argv_defaults(self) -> None:
        """Without settings, Slurm's defaults apply: no option is invented."""
        argv = sbatch_argv(SlurmSettings(), "r", Path("/w/r"), ["prog"])
        self.assertEqual(len(argv), 10)
        self.assertFalse([a for a in argv if a.startswith(("--partition", "--time", "--mem"))])

    def test_parse_sbatch(self) -> None:
        self.assertEqual(parse_sbatch("1234\n"), "1234")
        self.assertEqual(parse_sbatch("77;cluster2\n"), "77")
        for junk in ("", "Submitted batch job 12", "12x", "-5", "--full"):
            self.assertRaises(ValueError, parse_sbatch, junk)

    def test_parse_squeue(self) -> None:
        """Lines become JobInfo by id; junk and hostile lines are skipped."""
        jobs = parse_squeue(
            "12|PENDING|1900000000|N/A|Resources|/w/a|waiter-a\n"
            "13|RUNNING|1800000000|1800003600|None|/w/b|waiter-b|with|bars\n"
            "garbage\n"
            "x1|RUNNING|N/A|N/A|None|/w|n\n"
            "14|RUN NING|N/A|N/A|None|/w|n\n"
            "15|COMPLETED|yesterday|1800000100|\x1b[31m|/w/c|waiter-c\n"
        )
        self.assertEqual(sorted(jobs), ["12", "13", "15"])
        self.assertEqual(jobs["12"].state, "PENDING")
        self.assertEqual(jobs["12"].reason, "Resources")
        self.assertIsNone(jobs["12"].started)  # only Slurm's guess while pending
        self.assertEqual(jobs["13"].name, "waiter-b|with|bars")
        self.assertEqual(jobs["13"].folder, "/w/b")
        self.assertEqual(jobs["13"].started, 1800000000.0)
        self.assertIsNone(jobs["13"].ended)  # the expected end of a running job
        self.assertEqual(jobs["15"].ended, 1800000100.0)
        self.assertEqual(jobs["15"].reason, "")
        self.assertIsNone(jobs["15"].started)

    def test_cluster_env(self) -> None:
        """Slurm's commands see the server's PATH and SLURM_CONF, no secrets."""
        env = cluster_env({"PATH": "/p", "SLURM_CONF": "/c", "API_KEY": "secret"})
        self.assertEqual(env, {"PATH": "/p", "SLURM_CONF": "/c"})


class OutcomeTests(SynchronousTestCase):
    def test_exit_zero_completes(self) -> None:
        self.assertEqual(outcome("COMPLETED", JobExit(0, 50.0)), (True, None, 0, None, 50.0))

    def test_non_zero_exit_fails(self) -> None:
        self.assertEqual(
            outcome("FAILED", JobExit(3, 50.0)), (False, "the program failed", 3, None, 50.0)
        )

    def test_killed_program(self) -> None:
        """The shell reports a death by signal N as 128 + N."""
        self.assertEqual(
            outcome("FAILED", JobExit(137, 50.0)),
            (False, "the program was killed", None, 9, 50.0),
        )

    def test_cluster_reasons_win(self) -> None:
        """A time limit or a cancel says more than the exit status it caused."""
        ended = outcome("TIMEOUT", JobExit(143, 50.0))
        self.assertEqual(ended.reason, "the job reached its time limit on the cluster")
        self.assertEqual(ended.exit_signal, 15)
        self.assertEqual(outcome("CANCELLED", None).reason, "the job was cancelled on the cluster")
        self.assertEqual(outcome("OUT_OF_MEMORY", None).completed, False)

    def test_nothing_known(self) -> None:
        """No exit file and no word from Slurm: the caller must look at the files."""
        self.assertEqual(outcome(None, None), (False, None, None, None, None))
        self.assertEqual(outcome("COMPLETED", None), (False, None, None, None, None))


class FolderFilesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = Path(self.mktemp()).resolve()
        self.folder.mkdir()

    def test_read_exit(self) -> None:
        (self.folder / EXIT_FILE).write_text("3 1700000000.250000000\n")
        self.assertEqual(read_exit(self.folder), JobExit(3, 1700000000.25))
        (self.folder / EXIT_FILE).write_text("0 1700000000.%N\n")  # a date without %N
        self.assertEqual(read_exit(self.folder), JobExit(0, 1700000000.0))

    def test_read_exit_junk(self) -> None:
        self.assertIsNone(read_exit(self.folder))
        for junk in ("", "3", "a b", "1 2 3", "x" * 500, "0 nan", "0 inf", "-1 5", "300 5"):
            (self.folder / EXIT_FILE).write_text(junk)
            self.assertIsNone(read_exit(self.folder), junk)
        (self.folder / EXIT_FILE).unlink()
        os.symlink("/etc/hostname", self.folder / EXIT_FILE)
        self.assertIsNone(read_exit(self.folder))

    def test_read_tail(self) -> None:
        """The last lines, from the end of a large file; never a cut first line."""
        path = self.folder / STDERR_FILE
        path.write_text("".join(f"line {i}\n" for i in range(5000)))
        self.assertEqual(read_tail(path, lines=3), ["line 4997", "line 4998", "line 4999"])
        tail = read_tail(path, lines=10_000, limit=100)
        self.assertTrue(all(line.startswith("line ") for line in tail), tail)
        self.assertEqual(read_tail(self.folder / "missing"), [])
        os.mkfifo(self.folder / "fifo")
        self.assertEqual(read_tail(self.folder / "fifo"), [])

    def test_read_new_lines(self) -> None:
        """Whole lines only, from where the last read stopped."""
        path = self.folder / STDOUT_FILE
        self.assertEqual(read_new_lines(path, None), ([], None))
        path.write_text("progress 1\nprogress 2\npartial")
        lines, offset = read_new_lines(path, None)
        self.assertEqual(lines, ["progress 1", "progress 2"])
        self.assertEqual(read_new_lines(path, offset), ([], offset))
        with path.open("a") as f:
            f.write(" line\nprogress 3\n")
        lines, offset = read_new_lines(path, offset)
        self.assertEqual(lines, ["partial line", "progress 3"])
        path.write_text("new\n")  # shorter: replaced
        self.assertEqual(read_new_lines(path, offset)[0], ["new"])

    def test_read_new_lines_bounded(self) -> None:
        """A first read starts near the end; a giant line is skipped, not kept."""
        path = self.folder / STDOUT_FILE
        path.write_text("".join(f"line {i}\n" for i in range(100_000)))
        lines, offset = read_new_lines(path, None, limit=100)
        self.assertEqual(lines[-1], "line 99999")
        self.assertTrue(all(line.startswith("line ") for line in lines))
        self.assertEqual(offset, path.stat().st_size)
        path.write_text("x" * 1000 + "\nafter\n")
        lines, offset = read_new_lines(path, 0, limit=100)
        self.assertEqual((lines, offset), ([], 100))
        for _ in range(20):
            lines, offset = read_new_lines(path, offset, limit=100)
            if lines:
                break
        self.assertEqual(lines[-1], "after")

    def run_script(self, *program: str) -> subprocess.Popen[bytes]:
        script = self.folder / SCRIPT_FILE
        script.write_text(JOB_SCRIPT)
        script.chmod(0o755)
        # As sbatch runs it: the run's folder first, from anywhere (--chdir aside).
        return subprocess.Popen([str(script), str(self.folder), *program], cwd="/")

    def test_job_script_records_exit(self) -> None:
        """The job script passes the exit status on and writes it, with the time."""
        before = time.time()
        process = self.run_script("sh", "-c", "exit 7")
        self.assertEqual(process.wait(10), 7)
        recorded = read_exit(self.folder)
        assert recorded is not None
        self.assertEqual(recorded.code, 7)
        self.assertTrue(before - 1 <= recorded.ended_at <= time.time() + 1)

    def test_job_script_without_its_folder(self) -> None:
        """A run folder the node cannot see: a clear message, a known status, nothing written."""
        script = self.folder / SCRIPT_FILE
        script.write_text(JOB_SCRIPT)
        script.chmod(0o755)
        done = subprocess.run(
            [str(script), str(self.folder / "not-shared"), "touch", "x"],
            cwd=self.folder,
            capture_output=True,
            text=True,
            check=False,
        )
        self.assertEqual(done.returncode, NO_FOLDER)
        self.assertIn("not visible", done.stderr)
        self.assertFalse((self.folder / "x").exists())
        self.assertIsNone(read_exit(self.folder))

    def test_job_script_clears_an_old_exit(self) -> None:
        """An exit file left by an earlier attempt is never taken for this one's."""
        (self.folder / EXIT_FILE).write_text("0 1\n")
        process = self.run_script("sh", "-c", f"test -e {EXIT_FILE} && exit 9; exit 4")
        self.assertEqual(process.wait(10), 4)
        self.assertEqual(read_exit(self.folder).code, 4)  # type: ignore[union-attr]

    def test_job_script_outlives_term(self) -> None:
        """
        TERM to the whole job (what scancel does) reaches the program; the
        script waits for it and records how it ended.
        """
        ready = self.folder / "ready"
        process = self.run_script(
            "sh", "-c", f"trap 'exit 5' TERM; touch {ready}; while :; do sleep 0.05; done"
        )
        deadline = time.monotonic() + 10
        while not ready.exists():
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        for pid in [process.pid, *_children(process.pid)]:
            os.kill(pid, signal.SIGTERM)
        self.assertEqual(process.wait(10), 5)
        self.assertEqual(read_exit(self.folder).code, 5)  # type: ignore[union-attr]


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class RunCommandTests(SynchronousTestCase):
    def test_output_and_status(self) -> None:
        reactor = FakeProcessReactor()
        d = run_command(reactor, ["squeue", "--me"], {"PATH": "/bin"}, timeout=5)
        process = reactor.processes[-1]
        self.assertEqual(process.args, ["squeue", "--me"])
        process.stdout(b"12|RUNNING|N/A|None|n\n")
        process.stderr(b"warn\n")
        process.exit(0)
        self.assertEqual(
            self.successResultOf(d), CommandResult(0, "12|RUNNING|N/A|None|n\n", "warn\n")
        )

    def test_timeout_kills(self) -> None:
        """A command that hangs is KILLed after its timeout."""
        reactor = FakeProcessReactor()
        d = run_command(reactor, ["squeue"], {}, timeout=5)
        process = reactor.processes[-1]
        reactor.advance(5)
        self.assertEqual(process.signals, ["KILL"])
        process.killed(9)
        self.assertEqual(self.successResultOf(d).code, None)

    def test_output_is_capped(self) -> None:
        reactor = FakeProcessReactor()
        d = run_command(reactor, ["squeue"], {}, timeout=5, limit=10)
        process = reactor.processes[-1]
        process.stdout(b"x" * 100)
        process.exit(0)
        self.assertEqual(self.successResultOf(d).stdout, "x" * 10)


# -- the manager with a faked cluster ---------------------------------------


@dataclass
class Call:
    argv: list[str]
    env: dict[str, str]
    d: Deferred[CommandResult] = field(default_factory=Deferred)

    def answer(self, stdout: str = "", code: int = 0, stderr: str = "") -> None:
        self.d.callback(CommandResult(code, stdout, stderr))


class FakeSlurm:
    """Slurm's commands, answered by the test."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def __call__(self, reactor: Any, argv: Any, env: Any, timeout: float) -> Deferred[Any]:
        call = Call(list(argv), dict(env))
        self.calls.append(call)
        return call.d

    def pending(self, command: str) -> list[Call]:
        return [c for c in self.calls if c.argv[0] == command and not c.d.called]

    def last(self, command: str) -> Call:
        calls = self.pending(command)
        assert calls, f"no {command} waiting; calls: {[c.argv for c in self.calls]}"
        return calls[-1]


def page(answer: StatusAnswer) -> str:
    return base64.b64decode(answer.status).decode("utf-8")


class ClusterTestCase(SynchronousTestCase):
    """A manager whose runs go to a faked cluster."""

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.reactor.advance(1_000_000)
        self.root = Path(self.mktemp())
        self.store = RunStore(self.root)
        self.slurm = FakeSlurm()
        self.manager = self.make_manager()
        self.manager.start_service()

    def make_manager(self, **kwargs: Any) -> RunManager:
        settings = SlurmSettings(poll_interval=1.0)
        runner = SlurmRunner(self.reactor, settings, {"PATH": "/usr/bin"}, command=self.slurm)
        options: dict[str, Any] = {
            "launcher": ["/usr/bin/setsid", "/usr/bin/env"],
            "signal_group": SignalRecorder(),
            "identify": self.reactor.identify,
            "is_alive": self.reactor.is_alive,
            "cluster": runner,
        }
        options.update(kwargs)
        return RunManager(self.reactor, self.store, Waiter(), **options)

    def restart(self, **kwargs: Any) -> RunManager:
        """A new server on the same folder (the old one vanished, as after SIGKILL)."""
        self.slurm = FakeSlurm()
        self.manager = self.make_manager(**kwargs)
        self.manager.start_service()
        return self.manager

    def submit(self, service_id: str = "run_1", job_id: str = "12", seconds: int = 60) -> None:
        self.manager.start(service_id, {"secondsToWait": seconds})
        self.slurm.last("sbatch").answer(f"{job_id}\n")

    def squeue(self, *lines: str) -> Call:
        """
        Let a poll happen and answer it with ``lines`` (``id|state|start|
        end|reason|folder|name``; the folder ``/w`` is the run's own).
        """
        self.reactor.advance(1)
        call = self.slurm.last("squeue")
        root = self.root.resolve()
        lines = tuple(re.sub(r"\|/w\|waiter-(.+)$", rf"|{root}/\1|waiter-\1", x) for x in lines)
        call.answer("".join(line + "\n" for line in lines))
        return call

    def saved(self, service_id: str = "run_1") -> dict[str, Any]:
        return json.loads((self.root / service_id / "run.json").read_text())

    def folder(self, service_id: str = "run_1") -> Path:
        return self.root / service_id

    def finish_files(self, service_id: str = "run_1", code: int = 0, at: float = 0) -> None:
        """What the waiter and the job script leave behind when they are done."""
        folder = self.folder(service_id)
        (folder / "result").write_text("waited\n")
        (folder / "status").write_text("100")
        (folder / EXIT_FILE).write_text(f"{code} {at or self.reactor.seconds()}\n")

    def state(self, service_id: str = "run_1") -> RunState:
        return self.manager.runs[service_id].record.state


class ClusterManagerTests(ClusterTestCase):
    def test_start_submits_a_batch_job(self) -> None:
        """A start runs sbatch (no local child) with the job script in the run's folder."""
        answer = self.manager.start("run_1", {"secondsToWait": 60})
        self.assertIn("0 %", page(answer))
        call = self.slurm.last("sbatch")
        folder = self.folder().resolve()
        self.assertIn("--job-name=waiter-run_1", call.argv)
        self.assertEqual(call.argv[7:9], [str(folder / SCRIPT_FILE), str(folder)])
        self.assertEqual(call.argv[9:], Waiter().invocation({"secondsToWait": 60}, folder).argv)
        self.assertTrue(os.access(folder / SCRIPT_FILE, os.X_OK))
        self.assertEqual(self.saved()["runner"], "slurm")
        self.assertIsNone(self.saved()["job_id"])
        call.answer("12\n")
        self.assertEqual(self.saved()["job_id"], "12")
        self.assertEqual(self.state(), RunState.RUNNING)

    def test_cluster_queue_on_the_page(self) -> None:
        """A pending job is shown as queued on the cluster, with Slurm's state and reason."""
        self.submit()
        self.manager.status("run_1")
        self.squeue("12|PENDING|N/A|N/A|Resources|/w|waiter-run_1")
        text = page(self.manager.status("run_1"))
        self.assertIn("Queued on the cluster", text)
        self.assertIn("PENDING", text)
        self.assertIn("Resources", text)
        self.assertEqual(self.manager.status("run_1").status, "UNCHANGED")
        self.squeue("12|PENDING|N/A|N/A|Priority|/w|waiter-run_1")
        self.assertIn("Priority", page(self.manager.status("run_1")))
        self.reactor.advance(60)
        started = int(self.reactor.seconds()) - 5
        self.squeue(f"12|RUNNING|{started}|N/A|None|/w|waiter-run_1")
        self.assertNotIn("Queued on the cluster", page(self.manager.status("run_1")))
        # The time in the cluster's queue does not count as the run's.
        self.assertEqual(self.saved()["started_at"], started)

    def test_progress_from_the_run_folder(self) -> None:
        self.submit()
        (self.folder() / "status").write_text("42")
        self.squeue("12|RUNNING|N/A|N/A|None|/w|waiter-run_1")
        self.assertEqual(self.manager.runs["run_1"].record.percent, 42)
        self.assertIn("42 %", page(self.manager.status("run_1")))

    def test_progress_from_the_job_output(self) -> None:
        """A program that only prints its progress is followed through the job's stdout."""
        self.submit()
        self.squeue("12|RUNNING|N/A|N/A|None|/w|waiter-run_1")
        (self.folder() / STDOUT_FILE).write_text("progress 37 meshing\n")
        self.reactor.advance(1)
        record = self.manager.runs["run_1"].record
        self.assertEqual((record.percent, record.message), (37, "meshing"))

    def test_completed_with_its_true_end(self) -> None:
        """The run ends when Slurm says so; the end time is the job script's."""
        self.submit()
        start = self.reactor.seconds()
        self.reactor.advance(30)
        self.finish_files(at=start + 20)
        self.squeue("12|COMPLETED|N/A|N/A|None|/w|waiter-run_1")
        answer = self.manager.status("run_1")
        self.assertEqual(answer.status, COMPLETED)
        self.assertEqual(base64.b64decode(answer.outputs[0]), b"waited\n")
        self.assertEqual(self.saved()["ended_at"], start + 20)
        self.assertEqual(self.saved()["exit_code"], 0)

    def test_failed_program(self) -> None:
        """A non-zero exit fails the run, with the last lines of the job's stderr."""
        self.submit()
        (self.folder() / EXIT_FILE).write_text(f"3 {self.reactor.seconds()}\n")
        folder = self.folder().resolve()
        (folder / STDERR_FILE).write_text(f"Traceback\n  in {folder}/x.py\nboom\n")
        self.squeue("12|FAILED|N/A|N/A|NonZeroExitCode|/w|waiter-run_1")
        record = self.manager.runs["run_1"].record
        self.assertEqual(record.state, RunState.FAILED)
        self.assertEqual(record.failure_reason, "the program failed")
        self.assertEqual(record.exit_code, 3)
        self.assertEqual(record.output_tail[-1], "boom")
        self.assertNotIn(str(folder), "\n".join(record.output_tail))

    def test_exit_zero_without_result(self) -> None:
        self.submit()
        (self.folder() / EXIT_FILE).write_text(f"0 {self.reactor.seconds()}\n")
        self.squeue("12|COMPLETED|N/A|N/A|None|/w|waiter-run_1")
        record = self.manager.runs["run_1"].record
        self.assertEqual(record.state, RunState.FAILED)
        self.assertEqual(record.failure_reason, "the program ended without writing its result")

    def test_abort_cancels_the_job(self) -> None:
        """abortService scancels the job and answers once Slurm says it ended."""
        self.submit()
        self.squeue("12|RUNNING|N/A|N/A|None|/w|waiter-run_1")
        d = self.manager.abort("run_1")
        self.assertEqual(self.slurm.last("scancel").argv, ["scancel", "12"])
        self.slurm.last("scancel").answer()
        self.assertNoResult(d)
        (self.folder() / EXIT_FILE).write_text(f"143 {self.reactor.seconds()}\n")
        self.squeue("12|CANCELLED|N/A|N/A|None|/w|waiter-run_1")
        self.assertTrue(self.successResultOf(d))
        record = self.manager.runs["run_1"].record
        self.assertEqual(record.state, RunState.ABORTED)
        self.assertEqual(record.exit_signal, 15)

    def test_abort_before_the_job_id(self) -> None:
        """An abort while sbatch still answers cancels the job as soon as its id is known."""
        self.manager.start("run_1", {"secondsToWait": 60})
        d = self.manager.abort("run_1")
        self.assertEqual(self.slurm.pending("scancel"), [])
        self.slurm.last("sbatch").answer("12\n")
        self.assertEqual(self.slurm.last("scancel").argv, ["scancel", "12"])
        self.squeue("12|CANCELLED|N/A|N/A|None|/w|waiter-run_1")
        self.assertTrue(self.successResultOf(d))
        self.assertEqual(self.state(), RunState.ABORTED)

    def test_cancelled_elsewhere(self) -> None:
        """A job cancelled by someone else fails its run (it was not aborted)."""
        self.submit()
        self.squeue("12|CANCELLED|N/A|N/A|None|/w|waiter-run_1")
        record = self.manager.runs["run_1"].record
        self.assertEqual(record.state, RunState.FAILED)
        self.assertEqual(record.failure_reason, "the job was cancelled on the cluster")

    def test_sbatch_refuses(self) -> None:
        """A refused submission fails the run, without Slurm's words, and frees the slot."""
        self.manager.start("run_1", {"secondsToWait": 60})
        self.slurm.last("sbatch").answer(code=1, stderr="sbatch: error: invalid partition x\n")
        self.reactor.advance(0)
        record = self.manager.runs["run_1"].record
        self.assertEqual(record.state, RunState.FAILED)
        self.assertNotIn("partition", page(self.manager.status("run_1")))
        self.assertEqual(self.manager.active, {})

    def test_poll_before_the_job_id_ends_nothing(self) -> None:
        """A squeue that began before sbatch answered cannot see the job: no end."""
        self.manager.start("run_0", {"secondsToWait": 60})
        self.slurm.last("sbatch").answer("11\n")
        self.manager.start("run_1", {"secondsToWait": 60})
        self.reactor.advance(1)
        poll = self.slurm.last("squeue")
        self.slurm.last("sbatch").answer("12\n")
        folder = self.root.resolve() / "run_0"
        poll.answer(f"11|RUNNING|N/A|N/A|None|{folder}|waiter-run_0\n")
        self.assertEqual(self.state(), RunState.RUNNING)
        self.squeue("11|RUNNING|N/A|N/A|None|/w|waiter-run_0")
        self.assertEqual(self.state(), RunState.RUNNING)  # missing once: maybe a glitch
        self.squeue("11|RUNNING|N/A|N/A|None|/w|waiter-run_0")
        self.assertEqual(self.state(), RunState.FAILED)  # gone, without a word

    def test_job_forgotten_by_slurm(self) -> None:
        """A job missing from two polls in a row ends by what its script recorded."""
        self.submit()
        self.finish_files()
        self.squeue()
        self.assertEqual(self.state(), RunState.RUNNING)
        self.squeue()
        self.assertEqual(self.state(), RunState.COMPLETED)

    def test_squeue_failure_ends_nothing(self) -> None:
        """When squeue fails, runs keep their state; it is logged once."""
        self.submit()
        down = "slurm_load_jobs error: Unable to contact slurm controller\n"
        with capturedLogs() as events:
            for _ in range(3):
                self.reactor.advance(1)
                self.slurm.last("squeue").answer(code=1, stderr=down)
        errors = [e for e in events if "squeue failed" in e.get("error", "")]
        self.assertEqual(len(errors), 1)
        self.assertEqual(self.state(), RunState.RUNNING)
        self.squeue("12|RUNNING|N/A|N/A|None|/w|waiter-run_1")
        self.assertEqual(self.state(), RunState.RUNNING)

    def test_one_squeue_at_a_time(self) -> None:
        self.submit()
        self.reactor.advance(1)
        self.reactor.advance(1)
        self.reactor.advance(1)
        self.assertEqual(len(self.slurm.pending("squeue")), 1)

    def test_no_poll_without_cluster_runs(self) -> None:
        self.reactor.advance(10)
        self.assertEqual(self.slurm.calls, [])

    def test_notify_is_not_delivered(self) -> None:
        self.submit()
        self.assertEqual(
            self.manager.notify("run_1", "finish"),
            "not delivered: a run on the cluster takes no messages",
        )

    def test_max_running_bounds_submissions(self) -> None:
        self.manager.limits = Limits(max_running=2)
        for i in range(4):
            self.manager.start(f"run_{i}", {"secondsToWait": 60})
        self.assertEqual(len(self.slurm.pending("sbatch")), 2)
        self.assertIn("position 2", page(self.manager.status("run_3")))

    def test_time_limit_cancels(self) -> None:
        self.manager.limits = Limits(max_seconds=30)
        self.submit()
        self.reactor.advance(30)
        self.assertEqual(self.slurm.last("scancel").argv, ["scancel", "12"])
        self.squeue("12|CANCELLED|N/A|N/A|None|/w|waiter-run_1")
        record = self.manager.runs["run_1"].record
        self.assertEqual((record.state, record.failure_reason), (RunState.FAILED, "time limit"))

    def test_time_limit_counts_from_the_job_start(self) -> None:
        """Time in the cluster's queue does not count against --max-seconds."""
        self.manager.limits = Limits(max_seconds=30)
        self.submit()
        self.squeue("12|PENDING|N/A|N/A|Priority|/w|waiter-run_1")
        self.reactor.advance(25)
        self.squeue("12|RUNNING|N/A|N/A|None|/w|waiter-run_1")
        self.reactor.advance(25)
        self.assertEqual(self.slurm.pending("scancel"), [])
        self.reactor.advance(6)
        self.assertEqual(self.slurm.last("scancel").argv, ["scancel", "12"])

    def test_restart_takes_jobs_back(self) -> None:
        """After a crash, running jobs are polled again and end correctly."""
        self.submit("run_1", "12")
        self.submit("run_2", "13")
        self.squeue(
            "12|RUNNING|N/A|N/A|None|/w|waiter-run_1",
            "13|PENDING|N/A|N/A|Resources|/w|waiter-run_2",
        )
        self.restart()
        self.assertEqual(self.state("run_1"), RunState.RUNNING)
        self.squeue(
            "12|RUNNING|N/A|N/A|None|/w|waiter-run_1",
            "13|PENDING|N/A|N/A|Resources|/w|waiter-run_2",
        )
        self.assertIn("Queued on the cluster", page(self.manager.status("run_2")))
        self.finish_files("run_1")
        self.squeue(
            "12|COMPLETED|N/A|N/A|None|/w|waiter-run_1", "13|RUNNING|N/A|N/A|None|/w|waiter-run_2"
        )
        self.assertEqual(self.state("run_1"), RunState.COMPLETED)
        self.assertEqual(self.state("run_2"), RunState.RUNNING)

    def test_ended_while_down(self) -> None:
        """A job that ended while no server ran is recorded with its true end."""
        self.submit()
        start = self.reactor.seconds()
        self.reactor.advance(3600)
        self.finish_files(code=0, at=start + 60)
        self.restart()
        self.squeue()  # Slurm forgot the job long ago
        self.squeue()
        record = self.manager.runs["run_1"].record
        self.assertEqual(record.state, RunState.COMPLETED)
        self.assertEqual(record.ended_at, start + 60)

    def test_restart_before_the_job_id(self) -> None:
        """
        A server that died before sbatch answered: the job is found by its
        name in its run's folder (not another service's job of that name).
        """
        self.manager.start("run_1", {"secondsToWait": 60})
        self.assertIsNone(self.saved()["job_id"])
        self.restart()
        folder = self.folder().resolve()
        self.squeue(
            f"40|RUNNING|N/A|N/A|None|{folder}|waiter-other",
            f"41|RUNNING|N/A|N/A|None|{folder}|waiter-run_1",
            "42|RUNNING|N/A|N/A|None|/elsewhere/run_1|waiter-run_1",
        )
        self.assertEqual(self.saved()["job_id"], "41")
        d = self.manager.abort("run_1")
        self.assertEqual(self.slurm.last("scancel").argv, ["scancel", "41"])
        self.squeue(f"41|CANCELLED|N/A|N/A|None|{folder}|waiter-run_1")
        self.assertTrue(self.successResultOf(d))

    def test_restart_never_submitted(self) -> None:
        """
        No job by that name in its folder, no exit file: failed once the old
        server's sbatch surely ended; never submitted twice; anything of
        that name cancelled, should it show up late.
        """
        self.manager.start("run_1", {"secondsToWait": 60})
        self.restart()
        self.squeue("40|RUNNING|N/A|N/A|None|/w|waiter-other")
        self.assertEqual(self.state(), RunState.RUNNING)  # sbatch may still be at work
        self.reactor.advance(40)
        self.squeue("40|RUNNING|N/A|N/A|None|/w|waiter-other")
        record = self.manager.runs["run_1"].record
        self.assertEqual(record.state, RunState.FAILED)
        self.assertIn("shared", record.failure_reason)
        self.assertEqual(self.slurm.pending("sbatch"), [])
        self.assertEqual(self.slurm.last("scancel").argv[:2], ["scancel", "--name=waiter-run_1"])

    def test_local_server_takes_back_cluster_runs(self) -> None:
        """A server restarted without --runner slurm still watches the cluster's runs."""
        self.submit()
        self.manager = RunManager(
            self.reactor,
            self.store,
            Waiter(),
            launcher=["/usr/bin/setsid", "/usr/bin/env"],
            signal_group=SignalRecorder(),
        )
        self.manager.start_service()
        assert self.manager.cluster is not None
        self.manager.cluster.command = self.slurm
        self.finish_files()
        self.squeue("12|COMPLETED|N/A|N/A|None|/w|waiter-run_1")
        self.assertEqual(self.state(), RunState.COMPLETED)


class RecordTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        record = RunRecord("r", "Waiter", {}, 1.0, runner="slurm", job_id="99")
        again = RunRecord.from_dict(json.loads(json.dumps(record.to_dict())))
        self.assertEqual((again.runner, again.job_id), ("slurm", "99"))

    def test_older_records(self) -> None:
        """Records written before runners existed are local runs."""
        data = RunRecord("r", "Waiter", {}, 1.0).to_dict()
        del data["runner"], data["job_id"]
        self.assertEqual(RunRecord.from_dict(data).runner, "local")

    def test_hostile_job_id(self) -> None:
        """A job id is an argument of scancel: never anything but a number."""
        for bad in ("--full", "12 13", "-1", "١٢", "9" * 30):
            data = RunRecord("r", "Waiter", {}, 1.0, runner="slurm").to_dict()
            data["job_id"] = bad
            self.assertRaises(CorruptRecord, RunRecord.from_dict, data)
        data["job_id"] = "12"
        data["runner"] = "cloud"
        self.assertRaises(CorruptRecord, RunRecord.from_dict, data)


class ClusterFaultTests(ClusterTestCase):
    """What goes wrong with Slurm's commands, and what the service makes of it."""

    def test_sbatch_banner(self) -> None:
        """A site's sbatch may print a banner before the id."""
        self.assertEqual(parse_sbatch("Note: maintenance on Friday\n1234\n"), "1234")

    def test_sbatch_times_out(self) -> None:
        """sbatch killed before it answered: the job may exist; it is found by name."""
        self.manager.start("run_1", {"secondsToWait": 60})
        self.slurm.last("sbatch").answer(code=None)  # type: ignore[arg-type]
        self.reactor.advance(0)
        self.assertEqual(self.state(), RunState.RUNNING)
        self.squeue("77|RUNNING|N/A|N/A|None|/w|waiter-run_1")
        self.assertEqual(self.saved()["job_id"], "77")

    def test_sbatch_answer_without_id(self) -> None:
        """sbatch said 0 but no id: looked for by name, given up after a while."""
        self.manager.start("run_1", {"secondsToWait": 60})
        self.slurm.last("sbatch").answer("Submitted, somewhere\n")
        self.reactor.advance(0)
        self.squeue()
        self.assertEqual(self.state(), RunState.RUNNING)
        self.reactor.advance(60)
        self.squeue()
        self.assertEqual(self.state(), RunState.FAILED)
        self.assertEqual(self.slurm.last("scancel").argv[1], "--name=waiter-run_1")

    def test_sbatch_cannot_start(self) -> None:
        """
        sbatch failing at once (not found, out of processes) fails each run
        in its own reactor turn: no recursion, and the queue drains.
        """
        self.manager.limits = Limits(max_running=1)
        for i in range(300):
            self.manager.start(f"run_{i}", {"secondsToWait": 60})

        def broken(reactor: Any, argv: Any, env: Any, timeout: float) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            d.errback(CommandFailed("sbatch could not be started: No such file"))
            return d

        assert self.manager.cluster is not None
        self.manager.cluster.command = broken
        self.slurm.last("sbatch").answer(code=1, stderr="sbatch: error\n")
        for _ in range(400):
            self.reactor.advance(0)
        states = {run.record.state for run in self.manager.runs.values()}
        self.assertEqual(states, {RunState.FAILED})
        self.assertEqual(self.manager.active, {})

    def test_abort_then_sbatch_refuses(self) -> None:
        self.manager.start("run_1", {"secondsToWait": 60})
        d = self.manager.abort("run_1")
        self.slurm.last("sbatch").answer(code=1, stderr="sbatch: error\n")
        self.reactor.advance(0)
        self.assertTrue(self.successResultOf(d))
        self.assertEqual(self.state(), RunState.ABORTED)

    def test_failed_scancel_is_retried(self) -> None:
        self.submit()
        d = self.manager.abort("run_1")
        self.slurm.last("scancel").answer(code=1, stderr="scancel: error: Unable to contact\n")
        self.squeue("12|RUNNING|N/A|N/A|None|/w|waiter-run_1")
        self.assertEqual(self.slurm.last("scancel").argv, ["scancel", "12"])
        self.slurm.last("scancel").answer()
        self.squeue("12|CANCELLED|N/A|N/A|None|/w|waiter-run_1")
        self.assertTrue(self.successResultOf(d))

    def test_truncated_squeue_ends_nothing(self) -> None:
        """A cut squeue answer could hide jobs: it counts as no answer."""
        self.submit()
        for _ in range(3):
            self.reactor.advance(1)
            self.slurm.last("squeue").d.callback(CommandResult(0, "", "", truncated=True))
        self.assertEqual(self.state(), RunState.RUNNING)

    def test_job_id_of_another_job(self) -> None:
        """An id that now names another job (the cluster lost its state) is not ours."""
        self.submit()
        self.squeue("12|RUNNING|N/A|N/A|None|/w|someone-else")
        self.squeue("12|RUNNING|N/A|N/A|None|/w|someone-else")
        self.assertEqual(self.state(), RunState.FAILED)
        self.assertEqual(self.slurm.pending("scancel"), [])

    def test_suspended_job_runs(self) -> None:
        """A suspended job has started: its page is not the cluster's queue."""
        self.submit()
        self.squeue("12|SUSPENDED|N/A|N/A|None|/w|waiter-run_1")
        self.assertNotIn("Queued on the cluster", page(self.manager.status("run_1")))
        self.assertEqual(self.state(), RunState.RUNNING)

    def test_take_back_an_abort(self) -> None:
        """An abort asked before a crash is carried out by the next server."""
        self.submit()
        self.manager.abort("run_1")
        self.restart()
        self.assertEqual(self.slurm.last("scancel").argv, ["scancel", "12"])

    def test_stop_keeps_jobs(self) -> None:
        """A graceful stop (--on-stop keep) leaves jobs to the cluster."""
        self.submit()
        self.successResultOf(self.manager.stop_service())
        self.assertEqual(self.slurm.pending("scancel"), [])
        self.assertEqual(self.saved()["state"], "running")

    def test_stop_cancels_jobs(self) -> None:
        """--on-stop stop cancels the jobs and waits for their end."""
        self.manager = self.restart(on_stop="stop")
        self.submit()
        d = self.manager.stop_service()
        self.assertEqual(self.slurm.last("scancel").argv, ["scancel", "12"])
        self.assertNoResult(d)
        self.squeue("12|CANCELLED|N/A|N/A|None|/w|waiter-run_1")
        self.successResultOf(d)
        self.assertEqual(self.saved()["failure_reason"], "interrupted: the service stopped")

    def test_stop_does_not_wait_forever(self) -> None:
        """With Slurm unreachable, a stop gives up waiting; the run stays for the next server."""
        self.manager = self.restart(on_stop="stop")
        self.submit()
        d = self.manager.stop_service()
        for _ in range(60):
            self.reactor.advance(1)
            for call in self.slurm.pending("squeue"):
                call.answer(code=1, stderr="slurm_load_jobs error: Unable to contact\n")
        self.successResultOf(d)
        self.assertEqual(self.saved()["state"], "running")


class ExtraArgumentTests(SynchronousTestCase):
    def test_allowed(self) -> None:
        for good in ("--account=cfd", "--qos=low", "-A", "--exclusive", "-N2", "--gres=gpu:1"):
            check_extra_arg(good)

    def test_refused(self) -> None:
        """Options that would stop the service from following its jobs, abbreviated or not."""
        for bad in (
            "--wait",
            "-W",
            "--wai",
            "--clusters=b",
            "-Mb",
            "--out=x",
            "-o",
            "--array=1-3",
            "--chdir=/",
            "--job-name=x",
            "--requeue",
            "--hold",
            "x",
            "--a b",
            "",
        ):
            self.assertRaises(ValueError, check_extra_arg, bad)


class RecoveryPlanTests(SynchronousTestCase):
    def test_cluster_runs_are_taken_back(self) -> None:
        """A running run on the cluster is never judged by a local pid."""
        record = RunRecord("r", "Waiter", {}, 1.0, state=RunState.RUNNING, runner="slurm")
        plan = plan_recovery([record], is_alive=lambda identity: False)
        self.assertEqual((plan.cluster, plan.interrupted), ([record], []))
