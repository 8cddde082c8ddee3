"""Tests for :mod:`waiter_service.programs.waiter` and the script it runs."""

import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.programs.waiter import (
    DEFAULT_MAX_SECONDS,
    DEFAULT_SECONDS,
    MAX_RESULT_BYTES,
    SCRIPT,
    Waiter,
)
from waiter_service.runs.process import MAX_LINE
from waiter_service.runs.program import InputError, MissingOutput
from waiter_service.runs.progress import MAX_MESSAGE, Progress


class CheckInputsTests(SynchronousTestCase):
    def test_missing_means_default(self) -> None:
        """Without secondsToWait (or with None) the tutorial's 300 seconds are used."""
        self.assertEqual(DEFAULT_SECONDS, 300)
        self.assertEqual(Waiter().check_inputs({}), {"secondsToWait": 300})
        self.assertEqual(Waiter().check_inputs({"secondsToWait": None}), {"secondsToWait": 300})

    def test_bounds_are_accepted(self) -> None:
        """Zero and exactly the maximum are accepted; other keys are dropped."""
        self.assertEqual(Waiter().check_inputs({"secondsToWait": 0}), {"secondsToWait": 0})
        self.assertEqual(
            Waiter().check_inputs({"secondsToWait": DEFAULT_MAX_SECONDS, "x": 1}),
            {"secondsToWait": DEFAULT_MAX_SECONDS},
        )

    def test_negative_is_refused(self) -> None:
        """A negative wait is refused."""
        self.assertRaises(InputError, Waiter().check_inputs, {"secondsToWait": -1})

    def test_above_maximum_is_refused(self) -> None:
        """A wait above the configured maximum is refused, naming the maximum."""
        error = self.assertRaises(
            InputError, Waiter(max_seconds=10).check_inputs, {"secondsToWait": 11}
        )
        self.assertIn("10", str(error))

    def test_non_integers_are_refused(self) -> None:
        """Booleans, strings and floats are not whole numbers of seconds."""
        for value in (True, False, "5", 5.0):
            self.assertRaises(InputError, Waiter().check_inputs, {"secondsToWait": value})


class InvocationTests(SynchronousTestCase):
    def test_argv(self) -> None:
        """The child is the script run isolated, with its files inside the run's folder."""
        folder = Path("/work/runs/abc_1")
        invocation = Waiter(python="/opt/py/bin/python").invocation({"secondsToWait": 7}, folder)
        self.assertEqual(
            invocation.argv,
            [
                "/opt/py/bin/python",
                "-I",
                "-S",
                str(SCRIPT),
                "7",
                "/work/runs/abc_1/status",
                "/work/runs/abc_1/result",
            ],
        )
        self.assertEqual(invocation.env, {})

    def test_script_and_default_python(self) -> None:
        """The script is waiter_main.py beside the module, run by this Python by default."""
        self.assertEqual(SCRIPT.name, "waiter_main.py")
        self.assertTrue(SCRIPT.is_file())
        self.assertEqual(Waiter().python, sys.executable)


class ParseLineTests(SynchronousTestCase):
    def test_progress_lines(self) -> None:
        """Progress lines are reports, other lines are not."""
        waiter = Waiter()
        self.assertEqual(waiter.parse_line("progress 42"), Progress(42.0))
        self.assertEqual(waiter.parse_line("progress 7 waiting"), Progress(7.0, "waiting"))
        self.assertIsNone(waiter.parse_line("waiter: ignored message 'x'"))

    def test_long_lines_are_cut_first(self) -> None:
        """Only the first MAX_LINE characters of a line are looked at."""
        waiter = Waiter()
        self.assertIsNone(waiter.parse_line("progress" + " " * MAX_LINE + "5"))
        report = waiter.parse_line("progress 5 " + "x" * (2 * MAX_LINE))
        self.assertEqual(report, Progress(5.0, "x" * MAX_MESSAGE))


class CollectOutputsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = Path(self.mktemp())
        self.folder.mkdir()

    def test_reads_result(self) -> None:
        """The result file's bytes are the one output."""
        (self.folder / "result").write_bytes(b"Waited 1.0 of 1 seconds.\n")
        self.assertEqual(
            Waiter().collect_outputs(self.folder), {"result": b"Waited 1.0 of 1 seconds.\n"}
        )

    def test_missing_result(self) -> None:
        """No result file raises MissingOutput."""
        self.assertRaises(MissingOutput, Waiter().collect_outputs, self.folder)

    def test_result_size_limit(self) -> None:
        """A result of MAX_RESULT_BYTES is read, one byte more raises ValueError."""
        (self.folder / "result").write_bytes(b"x" * MAX_RESULT_BYTES)
        self.assertEqual(len(Waiter().collect_outputs(self.folder)["result"]), MAX_RESULT_BYTES)
        (self.folder / "result").write_bytes(b"x" * (MAX_RESULT_BYTES + 1))
        self.assertRaises(ValueError, Waiter().collect_outputs, self.folder)


class WaiterScriptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = Path(self.mktemp())
        self.folder.mkdir()
        self.status = self.folder / "status"
        self.result = self.folder / "result"

    def run_script(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-I", "-S", str(SCRIPT), *args],
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            timeout=5,
        )

    def test_full_wait(self) -> None:
        """A one-second wait reports rising progress up to 100, then leaves its files."""
        done = self.run_script("1", str(self.status), str(self.result))
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = done.stdout.splitlines()
        self.assertTrue(lines)
        self.assertTrue(all(line.startswith("progress ") for line in lines), lines)
        percents = [int(line.split()[1]) for line in lines]
        self.assertEqual(percents, sorted(percents))
        self.assertEqual((percents[0], percents[-1]), (0, 100))
        self.assertEqual(self.status.read_text(), "100\n")
        self.assertRegex(self.result.read_text(), r"^Waited 1\.\d of 1 seconds\.\n$")
        self.assertEqual(sorted(p.name for p in self.folder.iterdir()), ["result", "status"])

    def test_finish_message(self) -> None:
        """A ``finish`` line on stdin ends a long wait early and successfully."""
        done = self.run_script("60", str(self.status), str(self.result), stdin="finish\n")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.splitlines()[-1], "progress 100")
        self.assertEqual(self.status.read_text(), "100\n")
        self.assertRegex(self.result.read_text(), r"^Waited \d+\.\d of 60 seconds\.\n$")

    def test_finish_after_another_message(self) -> None:
        """A ``finish`` that arrives in one write after another line is still obeyed."""
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", str(SCRIPT), "3", str(self.status), str(self.result)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.addCleanup(child.wait)
        self.addCleanup(child.kill)
        child.stdin.write(b"hello\nfinish\n")
        child.stdin.flush()
        self.addCleanup(child.stdin.close)
        self.assertEqual(child.wait(timeout=1.5), 0)

    def test_fail_message(self) -> None:
        """A ``fail`` line makes the script exit 1 with the reason and no result."""
        done = self.run_script("60", str(self.status), str(self.result), stdin="fail <b>x</b>\n")
        self.assertEqual(done.returncode, 1)
        self.assertIn("<b>x</b>", done.stderr)
        self.assertFalse(self.result.exists())
        self.assertNotEqual(self.status.read_text(), "100\n")

    def test_wrong_number_of_arguments(self) -> None:
        """Too few or too many arguments exit 2 with the usage on stderr."""
        for args in ((), ("1", str(self.status)), ("1", "a", "b", "c")):
            done = self.run_script(*args)
            self.assertEqual(done.returncode, 2, args)
            self.assertIn("usage: waiter SECONDS STATUSFILE RESULTFILE", done.stderr)
            self.assertEqual(done.stdout, "")

    def test_bad_seconds(self) -> None:
        """A negative or non-numeric SECONDS exits 2 without writing anything."""
        for seconds in ("-1", "soon"):
            done = self.run_script(seconds, str(self.status), str(self.result))
            self.assertEqual(done.returncode, 2, seconds)
            self.assertIn("SECONDS must be a whole number", done.stderr)
        self.assertEqual(list(self.folder.iterdir()), [])
