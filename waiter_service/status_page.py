"""
The HTML status page that the portal shows while a run goes on.

The portal puts the page in a frame and asks for it again every few
seconds, so it is a pure function of a run's record and the time, small (a
few kB, sent as base64 in every changed poll answer) and self-contained:
inline CSS, no scripts, no external resources, and a Content Security
Policy that forbids them anyway, in case an escape were ever missed.  Every
text that comes from a run (program output, messages, reasons, a cluster's
answers) is hostile: it is cut to a bounded length, stripped of control
characters and escaped.

There is one page per state (queued, queued on a cluster, running,
stopping, failed, aborted, finished).  The state is always said in words,
never by colour alone; ``<body class="...">`` carries the record's state for
clients that parse the page, and a running page has exactly one
``<progress value="P" max="100">``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from html import escape
from typing import NamedTuple

from .runs.record import RunRecord
from .runs.state import RunState


class ClusterQueue(NamedTuple):
    """
    A run's job as a cluster's batch scheduler (Slurm) reports it.

    Given to :func:`render_status_page` while the job waits in the cluster's
    queue: the run is then RUNNING for this service (it submitted the job)
    but nothing runs yet, so the page says where the job waits instead of
    showing a bar.
    """

    job_id: str
    #: The scheduler's job state, such as ``PENDING``.
    state: str
    #: Why it waits, such as ``Resources`` or ``Priority``.
    reason: str


#: An estimate of the time left is shown once the run reports at least this
#: percent and has run at least this many seconds: earlier, it is noise.
ESTIMATE_MIN_PERCENT = 5
ESTIMATE_MIN_ELAPSED = 10.0

#: The page shows at most this many of the last output lines, each cut to
#: this many characters: enough to see an error, and the page stays small.
PAGE_TAIL_LINES = 12
PAGE_LINE_CHARS = 240

#: Longest texts from a run that the page shows (characters).
_MESSAGE_CHARS = 300
_REASON_CHARS = 1000
_NAME_CHARS = 128

#: The page's colours.  Every text colour reaches the WCAG AA ratio of 4.5:1
#: on the backgrounds it is drawn on (tests compute it); the bar's fill and
#: the state stripe reach 3:1, the ratio for graphical objects.
PALETTE = {
    "text": "#1b1b1b",
    "muted": "#575757",
    "page": "#ffffff",
    "panel": "#f1f1f1",
    "track": "#d4d4d4",
    "queued": "#5a4a8f",
    "cluster": "#0b6470",
    "running": "#165a9f",
    "stopping": "#7a4f00",
    "failed": "#b0241b",
    "aborted": "#7a4f00",
    "completed": "#1c6b2d",
}

#: The page's looks: one colour each (the heading, the stripe, the bar).
LOOKS = ("queued", "cluster", "running", "stopping", "failed", "aborted", "completed")

#: (text colour, background) pairs that the page draws; each look's colour is
#: its heading's, on the page background.
TEXT_PAIRS = [
    ("text", "page"),
    ("muted", "page"),
    ("text", "panel"),
    *((look, "page") for look in LOOKS),
]

_STYLE = (
    "*{box-sizing:border-box}"
    "body{margin:0;padding:12px;font:16px/1.45 system-ui,sans-serif;"
    "color:%(text)s;background:%(page)s;overflow-wrap:anywhere}"
    "main{max-width:40em;margin:0 auto;padding:2px 0 2px 12px;border-left:4px solid var(--s)}"
    "h1{margin:0 0 8px;font-size:24px;line-height:1.2;color:var(--s)}"
    ".k,dt{color:%(muted)s}.k{margin:0;font-size:14px}"
    "p{margin:8px 0}"
    "progress{display:block;width:100%%;height:20px;margin:12px 0 4px;border:0;"
    "border-radius:4px;background:%(track)s;color:var(--s);-webkit-appearance:none;"
    "appearance:none}"
    "::-webkit-progress-bar{background:%(track)s;border-radius:4px}"
    "::-webkit-progress-value{background:var(--s);border-radius:4px}"
    "::-moz-progress-bar{background:var(--s)}"
    ".n{font-size:20px;font-weight:600;margin:0}"
    "dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 12px;margin:12px 0}"
    "dd{margin:0}dd,pre,.m{unicode-bidi:isolate}"
    "h2{font-size:16px;margin:12px 0 4px}"
    "pre{background:%(panel)s;padding:8px;margin:0;white-space:pre-wrap;"
    "font:13px/1.4 ui-monospace,monospace}"
) % PALETTE + "".join(f".{look}{{--s:{PALETTE[look]}}}" for look in LOOKS)

# Characters that have no business on a page: C0 and C1 controls but tab,
# newline and carriage return, and lone surrogates (which UTF-8 cannot carry).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# The CSP forbids everything the page does not need: scripts, fetches,
# frames, forms, images; only the inline style sheet is allowed.
_HEAD = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width,initial-scale=1">'
    '<meta http-equiv="Content-Security-Policy" '
    "content=\"default-src 'none';style-src 'unsafe-inline'\">"
)


def format_duration(seconds: float) -> str:
    """``75`` -> ``1 min 15 s``; ``3720`` -> ``1 h 2 min``; never negative."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def format_estimate(seconds: float) -> str:
    """
    An estimated duration, rounded as coarsely as it deserves.

    ``about 3 min`` (at least 1), and above an hour to 5 minutes
    (``about 2 h 15 min``): an estimate to the second would claim a precision
    that a linear guess from the percent does not have.
    """
    seconds = max(0.0, seconds)
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"about {minutes} min"
    hours, rest = divmod(5 * round(seconds / 300), 60)
    return f"about {hours} h {rest} min" if rest else f"about {hours} h"


