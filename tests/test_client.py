"""
Unit tests for ``waiter-client`` (:mod:`waiter_service.client`): no server,
no terminal, no time passing.  Pages come from the service's own renderer
(:func:`waiter_service.status_page.render_status_page`) where they show
the contract, and are written by hand where they show a hostile server.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import requests.structures
import zeep.exceptions
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from waiter_service.client.bar import describe, format_elapsed, progress_line, render_bar
from waiter_service.client.display import JsonLines, LiveBar, PlainLines
from waiter_service.client.follow import Follower
from waiter_service.client.main import REFRESH_AFTER, main, new_service_id
from waiter_service.client.outcome import exit_code
from waiter_service.client.page import (
    MAX_OUTPUT_LINES,
    MAX_STATUS_CHARS,
    PageError,
    decode_status,
    parse_page,
)
from waiter_service.client.report import human_report, snapshot_json
from waiter_service.client.result import decode_result
from waiter_service.client.soap import (
    Answer,
    ClientError,
    SoapFault,
    WaiterClient,
    fault_code,
    same_origin,
    translate,
    where,
    wsdl_url,
)
from waiter_service.client.status import Snapshot, from_page, interpret
from waiter_service.client.text import lines, one_line
from waiter_service.programs.waiter import Waiter
from waiter_service.runs.manager import RunManager
from waiter_service.runs.record import RunRecord
from waiter_service.runs.state import RunState
from waiter_service.runs.store import RunStore
from waiter_service.soap.site import build_site
from waiter_service.status_page import ClusterQueue, encode_page, render_status_page
from waiter_service.testing import FakeProcessReactor, SignalRecorder, http_request
from waiter_service.validation import check_service_id

ESC = "\x1b"
#: What a hostile server could put in a text to take over a terminal.
ESCAPES = f"{ESC}]0;owned\x07{ESC}[2J\x9b31m\u202eevil\r"


def record(state: RunState, **fields: Any) -> RunRecord:
    """A run's record as the service keeps it."""
    return RunRecord(
        service_id="r1",
        program="Waiter",
        inputs={"secondsToWait": 5},
        created_at=100.0,
        state=state,
        started_at=None if state is RunState.QUEUED else 100.0,
        ended_at=110.0 if state.is_terminal else None,
        **fields,
    )


def server_page(state: RunState, position: int | None = None, **fields: Any) -> str:
    """The page the service renders for a run in ``state``."""
    return render_status_page(record(state, **fields), 105.0, position)


def answer(html: str) -> Answer:
    return Answer(encode_page(html), "UNSET")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def hand_page(body: str, classes: str = "running") -> str:
    return f'<!DOCTYPE html><html><head></head><body class="{classes}">{body}</body></html>'


COMPLETED = Answer("COMPLETED", b64("Waited 2.0 of 2 seconds.\n"))
UNCHANGED = Answer("UNCHANGED", "UNSET")


class TextTests(SynchronousTestCase):
    def test_one_line_removes_terminal_controls(self) -> None:
        """Escape sequences, C1 controls, bidi overrides and CR never survive one_line."""
        clean = one_line(f"a{ESCAPES}b\nc\td")
        self.assertEqual(clean, "a]0;owned[2J31mevil b c d")
        self.assertNotRegex(clean, "[\x00-\x1f\x7f-\x9f\u202a-\u202e]")

    def test_one_line_cuts(self) -> None:
        """A long text is cut to the limit, with an ellipsis."""
        self.assertEqual(one_line("x" * 50, 10), "x" * 9 + "…")

    def test_lines_keeps_the_lines_only(self) -> None:
        """lines() splits on every kind of break and keeps no control in a line."""
        self.assertEqual(lines(f"one\r\ntwo{ESC}[1m\rthree\tx"), ["one", "two[1m", "three   x"])


