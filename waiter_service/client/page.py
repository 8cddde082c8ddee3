"""
What a status page says: the run's state, its progress, its queue position,
why it failed and the program's last lines.

The page is the service's contract with the portal, and this module reads
only what that contract names: ``<body class="queued|running|completed|
failed|aborted">``, a ``<progress value max>`` (or, on older pages, an
element with ``role="progressbar"`` and ``aria-valuenow``), ``<dt>Reason
</dt><dd>...</dd>`` (and ``Ended with``) and ``<pre>``.  The page comes from the network, so it
is parsed with no network access, no entity expansion and a size cap, and
every text taken from it is plain text (markup gone) for :mod:`.text` to
make printable.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass

import lxml.html
from lxml import etree

from .text import one_line

#: States a page may show, as the class of its ``<body>``.
STATES = ("queued", "running", "completed", "failed", "aborted")

#: Largest ``status_base64`` read (a real page is a few kilobytes).
MAX_STATUS_CHARS = 1024 * 1024

#: How much of a failed run's output is kept: the last lines, each cut.
MAX_OUTPUT_LINES = 20
MAX_LINE_CHARS = 300

_PARSER = lxml.html.HTMLParser(
    no_network=True,
    remove_comments=True,
    remove_pis=True,
    huge_tree=False,
    default_doctype=False,
)
_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*")
_POSITION = re.compile(r"\bposition\s*:?\s*(\d{1,9})\b", re.IGNORECASE)


class PageError(ValueError):
    """An answer that is not a status page this client can read."""


@dataclass(frozen=True)
class Page:
    """The facts of one status page (texts plain, not yet made printable, but ``cluster``)."""

    state: str
    percent: float | None = None
    position: int | None = None
    reason: str | None = None
    ended: str | None = None
    output: tuple[str, ...] = ()
    #: The job's state in a cluster's queue (``PENDING, Resources``) while
    #: the run waits there (a ``<main class="cluster">`` page); printable.
    cluster: str | None = None


def decode_status(status_base64: str) -> str:
    """The HTML of a ``status_base64`` value, or PageError."""
    if len(status_base64) > MAX_STATUS_CHARS:
        raise PageError(f"the status page is larger than {MAX_STATUS_CHARS} characters")
    compact = "".join(status_base64.split())
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise PageError("the status is neither COMPLETED, UNCHANGED nor a base64 page") from None
    return data.decode("utf-8", errors="replace")


def parse_page(html: str) -> Page:
    """Read a status page's state and details, or raise PageError."""
    try:
        root = lxml.html.document_fromstring(html, parser=_PARSER)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):
        raise PageError("the status page is empty or not HTML") from None
    body = root.find("body")
    if body is None:
        raise PageError("the status page has no body")
    state = page_state(body.get("class", ""))
    return Page(
        state=state,
        percent=page_percent(body) if state == "running" else None,
        position=page_position(body) if state == "queued" else None,
        reason=definition(body, "Reason"),
        ended=definition(body, "Ended with"),
        output=page_output(body),
        cluster=page_cluster(body) if state == "running" else None,
    )


def page_cluster(body: lxml.html.HtmlElement) -> str | None:
    """``PENDING, Resources`` for a run queued on a cluster, else None (printable text)."""
    main = body.find("main")
    if main is None or "cluster" not in main.get("class", "").split():
        return None
    # Unlike the other texts, this one goes into the state line itself (a
    # live bar, a plain line, JSON): made printable here, once for all.
    words = [one_line(definition(body, term) or "", 60) for term in ("Slurm state", "Slurm reason")]
    return one_line(", ".join(w for w in words if w), 120) or "waiting"


def page_state(classes: str) -> str:
    """The first run state among the ``class`` names of ``<body>``."""
    for name in classes.split():
        if name in STATES:
            return name
    raise PageError("the status page names no state")


def _number(text: str | None) -> float | None:
    """A finite decimal number, or None for anything else (no NaN, no inf)."""
    if text is None or not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _percent(value: float | None, low: float, high: float | None) -> float | None:
    if value is None or high is None or high <= low:
        return None
    # Rounded: 0.28 of 1 is 28.000000000000004 in binary floating point,
    # which --json would print as it is.
    return round(min(100.0, max(0.0, (value - low) / (high - low) * 100.0)), 2)


def page_percent(body: lxml.html.HtmlElement) -> float | None:
    """Progress in percent: ``<progress>`` first, else an ARIA progress bar."""
    for element in body.iter("progress"):
        # HTML: max defaults to 1; no value means "indeterminate".
        high = _number(element.get("max")) if element.get("max") is not None else 1.0
        return _percent(_number(element.get("value")), 0.0, high)
    for element in body.iter():
        if isinstance(element.tag, str) and element.get("role") == "progressbar":
            low = _number(element.get("aria-valuemin")) or 0.0
            high = (
                _number(element.get("aria-valuemax"))
                if element.get("aria-valuemax") is not None
                else 100.0
            )
            return _percent(_number(element.get("aria-valuenow")), low, high)
    return None


def definition(body: lxml.html.HtmlElement, term: str) -> str | None:
    """Text of the ``<dd>`` that follows ``<dt>term</dt>``, if any."""
    for dt in body.iter("dt"):
        if dt.text_content().strip() == term:
            dd = dt.getnext()
            while dd is not None and dd.tag != "dd":
                dd = dd.getnext() if dd.tag != "dt" else None
            if dd is not None:
                return str(dd.text_content()).strip()
    return None


def page_position(body: lxml.html.HtmlElement) -> int | None:
    """A queued run's place in the queue: ``<dt>Position</dt>``, else "position N"."""
    found = definition(body, "Position")
    match = _POSITION.search(f"position {found}" if found else body.text_content())
    return int(match.group(1)) if match else None


def page_output(body: lxml.html.HtmlElement) -> tuple[str, ...]:
    """The program's last output lines, from the page's first ``<pre>``."""
    for pre in body.iter("pre"):
        text = pre.text_content().rstrip("\n")
        found = text.splitlines()[-MAX_OUTPUT_LINES:]
        return tuple(line[:MAX_LINE_CHARS] for line in found)
    return ()
