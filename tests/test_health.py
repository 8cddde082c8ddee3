"""
Tests for ``<context-root>/health`` (waiter_service.ops.health): the probe
of the work folder, its cache on the reactor's clock, the JSON document;
then a real twistd going from 200 to 503, and the Dockerfile's HEALTHCHECK.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import urllib.error
from contextlib import redirect_stdout
from email.message import Message
from pathlib import Path
from typing import Any

import requests
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from waiter_service.ops.health import FolderProbe, FolderState, probe_folder
from waiter_service.ops.healthcheck import health_url, main
from waiter_service.soap.site import parse_context_root

from .e2e_server import CONTEXT_ROOT, REPO, Server, wait_for
from .test_metrics import OpsTestCase


class ProbeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = Path(self.mktemp())
        self.folder.mkdir()

    def test_writable(self) -> None:
        """A writable folder: no problem, its free space, and no probe file left behind."""
        state = probe_folder(self.folder)
        self.assertIsNone(state.problem)
        self.assertIsInstance(state.free_bytes, int)
        self.assertGreater(state.free_bytes, 0)
        self.assertEqual(list(self.folder.iterdir()), [])

    def test_folder_replaced_by_a_file(self) -> None:
        """A work folder that is no longer a folder cannot be written: said without its path."""
        self.folder.rmdir()
        self.folder.write_bytes(b"")
        state = probe_folder(self.folder)
        self.assertEqual(
            state.problem, "the work folder cannot be written (ENOTDIR: Not a directory)"
        )
        self.assertNotIn(str(self.folder), state.problem)

    def test_read_only_folder(self) -> None:
        """A folder without write permission cannot be written."""
        if os.geteuid() == 0:
            raise SkipTest("root writes to read-only folders (the file test covers the path)")
        self.folder.chmod(0o555)
        self.addCleanup(self.folder.chmod, 0o755)
        self.assertIn("EACCES", probe_folder(self.folder).problem or "")

    def test_cached_on_the_clock(self) -> None:
        """The folder is probed at most once per ttl of the reactor's clock."""
        clock = Clock()
        answers = [FolderState(None, 1), FolderState("full", 0), FolderState(None, 2)]
        calls: list[Path] = []

        def probe(folder: Path) -> FolderState:
            calls.append(folder)
            return answers[len(calls) - 1]

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        cached = FolderProbe(self.folder, clock, ttl=5, probe=probe)
        self.assertEqual(cached.state().free_bytes, 1)
        clock.advance(4.9)
        self.assertEqual(cached.state().free_bytes, 1)
        self.assertEqual(len(calls), 1)
        clock.advance(0.1)
        self.assertEqual(cached.state().problem, "full")
        clock.advance(5)
        self.assertIsNone(cached.state().problem)
        self.assertEqual(calls, [self.folder] * 3)
        health = [(e["log_level"], e.get("problem")) for e in events if e.get("event") == "health"]
        self.assertEqual(health, [(LogLevel.error, "full"), (LogLevel.info, None)])


class HealthResourceTests(OpsTestCase):
    max_running = 1

    def health_answer(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        response = self.get(b"/health")
        return response.code, json.loads(response.body), response.headers

    def test_serving(self) -> None:
        """200 and the whole document: status, version, uptime, runs, queue, children, folder."""
        self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait=60)
        self.call("startWaiter", serviceID="s2", sessionToken="t", secondsToWait=60)
        self.reactor.advance(42)
        code, document, headers = self.health_answer()
        self.assertEqual(code, 200)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(headers["cache-control"], "no-store")
        self.assertEqual(
            document,
            {
                "status": "ok",
                "version": "9.9.9",
                "uptime_seconds": 42,
                "runs": {"queued": 1, "running": 1, "completed": 0, "failed": 0, "aborted": 0},
                "queue_length": 1,
                "children_alive": 1,
                "workdir": {"writable": True, "free_bytes": 12345},
            },
        )

    def test_unwritable(self) -> None:
        """503 with the reason when the work folder cannot be written."""
        self.folder_state = FolderState("the work folder cannot be written (ENOSPC: full)", 0)
        code, document, _ = self.health_answer()
        self.assertEqual(code, 503)
        self.assertEqual(document["status"], "unavailable")
        self.assertEqual(document["reason"], "the work folder cannot be written (ENOSPC: full)")
        self.assertEqual(document["workdir"], {"writable": False, "free_bytes": 0})

    def test_probe_is_cached(self) -> None:
        """Health checks in a burst probe the disk once."""
        for _ in range(20):
            self.health_answer()
        self.assertEqual(self.probes, 1)
        self.reactor.advance(5)
        self.health_answer()
        self.assertEqual(self.probes, 2)

    def test_methods_and_paths(self) -> None:
        """GET and HEAD only; nothing below /health; not at the root when a context root is set."""
        post = self.get(b"/health", b"POST")
        self.assertEqual((post.code, post.headers["allow"]), (405, "GET, HEAD"))
        head = self.get(b"/health", b"HEAD")
        self.assertEqual((head.code, head.body), (200, b""))
        self.assertEqual(self.get(b"/health/").code, 200)
        self.assertEqual(self.get(b"/health/x").code, 404)
        from waiter_service.testing import http_request

        self.assertEqual(http_request(self.site, b"GET", b"/health").code, 404)