class PageTests(SynchronousTestCase):
    def test_running_page_of_the_service(self) -> None:
        """The service's running page gives the state and the percent."""
        page = parse_page(server_page(RunState.RUNNING, percent=42))
        self.assertEqual((page.state, page.percent), ("running", 42.0))

    def test_queued_on_the_cluster(self) -> None:
        """A run whose job waits in Slurm's queue says so, with Slurm's state and reason."""
        html = render_status_page(
            record(RunState.RUNNING), 105.0, cluster=ClusterQueue("12", "PENDING", "Resources")
        )
        page = parse_page(html)
        self.assertEqual((page.state, page.percent), ("running", None))
        self.assertEqual(page.cluster, "PENDING, Resources")
        self.assertEqual(describe(from_page(page)), "queued on the cluster (PENDING, Resources)")
        self.assertIsNone(parse_page(server_page(RunState.RUNNING, percent=5)).cluster)

    def test_hostile_cluster_state_is_printable(self) -> None:
        """Slurm's state and reason from a page lose the controls the parser decoded."""
        hostile = "&#27;]52;c;b3duZWQ=&#7;&#27;[2J&#x9b;31m&#x202e;\r\n" * 10
        page = parse_page(
            hand_page(
                f'<main class="cluster"><dl><dt>Slurm state</dt><dd>PENDING{hostile}</dd>'
                f"<dt>Slurm reason</dt><dd>{hostile}Resources</dd></dl></main>"
            )
        )
        assert page.cluster is not None
        self.assertNotRegex(page.cluster, "[\x00-\x1f\x7f-\x9f\u202e]")
        self.assertTrue(page.cluster.startswith("PENDING]52;c;b3duZWQ=[2J"), page.cluster)
        self.assertLessEqual(len(page.cluster), 120)
        only_controls = '<main class="cluster"><dl><dt>Slurm state</dt><dd>&#27;</dd></dl></main>'
        self.assertEqual(parse_page(hand_page(only_controls)).cluster, "waiting")

    def test_queued_page_of_the_service(self) -> None:
        """The service's queued page gives the queue position."""
        page = parse_page(server_page(RunState.QUEUED, position=7))
        self.assertEqual((page.state, page.position, page.percent), ("queued", 7, None))

    def test_failed_page_of_the_service(self) -> None:
        """The service's failure page gives the reason, how it ended and the last lines."""
        page = parse_page(
            server_page(
                RunState.FAILED,
                failure_reason="the program failed",
                exit_code=1,
                output_tail=["first", "waiter: failing as told: because"],
            )
        )
        self.assertEqual(page.state, "failed")
        self.assertEqual(page.reason, "the program failed")
        self.assertEqual(page.ended, "exit status 1")
        self.assertEqual(page.output, ("first", "waiter: failing as told: because"))

    def test_aborted_and_completed_pages_of_the_service(self) -> None:
        """Aborted and completed pages give their state and no progress."""
        for state in (RunState.ABORTED, RunState.COMPLETED):
            page = parse_page(server_page(state, exit_signal=15))
            self.assertEqual((page.state, page.percent, page.reason), (state.value, None, None))

    def test_older_aria_progress_bar(self) -> None:
        """A page with role=progressbar and aria-valuenow (before <progress>) is read too."""
        page = parse_page(
            hand_page('<div role="progressbar" aria-valuemax="100" aria-valuenow="35"></div>')
        )
        self.assertEqual(page.percent, 35.0)

    def test_progress_is_scaled_and_clamped(self) -> None:
        """value/max is a fraction of max (1 by default), kept within 0-100."""
        cases = {
            '<progress value="0.25"></progress>': 25.0,
            '<progress value="3" max="4"></progress>': 75.0,
            '<progress value="900" max="100"></progress>': 100.0,
            '<progress value="-5" max="100"></progress>': 0.0,
            '<progress value="NaN" max="100"></progress>': None,
            '<progress value="1e400" max="100"></progress>': None,
            '<progress max="100"></progress>': None,
            '<progress value="5" max="0"></progress>': None,
        }
        for body, percent in cases.items():
            self.assertEqual(parse_page(hand_page(body)).percent, percent, body)

    def test_percent_has_no_float_noise(self) -> None:
        """Percents are rounded to 2 decimals: --json shows 28, not 28.000000000000004."""
        cases = {
            '<progress value="0.28"></progress>': (28.0, 28),
            '<progress value="1" max="3"></progress>': (33.33, 33.33),
            '<progress value="0.07"></progress>': (7.0, 7),
            '<div role="progressbar" aria-valuenow="0.1" aria-valuemax="0.3"></div>': (
                33.33, 33.33),
        }  # fmt: skip
        for body, (percent, shown) in cases.items():
            page = parse_page(hand_page(body))
            self.assertEqual(page.percent, percent, body)
            self.assertEqual(json.dumps(snapshot_json(from_page(page))["percent"]), str(shown))

    def test_state_is_the_first_known_class(self) -> None:
        """Other classes on <body> are ignored; a page without a state is refused."""
        self.assertEqual(parse_page(hand_page("", "dark failed wide")).state, "failed")
        for classes in ("", "done", "Running"):
            self.assertRaises(PageError, parse_page, hand_page("", classes))

    def test_not_a_page(self) -> None:
        """Empty text, text that is not base64, and oversized pages are refused."""
        self.assertRaises(PageError, parse_page, "")
        self.assertRaises(PageError, decode_status, "not base64 at all!")
        self.assertRaises(PageError, decode_status, "A" * (MAX_STATUS_CHARS + 4))

    def test_base64_with_line_breaks(self) -> None:
        """A page in MIME-style base64 lines is decoded."""
        encoded = encode_page("<body class='running'></body>")
        wrapped = "\n".join(encoded[i : i + 8] for i in range(0, len(encoded), 8))
        self.assertEqual(decode_status(wrapped), "<body class='running'></body>")

    def test_entities_are_not_expanded(self) -> None:
        """A DTD's entities (files, billion laughs) are never expanded."""
        html = (
            '<!DOCTYPE html [<!ENTITY x SYSTEM "file:///etc/passwd">'
            '<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            '<html><body class="failed"><dl><dt>Reason</dt><dd>&x;&b;</dd></dl></body></html>'
        )
        try:
            page = parse_page(html)
        except PageError:
            return
        self.assertNotIn("root:", page.reason or "")
        self.assertNotIn("aaaaaaaaaa", page.reason or "")

    def test_output_keeps_the_last_lines(self) -> None:
        """Only the last lines of a long <pre>, each cut, are kept."""
        tail = "\n".join(f"line {i} " + "x" * 1000 for i in range(100))
        page = parse_page(hand_page(f"<pre>{tail}</pre>", "failed"))
        self.assertEqual(len(page.output), MAX_OUTPUT_LINES)
        self.assertTrue(page.output[-1].startswith("line 99 "))
        self.assertLessEqual(max(map(len, page.output)), 300)

    def test_markup_in_texts_is_text(self) -> None:
        """Scripts and tags in a reason come out as their text only."""
        page = parse_page(
            hand_page("<dl><dt>Reason</dt><dd><b>bold</b><script>x()</script></dd></dl>", "failed")
        )
        self.assertEqual(page.reason, "boldx()")


