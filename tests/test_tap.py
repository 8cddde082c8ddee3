"""Tests for waiter_service.tap: options, environment fallbacks and the service."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.application.service import IServiceCollection
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from waiter_service.service import RunManagerService
from waiter_service.tap import Options, makeService


class OptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.workdir = Path(self.mktemp())
        self.environ: dict[str, str] = {"PATH": os.environ.get("PATH", "")}
        self.patch(os, "environ", self.environ)

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["--workdir", str(self.workdir), *args])
        return options

    def test_defaults(self) -> None:
        """Without options the server listens on tcp:8080 at the root, base64 results."""
        options = self.parse()
        self.assertEqual(options["listen"], "tcp:8080")
        self.assertEqual(options["context-root"], [])
        self.assertEqual(options["result-encoding"], "base64")
        self.assertEqual(options["kill-grace"], 10.0)
        self.assertEqual(options["max-body"], 1024 * 1024)
        self.assertTrue(self.workdir.is_dir())

    def test_default_workdir(self) -> None:
        """Without --workdir or WAITER_LOG_FOLDER, ./waiter-work is used."""
        cwd = Path(self.mktemp()).resolve()
        cwd.mkdir()
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(cwd)
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["store"].root, (cwd / "waiter-work").resolve())

    def test_environment_fallbacks(self) -> None:
        """CONTEXT_ROOT and WAITER_LOG_FOLDER apply when no option is given."""
        folder = Path(self.mktemp())
        self.environ.update(CONTEXT_ROOT="/company/vm", WAITER_LOG_FOLDER=str(folder))
        options = Options()
        options.parseOptions([])
        self.assertEqual(options["context-root"], ["company", "vm"])
        self.assertEqual(options["store"].root, folder.resolve())

    def test_options_win(self) -> None:
        """Options override the environment."""
        self.environ.update(CONTEXT_ROOT="/company/vm", WAITER_LOG_FOLDER="/nonexistent/x")
        options = self.parse("--context-root", "/other")
        self.assertEqual(options["context-root"], ["other"])
        self.assertEqual(options["store"].root, self.workdir.resolve())

    def test_bad_values(self) -> None:
        """Bad values stop twistd with a usage error, not a traceback."""
        for args in [
            ["--listen", "bogus:1"],
            ["--listen", "tcp:notaport"],
            ["--listen", "tcp:-5"],
            ["--listen", "tcp:70000"],
            ["--listen", "tcp:8080:interface=not an ip"],
            ["--listen", "unix:/nonexistent/dir/sock"],
            ["--listen", "ssl:8443:privateKey=/nonexistent.pem"],
            ["--kill-grace", "inf"],
            ["--retention", "0"],
            ["--retention", "7 days"],
            ["--max-queued", "-1"],
            ["--on-stop", "maybe"],
            ["--context-root", "/a/../b"],
            ["--result-encoding", "xml"],
            ["--max-wait", "0"],
            ["--max-wait", "ten"],
            ["--kill-grace", "-1"],
            ["--kill-grace", "nan"],
            ["--max-body", "0"],
        ]:
            self.assertRaises(UsageError, self.parse, *args)

    def test_good_endpoints(self) -> None:
        """TCP on an interface (IPv4 or IPv6) and UNIX sockets in a folder are accepted."""
        folder = Path(self.mktemp()).resolve()
        folder.mkdir()
        for listen in (
            "tcp:0:interface=127.0.0.1",
            "tcp:8080:interface=\\:\\:1",
            f"unix:{folder}/s",
        ):
            self.assertEqual(self.parse("--listen", listen)["listen"], listen)

    def test_unusable_workdir(self) -> None:
        """A work folder that cannot be created is a usage error."""
        blocker = Path(self.mktemp())
        blocker.write_text("a file, not a folder")
        options = Options()
        error = self.assertRaises(
            UsageError, options.parseOptions, ["--workdir", str(blocker / "sub")]
        )
        self.assertIn("--workdir", str(error))

    def test_make_service(self) -> None:
        """The service owns the runs first, then listens."""
        service = makeService(self.parse("--listen", "tcp:0:interface=127.0.0.1"))
        children = list(IServiceCollection(service))
        self.assertIsInstance(children[0], RunManagerService)
        self.assertEqual(len(children), 2)
