"""Tests for :mod:`waiter_service.runs.progress`."""

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.runs.progress import MAX_MESSAGE, Progress, parse_progress_line


class ParseProgressLineTests(SynchronousTestCase):
    def test_percent_alone(self) -> None:
        """``progress 42`` is a report of 42 % without a message."""
        self.assertEqual(parse_progress_line("progress 42"), Progress(42.0, None))

    def test_fraction_and_message_any_case(self) -> None:
        """The keyword is case-blind; the rest of the line is the message."""
        self.assertEqual(
            parse_progress_line("PROGRESS 42.5 text here"), Progress(42.5, "text here")
        )

    def test_percent_sign(self) -> None:
        """A trailing percent sign is allowed."""
        self.assertEqual(parse_progress_line("progress 42%"), Progress(42.0, None))

    def test_surrounding_blanks(self) -> None:
        """Blanks around the line, as a carriage return, do not matter."""
        self.assertEqual(parse_progress_line("  progress 7 go\r"), Progress(7.0, "go"))

    def test_other_lines_are_not_reports(self) -> None:
        """Ordinary output is not mistaken for a report."""
        for line in ("", "hello world", "progressing 42", "42 progress", "the progress 42"):
            self.assertIsNone(parse_progress_line(line), line)

    def test_malformed_reports_are_refused(self) -> None:
        """A report without a finite number is not a report."""
        for line in (
            "progress",
            "progress ",
            "progress abc",
            "progress nan",
            "progress NaN%",
            "progress inf",
            "progress -inf",
            "progress 1e999",
            "progress %",
        ):
            self.assertIsNone(parse_progress_line(line), line)

    def test_out_of_range_numbers_are_passed_on(self) -> None:
        """Finite numbers outside 0..100 are reports; the record clamps them."""
        self.assertEqual(parse_progress_line("progress -5"), Progress(-5.0, None))
        self.assertEqual(parse_progress_line("progress 150"), Progress(150.0, None))

    def test_message_is_cut(self) -> None:
        """A message longer than MAX_MESSAGE is cut to MAX_MESSAGE characters."""
        report = parse_progress_line("progress 1 " + "x" * (MAX_MESSAGE + 50))
        self.assertEqual(report, Progress(1.0, "x" * MAX_MESSAGE))