class ResultTests(SynchronousTestCase):
    def test_auto_decodes_base64_text(self) -> None:
        """Base64 of UTF-8 text is decoded."""
        result = decode_result(b64("Waited 2.0 of 2 seconds.\nünïcode\n"))
        self.assertEqual(
            (result.text, result.decoded), ("Waited 2.0 of 2 seconds.\nünïcode\n", True)
        )

    def test_auto_keeps_raw_text(self) -> None:
        """Raw text (the server's --result-encoding raw) is shown as it came."""
        for raw in ("Waited 2.0 of 2 seconds.\n", "", "abc", "a===", "x y"):
            self.assertEqual(decode_result(raw).text, raw)
            self.assertFalse(decode_result(raw).decoded)

    def test_auto_keeps_base64_of_binary(self) -> None:
        """Base64 of bytes that are not text is shown as the base64."""
        for data in (b"\xff\xfe\x00\x01", b"text\x00with nul"):
            encoded = base64.b64encode(data).decode()
            self.assertEqual(decode_result(encoded).text, encoded)

    def test_modes(self) -> None:
        """raw never decodes; base64 always does, replacing what is not UTF-8."""
        self.assertEqual(decode_result(b64("hi"), "raw").text, b64("hi"))
        forced = decode_result(base64.b64encode(b"a\xffb").decode(), "base64")
        self.assertEqual((forced.text, forced.decoded), ("a\ufffdb", True))
        self.assertRaises(ValueError, decode_result, "x", "hex")


class InterpretTests(SynchronousTestCase):
    def test_completed(self) -> None:
        """COMPLETED is the completed state with the decoded result."""
        done = interpret(COMPLETED.status_base64, COMPLETED.result)
        self.assertEqual(done.state, "completed")
        self.assertEqual(done.result and done.result.text, "Waited 2.0 of 2 seconds.\n")
        self.assertTrue(done.finished)

    def test_unchanged_keeps_the_last_page(self) -> None:
        """UNCHANGED is the previous snapshot, flagged unchanged."""
        before = Snapshot(state="running", percent=40.0)
        after = interpret("UNCHANGED", "UNSET", before)
        self.assertEqual((after.state, after.percent, after.unchanged), ("running", 40.0, True))
        self.assertTrue(after.same_as(before))

    def test_unchanged_first(self) -> None:
        """UNCHANGED with nothing seen before: the state is not known, and not finished."""
        first = interpret("UNCHANGED", "UNSET")
        self.assertEqual((first.state, first.unchanged, first.finished), (None, True, False))

    def test_page(self) -> None:
        """A page is read whatever came before."""
        snap = interpret(encode_page(server_page(RunState.RUNNING, percent=10)), "UNSET")
        self.assertEqual((snap.state, snap.percent, snap.result), ("running", 10.0, None))


class BarTests(SynchronousTestCase):
    def test_bar_has_exactly_its_cells(self) -> None:
        """A bar is as wide as asked, full at 100 %, empty at 0 %."""
        for cells in (1, 10, 33):
            for percent in (0, 1, 49.9, 50, 99.9, 100, 150, -3):
                for unicode in (True, False):
                    self.assertEqual(len(render_bar(percent, cells, unicode)), cells)
        self.assertEqual(render_bar(100, 4, False), "####")
        self.assertEqual(render_bar(50, 4, False), "##--")
        self.assertEqual(render_bar(0, 4), "    ")
        self.assertEqual(render_bar(50, 4), "██  ")
        self.assertEqual(render_bar(56.25, 4), "██▎ ")

    def test_line_never_reaches_the_last_column(self) -> None:
        """For every width, the progress line fits in one column less."""
        snaps = [
            Snapshot(state="running", percent=52.0),
            Snapshot(state="queued", position=12),
            Snapshot(state=None, unchanged=True),
        ]
        for width in range(0, 160):
            for snap in snaps:
                self.assertLessEqual(len(progress_line(snap, 3725, width)), max(0, width - 1))

    def test_line_shows_bar_percent_and_time(self) -> None:
        """A wide enough line has the bar, the percent and the elapsed time."""
        line = progress_line(Snapshot(state="running", percent=52.0), 64, 60, unicode=False)
        self.assertRegex(line, r"^running  \[#+-+\]  52 %  1 min 4 s$")
        self.assertEqual(len(line), 59)
        wide = progress_line(Snapshot(state="running", percent=52.0), 64, 200, unicode=False)
        self.assertEqual(wide.count("#") + wide.count("-"), 50)

    def test_narrow_line_drops_the_bar(self) -> None:
        """Too narrow for a bar: the words only."""
        self.assertEqual(
            progress_line(Snapshot(state="running", percent=5.0), 2, 30), "running, 5 %  2 s"
        )

    def test_format_elapsed(self) -> None:
        """Seconds, minutes and hours read as people say them."""
        self.assertEqual(
            [format_elapsed(s) for s in (0, 59.9, 75, 3720, -4)],
            ["0 s", "59 s", "1 min 15 s", "1 h 2 min", "0 s"],
        )


class ExitCodeTests(SynchronousTestCase):
    def test_codes(self) -> None:
        """Completed 0, failed 3, aborted 4, not finished 5 (status) or 0 (start)."""
        table = {
            ("completed", "run"): 0,
            ("failed", "run"): 3,
            ("aborted", "run"): 4,
            ("failed", "status"): 3,
            ("running", "status"): 5,
            ("queued", "status"): 5,
            (None, "status"): 5,
            ("running", "start"): 0,
            ("queued", "start"): 0,
            ("aborted", "start"): 4,
        }
        for (state, command), code in table.items():
            self.assertEqual(exit_code(Snapshot(state=state), command), code, (state, command))