def describe_exit(record: RunRecord) -> str | None:
    """How the child ended, in words, if it did."""
    if record.exit_signal is not None:
        return f"killed by signal {record.exit_signal}"
    if record.exit_code is not None:
        return f"exit status {record.exit_code}"
    return None


def estimate_time_left(record: RunRecord, now: float) -> float | None:
    """
    Seconds a running run may still need, or None when it cannot be told.

    A linear guess from the elapsed time and the percent, only once both are
    large enough to mean something, and never for a run that is stopping,
    has ended, or reports 100 % (then it is finishing, for an unknown time).
    Never negative: the elapsed time is never negative and percent <= 100.
    """
    if record.state is not RunState.RUNNING or record.abort_requested:
        return None
    percent = _percent(record)
    elapsed = record.elapsed(now)
    if not ESTIMATE_MIN_PERCENT <= percent < 100 or elapsed < ESTIMATE_MIN_ELAPSED:
        return None
    return elapsed * (100 - percent) / percent


def render_status_page(
    record: RunRecord,
    now: float,
    queue_position: int | None = None,
    *,
    cluster: ClusterQueue | None = None,
) -> str:
    """
    The status page of ``record`` at time ``now``, as HTML text.

    ``queue_position`` is the run's place in this service's own queue (1 is
    next); ``cluster`` says that the run's job waits in a cluster's queue
    (it only counts while the record is RUNNING).
    """
    state = record.state
    stopping = state is RunState.RUNNING and record.abort_requested
    if state is RunState.RUNNING and cluster is not None:
        look = "cluster"
    else:
        look = "stopping" if stopping else state.value
    title = "Stopping" if stopping else _TITLES[look]
    body = _BODIES[look](record, now, queue_position, cluster)
    program = _text(record.program, _NAME_CHARS)
    return (
        f"{_HEAD}<title>{program}: {title}</title><style>{_STYLE}</style></head>"
        f'<body class="{state.value}"><main class="{look}">'
        f'<p class="k">{program}</p><h1>{title}</h1>{body}</main></body></html>'
    )


def encode_page(html: str) -> str:
    """The page as the base64 text that ``status_base64`` carries."""
    return base64.b64encode(html.encode("utf-8")).decode("ascii")


# -- the states ------------------------------------------------------------------

_TITLES = {
    "queued": "Queued",
    "cluster": "Queued on the cluster",
    "running": "Running",
    "completed": "Finished",
    "failed": "Failed",
    "aborted": "Aborted",
}

