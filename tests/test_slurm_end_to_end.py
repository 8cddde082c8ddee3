"""
End to end on a real Slurm cluster: ``twistd -n waiter --runner slurm``,
a private single-node cluster (tests/slurm_cluster.py), real waiters as
batch jobs and a real SOAP client (zeep).

Skipped, with the reason, where Slurm is not installed or the tests do not
run as root; .ci/run installs Slurm, so in CI they run.
"""

from __future__ import annotations

import base64
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import zeep
from twisted.trial.unittest import SkipTest, TestCase

from tests.e2e_server import Server, wait_for
from tests.slurm_cluster import SlurmCluster, missing
from waiter_service.runs.slurm import EXIT_FILE, read_exit


def page_text(status: str) -> str:
    """The visible text of a status page (or the status as it is)."""
    if status in ("COMPLETED", "UNCHANGED"):
        return status
    html = base64.b64decode(status).decode("utf-8")
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


class SlurmEndToEndTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        reason = missing()
        if reason:
            raise SkipTest(f"NO SLURM TESTS: {reason}")
        # munge's socket path must stay short (108 bytes): not under _trial_temp.
        folder = Path(tempfile.mkdtemp(prefix="waiter-slurm-"))
        self.addCleanup(shutil.rmtree, folder, True)
        self.cluster = SlurmCluster(folder, cpus=2)
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.home = Path(self.mktemp()).resolve()
        self.pages: dict[str, str] = {}

    def start_server(self, *options: str) -> tuple[Server, Any]:
        server = Server(
            self.home,
            "--runner",
            "slurm",
            "--slurm-poll",
            "0.3",
            *options,
            env={"SLURM_CONF": str(self.cluster.conf)},
        )
        self.addCleanup(server.cleanup)
        return server, zeep.Client(server.url + "?wsdl").service

    def status(self, soap: Any, service_id: str) -> str:
        """The run's page as text (the last one when UNCHANGED), or COMPLETED."""
        answer = soap.getServiceStatus(service_id, "token")
        if answer.status_base64 != "UNCHANGED":
            self.pages[service_id] = page_text(answer.status_base64)
        return self.pages[service_id]

    def wait_page(self, soap: Any, service_id: str, text: str, timeout: float = 30) -> str:
        def shown() -> str | None:
            page = self.status(soap, service_id)
            return page if text in page else None

        return str(wait_for(shown, timeout, interval=0.1))

    def wait_cluster(
        self, soap: Any, service_ids: list[str], running: int, timeout: float = 30
    ) -> dict[str, str]:
        """
        Wait until ``running`` of the runs show progress and all the others
        are queued on the cluster; their pages.
        """

        def shown() -> dict[str, str] | None:
            pages = {service_id: self.status(soap, service_id) for service_id in service_ids}
            going = [p for p in pages.values() if re.search(r"Running [1-9][0-9]* %", p)]
            waiting = [p for p in pages.values() if "Queued on the cluster" in p]
            if len(going) == running and len(waiting) == len(service_ids) - running:
                return pages
            return None

        return dict(wait_for(shown, timeout, interval=0.1))

    def job(self, service_id: str) -> dict[str, str]:
        jobs = [j for j in self.cluster.jobs() if j["JobName"] == f"waiter-{service_id}"]
        self.assertEqual(len(jobs), 1, f"jobs named waiter-{service_id}: {jobs}")
        return jobs[0]

    def test_run_to_completed(self) -> None:
        """A waiter runs as a batch job and answers COMPLETED with its result."""
        server, soap = self.start_server()
        started = time.monotonic()
        soap.startWaiter("cluster_ok", "token", 2)
        self.wait_page(soap, "cluster_ok", "COMPLETED")
        self.assertLess(time.monotonic() - started, 30)
        answer = soap.getServiceStatus("cluster_ok", "token")
        self.assertEqual(base64.b64decode(answer.result), b"Waited 2.0 of 2 seconds.\n")
        record = server.record("cluster_ok")
        self.assertEqual(record["runner"], "slurm")
        job = self.job("cluster_ok")
        self.assertEqual(record["job_id"], job["JobId"])
        self.assertEqual(job["JobState"], "COMPLETED")
        self.assertIsNone(record["pid"])

    def test_abort_cancels_the_job(self) -> None:
        """abortService scancels the job: the program gets TERM; the run is ABORTED."""
        server, soap = self.start_server()
        soap.startWaiter("cluster_abort", "token", 60)
        self.wait_page(soap, "cluster_abort", "Running")
        wait_for(lambda: server.record("cluster_abort")["percent"] >= 1 or None, 30)
        started = time.monotonic()
        self.assertTrue(soap.abortService("cluster_abort", "token"))
        self.assertLess(time.monotonic() - started, 15)
        self.assertIn("Aborted", self.status(soap, "cluster_abort"))
        record = server.record("cluster_abort")
        self.assertEqual(record["state"], "aborted")
        self.assertEqual(record["exit_signal"], 15)  # TERM, not KILL
        self.assertEqual(self.job("cluster_abort")["JobState"], "CANCELLED")

    def test_failing_program(self) -> None:
        """A program that fails on the cluster fails its run, with its exit status and stderr."""
        server, soap = self.start_server()
        soap.startWaiter("cluster_fail", "token", 60)
        wait_for(lambda: server.record("cluster_fail")["percent"] >= 1 or None, 30)
        # The waiter's next status write now fails: it exits 3, saying why on stderr.
        status = server.workdir / "cluster_fail" / "status"
        status.unlink()
        status.mkdir()
        text = self.wait_page(soap, "cluster_fail", "Failed")
        self.assertIn("exit status 3", text)
        self.assertIn("status", text)  # its one line of stderr
        record = server.record("cluster_fail")
        self.assertEqual(record["failure_reason"], "the program failed")
        self.assertEqual(self.job("cluster_fail")["JobState"], "FAILED")

    def test_cluster_queue_and_max_running(self) -> None:
        """
        More runs than CPUs: the cluster queues one (shown as such, with
        Slurm's reason); --max-running keeps the last one in the service's queue.
        """
        _, soap = self.start_server("--max-running", "3")
        for i in range(4):
            soap.startWaiter(f"cluster_q{i}", "token", 30)
        # The three sbatch calls race: any two of the three jobs get the CPUs.
        pages = self.wait_cluster(soap, ["cluster_q0", "cluster_q1", "cluster_q2"], running=2)
        text = next(page for page in pages.values() if "Queued on the cluster" in page)
        self.assertIn("PENDING", text)
        # Slurm's reason: Priority at first, Resources after a scheduling pass.
        self.assertRegex(text, r"Slurm reason (Priority|Resources)")
        text = self.status(soap, "cluster_q3")
        self.assertIn("position 1", text)
        self.assertNotIn("on the cluster", text)
        self.assertEqual(len(self.cluster.jobs()), 3)
        for i in range(4):
            self.assertTrue(soap.abortService(f"cluster_q{i}", "token"))

    def test_server_killed_and_restarted(self) -> None:
        """
        SIGKILL with runs on the cluster: the next server takes them back;
        one that ended meanwhile is recorded with its true end, the others
        finish; nothing is submitted twice.
        """
        server, soap = self.start_server()
        soap.startWaiter("cluster_short", "token", 1)
        soap.startWaiter("cluster_long", "token", 5)
        soap.startWaiter("cluster_later", "token", 2)
        # Two of them run, one waits in the cluster's queue (which one: a race).
        names = ["cluster_short", "cluster_long", "cluster_later"]
        wait_for(
            lambda: any("Queued on the cluster" in self.status(soap, n) for n in names),
            30,
            interval=0.1,
        )
        server.kill()
        folder = server.workdir / "cluster_short"
        wait_for(lambda: read_exit(folder), 30)
        true_end = read_exit(folder).ended_at  # type: ignore[union-attr]
        time.sleep(1.5)
        server, soap = self.start_server()
        for service_id in ("cluster_short", "cluster_long", "cluster_later"):
            self.wait_page(soap, service_id, "COMPLETED")
        self.assertEqual(server.record("cluster_short")["ended_at"], true_end)
        later = server.record("cluster_later")
        self.assertEqual(later["ended_at"], read_exit(server.workdir / "cluster_later").ended_at)  # type: ignore[union-attr]
        self.assertTrue((server.workdir / "cluster_later" / EXIT_FILE).exists())
        self.assertEqual(len(self.cluster.jobs()), 3)
        self.assertIn("taken back", server.log())