class ReportTests(SynchronousTestCase):
    def test_failed_report(self) -> None:
        """A failure shows its reason and the last lines, one aligned line each."""
        snap = Snapshot(
            state="failed", reason="the program failed", output=("a", "waiter: because")
        )
        self.assertEqual(
            human_report("r1", snap, 3),
            [
                "run      r1",
                "state    failed",
                "time     3 s",
                "reason   the program failed",
                "output   a",
                "         waiter: because",
            ],
        )

    def test_hostile_texts_are_printable(self) -> None:
        """No control character from the server reaches the terminal."""
        snap = Snapshot(
            state="completed",
            reason=ESCAPES,
            ended=ESCAPES,
            output=(ESCAPES,),
            result=decode_result(b64(f"ok{ESCAPES}\n")),
        )
        text = "\n".join(human_report(f"id{ESC}[2J", snap))
        self.assertNotRegex(text, "[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]")
        # A run waiting in a cluster's queue: Slurm's words are the state line.
        queued = Snapshot(state="running", cluster=f"PENDING{ESCAPES}")
        shown = [
            *human_report("r1", queued),
            describe(queued),
            progress_line(queued, 5, 200),
            progress_line(queued, 5, 200, unicode=False),
        ]
        for line in shown:
            self.assertNotRegex(line, "[\x00-\x1f\x7f-\x9f\u202e]")
        self.assertEqual(progress_line(queued, 5, 200), f"{describe(queued)}  5 s")
        self.assertIn("PENDING]0;owned", describe(queued))

    def test_completed_result_lines(self) -> None:
        """A result of several lines is shown under its heading."""
        snap = Snapshot(state="completed", result=decode_result(b64("one\ntwo\n")))
        self.assertEqual(human_report("r1", snap)[-2:], ["result   one", "         two"])
        raw = Snapshot(state="completed", result=decode_result("plain"))
        self.assertEqual(human_report("r1", raw)[-1], "result (as sent) plain")

    def test_json_is_exact_and_ascii(self) -> None:
        """JSON keeps the server's texts exactly, escaped to ASCII."""
        snap = Snapshot(state="failed", percent=None, reason=f"é{ESC}")
        encoded = json.dumps(snapshot_json(snap))
        self.assertTrue(encoded.isascii())
        self.assertEqual(json.loads(encoded)["reason"], f"é{ESC}")
        self.assertEqual(snapshot_json(Snapshot(state="running", percent=40.0))["percent"], 40)


class RecordingDisplay:
    def __init__(self) -> None:
        self.shown: list[Snapshot] = []
        self.waited: list[float] = []

    def changed(self, snapshot: Snapshot) -> None:
        self.shown.append(snapshot)

    def wait(self, seconds: float) -> None:
        self.waited.append(seconds)


class FollowTests(SynchronousTestCase):
    def test_follow_shows_changes_until_the_end(self) -> None:
        """Each change is shown once; UNCHANGED and repeats are not; it stops at the end."""
        answers = [
            answer(server_page(RunState.RUNNING, percent=0)),
            UNCHANGED,
            answer(server_page(RunState.RUNNING, percent=0)),
            answer(server_page(RunState.RUNNING, percent=50)),
            COMPLETED,
        ]
        display = RecordingDisplay()
        follower = Follower(
            lambda last: interpret(*vars(answers.pop(0)).values(), previous=last), display
        )
        first = interpret(*vars(answers.pop(0)).values())
        final = follower.follow(first, 2.0)
        self.assertEqual([s.state for s in display.shown], ["running", "running", "completed"])
        self.assertEqual([s.percent for s in display.shown[:2]], [0.0, 50.0])
        self.assertEqual(display.waited, [2.0] * 4)
        self.assertEqual(final, follower.last)
        self.assertEqual(answers, [])

    def test_finished_at_once(self) -> None:
        """A run already over is shown and not polled."""
        display = RecordingDisplay()
        final = Follower(lambda last: self.fail("polled"), display).follow(
            Snapshot(state="failed"), 1
        )
        self.assertEqual((final.state, display.waited), ("failed", []))


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Terminal(io.StringIO):
    encoding = "utf-8"  # type: ignore[assignment]

    def isatty(self) -> bool:
        return True


class DisplayTests(SynchronousTestCase):
    def test_live_bar_redraws_while_waiting(self) -> None:
        """The bar is rewritten in place every tick, the time moving, then erased."""
        out, time = Terminal(), FakeTime()
        bar = LiveBar(out, time.clock, time.sleep, lambda: 40, unicode=True, tick=0.5)
        bar.changed(Snapshot(state="running", percent=50.0))
        bar.wait(2)
        self.assertEqual(time.slept, [0.5] * 4)
        frames = out.getvalue().split("\r")[1:]
        self.assertEqual(len(frames), 5)
        self.assertTrue(all(f.endswith("\x1b[K") and "\n" not in f for f in frames))
        self.assertTrue(frames[0].endswith("0 s\x1b[K") and frames[-1].endswith("2 s\x1b[K"))
        bar.close()
        self.assertTrue(out.getvalue().endswith("\r\x1b[K"))

    def test_plain_lines(self) -> None:
        """Without a terminal: one plain line per change, no carriage return."""
        out, time = io.StringIO(), FakeTime()
        plain = PlainLines(out, time.clock, time.sleep)
        plain.changed(Snapshot(state="queued", position=2))
        plain.wait(3)
        plain.changed(Snapshot(state="running", percent=10.0))
        self.assertEqual(out.getvalue(), "queued, position 2  0 s\nrunning, 10 %  3 s\n")

    def test_json_lines_skip_the_end(self) -> None:
        """JSON lines for changes while running; the end is left to the final object."""
        out, time = io.StringIO(), FakeTime()
        lines_ = JsonLines(out, time.clock, time.sleep, "r1")
        lines_.changed(Snapshot(state="running", percent=10.0))
        lines_.changed(Snapshot(state="completed"))
        objects = [json.loads(line) for line in out.getvalue().splitlines()]
        self.assertEqual(len(objects), 1)
        self.assertEqual(
            {k: objects[0][k] for k in ("command", "event", "serviceID", "state", "percent")},
            {"command": "run", "event": "change", "serviceID": "r1", "state": "running",
             "percent": 10},
        )  # fmt: skip


