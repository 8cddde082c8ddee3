"""
The waiter, as a program served by the core: the whole of what is specific
to it.  Wrapping another program means writing a module like this one.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs.process import MAX_LINE
from ..runs.program import InputError, InputField, Invocation, MissingOutput
from ..runs.progress import Progress, parse_progress_line
from ..runs.store import read_capped

SCRIPT = Path(__file__).with_name("waiter_main.py")

#: The tutorial's default wait.
DEFAULT_SECONDS = 300
#: Longest wait accepted unless configured otherwise: one day.
DEFAULT_MAX_SECONDS = 86400
#: Largest result file read back.
MAX_RESULT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Waiter:
    """Waits ``secondsToWait`` seconds, then says how long it waited."""

    max_seconds: int = DEFAULT_MAX_SECONDS
    python: str = sys.executable

    name = "Waiter"
    start_operation = "startWaiter"
    input_fields = (
        InputField(
            "secondsToWait",
            int,
            doc=f"how long to wait, in seconds (default {DEFAULT_SECONDS})",
        ),
    )
    output_names = ("result",)

    def check_inputs(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        seconds = raw.get("secondsToWait")
        if seconds is None:
            seconds = DEFAULT_SECONDS
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise InputError("secondsToWait must be a whole number")
        if seconds < 0:
            raise InputError("secondsToWait must not be negative")
        if seconds > self.max_seconds:
            raise InputError(f"secondsToWait must be at most {self.max_seconds}")
        return {"secondsToWait": seconds}

    def invocation(self, inputs: Mapping[str, Any], folder: Path) -> Invocation:
        return Invocation(
            [
                self.python,
                "-I",
                "-S",
                str(SCRIPT),
                str(inputs["secondsToWait"]),
                str(folder / "status"),
                str(folder / "result"),
            ]
        )

    def parse_line(self, line: str) -> Progress | None:
        return parse_progress_line(line[:MAX_LINE])

    def collect_outputs(self, folder: Path) -> dict[str, bytes]:
        try:
            return {"result": read_capped(folder / "result", MAX_RESULT_BYTES)}
        except FileNotFoundError:
            raise MissingOutput("the waiter wrote no result file") from None

    def read_progress(self, folder: Path) -> Progress | None:
        try:
            text = read_capped(folder / "status", 64).decode("ascii")
            return Progress(float(int(text.strip())))
        except (OSError, ValueError):
            return None

    def finished_outputs(self, folder: Path) -> dict[str, bytes] | None:
        # The waiter writes its result, then 100 to its status file: 100
        # means the result is complete.
        progress = self.read_progress(folder)
        if progress is None or progress.percent < 100:
            return None
        try:
            return self.collect_outputs(folder)
        except (MissingOutput, OSError, ValueError):
            return None
