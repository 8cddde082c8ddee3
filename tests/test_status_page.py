"""Tests for :mod:`waiter_service.status_page` (its looks: ``tests/test_browser.py``)."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.runs.record import RunRecord
from waiter_service.runs.state import RunState
from waiter_service.status_page import (
    ESTIMATE_MIN_ELAPSED,
    ESTIMATE_MIN_PERCENT,
    LOOKS,
    PAGE_LINE_CHARS,
    PAGE_TAIL_LINES,
    PALETTE,
    TEXT_PAIRS,
    ClusterQueue,
    describe_exit,
    encode_page,
    estimate_time_left,
    format_duration,
    format_estimate,
    render_status_page,
)

NASTY = '<script>alert(1)</script> & "quoted"'
NASTY_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;"
#: Every element a page may contain: anything else came from a run's text.
PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "p", "h1", "h2",
    "progress", "dl", "dt", "dd", "pre",
}  # fmt: skip

START = 1000.0


class Element:
    """One start tag of a page, with its attributes and the text right inside it."""

    def __init__(self, tag: str, attrs: dict[str, str | None]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.text = ""


class PageParser(HTMLParser):
    """The elements of a page, parsed as a browser's tokenizer would see them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if self.elements:
            self.elements[-1].text += data

    def find(self, tag: str) -> list[Element]:
        return [element for element in self.elements if element.tag == tag]

    def rows(self) -> dict[str, str]:
        """The page's definition list, label to value."""
        pairs = [e for e in self.elements if e.tag in ("dt", "dd")]
        return {dt.text: dd.text for dt, dd in zip(pairs[::2], pairs[1::2], strict=True)}


def make_record(state: RunState = RunState.RUNNING) -> RunRecord:
    """A record created at START, started 20 s later if ``state`` is past the queue."""
    record = RunRecord(
        service_id="bff13094b0988e404713177921198f5f_0",
        program="Waiter",
        inputs={"secondsToWait": 300},
        created_at=START,
    )
    if state is not RunState.QUEUED:
        record.launching(START + 20)
    return record


def relative_luminance(colour: str) -> float:
    """WCAG 2's relative luminance of ``#rrggbb``."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2's contrast ratio of two colours, from 1 to 21."""
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


class PageTestCase(SynchronousTestCase):
    def assertCompleteDocument(self, page: str) -> PageParser:
        """A whole UTF-8 document that loads nothing, runs nothing; returns it parsed."""
        self.assertTrue(page.startswith("<!DOCTYPE html><html"), page[:40])
        self.assertTrue(page.endswith("</main></body></html>"), page[-40:])
        self.assertIn('<meta charset="utf-8">', page)
        self.assertIn("content=\"default-src 'none';style-src 'unsafe-inline'\"", page)
        for external in ("http:", "https:", "<script", "<link", "<img", "url(", "@import"):
            self.assertNotIn(external, page)
        parsed = PageParser(page)
        self.assertLessEqual({e.tag for e in parsed.elements}, PAGE_TAGS)
        for element in parsed.elements:
            self.assertFalse([a for a in element.attrs if a.startswith("on") or a == "src"])
        self.assertEqual(len(parsed.find("body")), 1)
        self.assertEqual(len(parsed.find("h1")), 1)
        return parsed

    def assertState(self, parsed: PageParser, body_class: str, title: str) -> None:
        """The state is in the body's class (for clients) and in words (for people)."""
        self.assertEqual(parsed.find("body")[0].attrs, {"class": body_class})
        self.assertEqual(parsed.find("h1")[0].text, title)
        self.assertEqual(parsed.find("title")[0].text, f"Waiter: {title}")


