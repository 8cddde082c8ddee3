"""
Tests for ``<context-root>/health`` (waiter_service.ops.health): the probe
of the work folder, its cache on the reactor's clock, the JSON document;
then a real twistd going from 200 to 503, and the Dockerfile's HEALTHCHECK.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from waiter_service.ops.health import FolderProbe, FolderState, probe_folder

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

    def healthcheck(self) -> int:
        """Run the Dockerfile's HEALTHCHECK against this server; its exit code."""
        command = dockerfile_healthcheck()
        self.assertEqual(command[:2], ["python", "-c"])
        code = command[2].replace(":8080/", f":{self.server.port}/")
        self.assertNotEqual(code, command[2])
        env = {"PATH": os.environ.get("PATH", ""), "CONTEXT_ROOT": CONTEXT_ROOT}
        env["http_proxy"] = env["HTTP_PROXY"] = "http://127.0.0.1:9"  # never used
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
        return done.returncode

    def test_200_then_503(self) -> None:
        """A real server is healthy, then 503 once its work folder cannot be written."""
        answer = requests.get(self.url, timeout=10)
        self.assertEqual(answer.status_code, 200)
        self.assertEqual(answer.json()["status"], "ok")
        self.assertEqual(self.healthcheck(), 0)
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
        self.assertEqual(self.healthcheck(), 1)
        self.assertIn("the work folder cannot be written", self.server.log())
