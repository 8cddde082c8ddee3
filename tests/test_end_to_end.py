"""
End to end: the real ``twistd -n waiter``, real children, a real SOAP
client (zeep), as the workflow manager meets the service.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
from pathlib import Path

import requests
import zeep
from twisted.trial.unittest import SynchronousTestCase
from zeep.exceptions import Fault

from .e2e_server import (
    REPO,
    Server,
    group_members,
    process_gone,
    twistd_command,
    wait_for,
)
from .soap_messages import SOAP_HEADERS, envelope


def page_text(status: str) -> str:
    return base64.b64decode(status).decode("utf-8")


class EndToEndTestCase(SynchronousTestCase):
    server_options: tuple[str, ...] = ("--kill-grace", "3")

    def setUp(self) -> None:
        self.server = Server(Path(self.mktemp()).resolve(), *self.server_options)
        self.addCleanup(self.server.cleanup)
        self.client = zeep.Client(self.server.url + "?wsdl")
        self.soap = self.client.service

    def status(self, service_id: str) -> zeep.xsd.CompoundValue:
        return self.soap.getServiceStatus(serviceID=service_id, sessionToken="token")

    def poll_until(self, service_id: str, predicate, timeout: float = 15):
        """Poll like the workflow manager (faster) until ``predicate(answer)``."""

        def check():
            answer = self.status(service_id)
            return answer if predicate(answer) else None

        return wait_for(check, timeout, interval=0.2)


class PluginTests(SynchronousTestCase):
    def test_twistd_lists_plugin(self) -> None:
        """After installation, twistd lists the waiter plugin from any folder."""
        folder = Path(self.mktemp()).resolve()
        folder.mkdir()
        env = {"PATH": os.environ.get("PATH", os.defpath)}
        done = subprocess.run(
            [*twistd_command(), "--help"], cwd=folder, env=env, capture_output=True, text=True
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertRegex(done.stdout, r"\n\s+waiter\s+The waiter")

    def test_installed_package_serves(self) -> None:
        """The installed package alone (no source on the path) serves a run to its end."""
        server = Server(Path(self.mktemp()).resolve(), from_source=False)
        self.addCleanup(server.cleanup)
        soap = zeep.Client(server.url + "?wsdl").service
        soap.startWaiter(serviceID="installed", sessionToken="t", secondsToWait=0)
        wait_for(
            lambda: (
                soap.getServiceStatus(serviceID="installed", sessionToken="t").status_base64
                == "COMPLETED"
            ),
            10,
            0.2,
        )

    def test_bad_option_is_one_line(self) -> None:
        """A bad option value stops twistd with a usage error, not a traceback."""
        folder = Path(self.mktemp()).resolve()
        folder.mkdir()
        env = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [*twistd_command(), "-n", "waiter", "--result-encoding", "xml"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
        )
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("--result-encoding must be base64 or raw", done.stdout + done.stderr)
        self.assertNotIn("Traceback", done.stdout + done.stderr)


class RunTests(EndToEndTestCase):
    def test_two_second_wait(self) -> None:
        """A 2 s wait answers a page at once, then COMPLETED with the waiter's result."""
        started = self.soap.startWaiter(serviceID="e2e_1", sessionToken="token", secondsToWait=2)
        self.assertEqual(started.result, "UNSET")
        self.assertIn("Running", page_text(started.status_base64))
        done = self.poll_until("e2e_1", lambda a: a.status_base64 == "COMPLETED")
        self.assertEqual(base64.b64decode(done.result), b"Waited 2.0 of 2 seconds.\n")
        self.assertEqual(self.server.record("e2e_1")["state"], "completed")
        self.assertTrue(process_gone(self.server.record("e2e_1")["pid"]))

    def test_abort(self) -> None:
        """Abort stops a long run: the child and its whole group are gone."""
        self.soap.startWaiter(serviceID="e2e_long", sessionToken="token", secondsToWait=600)
        pid = self.server.record("e2e_long")["pid"]
        wait_for(lambda: os.getpgid(pid) == pid, 5)
        self.assertEqual(os.getsid(pid), pid)
        self.assertIs(self.soap.abortService(serviceID="e2e_long", sessionToken="token"), True)
        self.assertTrue(process_gone(pid))
        self.assertEqual(group_members(pid), [])
        self.assertIn("Aborted", page_text(self.status("e2e_long").status_base64))
        self.assertEqual(self.server.record("e2e_long")["state"], "aborted")
        self.assertIs(self.soap.abortService(serviceID="e2e_long", sessionToken="token"), False)

    def test_failing_child(self) -> None:
        """A failing child gives a failure page with its status and escaped stderr."""
        self.soap.startWaiter(serviceID="e2e_fail", sessionToken="token", secondsToWait=600)
        response = self.soap.notifyService(
            sessionToken="token", serviceID="e2e_fail", message="fail <script>alert(1)</script>"
        )
        self.assertEqual(response, "delivered to the running program")
        answer = self.poll_until("e2e_fail", lambda a: "Failed" in page_text(a.status_base64))
        page = page_text(answer.status_base64)
        self.assertIn("exit status 1", page)
        self.assertIn("&lt;script&gt;alert(1)&lt;/script&gt;", page)
        self.assertNotIn("<script>", page)
        self.assertEqual(answer.result, "UNSET")

    def test_killed_child(self) -> None:
        """A child killed from outside is reported failed, never COMPLETED."""
        self.soap.startWaiter(serviceID="e2e_kill", sessionToken="token", secondsToWait=600)
        os.kill(self.server.record("e2e_kill")["pid"], signal.SIGKILL)
        answer = self.poll_until("e2e_kill", lambda a: "Failed" in page_text(a.status_base64))
        self.assertIn("killed by signal 9", page_text(answer.status_base64))

    def test_notify_finish(self) -> None:
        """notifyService 'finish' makes the waiter complete at once."""
        self.soap.startWaiter(serviceID="e2e_note", sessionToken="token", secondsToWait=600)
        self.soap.notifyService(sessionToken="token", serviceID="e2e_note", message="finish")
        done = self.poll_until("e2e_note", lambda a: a.status_base64 == "COMPLETED", 10)
        self.assertIn(b"of 600 seconds", base64.b64decode(done.result))

    def test_racing_starts(self) -> None:
        """Two simultaneous starts of one serviceID start exactly one process."""
        from concurrent.futures import ThreadPoolExecutor

        body = envelope("startWaiter", serviceID="race", sessionToken="t", secondsToWait=600)

        def post(_: int) -> int:
            return requests.post(
                self.server.url, data=body, headers=SOAP_HEADERS, timeout=10
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            self.assertEqual(set(pool.map(post, range(8))), {200})
        pid = self.server.record("race")["pid"]
        self.assertEqual(group_members(pid), [pid])
        self.assertEqual(self.server.log().count("run race started"), 1)
        self.soap.abortService(serviceID="race", sessionToken="t")

    def test_faults(self) -> None:
        """Bad calls get the right SOAP faults, create nothing, and the server keeps serving."""
        zeep_calls = [
            (
                "Client.InvalidInput",
                lambda: self.soap.startWaiter(serviceID="../x", sessionToken="t", secondsToWait=1),
            ),
            (
                "Client.InvalidInput",
                lambda: self.soap.startWaiter(
                    serviceID="ok_id", sessionToken="t", secondsToWait=-1
                ),
            ),
            (
                "Client.InvalidInput",
                lambda: self.soap.startWaiter(
                    serviceID="ok_id", sessionToken="t", secondsToWait=10**9
                ),
            ),
            ("Client.UnknownServiceID", lambda: self.status("never_started")),
            (
                "Client.UnknownServiceID",
                lambda: self.soap.abortService(serviceID="never_started", sessionToken="t"),
            ),
            (
                "Client.UnknownServiceID",
                lambda: self.soap.notifyService(sessionToken="t", serviceID="nope", message="x"),
            ),
        ]
        for code, call in zeep_calls:
            error = self.assertRaises(Fault, call)
            self.assertEqual(error.code.split(":")[-1], code)
        xxe = (
            b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            + envelope("getServiceStatus", serviceID="a", sessionToken="t")
            .split(b"?>", 1)[1]
            .replace(b">a<", b">&x;<")
        )
        raw_bodies = [
            (b"<not xml", 500, b"Client.XMLSyntaxError"),
            (
                envelope("dropTables", serviceID="x", sessionToken="t"),
                500,
                b"Client.SchemaValidationError",
            ),
            (
                envelope("startWaiter", serviceID="x", sessionToken="t", secondsToWait="ten"),
                500,
                b"Client.SchemaValidationError",
            ),
            (xxe, 500, b"Client.DoctypeForbidden"),
            (
                envelope("startWaiter", serviceID="big", sessionToken="t" * (1024 * 1024)),
                413,
                b"Client.RequestTooLong",
            ),
        ]
        for body, status, code in raw_bodies:
            response = requests.post(self.server.url, data=body, headers=SOAP_HEADERS, timeout=10)
            self.assertEqual(
                (response.status_code, response.headers["content-type"]),
                (status, "text/xml; charset=utf-8"),
            )
            self.assertIn(b"<faultcode>soap11env:" + code + b"</faultcode>", response.content)
            self.assertNotIn(b"root:", response.content)
        for path in ("/", "/cloud", "/cloud/vm1/Other"):
            response = requests.get(self.server.url.split("/cloud")[0] + path, timeout=10)
            self.assertEqual(response.status_code, 404)
            self.assertIn(b"Client.NotFound", response.content)
        self.assertEqual(list(self.server.workdir.iterdir()), [])
        self.assertNotIn("Traceback", self.server.log())
        started = self.soap.startWaiter(serviceID="after_faults", sessionToken="t", secondsToWait=1)
        self.assertEqual(started.result, "UNSET")


class RestartTests(SynchronousTestCase):
    def start_server(self, folder: Path, *options: str) -> Server:
        server = Server(folder, "--kill-grace", "3", *options)
        self.addCleanup(server.cleanup)
        return server

    def test_graceful_stop_keeps_children(self) -> None:
        """With --on-stop keep (the default) a stopped server's children are adopted next."""
        folder = Path(self.mktemp()).resolve()
        server = self.start_server(folder, "--on-stop", "keep")
        soap = zeep.Client(server.url + "?wsdl").service
        soap.startWaiter(serviceID="kept", sessionToken="t", secondsToWait=600)
        pid = server.record("kept")["pid"]
        self.assertIn(server.stop(), (0, -signal.SIGTERM))
        self.assertFalse(process_gone(pid))
        server = self.start_server(folder)
        soap = zeep.Client(server.url + "?wsdl").service
        self.assertIn(
            "Running",
            page_text(soap.getServiceStatus(serviceID="kept", sessionToken="t").status_base64),
        )
        self.assertIs(soap.abortService(serviceID="kept", sessionToken="t"), True)
        self.assertTrue(process_gone(pid))
        self.assertEqual(server.record("kept")["state"], "aborted")

    def test_graceful_stop_stops_children(self) -> None:
        """With --on-stop stop, SIGTERM stops children and records them as interrupted."""
        server = self.start_server(Path(self.mktemp()).resolve(), "--on-stop", "stop")
        soap = zeep.Client(server.url + "?wsdl").service
        soap.startWaiter(serviceID="e2e_stop", sessionToken="token", secondsToWait=600)
        pid = server.record("e2e_stop")["pid"]
        self.assertIn(server.stop(), (0, -signal.SIGTERM))
        self.assertTrue(process_gone(pid))
        record = server.record("e2e_stop")
        self.assertEqual(record["state"], "failed")
        self.assertEqual(record["failure_reason"], "interrupted: the service stopped")

    def test_sigkill_with_twenty_runs(self) -> None:
        """After SIGKILL with runs finished, running and queued, every run ends right."""
        folder = Path(self.mktemp()).resolve()
        server = self.start_server(folder, "--max-running", "5")
        soap = zeep.Client(server.url + "?wsdl").service
        for i in range(4):
            soap.startWaiter(serviceID=f"done_{i}", sessionToken="t", secondsToWait=0)
        wait_for(
            lambda: all(
                soap.getServiceStatus(serviceID=f"done_{i}", sessionToken="t").status_base64
                == "COMPLETED"
                for i in range(4)
            ),
            15,
            interval=0.2,
        )
        for i in range(16):
            soap.startWaiter(serviceID=f"late_{i:02}", sessionToken="t", secondsToWait=2)
        states = [server.record(f"late_{i:02}")["state"] for i in range(16)]
        self.assertEqual(states.count("running"), 5)
        self.assertEqual(states.count("queued"), 11)
        running_pids = [server.record(f"late_{i:02}")["pid"] for i in range(5)]
        server.kill()
        self.assertFalse(any(process_gone(pid) for pid in running_pids))
        server = self.start_server(folder, "--max-running", "5")
        soap = zeep.Client(server.url + "?wsdl").service
        for i in range(4):
            answer = soap.getServiceStatus(serviceID=f"done_{i}", sessionToken="t")
            self.assertEqual(base64.b64decode(answer.result), b"Waited 0.0 of 0 seconds.\n")

        def all_completed() -> bool:
            return all(
                soap.getServiceStatus(serviceID=f"late_{i:02}", sessionToken="t").status_base64
                == "COMPLETED"
                for i in range(16)
            )

        wait_for(all_completed, 40, interval=0.5)
        for i in range(16):
            answer = soap.getServiceStatus(serviceID=f"late_{i:02}", sessionToken="t")
            self.assertEqual(base64.b64decode(answer.result), b"Waited 2.0 of 2 seconds.\n")
        self.assertTrue(all(process_gone(pid) for pid in running_pids))
        started = [server.record(f"late_{i:02}")["started_at"] for i in range(5, 16)]
        self.assertEqual(started, sorted(started))