class RunningPageTests(PageTestCase):
    def test_running(self) -> None:
        """A running page shows the state, the bar, the percent, the message and times."""
        record = make_record()
        record.record_progress(42, "meshing part 3 of 7")
        parsed = self.assertCompleteDocument(render_status_page(record, now=START + 95))
        self.assertState(parsed, "running", "Running")
        self.assertEqual([p.text for p in parsed.find("p")][1:], ["42 %", "meshing part 3 of 7"])
        rows = parsed.rows()
        self.assertEqual(rows["Elapsed"], "1 min 15 s")
        self.assertEqual(rows["Run"], "bff13094b0988e404713177921198f5f_0")

    def test_one_progress_element(self) -> None:
        """The page has exactly one <progress> whose value is the percent, of 100, named."""
        for percent in (0, 1, 37, 99, 100):
            record = make_record()
            record.record_progress(percent)
            bars = PageParser(render_status_page(record, now=START + 30)).find("progress")
            self.assertEqual(len(bars), 1)
            self.assertEqual(
                bars[0].attrs, {"value": str(percent), "max": "100", "aria-label": "Progress"}
            )
            self.assertEqual(bars[0].text, f"{percent} %")

    def test_percent_out_of_range_is_clamped(self) -> None:
        """A record holding a percent out of 0..100 still gives a valid bar."""
        for stored, shown in ((-20, "0"), (250, "100")):
            record = make_record()
            record.percent = stored
            bar = PageParser(render_status_page(record, now=START + 30)).find("progress")[0]
            self.assertEqual(bar.attrs["value"], shown)

    def test_time_left_shown_once_estimable(self) -> None:
        """The time left appears, as "about", once both percent and elapsed allow it."""
        record = make_record()
        record.record_progress(42)
        rows = PageParser(render_status_page(record, now=START + 20 + 130)).rows()
        # 130 s for 42 %: 58 % more take 130 * 58 / 42 = 179.5 s.
        self.assertEqual(rows["Time left"], "about 3 min")
        early = PageParser(render_status_page(record, now=START + 25)).rows()
        self.assertNotIn("Time left", early)

    def test_no_time_left_at_100_percent(self) -> None:
        """At 100 % the program is finishing, for a time nobody can tell."""
        record = make_record()
        record.record_progress(100)
        self.assertNotIn("Time left", render_status_page(record, now=START + 500))

    def test_stopping(self) -> None:
        """A running run with an abort pending says stopping, keeps its bar, guesses nothing."""
        record = make_record()
        record.record_progress(50)
        record.request_abort()
        page = render_status_page(record, now=START + 500)
        parsed = self.assertCompleteDocument(page)
        self.assertState(parsed, "running", "Stopping")
        self.assertEqual(len(parsed.find("progress")), 1)
        self.assertIn("an abort was asked for", page)
        self.assertNotIn("Running", page)
        self.assertNotIn("Time left", page)


class EstimateTests(SynchronousTestCase):
    def test_linear_estimate(self) -> None:
        """The estimate is the elapsed time scaled by what remains of the percent."""
        record = make_record()
        record.record_progress(25)
        self.assertEqual(estimate_time_left(record, START + 20 + 60), 180.0)

    def test_thresholds(self) -> None:
        """No estimate below the minimum percent or the minimum elapsed time."""
        record = make_record()
        record.record_progress(ESTIMATE_MIN_PERCENT - 1)
        self.assertIsNone(estimate_time_left(record, START + 20 + 1000))
        record.record_progress(ESTIMATE_MIN_PERCENT)
        self.assertIsNotNone(estimate_time_left(record, START + 20 + ESTIMATE_MIN_ELAPSED))
        self.assertIsNone(estimate_time_left(record, START + 20 + ESTIMATE_MIN_ELAPSED - 0.5))

    def test_never_negative(self) -> None:
        """For any percent and any time, even before the start, no estimate is negative."""
        for percent in range(101):
            record = make_record()
            record.percent = percent
            for now in (0.0, START, START + 20, START + 30, START + 1e6):
                left = estimate_time_left(record, now)
                self.assertTrue(left is None or left >= 0, (percent, now, left))

    def test_only_while_running(self) -> None:
        """Queued, stopping and ended runs have no estimate."""
        queued = make_record(RunState.QUEUED)
        queued.percent = 50
        stopping = make_record()
        stopping.record_progress(50)
        stopping.request_abort()
        failed = make_record()
        failed.record_progress(50)
        failed.fail("x", START + 100)
        for record in (queued, stopping, failed):
            self.assertIsNone(estimate_time_left(record, START + 100), record)

    def test_format_estimate(self) -> None:
        """Estimates are rounded to minutes, above an hour to 5 minutes, at least 1 min."""
        examples = {
            -5: "about 1 min",
            0: "about 1 min",
            89: "about 1 min",
            91: "about 2 min",
            179.5: "about 3 min",
            3569: "about 59 min",
            3571: "about 1 h",
            3600 + 16 * 60: "about 1 h 15 min",
            30 * 3600: "about 30 h",
        }
        for seconds, text in examples.items():
            self.assertEqual(format_estimate(seconds), text, seconds)