class FakeResponse(io.BytesIO):
    """A urllib response: its status and body."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(body)
        self.status = status


class FakeOpener:
    """A urllib opener's ``open``: records its calls, answers or raises what it was given."""

    def __init__(self, answer: FakeResponse | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[str, float]] = []

    def __call__(self, url: str, timeout: float) -> FakeResponse:
        self.calls.append((url, timeout))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def http_error(code: int, body: bytes) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://x/", code, "error", Message(), io.BytesIO(body))


class HealthcheckTests(SynchronousTestCase):
    """The Dockerfile's HEALTHCHECK (waiter_service.ops.healthcheck) with a fake opener."""

    def test_url_default(self) -> None:
        """No settings: port 8080, no context root."""
        self.assertEqual(health_url({}), "http://127.0.0.1:8080/health")

    def test_url_context_root_as_the_server_reads_it(self) -> None:
        """CONTEXT_ROOT's spaces and extra slashes go, as parse_context_root drops them."""
        for root in ["/cloud/vm1", " /cloud/vm1/ ", "cloud//vm1", "\t/cloud/vm1\n"]:
            self.assertEqual(
                parse_context_root(root), ["cloud", "vm1"], f"the server's reading of {root!r}"
            )
            self.assertEqual(
                health_url({"CONTEXT_ROOT": root}), "http://127.0.0.1:8080/cloud/vm1/health"
            )
        self.assertEqual(health_url({"CONTEXT_ROOT": " / "}), "http://127.0.0.1:8080/health")

    def test_url_port(self) -> None:
        """WAITER_HEALTH_PORT replaces 8080; an empty one does not."""
        environ = {"CONTEXT_ROOT": "/a", "WAITER_HEALTH_PORT": " 9443 "}
        self.assertEqual(health_url(environ), "http://127.0.0.1:9443/a/health")
        self.assertEqual(health_url({"WAITER_HEALTH_PORT": ""}), "http://127.0.0.1:8080/health")

    def test_url_given(self) -> None:
        """WAITER_HEALTH_URL wins over the port and the context root."""
        environ = {
            "WAITER_HEALTH_URL": " https://10.0.0.5:8443/x/health ",
            "WAITER_HEALTH_PORT": "9",
            "CONTEXT_ROOT": "/a",
        }
        self.assertEqual(health_url(environ), "https://10.0.0.5:8443/x/health")

    def test_url_refused(self) -> None:
        """A port that is not a TCP port, or a context root the server refuses: ValueError."""
        for environ in [
            {"WAITER_HEALTH_PORT": "80a"},
            {"WAITER_HEALTH_PORT": "0"},
            {"WAITER_HEALTH_PORT": "65536"},
            {"WAITER_HEALTH_PORT": "-1"},
            {"WAITER_HEALTH_PORT": "\u0663"},
            {"CONTEXT_ROOT": "/a/../b"},
            {"CONTEXT_ROOT": "/a?b"},
        ]:
            self.assertRaises(ValueError, health_url, environ)

    def test_healthy(self) -> None:
        """200 with status ok: exit 0, nothing printed, asked once with a 3 s timeout."""
        opener = FakeOpener(FakeResponse(200, b'{"status": "ok", "version": "1"}'))
        out = io.StringIO()
        with redirect_stdout(out):
            code = main({"CONTEXT_ROOT": " /c ", "WAITER_HEALTH_PORT": "81"}, opener)
        self.assertEqual((code, out.getvalue()), (0, ""))
        self.assertEqual(opener.calls, [("http://127.0.0.1:81/c/health", 3.0)])

    def test_unhealthy(self) -> None:
        """Anything but 200 with status ok: exit 1 and one line that says why."""
        url = "http://127.0.0.1:8080/health"
        for answer, line in [
            (
                http_error(503, b'{"status": "unavailable", "reason": "full\\nreally"}'),
                f"unhealthy: HTTP 503 from {url}: full really",
            ),
            (http_error(500, b"<html>"), f"unhealthy: HTTP 500 from {url}"),
            (FakeResponse(204, b""), f"unhealthy: HTTP 204 from {url}"),
            (FakeResponse(200, b"<html>"), f"unhealthy: {url} did not answer a JSON object"),
            (FakeResponse(200, b"[1]"), f"unhealthy: {url} did not answer a JSON object"),
            (
                FakeResponse(200, b'{"status": "starting"}'),
                f"unhealthy: status starting from {url}",
            ),
            (FakeResponse(200, b"{}"), f"unhealthy: status None from {url}"),
            (
                urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
                f"unhealthy: no answer from {url} (<urlopen error [Errno 111] Connection refused>)",
            ),
            (TimeoutError("timed out"), f"unhealthy: no answer from {url} (timed out)"),
        ]:
            out = io.StringIO()
            with redirect_stdout(out):
                code = main({}, FakeOpener(answer))
            self.assertEqual((code, out.getvalue()), (1, line + "\n"))

    def test_bad_settings(self) -> None:
        """Settings that cannot give a URL: exit 1 and why, without asking anything."""
        opener = FakeOpener(FakeResponse(200, b'{"status": "ok"}'))
        out = io.StringIO()
        with redirect_stdout(out):
            code = main({"WAITER_HEALTH_PORT": "http"}, opener)
        self.assertEqual(
            (code, out.getvalue()), (1, "unhealthy: WAITER_HEALTH_PORT 'http' is not a TCP port\n")
        )
        self.assertEqual(opener.calls, [])


