"""
The HTML status page that the portal shows while a run goes on.

A pure function of a run's record and the time: self-contained HTML (inline
CSS, no scripts, no external resources), every text from a run escaped.
"""

from __future__ import annotations

import base64
from html import escape

from .runs.record import RunRecord
from .runs.state import RunState

_STYLE = (
    "body{font:15px/1.4 system-ui,sans-serif;color:#1b1b1b;background:#fff;"
    "margin:0;padding:12px}"
    "h1{font-size:18px;margin:0 0 8px}"
    ".bar{background:#e3e3e3;border-radius:4px;height:18px;overflow:hidden}"
    ".fill{background:#1a6fb5;height:100%}"
    ".failed h1{color:#a4161a}.aborted h1{color:#6b4f00}.completed h1{color:#1e6b2f}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:8px 0}"
    "dt{color:#555}dd{margin:0;overflow-wrap:anywhere}"
    "pre{background:#f4f4f4;padding:8px;white-space:pre-wrap;overflow-wrap:anywhere;"
    "font-size:13px;margin:8px 0}"
)

_TITLES = {
    RunState.QUEUED: "Queued",
    RunState.RUNNING: "Running",
    RunState.COMPLETED: "Finished",
    RunState.FAILED: "Failed",
    RunState.ABORTED: "Aborted",
}


def format_duration(seconds: float) -> str:
    """``75`` -> ``1 min 15 s``; ``3720`` -> ``1 h 2 min``."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def describe_exit(record: RunRecord) -> str | None:
    """How the child ended, in words, if it did."""
    if record.exit_signal is not None:
        return f"killed by signal {record.exit_signal}"
    if record.exit_code is not None:
        return f"exit status {record.exit_code}"
    return None


def render_status_page(record: RunRecord, now: float, queue_position: int | None = None) -> str:
    """The status page of ``record`` at time ``now``, as HTML text."""
    state = record.state
    title = _TITLES[state]
    if state is RunState.RUNNING and record.abort_requested:
        title = "Stopping"
    rows = [("Run", record.service_id)]
    if state is RunState.QUEUED:
        rows.append(("Waiting", format_duration(max(0.0, now - record.created_at))))
    else:
        rows.append(("Elapsed", format_duration(record.elapsed(now))))
    parts = [f"<h1>{escape(record.program)}: {title}</h1>"]
    if state is RunState.QUEUED:
        where = f", position {queue_position}" if queue_position is not None else ""
        parts.append(f"<p>Queued{where}: it starts when a slot is free.</p>")
    if state is RunState.RUNNING:
        percent = record.percent
        parts.append(
            f'<div class="bar" role="progressbar" aria-valuemin="0" '
            f'aria-valuemax="100" aria-valuenow="{percent}" '
            f'aria-label="progress"><div class="fill" style="width:{percent}%">'
            f"</div></div><p>{percent} %</p>"
        )
        if record.message:
            parts.append(f"<p>{escape(record.message)}</p>")
    if state is RunState.FAILED and record.failure_reason:
        rows.append(("Reason", record.failure_reason))
    exit_text = describe_exit(record)
    if state.is_terminal and exit_text:
        rows.append(("Ended with", exit_text))
    parts.append(
        "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows) + "</dl>"
    )
    if state in (RunState.FAILED, RunState.ABORTED) and record.output_tail:
        tail = "\n".join(record.output_tail)
        parts.append(f"<p>Last lines of the program's output:</p><pre>{escape(tail)}</pre>")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(record.program)}: {title}</title><style>{_STYLE}</style>"
        f'</head><body class="{state.value}">' + "".join(parts) + "</body></html>"
    )


def encode_page(html: str) -> str:
    """The page as the base64 text that ``status_base64`` carries."""
    return base64.b64encode(html.encode("utf-8")).decode("ascii")
