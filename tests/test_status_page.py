"""Tests for :mod:`waiter_service.status_page`."""

import base64
import re

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.runs.record import RunRecord
from waiter_service.runs.state import RunState
from waiter_service.status_page import encode_page, format_duration, render_status_page

NASTY = '<script>alert(1)</script> & "quoted"'
NASTY_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;"


def make_record() -> RunRecord:
    return RunRecord(
        service_id="bff13094b0988e404713177921198f5f_0",
        program="Waiter",
        inputs={"secondsToWait": 300},
        created_at=1000.0,
        state=RunState.RUNNING,
    )


class RenderStatusPageTests(SynchronousTestCase):
    def assertCompleteDocument(self, page: str) -> None:
        self.assertTrue(page.startswith("<!DOCTYPE html><html"), page[:40])
        self.assertTrue(page.endswith("</body></html>"), page[-40:])
        self.assertIn('<meta charset="utf-8">', page)
        for external in ("http://", "https://", "<script", "<link", "src="):
            self.assertNotIn(external, page)

    def test_running(self) -> None:
        """A running page shows the title, the percent, the message and the elapsed time."""
        record = make_record()
        record.record_progress(42, "meshing part 3 of 7")
        page = render_status_page(record, now=1075.0)
        self.assertCompleteDocument(page)
        self.assertIn("<title>Waiter: Running</title>", page)
        self.assertIn("<h1>Waiter: Running</h1>", page)
        self.assertIn("<p>42 %</p>", page)
        self.assertIn("<p>meshing part 3 of 7</p>", page)
        self.assertIn("<dd>bff13094b0988e404713177921198f5f_0</dd>", page)
        self.assertIn("<dd>1 min 15 s</dd>", page)
        self.assertIn('<body class="running">', page)

    def test_progressbar(self) -> None:
        """The bar is an accessible progressbar whose value and width are the percent."""
        record = make_record()
        record.record_progress(37)
        page = render_status_page(record, now=1001.0)
        bar = re.search(r'<div class="bar"[^>]*>', page)
        self.assertIsNotNone(bar)
        self.assertIn('role="progressbar"', bar.group(0))
        self.assertIn('aria-valuenow="37"', bar.group(0))
        self.assertIn('style="width:37%"', page)

    def test_abort_requested(self) -> None:
        """A running run with an abort pending is shown as stopping."""
        record = make_record()
        record.request_abort()
        page = render_status_page(record, now=1001.0)
        self.assertCompleteDocument(page)
        self.assertIn("<h1>Waiter: Stopping</h1>", page)
        self.assertNotIn("Running", page)

    def test_completed(self) -> None:
        """A completed page says finished, without a bar, with the exit status."""
        record = make_record()
        record.complete({"result": "eA=="}, now=1010.0)
        page = render_status_page(record, now=2000.0)
        self.assertCompleteDocument(page)
        self.assertIn("<h1>Waiter: Finished</h1>", page)
        self.assertIn("<dd>10 s</dd>", page)
        self.assertIn("<dd>exit status 0</dd>", page)
        self.assertNotIn("progressbar", page)
        self.assertIn('<body class="completed">', page)

    def test_failed(self) -> None:
        """A failed page shows the reason, the exit status and the output tail."""
        record = make_record()
        record.record_progress(60)
        record.fail("the program failed", 4720.0, exit_code=3, output_tail=["first", "second"])
        page = render_status_page(record, now=4720.0)
        self.assertCompleteDocument(page)
        self.assertIn("<h1>Waiter: Failed</h1>", page)
        self.assertIn("<dt>Reason</dt><dd>the program failed</dd>", page)
        self.assertIn("<dt>Ended with</dt><dd>exit status 3</dd>", page)
        self.assertIn("<pre>first\nsecond</pre>", page)
        self.assertIn("<dd>1 h 2 min</dd>", page)
        self.assertNotIn("progressbar", page)
        self.assertIn('<body class="failed">', page)

    def test_aborted(self) -> None:
        """An aborted page says aborted and names the signal that ended the program."""
        record = make_record()
        record.request_abort()
        record.abort(1005.0, exit_signal=15, output_tail=["bye"])
        page = render_status_page(record, now=1005.0)
        self.assertCompleteDocument(page)
        self.assertIn("<h1>Waiter: Aborted</h1>", page)
        self.assertIn("<dd>killed by signal 15</dd>", page)
        self.assertIn("<pre>bye</pre>", page)
        self.assertNotIn("Reason", page)
        self.assertIn('<body class="aborted">', page)

    def test_running_message_is_escaped(self) -> None:
        """The program's progress message appears escaped, never as markup."""
        record = make_record()
        record.record_progress(5, NASTY)
        page = render_status_page(record, now=1001.0)
        self.assertIn(NASTY_ESCAPED, page)
        self.assertNotIn("<script", page)
        self.assertNotIn('"quoted"', page)

    def test_failure_texts_are_escaped(self) -> None:
        """The failure reason and every output line appear escaped, never as markup."""
        record = make_record()
        record.fail(NASTY, 1002.0, exit_code=1, output_tail=[NASTY, "a & b"])
        page = render_status_page(record, now=1002.0)
        self.assertIn(f"<dd>{NASTY_ESCAPED}</dd>", page)
        self.assertIn(f"<pre>{NASTY_ESCAPED}\na &amp; b</pre>", page)
        self.assertNotIn("<script", page)
        self.assertNotIn('"quoted"', page)
        self.assertNotIn("a & b", page)

    def test_program_name_is_escaped(self) -> None:
        """Even the program's name is escaped in the title and the heading."""
        record = make_record()
        record.program = "<i>W&W</i>"
        page = render_status_page(record, now=1001.0)
        self.assertIn("<title>&lt;i&gt;W&amp;W&lt;/i&gt;: Running</title>", page)
        self.assertNotIn("<i>", page)


class FormatDurationTests(SynchronousTestCase):
    def test_examples(self) -> None:
        """Seconds alone, then minutes and seconds, then hours and minutes."""
        examples = {
            0: "0 s",
            59.9: "59 s",
            60: "1 min 0 s",
            75: "1 min 15 s",
            3599: "59 min 59 s",
            3600: "1 h 0 min",
            3720: "1 h 2 min",
            90061: "25 h 1 min",
        }
        for seconds, text in examples.items():
            self.assertEqual(format_duration(seconds), text, seconds)


class EncodePageTests(SynchronousTestCase):
    def test_round_trip_as_utf8(self) -> None:
        """The encoded page is ASCII base64 of the page's UTF-8 bytes."""
        page = "<p>Wärme \u2013 \u6e29\u5ea6 \U0001f321</p>"
        encoded = encode_page(page)
        self.assertTrue(encoded.isascii())
        self.assertEqual(base64.b64decode(encoded, validate=True).decode("utf-8"), page)

    def test_rendered_page_round_trip(self) -> None:
        """A rendered page with non-ASCII text survives the encoding."""
        record = make_record()
        record.record_progress(50, "Maillage \u00e9tape 2")
        page = render_status_page(record, now=1001.0)
        self.assertEqual(base64.b64decode(encode_page(page)).decode("utf-8"), page)
