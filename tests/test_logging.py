"""
Tests for the log (waiter_service.ops.logs, ops.access and the events of
the SOAP operations and the run manager): formats, levels, twistd's
``--logger`` hand-over, and, with a real twistd, JSON lines and tokens
that never reach the log in either format.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import zeep
from twisted.logger import Logger, LogLevel, globalLogPublisher
from twisted.python.usage import UsageError
from twisted.scripts._twistd_unix import ServerOptions
from twisted.trial.unittest import SynchronousTestCase
from zeep.exceptions import Fault

from waiter_service.ops import logs
from waiter_service.ops.access import MAX_URI, printable
from waiter_service.ops.logs import LogSettings, build_observer
from waiter_service.testing import http_request

from . import test_auth_end_to_end
from .e2e_server import REPO, Server, twistd_command, wait_for
from .test_auth_end_to_end import AuthManagerProcess
from .test_metrics import OpsTestCase, value


def emit_all(observer: Any) -> None:
    """One event of each level through ``observer``."""
    log = Logger(namespace="waiter.test", observer=observer)
    log.debug("a {what} event", what="debug", event="test")
    log.info("an {what} event", what="info", event="test")
    log.error("an {what} event", what="error", event="test")


class ObserverTests(SynchronousTestCase):
    def test_json_lines(self) -> None:
        """JSON: one object a line, with the event's fields and its text; debug dropped."""
        out = io.StringIO()
        emit_all(build_observer(LogSettings(format="json"), stdout=out))
        lines = out.getvalue().splitlines()
        events = [json.loads(line) for line in lines]
        self.assertEqual([e["what"] for e in events], ["info", "error"])
        self.assertEqual(events[0]["log_text"], "an info event")
        self.assertEqual(events[0]["log_namespace"], "waiter.test")
        self.assertEqual(events[1]["log_level"]["name"], "error")
        self.assertNotIn("\x1e", out.getvalue())

    def test_text_lines(self) -> None:
        """Text: twistd's lines (namespace and level in brackets), never JSON."""
        out = io.StringIO()
        emit_all(build_observer(LogSettings(format="text", level="error"), stdout=out))
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        self.assertRegex(lines[0], r"^\S+ \[waiter\.test#error\] an error event$")

    def test_debug_level(self) -> None:
        """--log-level debug keeps debug events."""
        out = io.StringIO()
        emit_all(build_observer(LogSettings(format="json", level="debug"), stdout=out))
        self.assertEqual(
            [json.loads(line)["what"] for line in out.getvalue().splitlines()],
            ["debug", "info", "error"],
        )

    def test_log_file(self) -> None:
        """With twistd's --logfile, the log goes to that file (rotated on SIGUSR1)."""
        self.addCleanup(signal.signal, signal.SIGUSR1, signal.getsignal(signal.SIGUSR1))
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        stdout = io.StringIO()
        observer = build_observer(LogSettings(format="json", logfile=str(path)), stdout=stdout)
        emit_all(observer)
        observer._observer._outFile.close()  # type: ignore[attr-defined]
        self.assertEqual(stdout.getvalue(), "")
        self.assertEqual(len(path.read_text().splitlines()), 2)
        self.assertNotEqual(signal.getsignal(signal.SIGUSR1), signal.SIG_DFL)

    def test_json_failure(self) -> None:
        """JSON: a log.failure line keeps the exception's type, message and traceback."""
        out = io.StringIO()
        log = Logger(namespace="waiter.test", observer=build_observer(LogSettings("json"), out))

        def lookup() -> None:
            raise KeyError("the message")

        try:
            lookup()
        except KeyError:
            log.failure("lookup of {what} failed", what="a key", event="test")
        [line] = out.getvalue().splitlines()
        event = json.loads(line)
        self.assertEqual(
            event["log_text"], "lookup of a key failed: builtins.KeyError: 'the message'"
        )
        self.assertEqual(event["log_level"]["name"], "critical")
        traceback = event["traceback"]
        self.assertTrue(traceback.startswith("Traceback (most recent call last):\n"))
        self.assertIn(", in lookup\n", traceback)
        self.assertTrue(traceback.endswith("builtins.KeyError: 'the message'\n"))

    def test_json_without_failure(self) -> None:
        """JSON: an event without a failure gets no traceback field."""
        out = io.StringIO()
        emit_all(build_observer(LogSettings(format="json"), stdout=out))
        for line in out.getvalue().splitlines():
            self.assertNotIn("traceback", json.loads(line))

    def test_settings_problems(self) -> None:
        """Impossible settings are refused with a reason."""
        self.assertIsNone(LogSettings().problem())
        for settings, words in [
            (LogSettings(format="xml"), "--log-format"),
            (LogSettings(level="loud"), "--log-level"),
            (LogSettings(format="json", syslog=True), "syslog"),
            (LogSettings(logfile="-", nodaemon=False), "daemon"),
        ]:
            self.assertIn(words, settings.problem() or "")