def dockerfile_healthcheck() -> list[str]:
    """The HEALTHCHECK command of the Dockerfile (exec form)."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.M)
    assert match is not None
    command: list[str] = json.loads(match.group(1))
    return command


class HealthEndToEndTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = Server(Path(self.mktemp()).resolve())
        self.addCleanup(self.server.cleanup)
        self.url = f"http://127.0.0.1:{self.server.port}{CONTEXT_ROOT}/health"

    def healthcheck(self) -> tuple[int, str]:
        """Run the Dockerfile's HEALTHCHECK against this server; its exit code and output."""
        command = dockerfile_healthcheck()
        self.assertEqual(command, ["python", "-m", "waiter_service.ops.healthcheck"])
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(REPO),
            # Spaces around it, as an env file may leave them: the server strips them.
            "CONTEXT_ROOT": f"  {CONTEXT_ROOT}/ ",
            "WAITER_HEALTH_PORT": str(self.server.port),
        }
        env["http_proxy"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"  # never used
        done = subprocess.run(
            [sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=30
        )
        return done.returncode, done.stdout + done.stderr

    def test_200_then_503(self) -> None:
        """A real server is healthy, then 503 once its work folder cannot be written."""
        answer = requests.get(self.url, timeout=10)
        self.assertEqual(answer.status_code, 200)
        self.assertEqual(answer.json()["status"], "ok")
        self.assertEqual(self.healthcheck(), (0, ""))
        # As root, a read-only mode does not stop writes: the folder goes
        # away and a file takes its name, which nobody can write into.
        moved = self.server.folder / "work-moved"
        self.server.workdir.rename(moved)
        self.server.workdir.write_bytes(b"")

        def restore() -> None:
            self.server.workdir.unlink()
            moved.rename(self.server.workdir)

        self.addCleanup(restore)
        # The last probe is kept 5 s.
        answer = wait_for(
            lambda: (r := requests.get(self.url, timeout=10)).status_code == 503 and [r], 10, 0.25
        )[0]
        document = answer.json()
        self.assertEqual(document["status"], "unavailable")
        self.assertIn("ENOTDIR", document["reason"])
        self.assertNotIn(str(self.server.folder), answer.text)
        code, output = self.healthcheck()
        self.assertEqual(code, 1)
        self.assertRegex(
            output,
            r"^unhealthy: HTTP 503 from http://127\.0\.0\.1:\d+/cloud/vm1/health: "
            r"the work folder cannot be written \(ENOTDIR: .*\)\n$",
        )
        self.assertIn("the work folder cannot be written", self.server.log())