#: What a state's part of the page is made from: the record, the time, the
#: position in the service's queue and the cluster's report.
_Body = Callable[[RunRecord, float, int | None, ClusterQueue | None], str]

_STOPPING = "<p>Stopping: an abort was asked for; the program is being stopped.</p>"


def _queued(
    record: RunRecord, now: float, position: int | None, cluster: ClusterQueue | None
) -> str:
    where = f", position {int(position)}" if position is not None else ""
    waiting = format_duration(max(0.0, now - record.created_at))
    lead = f"<p>Queued{where}: it starts when one of this service's slots is free.</p>"
    return lead + _rows([("Waiting", waiting), ("Run", record.service_id)])


def _cluster(
    record: RunRecord, now: float, position: int | None, cluster: ClusterQueue | None
) -> str:
    assert cluster is not None
    lead = (
        _STOPPING
        if record.abort_requested
        else "<p>Submitted: the job waits in the cluster's queue for the scheduler to start it.</p>"
    )
    rows = [
        ("Job ID", cluster.job_id),
        ("Slurm state", cluster.state),
        ("Slurm reason", cluster.reason),
        ("Waiting", format_duration(record.elapsed(now))),
        ("Run", record.service_id),
    ]
    return lead + _rows([(k, v) for k, v in rows if v])


def _running(
    record: RunRecord, now: float, position: int | None, cluster: ClusterQueue | None
) -> str:
    percent = _percent(record)
    parts = [
        f'<progress value="{percent}" max="100" aria-label="Progress">{percent} %</progress>'
        f'<p class="n">{percent} %</p>'
    ]
    if record.message:
        parts.append(f'<p class="m">{_text(record.message, _MESSAGE_CHARS)}</p>')
    if record.abort_requested:
        parts.append(_STOPPING)
    rows = [("Elapsed", format_duration(record.elapsed(now)))]
    left = estimate_time_left(record, now)
    if left is not None:
        rows.append(("Time left", format_estimate(left)))
    rows.append(("Run", record.service_id))
    parts.append(_rows(rows))
    return "".join(parts)


def _ended(lead: str) -> _Body:
    def body(
        record: RunRecord, now: float, position: int | None, cluster: ClusterQueue | None
    ) -> str:
        rows = []
        if record.state is RunState.FAILED and record.failure_reason:
            rows.append(("Reason", record.failure_reason))
        exit_text = describe_exit(record)
        if exit_text:
            rows.append(("Ended with", exit_text))
        rows += [("Elapsed", format_duration(record.elapsed(now))), ("Run", record.service_id)]
        return f"<p>{lead}</p>{_rows(rows)}{_tail(record.output_tail)}"

    return body


_BODIES: dict[str, _Body] = {
    "queued": _queued,
    "cluster": _cluster,
    "running": _running,
    "stopping": _running,
    "completed": _ended("Completed: the program finished and its result is ready."),
    "failed": _ended("The run failed and has no result."),
    "aborted": _ended("Aborted: the run was stopped on request."),
}


# -- helpers ---------------------------------------------------------------------


def _percent(record: RunRecord) -> int:
    return max(0, min(100, int(record.percent)))


def _clip(text: str, limit: int) -> str:
    """At most ``limit`` characters; a cut text ends with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _text(text: str, limit: int) -> str:
    """Hostile text made safe to put in HTML: cut, cleaned and escaped."""
    return escape(_UNPRINTABLE.sub("\ufffd", _clip(text, limit)))


def _rows(rows: list[tuple[str, str]]) -> str:
    """A definition list; labels are ours, values are escaped."""
    items = (f"<dt>{label}</dt><dd>{_text(value, _REASON_CHARS)}</dd>" for label, value in rows)
    return f"<dl>{''.join(items)}</dl>"


def _tail(lines: list[str]) -> str:
    """The last lines of the program's output, each cut, all escaped."""
    if not lines:
        return ""
    shown = "\n".join(_clip(line, PAGE_LINE_CHARS) for line in lines[-PAGE_TAIL_LINES:])
    return f"<h2>Last lines of the program's output</h2><pre>{_text(shown, len(shown))}</pre>"