class TwistdOptionsTests(SynchronousTestCase):
    """The waiter's options hand the observer to twistd through --logger."""

    def setUp(self) -> None:
        self.addCleanup(logs.configure, LogSettings())
        self.workdir = str(Path(self.mktemp()))

    def parse(self, *args: str) -> ServerOptions:
        config = ServerOptions()
        before, after = args[: args.index("waiter")], args[args.index("waiter") + 1 :]
        config.parseOptions([*before, "waiter", "--workdir", self.workdir, *after])
        return config

    def test_observer_named(self) -> None:
        """twistd resolves the name the waiter gave to the observer factory, with its settings."""
        config = self.parse("-n", "waiter", "--log-format", "json", "--log-level", "warn")
        self.assertIs(config["logger"], logs.observer)
        observer = config["logger"]()
        self.assertEqual(logs._settings, LogSettings(format="json", level="warn", nodaemon=True))
        self.assertIsNotNone(observer)

    def test_default_is_filtered_text(self) -> None:
        """Without the waiter's options the observer is still ours: text, info and above."""
        config = self.parse("-n", "--logfile", "-", "waiter")
        self.assertIs(config["logger"], logs.observer)
        self.assertEqual(logs._settings, LogSettings(logfile="-", nodaemon=True))

    def test_user_logger_wins(self) -> None:
        """twistd's own --logger is kept; the waiter's log options then are refused."""
        config = self.parse("-n", "--logger", "twisted.logger.globalLogPublisher", "waiter")
        self.assertIs(config["logger"], globalLogPublisher)
        with self.assertRaises(UsageError):
            self.parse(
                "-n",
                "--logger",
                "twisted.logger.globalLogPublisher",
                "waiter",
                "--log-format",
                "json",
            )

    def test_bad_values(self) -> None:
        """A bad format or level is a usage error."""
        for args in (("--log-format", "xml"), ("--log-level", "chatty")):
            with self.assertRaises(UsageError):
                self.parse("-n", "waiter", *args)


class EventTests(OpsTestCase):
    """The events of SOAP calls, transitions and HTTP requests, field by field."""

    log_debug = True

    def setUp(self) -> None:
        super().setUp()
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind]

    def test_one_event_per_call(self) -> None:
        """Every operation logs one soap_call event: operation, serviceID, outcome, duration."""
        self.call("startWaiter", serviceID="s1", sessionToken="tok-1", secondsToWait=60)
        self.call("getServiceStatus", serviceID="s1", sessionToken="tok-1")
        self.call("notifyService", sessionToken="tok-1", serviceID="s1", message="hello")
        self.abort("s1")
        self.call("getServiceStatus", serviceID="gone", sessionToken="tok-1")
        calls = self.of("soap_call")
        self.assertEqual(
            [(e["operation"], e["service_id"], e["outcome"], e["log_level"]) for e in calls],
            [
                ("startWaiter", "s1", "ok", LogLevel.info),
                ("getServiceStatus", "s1", "ok", LogLevel.debug),
                ("notifyService", "s1", "ok", LogLevel.info),
                ("abortService", "s1", "ok", LogLevel.info),
                ("getServiceStatus", "gone", "Client.UnknownServiceID", LogLevel.info),
            ],
        )
        for event in calls:
            self.assertIsInstance(event["duration"], float)
            self.assertGreaterEqual(event["duration"], 0)
        self.assertNotIn("tok-1", repr(self.events))

    def test_transitions(self) -> None:
        """Each run transition is one run_transition event with the states and the reason."""
        self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait=60)
        self.reactor.processes[0].exit(2)
        transitions = [
            (e["service_id"], e["from_state"], e["to_state"], e["reason"])
            for e in self.of("run_transition")
        ]
        self.assertEqual(
            transitions,
            [("s1", None, "running", None), ("s1", "running", "failed", "the program failed")],
        )

    def test_access_lines_are_debug(self) -> None:
        """HTTP access lines are debug events, their URI cut short."""
        http_request(self.site, b"GET", b"/cloud/vm1/health?" + b"x" * 500)
        (access,) = self.of("http_access")
        self.assertEqual(access["log_level"], LogLevel.debug)
        self.assertEqual(
            (access["client"], access["method"], access["code"]), ("127.0.0.1", "GET", 200)
        )
        self.assertEqual(access["uri"], "/cloud/vm1/health?" + "x" * (MAX_URI - 18))

    def test_nothing_built_without_debug(self) -> None:
        """Unless the log takes debug events, successful polls and access lines make none."""
        self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait=60)
        quiet = self.build(fast_path=True, log_debug=False)
        self.events.clear()
        self.call("getServiceStatus", site=quiet, serviceID="s1", sessionToken="t")
        http_request(quiet, b"GET", b"/cloud/vm1/health")
        self.assertEqual(self.events, [])
        calls = "waiter_soap_call_duration_seconds_count"
        found = self.scrape()  # counted all the same
        self.assertEqual(value(found, calls, operation="getServiceStatus", outcome="ok"), 1)

    def test_printable(self) -> None:
        """Bytes from the network are logged as one escaped line (Twisted refuses most today)."""
        self.assertEqual(
            printable(b"/a?\x1b[31m\r\nfake line\xff"), "/a?\\x1b[31m\\r\\nfake line\\xff"
        )
        self.assertEqual(printable(b"GET", 2), "GE")


