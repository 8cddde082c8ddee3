"""
End to end with a real authentication manager stand-in (tests/auth_manager.py,
a Spyne service on a real port): tokens, projects, caching, failures.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zeep
from twisted.trial.unittest import SynchronousTestCase
from zeep.exceptions import Fault

from .e2e_server import REPO, Server, wait_for

TOKENS = {
    "ann-p1": {"user": "ann", "project": "p1"},
    "bob-p1": {"user": "bob", "project": "p1"},
    "carl-p2": {"user": "carl", "project": "p2"},
    "expired": {"user": "ann", "project": "p1", "valid": False},
    "slow": {"user": "sam", "project": "p1", "delay": 5},
}


class AuthManagerProcess:
    """tests/auth_manager.py in a process of its own."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokens.json").write_text(json.dumps(TOKENS))
        self.calls = folder / "calls.log"
        self.calls.write_text("")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.auth_manager",
                str(folder / "tokens.json"),
                str(self.calls),
            ],
            cwd=REPO,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        port = int(re.search(r"listening on (\d+)", line).group(1))
        self.wsdl = f"http://127.0.0.1:{port}/AuthManager?wsdl"
        self.other_wsdl = f"http://localhost:{port}/AuthManager?wsdl"

    def validations(self) -> int:
        return self.calls.read_text().count("validateSessionToken")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def fault_code(call: Any) -> str:
    try:
        call()
    except Fault as f:
        return f.code.split(":")[-1]
    raise AssertionError("no fault")