class QueuedPageTests(PageTestCase):
    def test_queued_with_position(self) -> None:
        """A queued page gives the position in the service's queue and the waiting time."""
        record = make_record(RunState.QUEUED)
        page = render_status_page(record, now=START + 95, queue_position=3)
        parsed = self.assertCompleteDocument(page)
        self.assertState(parsed, "queued", "Queued")
        self.assertIn("Queued, position 3:", page)
        self.assertEqual(parsed.rows()["Waiting"], "1 min 35 s")
        self.assertEqual(parsed.find("progress"), [])
        self.assertNotIn("cluster", page.split("</style>")[1])

    def test_queued_without_position(self) -> None:
        """A queued run whose position is unknown is still said to be queued."""
        page = render_status_page(make_record(RunState.QUEUED), now=START + 1)
        self.assertIn("<p>Queued: ", page)
        self.assertNotIn("position", page)


class ClusterPageTests(PageTestCase):
    def test_queued_on_the_cluster(self) -> None:
        """
        With a cluster's report, a running run's page says where its job waits, no bar.

        Its "Slurm reason" is not a "Reason": clients read that one as a failure's.
        """
        record = make_record()
        cluster = ClusterQueue(job_id="4815162", state="PENDING", reason="Resources")
        page = render_status_page(record, now=START + 20 + 380, cluster=cluster)
        parsed = self.assertCompleteDocument(page)
        self.assertState(parsed, "running", "Queued on the cluster")
        self.assertEqual(
            parsed.rows(),
            {
                "Job ID": "4815162",
                "Slurm state": "PENDING",
                "Slurm reason": "Resources",
                "Waiting": "6 min 20 s",
                "Run": "bff13094b0988e404713177921198f5f_0",
            },
        )
        self.assertEqual(parsed.find("progress"), [])
        self.assertNotIn("position", page)
        self.assertNotIn("%", page.split("</style>")[1])

    def test_distinct_from_the_service_queue(self) -> None:
        """The cluster's queue and the service's queue never read alike."""
        queued = render_status_page(make_record(RunState.QUEUED), START + 5, queue_position=1)
        cluster = render_status_page(
            make_record(), START + 25, cluster=ClusterQueue("7", "PENDING", "Priority")
        )
        self.assertNotEqual(
            PageParser(queued).find("h1")[0].text, PageParser(cluster).find("h1")[0].text
        )
        self.assertIn("Queued on the cluster", cluster)
        self.assertNotIn("Queued on the cluster", queued)
        self.assertNotIn("Queued, position", cluster)

    def test_empty_reason_left_out(self) -> None:
        """A job without a reason has no empty Slurm reason row."""
        page = render_status_page(
            make_record(), START + 25, cluster=ClusterQueue("7", "PENDING", "")
        )
        self.assertNotIn("Slurm reason", PageParser(page).rows())

    def test_stopping_on_the_cluster(self) -> None:
        """An abort pending while the job waits on the cluster says stopping."""
        record = make_record()
        record.request_abort()
        page = render_status_page(record, START + 25, cluster=ClusterQueue("7", "PENDING", "None"))
        parsed = self.assertCompleteDocument(page)
        self.assertState(parsed, "running", "Stopping")
        self.assertEqual(parsed.rows()["Job ID"], "7")

    def test_cluster_ignored_once_ended(self) -> None:
        """An ended run's page is its end, whatever a stale cluster report says."""
        record = make_record()
        record.fail("the program failed", START + 100, exit_code=1)
        cluster = ClusterQueue("7", "PENDING", "Resources")
        self.assertEqual(
            render_status_page(record, START + 200, cluster=cluster),
            render_status_page(record, START + 200),
        )

    def test_cluster_texts_are_escaped(self) -> None:
        """The scheduler's words are hostile text too."""
        page = render_status_page(
            make_record(), START + 25, cluster=ClusterQueue(NASTY, NASTY, NASTY)
        )
        self.assertCompleteDocument(page)
        self.assertEqual(page.count(NASTY_ESCAPED), 3)