SECRET = "s3cr3t-T0KEN-5b1e9a7c"


class LogEndToEndTests(SynchronousTestCase):
    def test_json_log(self) -> None:
        """--log-format json: every line of a real log is JSON; calls and transitions are events."""
        server = Server(Path(self.mktemp()).resolve(), "--log-format", "json", "--kill-grace", "3")
        self.addCleanup(server.cleanup)
        soap = zeep.Client(server.url + "?wsdl").service
        soap.startWaiter(serviceID="j1", sessionToken="t", secondsToWait=600)
        soap.getServiceStatus(serviceID="j1", sessionToken="t")
        soap.notifyService(sessionToken="t", serviceID="j1", message="hello")
        self.assertIs(soap.abortService(serviceID="j1", sessionToken="t"), True)
        with self.assertRaises(Fault):
            soap.getServiceStatus(serviceID="nobody", sessionToken="t")
        events = wait_for(lambda: self.parsed(server, "nobody"), 5)
        calls = [
            (e["operation"], e["service_id"], e["outcome"])
            for e in events
            if e.get("event") == "soap_call"
        ]
        self.assertEqual(
            calls,
            [
                ("startWaiter", "j1", "ok"),
                ("notifyService", "j1", "ok"),
                ("abortService", "j1", "ok"),
                ("getServiceStatus", "nobody", "Client.UnknownServiceID"),
            ],
        )
        self.assertTrue(all(isinstance(e["duration"], float) for e in events if "duration" in e))
        transitions = [
            (e["from_state"], e["to_state"]) for e in events if e.get("event") == "run_transition"
        ]
        self.assertEqual(transitions, [(None, "running"), ("running", "aborted")])
        self.assertFalse([e for e in events if e.get("event") == "http_access"])

    def test_twistd_logfile(self) -> None:
        """twistd's --logfile gets the JSON lines; stdout stays empty."""
        folder = Path(self.mktemp()).resolve()
        folder.mkdir(parents=True)
        logfile = folder / "waiter.log"
        command = [
            *twistd_command(),
            "-n",
            "--pidfile=",
            "--logfile",
            str(logfile),
            "waiter",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--workdir",
            str(folder / "work"),
            "--log-format",
            "json",
        ]
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.terminate)
        wait_for(lambda: logfile.exists() and "Site starting on" in logfile.read_text(), 20)
        process.terminate()
        output, _ = process.communicate(timeout=20)
        self.assertEqual(output, b"")
        events = [json.loads(line) for line in logfile.read_text().splitlines()]
        self.assertIn("Server Shut Down.", [e["log_text"] for e in events])

    def parsed(self, server: Server, last: str) -> list[dict[str, Any]] | None:
        """Every line of the server's log as JSON, once ``last`` is in it."""
        text = server.log()
        if last not in text:
            return None
        return [json.loads(line) for line in text.splitlines()]

    def test_tokens_never_logged(self) -> None:
        """With tokens checked, no token reaches the log, text or JSON, even at debug."""
        tokens = {**test_auth_end_to_end.TOKENS, SECRET: {"user": "ann", "project": "p1"}}
        self.patch(test_auth_end_to_end, "TOKENS", tokens)
        folder = Path(self.mktemp()).resolve()
        auth = AuthManagerProcess(folder / "auth")
        self.addCleanup(auth.stop)
        for log_format in ("text", "json"):
            server = Server(
                folder / log_format,
                "--auth-wsdl",
                auth.wsdl,
                "--log-format",
                log_format,
                "--log-level",
                "debug",
                "--kill-grace",
                "3",
            )
            self.addCleanup(server.cleanup)
            soap = zeep.Client(server.url + "?wsdl").service
            soap.startWaiter(serviceID="t1", sessionToken=SECRET, secondsToWait=600)
            soap.getServiceStatus(serviceID="t1", sessionToken=SECRET)
            soap.notifyService(sessionToken=SECRET, serviceID="t1", message="hello")
            with self.assertRaises(Fault):
                soap.getServiceStatus(serviceID="t1", sessionToken=SECRET + "-forged")
            with self.assertRaises(Fault):
                soap.startWaiter(serviceID="t2", sessionToken=SECRET[::-1], secondsToWait=1)
            self.assertIs(soap.abortService(serviceID="t1", sessionToken=SECRET), True)
            server.stop()
            log = server.log()
            self.assertIn("getServiceStatus t1: ok", log)  # debug events are there
            self.assertIn("http_access" if log_format == "json" else "POST /cloud/vm1/Waiter", log)
            self.assertIn("Client.InvalidToken", log)
            self.assertNotIn(SECRET, log)
            self.assertNotIn(SECRET[::-1], log)
