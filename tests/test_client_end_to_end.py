"""
End to end: ``waiter-client`` (``python -m waiter_service.client``, as a
person runs it) against the real ``twistd -n waiter``.  Its stdout is a
pipe here, so the client is in its terminal-free mode: plain lines, no bar.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from .e2e_server import REPO, Server

CLIENT = [sys.executable, "-m", "waiter_service.client"]


def client_env() -> dict[str, str]:
    """A clean environment: this checkout, no WAITER_* variables of the caller."""
    return {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "PYTHONPATH": str(REPO)}


def sigint_as_usual() -> None:
    """In the child: Ctrl-C as in a terminal, even if the test runner ignores SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Following:
    """A client process whose stdout is read line by line, with a deadline."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv,
            env=client_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=sigint_as_usual,
        )
        self.buffer = b""
        self.lines: list[str] = []

    def line(self, timeout: float = 10) -> str:
        """The next line of stdout; fails after ``timeout`` seconds."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.process.stdout], [], [], left)[0]:
                raise AssertionError(f"no line within {timeout} s; so far {self.lines}")
            chunk = os.read(self.process.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"stdout closed; so far {self.lines}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        self.lines.append(line.decode())
        return self.lines[-1]

    def finish(self, timeout: float = 20) -> tuple[int, str, str]:
        """Exit code, the rest of stdout, stderr."""
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, (self.buffer + out).decode(), err.decode()


class ClientEndToEndTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = Server(Path(self.mktemp()).resolve(), "--kill-grace", "3")
        self.addCleanup(self.server.cleanup)

    def argv(self, *args: str) -> list[str]:
        return [*CLIENT, "--wsdl", self.server.url, *args]

    def client(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            env=client_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def follow(self, *args: str) -> Following:
        process = Following(self.argv(*args))
        self.addCleanup(lambda: process.process.poll() is None and process.process.kill())
        return process

    def test_run_to_completed(self) -> None:
        """run follows a 1 s wait in plain lines and prints the decoded result; exit 0."""
        done = self.client("run", "--seconds", "1", "--interval", "0.3")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stderr, "")
        out = done.stdout.splitlines()
        service_id = out[0].split()[1]
        self.assertEqual(self.server.record(service_id)["state"], "completed")
        self.assertRegex(out[1], r"^running, \d+ %  \d+ s$")
        self.assertEqual(out[-4:-2], [f"run      {service_id}", "state    completed"])
        self.assertEqual(out[-1], "result   Waited 1.0 of 1 seconds.")
        self.assertNotIn("\r", done.stdout)
        self.assertNotIn("\x1b", done.stdout)

    def test_run_json(self) -> None:
        """run --json: JSON lines only, changes then one end object with the result."""
        done = self.client("--json", "run", "--seconds", "1", "--interval", "0.3")
        self.assertEqual(done.returncode, 0, done.stderr)
        objects = [json.loads(line) for line in done.stdout.splitlines()]
        self.assertEqual({o["event"] for o in objects[:-1]}, {"change"})
        end = objects[-1]
        self.assertEqual(
            (end["event"], end["state"], end["result"], end["result_decoded"], end["exit_code"]),
            ("end", "completed", "Waited 1.0 of 1 seconds.\n", True, 0),
        )
        self.assertEqual({o["serviceID"] for o in objects}, {end["serviceID"]})
        self.assertEqual(self.server.record(end["serviceID"])["state"], "completed")

    def test_failed_through_notify(self) -> None:
        """notify "fail because" fails the followed run: exit 3, the reason and output shown."""
        run = self.follow("run", "--service-id", "fails", "--seconds", "30", "--interval", "0.3")
        self.assertEqual(run.line(), "run      fails")
        self.assertRegex(run.line(), r"^running, ")
        told = self.client("notify", "fails", "fail because")
        self.assertEqual((told.returncode, told.stdout), (0, "delivered to the running program\n"))
        code, out, err = run.finish()
        self.assertEqual(code, 3, out + err)
        self.assertIn("state    failed\n", out)
        self.assertRegex(out, r"\nreason   \S")
        self.assertRegex(out, r"\noutput   .*because\n")
        # run's last poll took the failed page: status gets UNCHANGED, and
        # still tells the state.
        again = self.client("status", "fails")
        self.assertEqual(again.returncode, 3, again.stdout + again.stderr)
        self.assertIn("state    failed\n", again.stdout)
        late = self.client("notify", "fails", "hello")
        self.assertEqual(late.returncode, 1)
        self.assertIn("not delivered", late.stderr)

    def test_ctrl_c_aborts_the_run(self) -> None:
        """Ctrl-C during run aborts the run on the server, shows it aborted; exit 4."""
        run = self.follow("run", "--service-id", "stopped", "--seconds", "30", "--interval", "0.3")
        run.line()
        self.assertRegex(run.line(), r"^running, ")
        run.process.send_signal(signal.SIGINT)
        code, out, err = run.finish()
        self.assertEqual(code, 4, out + err)
        self.assertIn("state    aborted\n", out)
        self.assertIn("Ctrl-C: aborting run stopped", err)
        self.assertNotIn("Traceback", err)
        self.assertEqual(self.server.record("stopped")["state"], "aborted")

    def test_abort_command(self) -> None:
        """abort stops a started run (exit 0), status then exits 4; a second abort exits 1."""
        started = self.client("start", "--service-id", "long", "--seconds", "30")
        self.assertEqual(started.returncode, 0, started.stderr)
        self.assertEqual(started.stdout.splitlines()[1], "state    running, 0 %")
        aborted = self.client("abort", "long")
        self.assertEqual(aborted.returncode, 0, aborted.stderr)
        status = self.client("--json", "status", "long")
        self.assertEqual(status.returncode, 4)
        self.assertEqual(json.loads(status.stdout)["state"], "aborted")
        again = self.client("abort", "long")
        self.assertEqual(again.returncode, 1)
        self.assertEqual(
            again.stderr, "waiter-client: nothing to abort: the run had already ended\n"
        )

    def test_unknown_service_id(self) -> None:
        """A fault is one line on stderr with its code, exit 1; --json adds an error object."""
        done = self.client("status", "never_started")
        self.assertEqual((done.returncode, done.stdout), (1, ""))
        self.assertEqual(
            done.stderr,
            "waiter-client: SOAP fault Client.UnknownServiceID: no run has this serviceID\n",
        )
        as_json = self.client("status", "never_started", "--json")
        self.assertEqual(as_json.returncode, 1)
        self.assertEqual(json.loads(as_json.stdout)["error"]["code"], "Client.UnknownServiceID")


class NoServerTests(SynchronousTestCase):
    def test_server_not_there(self) -> None:
        """No server at the address: one line on stderr, exit 1, no traceback."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        done = subprocess.run(
            [*CLIENT, "--wsdl", f"http://127.0.0.1:{port}/Waiter", "run", "--seconds", "1"],
            env=client_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        self.assertEqual((done.returncode, done.stdout), (1, ""))
        self.assertEqual(
            done.stderr,
            f"waiter-client: cannot connect to http://127.0.0.1:{port}: connection refused\n",
        )
