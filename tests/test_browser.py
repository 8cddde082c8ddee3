"""
The status pages in a real browser (headless Chromium): their layout, not
only their text.

One browser serves the whole module: it is started by the first test that
needs it and quit when the test process exits (trial has no class or module
fixtures).  Pages are loaded as the portal gets them, base64 in a ``data:``
URL, in a viewport of an exact width (Chrome DevTools' device metrics, one
device pixel per CSS pixel).  The browser setup and the realistic sample
pages are those of ``docs/screenshots/make.py``, so the documentation's
pictures show what is tested here.

Without Chromium or chromedriver the tests are skipped, and say so.
"""

from __future__ import annotations

import atexit
import importlib.util
import re
import struct
import tempfile
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from waiter_service.runs.record import RunRecord
from waiter_service.runs.state import RunState
from waiter_service.status_page import PALETTE, ClusterQueue, render_status_page

from .test_status_page import contrast_ratio

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "docs" / "screenshots"


def _load_make() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_screenshots_make", SCREENSHOTS / "make.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make = _load_make()
NOW = make.NOW
#: Unbroken hostile text, far wider than any phone.
LONG = "W" * 300
ATTACK = "<img src=x onerror=\"document.title='pwned'\"><b>bold</b>"

_driver: Any = None


def browser() -> Any:
    """The module's one browser, started on first use and quit at exit."""
    global _driver
    if _driver is None:
        _driver = make.start_browser()
        atexit.register(_driver.quit)
    return _driver


def decode_png(data: bytes) -> list[list[tuple[int, int, int]]]:
    """The RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG, row by row."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            if depth != 8 or colour not in (2, 6) or interlace:
                raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    pixels = []
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            up_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                guess = left + up - up_left
                near = min((abs(guess - v), n) for n, v in enumerate((left, up, up_left)))[1]
                line[i] = (line[i] + (left, up, up_left)[near]) & 255
        pixels.append([(line[x], line[x + 1], line[x + 2]) for x in range(0, stride, channels)])
        previous = line
    return pixels


def rgb(colour: str) -> tuple[int, int, int]:
    """``#rrggbb`` or a computed ``rgb(r, g, b)`` as a tuple."""
    if colour.startswith("#"):
        return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))
    values = re.findall(r"[\d.]+", colour)
    if len(values) == 4 and float(values[3]) != 1:
        raise ValueError(f"a translucent colour cannot be checked alone: {colour}")
    r, g, b = (int(float(v)) for v in values[:3])
    return (r, g, b)


def hex_colour(colour: str) -> str:
    return "#%02x%02x%02x" % rgb(colour)


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int], tolerance: int = 24) -> bool:
    return all(abs(p - c) <= tolerance for p, c in zip(pixel, colour, strict=True))


#: Every element that overflows its box or the viewport, and the document's width.
OVERFLOW_JS = """
const offenders = [];
for (const e of document.body.querySelectorAll('*')) {
  const r = e.getBoundingClientRect();
  if (e.scrollWidth > e.clientWidth + 1 || r.right > innerWidth + 0.5 || r.left < -0.5)
    offenders.push(e.tagName + ' ' + e.scrollWidth + '/' + e.clientWidth + ' ' + r.right);
}
return {width: document.documentElement.scrollWidth, viewport: innerWidth, offenders};
"""

#: Each rendered element with text of its own: its colour, the colour behind
#: it (the first opaque background among it and its ancestors) and its size.
TEXTS_JS = """
const out = [];
for (const e of document.body.querySelectorAll('*')) {
  const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own || e.tagName === 'PROGRESS' || !e.getClientRects().length) continue;
  let back = 'rgb(255, 255, 255)';
  for (let a = e; a; a = a.parentElement) {
    const c = getComputedStyle(a).backgroundColor;
    if (c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') { back = c; break; }
  }
  const s = getComputedStyle(e);
  out.push([e.tagName, e.textContent.slice(0, 40), s.color, back, parseFloat(s.fontSize)]);
}
return out;
"""


