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


class SlurmOptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.workdir = Path(self.mktemp())
        self.bin = Path(self.mktemp()).resolve()
        self.bin.mkdir()
        self.environ: dict[str, str] = {"PATH": f"{self.bin}:/usr/bin:/bin"}
        self.patch(os, "environ", self.environ)

    def fake_slurm(self) -> None:
        """sbatch, squeue and scancel on the PATH (never run here)."""
        for name in ("sbatch", "squeue", "scancel"):
            path = self.bin / name
            path.write_text("#!/bin/sh\nexit 1\n")
            path.chmod(0o755)

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["--workdir", str(self.workdir), *args])
        return options

    def test_local_by_default(self) -> None:
        self.assertIsNone(self.parse()["slurm"])

    def test_slurm_settings(self) -> None:
        self.fake_slurm()
        settings = self.parse(
            "--runner=slurm",
            "--slurm-partition=cfd",
            "--slurm-time=2:00:00",
            "--slurm-cpus=4",
            "--slurm-mem=8G",
            "--slurm-arg=--account=proj",
            "--slurm-arg=--qos=low",
            "--slurm-poll=0.5",
        )["slurm"]
        self.assertEqual(
            (settings.partition, settings.time_limit, settings.cpus, settings.memory),
            ("cfd", "2:00:00", 4, "8G"),
        )
        self.assertEqual(settings.extra_args, ("--account=proj", "--qos=low"))
        self.assertEqual(settings.poll_interval, 0.5)

    def test_bad_slurm_options(self) -> None:
        """Each bad value is a usage error that names the option."""
        self.fake_slurm()
        for args, named in [
            (["--runner=cloud"], "--runner"),
            (["--runner=slurm", "--slurm-arg=--wait"], "--slurm-arg"),
            (["--runner=slurm", "--slurm-arg=--out=x"], "--slurm-arg"),
            (["--runner=slurm", "--slurm-poll=0.05"], "0.2 or more"),
            (["--runner=slurm", "--slurm-partition=a b"], "--slurm-partition"),
            (["--runner=slurm", "--slurm-mem=--x"], "--slurm-mem"),
            (["--runner=slurm", "--slurm-cpus=0"], "1 or more"),
        ]:
            with self.assertRaises(UsageError, msg=args) as raised:
                self.parse(*args)
            self.assertIn(named, str(raised.exception), args)

    def test_slurm_commands_must_exist(self) -> None:
        self.environ["PATH"] = str(self.bin)  # no Slurm there
        with self.assertRaises(UsageError) as raised:
            self.parse("--runner=slurm")
        self.assertIn("sbatch is not on the PATH", str(raised.exception))