class EndedPageTests(PageTestCase):
    def test_completed(self) -> None:
        """A completed page says finished and completed, without a bar, with the exit status."""
        record = make_record()
        record.complete({"result": "eA=="}, now=START + 30)
        page = render_status_page(record, now=START + 2000)
        parsed = self.assertCompleteDocument(page)
        self.assertState(parsed, "completed", "Finished")
        self.assertIn("Completed", page)
        self.assertEqual(parsed.rows()["Elapsed"], "10 s")
        self.assertEqual(parsed.rows()["Ended with"], "exit status 0")
        self.assertEqual(parsed.find("progress"), [])

    def test_failed(self) -> None:
        """A failed page shows the reason, the exit status and the output tail."""
        record = make_record()
        record.record_progress(60)
        record.fail(
            "the program failed", START + 3740, exit_code=3, output_tail=["first", "second"]
        )
        parsed = self.assertCompleteDocument(render_status_page(record, now=START + 3740))
        self.assertState(parsed, "failed", "Failed")
        rows = parsed.rows()
        self.assertEqual(rows["Reason"], "the program failed")
        self.assertEqual(rows["Ended with"], "exit status 3")
        self.assertEqual(rows["Elapsed"], "1 h 2 min")
        self.assertEqual(parsed.find("pre")[0].text, "first\nsecond")
        self.assertEqual(parsed.find("progress"), [])

    def test_aborted(self) -> None:
        """An aborted page says aborted and names the signal that ended the program."""
        record = make_record()
        record.request_abort()
        record.abort(START + 25, exit_signal=15, output_tail=["bye"])
        parsed = self.assertCompleteDocument(render_status_page(record, now=START + 25))
        self.assertState(parsed, "aborted", "Aborted")
        self.assertEqual(parsed.rows()["Ended with"], "killed by signal 15")
        self.assertEqual(parsed.find("pre")[0].text, "bye")
        self.assertNotIn("Reason", parsed.rows())

    def test_ended_pages_do_not_change_with_time(self) -> None:
        """An ended run's page is the same at every poll (a restart re-renders it)."""
        record = make_record()
        record.fail("boom", START + 50, exit_code=2, output_tail=["x"])
        self.assertEqual(render_status_page(record, START + 50), render_status_page(record, 1e10))

    def test_output_tail_is_bounded(self) -> None:
        """Only the last lines are shown, each cut with an ellipsis."""
        lines = [f"line {i} " + "x" * 5000 for i in range(20)]
        record = make_record()
        record.fail("the program failed", START + 50, exit_code=1, output_tail=lines)
        shown = PageParser(render_status_page(record, START + 50)).find("pre")[0].text.split("\n")
        self.assertEqual(len(shown), PAGE_TAIL_LINES)
        self.assertTrue(shown[0].startswith(f"line {20 - PAGE_TAIL_LINES} "))
        self.assertEqual({len(line) for line in shown}, {PAGE_LINE_CHARS})
        self.assertTrue(all(line.endswith("\u2026") for line in shown))

    def test_describe_exit(self) -> None:
        """A signal is named before an exit status; neither, nothing."""
        record = make_record()
        self.assertIsNone(describe_exit(record))
        record.exit_code = 0
        self.assertEqual(describe_exit(record), "exit status 0")
        record.exit_signal = 9
        self.assertEqual(describe_exit(record), "killed by signal 9")


class HostileTextTests(PageTestCase):
    def test_running_message_is_escaped(self) -> None:
        """The program's progress message appears escaped, never as markup."""
        record = make_record()
        record.record_progress(5, NASTY)
        page = render_status_page(record, now=START + 21)
        self.assertCompleteDocument(page)
        self.assertIn(NASTY_ESCAPED, page)
        self.assertNotIn('"quoted"', page)

    def test_failure_texts_are_escaped(self) -> None:
        """The failure reason and every output line appear escaped, never as markup."""
        record = make_record()
        record.fail(NASTY, START + 22, exit_code=1, output_tail=[NASTY, "a & b"])
        page = render_status_page(record, now=START + 22)
        parsed = self.assertCompleteDocument(page)
        self.assertIn(f"<dd>{NASTY_ESCAPED}</dd>", page)
        self.assertIn(f"<pre>{NASTY_ESCAPED}\na &amp; b</pre>", page)
        self.assertEqual(parsed.find("pre")[0].text, f"{NASTY}\na & b")
        self.assertNotIn('"quoted"', page)

    def test_program_name_is_escaped(self) -> None:
        """Even the program's name is escaped in the title and the page."""
        record = make_record()
        record.program = "<i>W&W</i>"
        page = render_status_page(record, now=START + 21)
        self.assertCompleteDocument(page)
        self.assertIn("<title>&lt;i&gt;W&amp;W&lt;/i&gt;: Running</title>", page)
        self.assertNotIn("<i>", page)

    def test_markup_everywhere(self) -> None:
        """Markup in every text of every state gives no element or attribute of its own."""
        attack = '"><img src=x onerror=alert(1)><style>*{display:none}</style></pre></dd><a '
        for state in (RunState.QUEUED, RunState.RUNNING, RunState.FAILED, RunState.ABORTED):
            record = make_record(RunState.QUEUED if state is RunState.QUEUED else state)
            record.program = attack
            record.service_id = attack
            record.record_progress(50, attack)
            if state is RunState.FAILED:
                record.fail(attack, START + 99, exit_code=1, output_tail=[attack])
            if state is RunState.ABORTED:
                record.abort(START + 99, exit_signal=9, output_tail=[attack])
            for cluster in (None, ClusterQueue(attack, attack, attack)):
                page = render_status_page(record, START + 99, 1, cluster=cluster)
                parsed = self.assertCompleteDocument(page)
                self.assertEqual(len(parsed.find("style")), 1, page)
                self.assertIn(attack, "".join(e.text for e in parsed.elements))

    def test_control_characters_and_lone_surrogates(self) -> None:
        """Text that UTF-8 or HTML cannot carry is replaced, and the page still encodes."""
        record = make_record()
        record.record_progress(10, "a\x00b\x1bc\ud800d\x85e\tf")
        page = render_status_page(record, START + 21)
        self.assertIn("a\ufffdb\ufffdc\ufffdd\ufffde\tf", page)
        self.assertEqual(base64.b64decode(encode_page(page)).decode("utf-8"), page)

    def test_long_texts_are_cut(self) -> None:
        """Huge texts from a run do not make a huge page."""
        # "&" is the costliest character once escaped (5 bytes), then "<".
        for worst in ("&", "<", '"', "\u20ac"):
            record = make_record()
            record.record_progress(10, "m" * 100_000)
            record.program = "p" * 100_000
            record.fail("r" * 100_000, START + 50, exit_code=1, output_tail=[worst * 4096] * 20)
            page = render_status_page(record, START + 50)
            self.assertCompleteDocument(page)
            self.assertLess(len(page.encode("utf-8")), 24_000, worst)


