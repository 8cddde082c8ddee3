"""
The waiter: waits, reports its progress, then writes a result.

    python waiter_main.py SECONDS STATUSFILE RESULTFILE

The command line of the CloudFlow tutorial's waiter, runnable on its own.
It writes its progress (a whole percentage) to STATUSFILE and prints it on
stdout as ``progress <percent>``; when done it writes RESULTFILE, and only
then 100 to STATUSFILE.  Both files are replaced atomically.

It understands two messages, one per line on stdin (the service's
notifyService passes them on): ``finish`` finishes at once, as if the time
were up; ``fail [reason]`` prints the reason on stderr and exits with
status 1, writing no result (to try a workflow's failure path).

This file uses only the standard library: the service starts it with
``python -I -S`` for a fast start.
"""

from __future__ import annotations

import os
import selectors
import sys
import time

USAGE = "usage: waiter SECONDS STATUSFILE RESULTFILE"


def atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


#: Shortest time between two progress reports, in seconds (the first and
#: the last are always made).
REPORT_INTERVAL = 1.0


class Reporter:
    """Progress to the status file and to stdout (while stdout is open)."""

    def __init__(self, status_file: str, clock=time.monotonic) -> None:
        self.status_file = status_file
        self.clock = clock
        self.last: int | None = None
        self.last_time = float("-inf")
        self.stdout_open = True

    def report(self, percent: int) -> None:
        now = self.clock()
        if percent == self.last:
            return
        if 0 < percent < 100 and now - self.last_time < REPORT_INTERVAL:
            return
        self.last = percent
        self.last_time = now
        atomic_write(self.status_file, f"{percent}\n")
        if self.stdout_open:
            try:
                sys.stdout.write(f"progress {percent}\n")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                # The server went away: keep going, the status file remains
                # (a restarted server adopts this run and reads it there).
                self.stdout_open = False
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.dup2(devnull, sys.stderr.fileno())


class Failed(Exception):
    """Told to fail, with this reason."""


def wait(seconds: int, reporter: Reporter, clock=time.monotonic) -> float:
    """Wait ``seconds`` (less if told to finish); return the time waited.

    Raises Failed when told to fail.
    """
    start = clock()
    tick = min(1.0, max(seconds / 100.0, 0.05))
    messages = Messages(sys.stdin)
    reporter.report(0)
    while True:
        waited = clock() - start
        if waited >= seconds:
            return waited
        reporter.report(min(99, int(waited * 100 / seconds)))
        for line in messages.wait(min(tick, seconds - waited)):
            if line == "finish":
                return clock() - start
            if line.split(None, 1)[:1] == ["fail"]:
                raise Failed(line[4:].strip() or "told to fail")
            print(f"waiter: ignored message {line[:80]!r}", file=sys.stderr)


class Messages:
    """Whole lines from stdin, without blocking longer than asked."""

    def __init__(self, stream) -> None:
        self.selector = selectors.DefaultSelector()
        self.pending = b""
        try:
            self.fd = stream.fileno()
            self.selector.register(self.fd, selectors.EVENT_READ)
        except (ValueError, OSError, AttributeError):
            self.fd = None

    def wait(self, timeout: float) -> list[str]:
        """Sleep up to ``timeout`` seconds; return the lines that came."""
        if self.fd is None:
            time.sleep(timeout)
            return []
        if not self.selector.select(timeout):
            return []
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.selector.unregister(self.fd)
            self.fd = None
        self.pending += chunk
        *lines, self.pending = self.pending.split(b"\n")
        return [line.decode("utf-8", "replace").strip() for line in lines]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        seconds = int(argv[0])
    except ValueError:
        seconds = -1
    if seconds < 0:
        print("waiter: SECONDS must be a whole number, 0 or more", file=sys.stderr)
        return 2
    status_file, result_file = argv[1], argv[2]
    reporter = Reporter(status_file)
    try:
        waited = wait(seconds, reporter)
        atomic_write(result_file, f"Waited {waited:.1f} of {seconds} seconds.\n")
        reporter.report(100)
    except Failed as e:
        print(f"waiter: failing as told: {str(e)[:500]}", file=sys.stderr)
        return 1
    except OSError as e:
        # One line, no traceback: it ends up on the user's status page.
        print(f"waiter: cannot write its files: {e.strerror}", file=sys.stderr)
        return 3
    return 0


def console_main() -> None:
    """Entry point of the ``waiter`` console script."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    console_main()