def hostile_pages() -> dict[str, str]:
    """Pages whose every text from a run is long, unbroken or markup."""
    pages = {}
    for name, (record, kwargs) in make.sample_records().items():
        record.program = ATTACK + LONG
        record.message = LONG + ATTACK
        if record.state is RunState.FAILED:
            record.failure_reason = LONG + ATTACK
        if record.state.is_terminal:
            record.output_tail = [LONG, ATTACK, "\t" + LONG]
        if "cluster" in kwargs:
            kwargs = {"cluster": ClusterQueue(LONG, LONG, ATTACK + LONG)}
        pages[name] = render_status_page(record, NOW, **kwargs)
    return pages


def running_page(percent: int, abort: bool = False) -> str:
    record = RunRecord(
        service_id="bar", program="Waiter", inputs={}, created_at=NOW - 100, state=RunState.QUEUED
    )
    record.launching(NOW - 90)
    record.record_progress(percent, "meshing")
    if abort:
        record.request_abort()
    return render_status_page(record, NOW)


class BrowserTests(SynchronousTestCase):
    skip = make.browser_missing()

    def show(self, html: str, width: int) -> Any:
        """Load ``html`` at ``width`` and check that the viewport is that wide."""
        driver = browser()
        make.show(driver, html, width)
        self.assertEqual(driver.execute_script("return innerWidth"), width)
        return driver

    def assertNear(self, first: float, second: float, delta: float, msg: object) -> None:
        """``first`` is within ``delta`` of ``second`` (trial's assertAlmostEqual has no delta)."""
        self.assertLessEqual(abs(first - second), delta, f"{first} != {second} +/- {delta}: {msg}")

    def assertNoOverflow(self, driver: Any, what: str) -> None:
        found = driver.execute_script(OVERFLOW_JS)
        self.assertLessEqual(found["width"], found["viewport"], what)
        self.assertEqual(found["offenders"], [], what)

    def test_bar_fill_matches_value(self) -> None:
        """
        The bar spans the column and its painted fill is value/max of its width.

        The value attribute alone proves nothing about what is drawn: with
        ``appearance: none``, a missing or wrong ``::-webkit-progress-value``
        rule paints no fill, or a full one.  So the test reads the pixels of
        the element's own screenshot along its middle row (the rounded
        corners only touch the top and bottom rows) and counts the run of
        fill colour from the left, then checks that the track colour fills
        the rest; the run must be ``width * value / max`` within 1.5 px.
        """
        cases = [(p, False, w) for p in (0, 7, 42, 100) for w in (320, 1600)]
        cases.append((63, True, 480))
        for percent, abort, width in cases:
            what = f"{percent} % at {width} px" + (", stopping" if abort else "")
            driver = self.show(running_page(percent, abort), width)
            bars = driver.find_elements("tag name", "progress")
            self.assertEqual(len(bars), 1, what)
            bar = bars[0]
            self.assertEqual(bar.get_attribute("value"), str(percent), what)
            self.assertEqual(bar.get_attribute("max"), "100", what)
            column = driver.execute_script(
                "const m = document.querySelector('main'), s = getComputedStyle(m);"
                "return m.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);"
            )
            self.assertNear(bar.rect["width"], column, 0.5, what)
            self.assertGreater(bar.rect["height"], 12, what)
            pixels = decode_png(bar.screenshot_as_png)
            row = pixels[len(pixels) // 2]
            fill = rgb(PALETTE["stopping" if abort else "running"])
            filled = next((i for i, p in enumerate(row) if not near(p, fill)), len(row))
            track = sum(near(p, rgb(PALETTE["track"])) for p in row[filled:])
            self.assertNear(filled, len(row) * percent / 100, 1.5, f"{what}, of {len(row)} px")
            self.assertGreaterEqual(track, len(row) - filled - 2, what)

    def test_bar_accessible_name_and_value(self) -> None:
        """The accessibility tree has one progressbar, named, with the percent as its value."""
        driver = self.show(running_page(42), 480)
        tree = driver.execute_cdp_cmd("Accessibility.getFullAXTree", {})["nodes"]
        bars = [n for n in tree if n.get("role", {}).get("value") == "progressbar"]
        self.assertEqual(len(bars), 1)
        self.assertEqual(bars[0]["name"]["value"], "Progress")
        self.assertEqual(bars[0]["value"]["value"], 42)
        properties = {p["name"]: p["value"]["value"] for p in bars[0]["properties"]}
        self.assertEqual((properties["valuemin"], properties["valuemax"]), (0, 100))

    def test_no_overflow_at_320(self) -> None:
        """At 320 px no page scrolls sideways or clips, even with long unbroken texts."""
        pages = {**make.sample_pages(), **{f"hostile {k}": v for k, v in hostile_pages().items()}}
        for name, html in pages.items():
            driver = self.show(html, 320)
            self.assertNoOverflow(driver, name)
            self.assertGreater(driver.find_element("tag name", "h1").rect["width"], 200, name)

    def test_readable_at_1600(self) -> None:
        """At 1600 px the text stays in a centred column of readable width, large enough."""
        for name, html in make.sample_pages().items():
            driver = self.show(html, 1600)
            self.assertNoOverflow(driver, name)
            main = driver.find_element("tag name", "main").rect
            self.assertTrue(480 <= main["width"] <= 720, (name, main))
            right_margin = 1600 - main["x"] - main["width"]
            self.assertNear(main["x"], right_margin, 2, name)
            sizes = [size for *_, size in driver.execute_script(TEXTS_JS)]
            self.assertGreaterEqual(min(sizes), 13, name)

    def test_text_contrast(self) -> None:
        """Every text as the browser draws it reaches 4.5:1 against what is behind it."""
        checked = 0
        for name, html in make.sample_pages().items():
            driver = self.show(html, 480)
            for tag, text, colour, back, _ in driver.execute_script(TEXTS_JS):
                ratio = contrast_ratio(hex_colour(colour), hex_colour(back))
                self.assertGreaterEqual(ratio, 4.5, (name, tag, text, colour, back))
                checked += 1
        self.assertGreater(checked, 7 * 4)

    def test_state_in_words(self) -> None:
        """Each page says its state in its heading; the body's class is the record's state."""
        expected = {
            "queued": ("queued", "Queued"),
            "cluster": ("running", "Queued on the cluster"),
            "running": ("running", "Running"),
            "stopping": ("running", "Stopping"),
            "failed": ("failed", "Failed"),
            "aborted": ("aborted", "Aborted"),
            "completed": ("completed", "Finished"),
        }
        pages = make.sample_pages()
        self.assertEqual(set(pages), set(expected))
        for name, html in pages.items():
            driver = self.show(html, 480)
            body_class = driver.find_element("tag name", "body").get_attribute("class")
            heading = driver.find_element("tag name", "h1").text
            self.assertEqual((body_class, heading), expected[name])
            bars = len(driver.find_elements("tag name", "progress"))
            self.assertEqual(bars, 1 if name in ("running", "stopping") else 0, name)

    def test_hostile_text_is_inert(self) -> None:
        """Markup from a run is shown as text: no element, no script, no request."""
        for name, html in hostile_pages().items():
            driver = self.show(html, 480)
            tags = driver.execute_script(
                "return [...new Set([...document.querySelectorAll('*')].map(e => e.localName))]"
            )
            self.assertFalse({"img", "b", "script", "a"} & set(tags), (name, tags))
            self.assertNotEqual(driver.title, "pwned")
            resources = driver.execute_script(
                "return performance.getEntriesByType('resource').length"
            )
            self.assertEqual(resources, 0, name)
            self.assertIn("<b>bold</b>", driver.find_element("tag name", "body").text, name)

    def test_screenshots(self) -> None:
        """The screenshot script writes one small PNG per page, 480 px wide; the docs have them."""
        with tempfile.TemporaryDirectory() as folder:
            written = make.write_screenshots(browser(), Path(folder))
            self.assertEqual(sorted(p.stem for p in written), sorted(make.sample_pages()))
            for path in written:
                data = path.read_bytes()
                self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
                width, height = struct.unpack(">II", data[16:24])
                self.assertEqual(width, make.WIDTH)
                self.assertTrue(100 < height < 1000, (path.name, height))
                self.assertLess(len(data), 60_000, path.name)
        for name in make.sample_pages():
            committed = SCREENSHOTS / f"{name}.png"
            self.assertTrue(committed.is_file(), f"run docs/screenshots/make.py: {committed}")
            self.assertLess(committed.stat().st_size, 60_000, committed)