class BudgetTests(SynchronousTestCase):
    def test_typical_pages_are_small(self) -> None:
        """Typical pages stay under 3 kB, under 4 kB once in base64 (sent every 6 s)."""
        running = make_record()
        running.record_progress(42, "meshing part 3 of 7")
        queued = make_record(RunState.QUEUED)
        cluster = make_record()
        failed = make_record()
        failed.fail(
            "the program failed",
            START + 500,
            exit_code=1,
            output_tail=[
                "Traceback (most recent call last):",
                '  File "solver.py", line 88',
                "ValueError: diverged at t=1.420: residual 3.71e+07 > 1e+06",
            ],
        )
        pages = [
            render_status_page(running, START + 200),
            render_status_page(queued, START + 200, queue_position=12),
            render_status_page(
                cluster, START + 200, cluster=ClusterQueue("4815162", "PENDING", "Resources")
            ),
            render_status_page(failed, START + 500),
        ]
        for page in pages:
            self.assertLess(len(page.encode("utf-8")), 3000, page)
            self.assertLess(len(encode_page(page)), 4000)


class ColourTests(SynchronousTestCase):
    def test_contrast_ratio(self) -> None:
        """The ratio is computed as WCAG defines it (known values)."""
        self.assertAlmostEqual(contrast_ratio("#000000", "#ffffff"), 21.0)
        self.assertAlmostEqual(contrast_ratio("#ffffff", "#ffffff"), 1.0)
        # #777777 on white is the classic near miss: 4.48, below AA.
        self.assertAlmostEqual(contrast_ratio("#777777", "#ffffff"), 4.48, places=2)

    def test_text_colours_reach_aa(self) -> None:
        """Every text colour on every background it is drawn on reaches 4.5:1."""
        for text, background in TEXT_PAIRS:
            ratio = contrast_ratio(PALETTE[text], PALETTE[background])
            self.assertGreaterEqual(ratio, 4.5, (text, background, ratio))

    def test_graphics_reach_3_to_1(self) -> None:
        """The bar's fill against its track and each state's stripe reach 3:1."""
        for look in ("running", "stopping"):
            self.assertGreaterEqual(contrast_ratio(PALETTE[look], PALETTE["track"]), 3)
        for look in LOOKS:
            self.assertGreaterEqual(contrast_ratio(PALETTE[look], PALETTE["page"]), 3)

    def test_page_uses_only_palette_colours(self) -> None:
        """No colour in the page's style escapes the contrast checks above."""
        record = make_record()
        page = render_status_page(record, START + 21)
        style = page.split("<style>")[1].split("</style>")[0]
        used = set(re.findall(r"#[0-9a-fA-F]{3,8}\b", style))
        self.assertTrue(used)
        self.assertLessEqual(used, set(PALETTE.values()))
        self.assertNotRegex(style, r"rgba?\(|hsla?\(|[:\s](white|black|red|gray|grey)[;}]")


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
        page = render_status_page(record, now=START + 21)
        self.assertEqual(base64.b64decode(encode_page(page)).decode("utf-8"), page)
