"""Tests for waiter_service.runs.scrub: no tracebacks or server paths on pages."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.runs.scrub import scrub_tail, scrub_text

RUN = "/srv/waiter/work/run_1"


class ScrubTests(SynchronousTestCase):
    def test_traceback_reduced_to_its_last_line(self) -> None:
        """A Python traceback keeps only its error line, paths scrubbed."""
        lines = [
            "starting",
            "Traceback (most recent call last):",
            '  File "/opt/app/waiter_main.py", line 34, in atomic_write',
            "    with open(tmp, 'w') as f:",
            f"IsADirectoryError: [Errno 21] Is a directory: '{RUN}/status.7.tmp'",
        ]
        self.assertEqual(
            scrub_tail(lines, RUN),
            ["starting", "IsADirectoryError: [Errno 21] Is a directory: 'status.7.tmp'"],
        )

    def test_paths_outside_the_run_are_cut(self) -> None:
        """Absolute paths outside the run show only their last part."""
        self.assertEqual(
            scrub_text("cannot open /etc/secret/key.pem and /home/u/", RUN),
            "cannot open …/key.pem and …/u",
        )
        self.assertEqual(
            scrub_text(f"wrote {RUN}/out/mesh.vtk in {RUN}", RUN), "wrote out/mesh.vtk in ."
        )

    def test_urls_and_fractions_are_kept(self) -> None:
        """URLs, ratios and relative paths are not paths to scrub."""
        text = "see http://host/a/b, 3/4 done, out/x.vtk"
        self.assertEqual(scrub_text(text, RUN), text)

    def test_markup_is_not_a_path(self) -> None:
        """Closing tags and the like are left for the page to escape."""
        text = "<b>bold</b> </script> a</b"
        self.assertEqual(scrub_text(text, RUN), text)