class SoapHelperTests(SynchronousTestCase):
    def test_wsdl_url(self) -> None:
        """An endpoint without a query gets ?wsdl; WSDL addresses and files stay."""
        self.assertEqual(wsdl_url("http://h:1/Waiter"), "http://h:1/Waiter?wsdl")
        for same in ("http://h/Waiter?wsdl", "https://h/w.wsdl", "/tmp/w.xml", "w.wsdl"):
            self.assertEqual(wsdl_url(same), same)

    def test_where_hides_passwords_and_queries(self) -> None:
        """A URL in a message has no user, password, path or query."""
        self.assertEqual(
            where("https://u:secret@h.example:8443/p?token=x"), "https://h.example:8443"
        )
        self.assertEqual(where("/tmp/waiter.wsdl"), "the WSDL file")

    def test_fault_code(self) -> None:
        """A fault code loses its namespace prefix and any control characters."""
        self.assertEqual(fault_code("soap11env:Client.UnknownServiceID"), "Client.UnknownServiceID")
        self.assertEqual(fault_code(f"Server{ESC}[2J"), "Server[2J")
        self.assertEqual(fault_code(None), "Server")

    def test_translate(self) -> None:
        """Each failure becomes one line of its kind, saying where and why."""
        url = "http://user:pw@127.0.0.1:9/Waiter?wsdl"
        refused = requests.exceptions.ConnectionError("... [Errno 111] Connection refused")
        cases: list[tuple[BaseException, str, str]] = [
            (refused, "connection", "cannot connect to http://127.0.0.1:9: connection refused"),
            (requests.exceptions.ConnectionError("Failed to resolve 'x'"), "connection",
             "cannot connect to http://127.0.0.1:9: unknown host"),
            (requests.exceptions.ReadTimeout("read timed out"), "timeout",
             "no answer from http://127.0.0.1:9 within 2.5 s"),
            (zeep.exceptions.TransportError("x", 413), "http",
             "http://127.0.0.1:9 answered HTTP 413"),
            (zeep.exceptions.XMLSyntaxError("Invalid XML"), "answer",
             "unreadable XML from http://127.0.0.1:9: Invalid XML"),
            (FileNotFoundError(2, "No such file or directory"), "wsdl",
             "cannot read the WSDL: No such file or directory"),
        ]  # fmt: skip
        for error, kind, message in cases:
            found = translate(error, url, 2.5)
            self.assertEqual((found.kind, found.message), (kind, message))
            self.assertNotIn("pw", found.message)

    def test_translate_fault(self) -> None:
        """A fault keeps its code and message, made printable."""
        fault = zeep.exceptions.Fault(f"no run{ESC}[2J\nhere", code="soap11env:Client.X")
        found = translate(fault, "http://h/Waiter?wsdl", 1)
        assert isinstance(found, SoapFault)
        self.assertEqual((found.code, found.fault_message), ("Client.X", "no run[2J here"))
        self.assertEqual(found.message, "SOAP fault Client.X: no run[2J here")