class AuthTests(SynchronousTestCase):
    def setUp(self) -> None:
        folder = Path(self.mktemp()).resolve()
        self.auth = AuthManagerProcess(folder / "auth")
        self.addCleanup(self.auth.stop)
        self.server = Server(
            folder / "waiter",
            "--auth-wsdl",
            self.auth.wsdl,
            "--auth-wsdl",
            self.auth.other_wsdl,
            "--auth-timeout",
            "1",
            "--kill-grace",
            "2",
        )
        self.addCleanup(self.server.cleanup)
        self.soap = zeep.Client(self.server.url + "?wsdl").service

    def start(self, service_id: str, token: str, seconds: int = 600, **extra: str) -> Any:
        return self.soap.startWaiter(
            serviceID=service_id, sessionToken=token, secondsToWait=seconds, **extra
        )

    def status(self, service_id: str, token: str) -> Any:
        return self.soap.getServiceStatus(serviceID=service_id, sessionToken=token)

    def test_valid_token_owns_the_run(self) -> None:
        """A valid token starts a run that belongs to its project and records its user."""
        self.start("r1", "ann-p1", seconds=1)
        record = self.server.record("r1")
        self.assertEqual((record["owner_user"], record["owner_project"]), ("ann", "p1"))
        wait_for(lambda: self.status("r1", "bob-p1").status_base64 == "COMPLETED", 15, 0.2)
        self.assertNotIn("ann-p1", (self.server.workdir / "r1" / "run.json").read_text())
        self.assertNotIn("ann-p1", self.server.log())

    def test_invalid_tokens_reveal_nothing(self) -> None:
        """Expired, unknown and empty tokens get the same fault, existing run or not."""
        self.start("r1", "ann-p1")
        for token in ("expired", "made-up", ""):
            calls = [lambda t=token: self.start("new", t)]
            for run in ("r1", "never"):
                calls.append(lambda r=run, t=token: self.status(r, t))
                calls.append(
                    lambda r=run, t=token: self.soap.abortService(serviceID=r, sessionToken=t)
                )
            for call in calls:
                self.assertEqual(fault_code(call), "Client.InvalidToken")
        self.assertEqual(sorted(p.name for p in self.server.workdir.iterdir()), ["r1"])

    def test_other_project_sees_nothing(self) -> None:
        """Another project's token gets "unknown" for status, abort and notify."""
        self.start("r1", "ann-p1")
        unknown = fault_code(lambda: self.status("never", "carl-p2"))
        self.assertEqual(unknown, "Client.UnknownServiceID")
        for call in [
            lambda: self.status("r1", "carl-p2"),
            lambda: self.soap.abortService(serviceID="r1", sessionToken="carl-p2"),
            lambda: self.soap.notifyService(sessionToken="carl-p2", serviceID="r1", message="x"),
        ]:
            self.assertEqual(fault_code(call), unknown)
        self.assertEqual(fault_code(lambda: self.start("r1", "carl-p2")), "Client.InvalidInput")
        self.assertIs(self.soap.abortService(serviceID="r1", sessionToken="bob-p1"), True)

    def test_answers_are_cached(self) -> None:
        """Polls every few seconds do not each become a call to the manager."""
        self.start("r1", "ann-p1")
        before = self.auth.validations()
        for _ in range(5):
            self.status("r1", "ann-p1")
        self.assertEqual(self.auth.validations(), before)

    def test_slow_manager(self) -> None:
        """A manager slower than --auth-timeout gives a clear fault, never a pass."""
        started = time.monotonic()
        self.assertEqual(fault_code(lambda: self.start("r1", "slow")), "Server.AuthUnavailable")
        self.assertLess(time.monotonic() - started, 4)
        self.assertEqual(list(self.server.workdir.iterdir()), [])

    def test_extra_parameters_auth(self) -> None:
        """auth= in extraParameters is honoured if allowed, refused otherwise."""
        self.start("r1", "ann-p1", extraParameters=f"auth={self.auth.other_wsdl},")
        self.assertEqual(self.server.record("r1")["auth_url"], self.auth.other_wsdl)
        self.status("r1", "ann-p1")
        evil = "auth=http://127.0.0.1:9/AuthManager?wsdl,"
        code = fault_code(lambda: self.start("r2", "ann-p1", extraParameters=evil))
        self.assertEqual(code, "Client.AuthNotAllowed")
        self.assertFalse((self.server.workdir / "r2").exists())

    def test_ownership_survives_restart(self) -> None:
        """After a restart, runs still belong to their project."""
        self.start("r1", "ann-p1")
        self.server.stop()
        self.server = Server(self.server.folder, "--auth-wsdl", self.auth.wsdl)
        self.addCleanup(self.server.cleanup)
        soap = zeep.Client(self.server.url + "?wsdl").service
        self.assertIn("r1", _page(soap.getServiceStatus(serviceID="r1", sessionToken="bob-p1")))
        code = fault_code(lambda: soap.getServiceStatus(serviceID="r1", sessionToken="carl-p2"))
        self.assertEqual(code, "Client.UnknownServiceID")


class UnreachableAuthTests(SynchronousTestCase):
    def test_unreachable_manager(self) -> None:
        """An authentication manager that cannot be reached means "cannot validate"."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = Server(
            Path(self.mktemp()).resolve(),
            "--auth-wsdl",
            f"http://127.0.0.1:{port}/AuthManager?wsdl",
            "--auth-timeout",
            "1",
        )
        self.addCleanup(server.cleanup)
        soap = zeep.Client(server.url + "?wsdl").service
        code = fault_code(
            lambda: soap.startWaiter(serviceID="r1", sessionToken="t", secondsToWait=1)
        )
        self.assertEqual(code, "Server.AuthUnavailable")
        self.assertEqual(list(server.workdir.iterdir()), [])
        self.assertNotIn("SESSION TOKENS ARE NOT CHECKED", server.log())

    def test_warning_without_manager(self) -> None:
        """Without --auth-wsdl the server says loudly that tokens are not checked."""
        server = Server(Path(self.mktemp()).resolve())
        self.addCleanup(server.cleanup)
        self.assertIn("SESSION TOKENS ARE NOT CHECKED", server.log())


def _page(answer: Any) -> str:
    import base64

    return base64.b64decode(answer.status_base64).decode()
