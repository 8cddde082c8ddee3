"""
The command line of ``waiter-client``: its options, commands and help.

Apart from :mod:`.main` so that the commands read without the argparse
set-up around them; ``environ`` is a parameter so that tests choose the
variables the defaults come from.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Mapping
from typing import Any

from .outcome import EPILOG
from .result import MODES

PROG = "waiter-client"

DESCRIPTION = """\
Start, watch, abort and message runs of a waiter service (the CloudFlow
asynchronous SOAP service), as a workflow manager would.

  run      start a run and follow it to its end with a live progress bar;
           Ctrl-C aborts the run (abortService) and exits 4
  start    start a run and print its serviceID and state
  status   a run's state, progress, failure reason and output, or result
  abort    abortService
  notify   notifyService: one line for the running program
           (the waiter understands "finish" and "fail REASON")

Put global options before or after the command.  With --json, every command
prints JSON objects on stdout (run: one per change, then a final one with
"event": "end"); errors still get one line on stderr."""


def positive(text: str) -> float:
    """argparse type: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 86400 * 365:
        raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
    return value


def _common(parser: argparse.ArgumentParser, top: bool, environ: Mapping[str, str]) -> None:
    """Global options, on the main parser and (without defaults) on each command."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument(
        "--wsdl",
        metavar="URL",
        default=default(environ.get("WAITER_WSDL")),
        help="the service's WSDL, or its endpoint (?wsdl is added); default $WAITER_WSDL",
    )
    parser.add_argument(
        "--token",
        metavar="T",
        default=default(environ.get("WAITER_TOKEN", "")),
        help="session token; default $WAITER_TOKEN, else empty (fine when the server does not"
        " check tokens). The variable keeps it out of ps",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=positive,
        default=default(30.0),
        help="longest wait for one HTTP answer, in seconds (default 30)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="JSON objects on stdout instead of text, no progress bar",
    )
    parser.add_argument(
        "--result-encoding",
        choices=MODES,
        default=default("auto"),
        help="how to read a result: auto (decode base64 of UTF-8 text, else as sent;"
        " the default), base64, raw",
    )


def _start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--service-id", metavar="ID", help="the run's serviceID (default: a new one, printed)"
    )
    parser.add_argument(
        "--seconds", metavar="N", type=int, help="secondsToWait (default: the server's, 300)"
    )
    parser.add_argument("--extra", metavar="K=V,...", help="extraParameters, sent as given")


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    """The command line; ``environ`` gives the defaults of --wsdl and --token."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser, top=True, environ=environ)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=textwrap.fill(summary, 79),
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(sub, top=False, environ=environ)
        return sub

    run = command(
        "run",
        "Start a run and follow it to its end: a live bar on a terminal, a line per change"
        " otherwise, then the state and the decoded result. Ctrl-C aborts the run"
        " (abortService), shows its final state and exits 4.",
    )
    _start_options(run)
    run.add_argument(
        "--interval",
        metavar="S",
        type=positive,
        default=2.0,
        help="seconds between two getServiceStatus calls (default 2)",
    )
    _start_options(command("start", "Start a run; print its serviceID and state."))
    command(
        "status",
        "Show a run's state, with its reason and output if it failed, its result if it"
        " completed (getServiceStatus; if that answers UNCHANGED, startWaiter of the same"
        " serviceID, which starts nothing and answers the run's page).",
    ).add_argument("service_id", metavar="ID")
    command("abort", "Abort a run (abortService).").add_argument("service_id", metavar="ID")
    notify = command("notify", "Send a one-line message to a running program (notifyService).")
    notify.add_argument("service_id", metavar="ID")
    notify.add_argument("message", metavar="MESSAGE")
    return parser