class SiteAdapter(requests.adapters.BaseAdapter):
    """
    requests' HTTP, answered by a waiter site in memory that sees ``Host:
    host`` whatever the client asked for (as behind a proxy that rewrites
    it, or a hostile server): its WSDL names ``host`` in ``soap:address``.
    """

    def __init__(self, site: Site, host: bytes) -> None:
        super().__init__()
        self.site = site
        self.host = host
        self.sent: list[tuple[str, str]] = []
        self.bodies: list[bytes] = []

    def send(self, request: Any, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append((request.method, request.url))
        parts = urlsplit(request.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        body = request.body or b""
        headers = {b"Host": self.host}
        for name in ("Content-Type", "SOAPAction"):
            if name in request.headers:
                headers[name.encode()] = request.headers[name].encode()
        reply = http_request(
            self.site,
            request.method.encode(),
            target.encode(),
            body.encode() if isinstance(body, str) else body,
            headers,
        )
        self.bodies.append(reply.body)
        response = requests.Response()
        response.status_code = reply.code
        response.headers = requests.structures.CaseInsensitiveDict(reply.headers)
        response.raw = io.BytesIO(reply.body)
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


class SoapAddressTests(SynchronousTestCase):
    def site(self) -> Site:
        """The waiter's real SOAP site, on a fake reactor."""
        reactor = FakeProcessReactor()
        manager = RunManager(
            reactor,
            RunStore(Path(self.mktemp())),
            Waiter(max_seconds=60),
            launcher=["/usr/bin/env"],
            signal_group=SignalRecorder(),
        )
        manager.start_service()
        return build_site(Waiter(), manager, ["cloud"], reactor=reactor)

    def test_calls_go_to_the_wsdl_host(self) -> None:
        """A WSDL whose soap:address names another host: the calls (and token) stay on --wsdl's."""
        adapter = SiteAdapter(self.site(), b"evil.test:666")
        session = requests.Session()
        session.mount("http://", adapter)
        client = WaiterClient("http://portal.test:8080/cloud/Waiter", 5, session=session)
        self.assertIn(b'location="http://evil.test:666/cloud/Waiter"', adapter.bodies[0])
        with self.assertRaises(SoapFault) as raised:
            client.abort("nope", "secret-token")
        self.assertEqual(raised.exception.code, "Client.UnknownServiceID")
        self.assertEqual(
            adapter.sent,
            [
                ("GET", "http://portal.test:8080/cloud/Waiter?wsdl"),
                ("POST", "http://portal.test:8080/cloud/Waiter"),
            ],
        )

    def test_same_origin(self) -> None:
        """The address keeps its path and query, and takes --wsdl's scheme, host and port."""
        cases = [
            ("http://evil.test/cloud/Waiter", "https://h:8443/x/Waiter?wsdl",
             "https://h:8443/cloud/Waiter"),
            ("http://evil.test:1/W?a=b#f", "http://u:pw@h/W?wsdl", "http://u:pw@h/W?a=b"),
            ("http://there/Waiter", "/tmp/waiter.wsdl", "http://there/Waiter"),
            ("http://there/Waiter", "file:///tmp/waiter.wsdl", "http://there/Waiter"),
        ]  # fmt: skip
        for address, wsdl, expected in cases:
            self.assertEqual(same_origin(address, wsdl), expected, (address, wsdl))


class FakeClient:
    """Plays the service: answers from a script, records the calls."""

    def __init__(self, *answers: Any, aborted: Any = True, notified: str = "delivered") -> None:
        self.answers = list(answers)
        self.aborted = aborted
        self.notified = notified
        self.calls: list[tuple[Any, ...]] = []

    def _next(self) -> Any:
        item = self.answers.pop(0)
        if isinstance(item, BaseException) or (
            isinstance(item, type) and issubclass(item, BaseException)
        ):
            raise item
        return item

    def start(self, service_id: str, token: str, seconds: int | None, extra: str | None) -> Answer:
        self.calls.append(("start", service_id, token, seconds, extra))
        return self._next()  # type: ignore[no-any-return]

    def status(self, service_id: str, token: str) -> Answer:
        self.calls.append(("status", service_id, token))
        return self._next()  # type: ignore[no-any-return]

    def abort(self, service_id: str, token: str) -> bool:
        self.calls.append(("abort", service_id, token))
        if isinstance(self.aborted, BaseException) or isinstance(self.aborted, type):
            raise self.aborted
        return bool(self.aborted)

    def notify(self, service_id: str, token: str, message: str) -> str:
        self.calls.append(("notify", service_id, token, message))
        return self.notified


RUNNING = answer(server_page(RunState.RUNNING, percent=0))
HALF = answer(server_page(RunState.RUNNING, percent=50))
FAILED = answer(
    server_page(RunState.FAILED, failure_reason="the program failed", output_tail=["because"])
)
ABORTED = answer(server_page(RunState.ABORTED, exit_signal=15))


class MainTests(SynchronousTestCase):
    def cli(
        self, *argv: str, client: FakeClient | None = None, out: io.StringIO | None = None
    ) -> tuple[int, str, str, FakeClient]:
        """Run the command line on a fake client; exit code, stdout, stderr."""
        client = client or FakeClient()
        out = out if out is not None else io.StringIO()
        err, time = io.StringIO(), FakeTime()
        connected: list[tuple[str, float]] = []

        def connect(url: str, timeout: float) -> FakeClient:
            connected.append((url, timeout))
            return client

        code = main(
            ["--wsdl", "http://h/Waiter", *argv],
            stdout=out,
            stderr=err,
            connect=connect,
            clock=time.clock,
            sleep=time.sleep,
            columns=lambda: 60,
        )
        self.assertEqual(connected, [("http://h/Waiter", 30.0)])
        return code, out.getvalue(), err.getvalue(), client

    def test_start_generates_a_valid_service_id(self) -> None:
        """start without an ID makes one the service accepts, prints it and exits 0."""
        code, out, _, client = self.cli("start", "--seconds", "5", client=FakeClient(RUNNING))
        service_id = client.calls[0][1]
        self.assertEqual(check_service_id(service_id), service_id)
        self.assertEqual(client.calls, [("start", service_id, "", 5, None)])
        self.assertEqual(out.splitlines()[:2], [f"run      {service_id}", "state    running, 0 %"])
        self.assertEqual(code, 0)
        self.assertNotEqual(new_service_id(), new_service_id())

    def test_start_options(self) -> None:
        """start passes the ID, token and extra parameters as given; options go anywhere."""
        _, _, _, client = self.cli(
            "start", "--service-id", "s1", "--extra", "a=b,", "--token", "T",
            client=FakeClient(RUNNING),
        )  # fmt: skip
        self.assertEqual(client.calls, [("start", "s1", "T", None, "a=b,")])

    def test_status_exit_codes(self) -> None:
        """status exits 0 completed, 3 failed, 4 aborted, 5 queued or running."""
        queued = answer(server_page(RunState.QUEUED, position=2))
        replies = ((COMPLETED, 0), (FAILED, 3), (ABORTED, 4), (HALF, 5), (queued, 5))
        for reply, code in replies:
            found, out, _, client = self.cli("status", "s1", client=FakeClient(reply))
            self.assertEqual(found, code, out)
            self.assertEqual(client.calls, [("status", "s1", "")])

    def test_status_unchanged_asks_for_the_page(self) -> None:
        """UNCHANGED tells no state: status gets the page from startWaiter of the same ID."""
        code, out, _, client = self.cli("status", "s1", client=FakeClient(UNCHANGED, FAILED))
        self.assertEqual(client.calls, [("status", "s1", ""), ("start", "s1", "", None, None)])
        self.assertEqual(code, 3)
        self.assertIn("state    failed\n", out)

    def test_status_failed_shows_reason_and_output(self) -> None:
        """A failed run's status names the reason and the program's last lines."""
        _, out, _, _ = self.cli("status", "s1", client=FakeClient(FAILED))
        self.assertIn("reason   the program failed\n", out)
        self.assertIn("output   because\n", out)

    def test_status_json(self) -> None:
        """--json: one object with the state, the result and the exit code."""
        code, out, _, _ = self.cli("status", "s1", "--json", client=FakeClient(COMPLETED))
        (obj,) = [json.loads(line) for line in out.splitlines()]
        self.assertEqual(
            {k: obj[k] for k in ("command", "serviceID", "state", "result", "exit_code")},
            {"command": "status", "serviceID": "s1", "state": "completed",
             "result": "Waited 2.0 of 2 seconds.\n", "exit_code": 0},
        )  # fmt: skip
        self.assertEqual(code, 0)

    def test_fault(self) -> None:
        """A fault is one line on stderr (and an error object with --json), exit 1."""
        fault = SoapFault("Client.UnknownServiceID", "no run has this serviceID")
        code, out, err, _ = self.cli("--json", "status", "nope", client=FakeClient(fault))
        self.assertEqual(code, 1)
        self.assertEqual(
            err, "waiter-client: SOAP fault Client.UnknownServiceID: no run has this serviceID\n"
        )
        self.assertEqual(
            json.loads(out)["error"],
            {"kind": "fault", "code": "Client.UnknownServiceID",
             "message": "no run has this serviceID"},
        )  # fmt: skip

    def test_unreadable_page(self) -> None:
        """An answer that is no page is an error, said in one line."""
        code, _, err, _ = self.cli("status", "s1", client=FakeClient(Answer("garbage!", "UNSET")))
        self.assertEqual(code, 1)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn("unreadable status page", err)

    def test_abort(self) -> None:
        """abort exits 0 when it stopped the run, 1 when the run had already ended."""
        code, out, _, _ = self.cli("abort", "s1")
        self.assertEqual((code, out.splitlines()[1]), (0, "state    aborted"))
        code, out, err, _ = self.cli("abort", "s1", client=FakeClient(aborted=False))
        self.assertEqual((code, out), (1, ""))
        self.assertIn("already ended", err)

    def test_notify(self) -> None:
        """notify prints the answer; a message not delivered exits 1."""
        code, out, _, client = self.cli("notify", "s1", "fail because")
        self.assertEqual((code, out), (0, "delivered\n"))
        self.assertEqual(client.calls, [("notify", "s1", "", "fail because")])
        refused = FakeClient(notified="not delivered: the run has already failed")
        code, out, err, _ = self.cli("notify", "s1", "x", "--json", client=refused)
        self.assertEqual(code, 1)
        self.assertEqual(json.loads(out)["delivered"], False)
        self.assertIn("not delivered: the run has already failed", err)

    def test_run_follows_to_the_result(self) -> None:
        """run polls every --interval until COMPLETED, then prints the result; exit 0."""
        client = FakeClient(RUNNING, UNCHANGED, HALF, COMPLETED)
        code, out, _, _ = self.cli("run", "--service-id", "s1", "--interval", "3", client=client)
        self.assertEqual(code, 0)
        self.assertEqual(
            out.splitlines(),
            [
                "run      s1",
                "running, 0 %  0 s",
                "running, 50 %  6 s",
                "completed  9 s",
                "run      s1",
                "state    completed",
                "time     9 s",
                "result   Waited 2.0 of 2 seconds.",
            ],
        )
        self.assertEqual([c[0] for c in client.calls], ["start", "status", "status", "status"])

    def test_run_trusts_unchanged_for_a_while(self) -> None:
        """run trusts UNCHANGED for REFRESH_AFTER seconds, then asks for the page again."""
        quiet = [UNCHANGED] * int(REFRESH_AFTER / 2)
        client = FakeClient(RUNNING, *quiet, FAILED)
        code, out, _, _ = self.cli("run", "--service-id", "s1", client=client)
        self.assertEqual(code, 3)
        self.assertEqual([c[0] for c in client.calls], ["start", *["status"] * len(quiet), "start"])
        self.assertEqual(client.calls[-1], ("start", "s1", "", None, None))
        self.assertIn(f"failed  {int(REFRESH_AFTER)} s\n", out)

    def test_run_on_a_terminal_draws_a_bar(self) -> None:
        """On a terminal, run draws a bar in place, erases it, then reports."""
        code, out, _, _ = self.cli(
            "run", "--service-id", "s1", client=FakeClient(RUNNING, HALF, COMPLETED), out=Terminal()
        )
        self.assertEqual(code, 0)
        self.assertIn("\r\x1b[K", out)
        self.assertRegex(out, r"\rrunning  \[█+[▏▎▍▌▋▊▉]? +\]  50 %  2 s\x1b\[K")
        self.assertTrue(out.endswith("result   Waited 2.0 of 2 seconds.\n"))

    def test_run_json(self) -> None:
        """run --json: a change object per change, then one end object; nothing else."""
        code, out, _, _ = self.cli(
            "run", "--json", "--service-id", "s1", client=FakeClient(RUNNING, HALF, FAILED)
        )
        objects = [json.loads(line) for line in out.splitlines()]
        self.assertEqual([o["event"] for o in objects], ["change", "change", "end"])
        self.assertEqual([o["percent"] for o in objects[:2]], [0, 50])
        self.assertEqual(
            (objects[-1]["state"], objects[-1]["reason"], objects[-1]["exit_code"], code),
            ("failed", "the program failed", 3, 3),
        )
        self.assertNotIn("\r", out)

    def test_ctrl_c_aborts_the_run(self) -> None:
        """Ctrl-C while following aborts the run, shows it aborted, exits 4."""
        client = FakeClient(RUNNING, KeyboardInterrupt, ABORTED)
        code, out, err, _ = self.cli("run", "--service-id", "s1", client=client)
        self.assertEqual(code, 4)
        self.assertEqual([c[0] for c in client.calls], ["start", "status", "abort", "status"])
        self.assertIn("Ctrl-C: aborting run s1", err)
        self.assertIn("state    aborted\n", out)

    def test_ctrl_c_after_the_end(self) -> None:
        """If the run ended just before the abort, its real end decides the exit code."""
        client = FakeClient(RUNNING, KeyboardInterrupt, COMPLETED, aborted=False)
        code, out, err, _ = self.cli("run", "--service-id", "s1", client=client)
        self.assertEqual(code, 0)
        self.assertIn("already ended", err)
        self.assertIn("result   Waited", out)

    def test_ctrl_c_twice(self) -> None:
        """A second Ctrl-C during the abort gives up at once: exit 130, with a hint."""
        client = FakeClient(RUNNING, KeyboardInterrupt, aborted=KeyboardInterrupt)
        code, _, err, _ = self.cli("run", "--service-id", "s1", client=client)
        self.assertEqual(code, 130)
        self.assertIn("waiter-client abort s1", err)

    def test_ctrl_c_before_the_start_was_answered(self) -> None:
        """Ctrl-C before startWaiter answered, and the server knows no such run: exit 130."""
        unknown = SoapFault("Client.UnknownServiceID", "no run has this serviceID")
        for json_flag in ([], ["--json"]):
            client = FakeClient(KeyboardInterrupt, aborted=unknown)
            code, out, err, _ = self.cli("run", "--service-id", "s1", *json_flag, client=client)
            self.assertEqual(code, 130)
            self.assertEqual([c[0] for c in client.calls], ["start", "abort"])
            self.assertEqual(
                err.splitlines(),
                [
                    "waiter-client: Ctrl-C: aborting run s1",
                    "waiter-client: interrupted before the run started",
                ],
            )
            self.assertNotIn("state", out)

    def test_ctrl_c_before_the_start_was_answered_but_the_run_exists(self) -> None:
        """The start reached the server after all: the abort works, the run shows aborted."""
        client = FakeClient(KeyboardInterrupt, ABORTED)
        code, out, _, _ = self.cli("run", "--service-id", "s1", client=client)
        self.assertEqual(code, 4)
        self.assertEqual([c[0] for c in client.calls], ["start", "abort", "status"])
        self.assertIn("state    aborted\n", out)

    def test_ctrl_c_after_the_start_then_unknown_is_an_error(self) -> None:
        """Once the start was answered, an abort that finds no run is an error (exit 1)."""
        unknown = SoapFault("Client.UnknownServiceID", "no run has this serviceID")
        client = FakeClient(RUNNING, KeyboardInterrupt, aborted=unknown)
        code, _, err, _ = self.cli("run", "--service-id", "s1", client=client)
        self.assertEqual(code, 1)
        self.assertNotIn("before the run started", err)
        self.assertIn("SOAP fault Client.UnknownServiceID", err)

    def test_ctrl_c_before_the_start_other_fault_is_an_error(self) -> None:
        """Before the start's answer, any other failure of the abort is still an error."""
        denied = SoapFault("Client.AuthenticationFailed", "bad token")
        client = FakeClient(KeyboardInterrupt, aborted=denied)
        code, _, err, _ = self.cli("run", "--service-id", "s1", client=client)
        self.assertEqual(code, 1)
        self.assertIn("SOAP fault Client.AuthenticationFailed: bad token", err)

    def test_error_while_following(self) -> None:
        """A lost connection during run: exit 1, saying the run may still go on."""
        lost = ClientError("connection", "cannot connect to http://h: connection refused")
        code, _, err, _ = self.cli("run", "--service-id", "s1", client=FakeClient(RUNNING, lost))
        self.assertEqual(code, 1)
        self.assertIn("waiter-client status s1", err)
        self.assertIn("connection refused", err)


class CommandLineTests(SynchronousTestCase):
    def run_main(self, *argv: str, environ: dict[str, str] | None = None) -> Any:
        out, err = io.StringIO(), io.StringIO()

        def refuse(url: str, timeout: float) -> Any:
            raise ClientError("connection", "cannot connect to http://h: connection refused")

        code = main(list(argv), stdout=out, stderr=err, connect=refuse, environ=environ or {})
        return code, out.getvalue(), err.getvalue()

    def test_usage_errors_exit_2(self) -> None:
        """No WSDL, no command, or a bad value: exit 2 with a usage line."""
        for argv in ([], ["status", "x"], ["--wsdl", "u"], ["--wsdl", "u", "run", "--interval",
                     "0"], ["--wsdl", "u", "start", "--seconds", "x"]):  # fmt: skip
            code, _, _ = self.run_main(*argv)
            self.assertEqual(code, 2, argv)

    def test_no_connection(self) -> None:
        """A server that cannot be reached: one line on stderr, exit 1."""
        code, out, err = self.run_main("--wsdl", "http://h/W", "status", "x")
        self.assertEqual((code, out), (1, ""))
        self.assertEqual(err, "waiter-client: cannot connect to http://h: connection refused\n")

    def test_environment_gives_wsdl_and_token(self) -> None:
        """WAITER_WSDL and WAITER_TOKEN stand in for --wsdl and --token."""
        seen: list[tuple[str, float]] = []
        client = FakeClient(COMPLETED)

        def connect(url: str, timeout: float) -> FakeClient:
            seen.append((url, timeout))
            return client

        environ = {"WAITER_WSDL": "http://env/Waiter", "WAITER_TOKEN": "secret"}
        code = main(["status", "s1", "--timeout", "4"], stdout=io.StringIO(),
                    stderr=io.StringIO(), connect=connect, environ=environ)  # fmt: skip
        self.assertEqual((code, seen), (0, [("http://env/Waiter", 4.0)]))
        self.assertEqual(client.calls, [("status", "s1", "secret")])

    def test_help_lists_exit_codes(self) -> None:
        """--help documents the exit codes and what Ctrl-C does."""
        stdout = io.StringIO()
        self.patch(__import__("sys"), "stdout", stdout)
        code, _, _ = self.run_main("run", "--help")
        self.assertEqual(code, 0)
        text = stdout.getvalue()
        self.assertIn("Ctrl-C aborts the run", re.sub(r"\s+", " ", text))
        for code_line in ("0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130 "):
            self.assertRegex(text, rf"\n  {code_line}")
        self.assertIn("Ctrl-C before the run started", re.sub(r"\s+", " ", text))
