"""
``waiter-client``: try a waiter deployment from a console.

    waiter-client --wsdl URL [--token T] start|status|abort|notify|run ...

The commands and what they print (the command line: :mod:`.options`).  The
network is behind ``connect`` (:class:`.soap.WaiterClient` unless a test
gives another), time behind ``clock`` and ``sleep``, the terminal behind
``stdout``/``stderr``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from .display import JsonLines, LiveBar, PlainLines
from .follow import Follower
from .options import PROG, build_parser
from .outcome import ExitCode, exit_code
from .page import PageError
from .report import field, human_report, json_line, snapshot_json
from .soap import Answer, ClientError, SoapFault, WaiterClient
from .status import UNCHANGED, Snapshot, interpret
from .text import one_line

#: Longest time the client trusts UNCHANGED answers before it asks for the
#: page again (see :meth:`Commands.poll`).
REFRESH_AFTER = 20.0

#: The fault code of a call about a serviceID the server has no run for.
UNKNOWN_SERVICE_ID = "Client.UnknownServiceID"


class Client(Protocol):
    """The calls the commands need (:class:`.soap.WaiterClient`)."""

    def start(
        self, service_id: str, token: str, seconds: int | None, extra: str | None
    ) -> Answer: ...

    def status(self, service_id: str, token: str) -> Answer: ...

    def abort(self, service_id: str, token: str) -> bool: ...

    def notify(self, service_id: str, token: str, message: str) -> str: ...


def new_service_id() -> str:
    """A fresh serviceID that the service accepts: ``client-<UTC time>-<random>``."""
    return f"client-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


@dataclass
class Console:
    """Where and how the client writes."""

    stdout: TextIO
    stderr: TextIO
    json: bool

    def lines(self, lines: Sequence[str]) -> None:
        for line in lines:
            self.stdout.write(line + "\n")
        self.stdout.flush()

    def object(self, **fields: Any) -> None:
        self.stdout.write(json_line(**fields) + "\n")
        self.stdout.flush()

    def note(self, text: str) -> None:
        """One line on stderr."""
        self.stderr.write(f"{PROG}: {text}\n")
        self.stderr.flush()

    def error(self, command: str, service_id: str | None, error: ClientError) -> ExitCode:
        self.note(error.message)
        if self.json:
            detail: dict[str, Any] = {"kind": error.kind, "message": error.message}
            if isinstance(error, SoapFault):
                detail.update(code=error.code, message=error.fault_message)
            self.object(
                command=command, serviceID=service_id, error=detail, exit_code=int(ExitCode.ERROR)
            )
        return ExitCode.ERROR


class Commands:
    """The five commands, on a connected client."""

    def __init__(
        self,
        args: argparse.Namespace,
        client: Client,
        console: Console,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        columns: Callable[[], int],
    ) -> None:
        self.args = args
        self.client = client
        self.console = console
        self.clock = clock
        self.sleep = sleep
        self.columns = columns
        #: When the client last got a page (or COMPLETED), on its clock.
        self.page_seen_at: float | None = None

    def poll(self, service_id: str, last: Snapshot | None) -> Snapshot:
        """
        getServiceStatus, made sure to tell the run's state.

        UNCHANGED means "nothing changed since this serviceID's previous
        poll", whoever polled: after a workflow manager's poll it hides the
        state from us (even a failed run's).  Then, if no page was seen yet
        or for REFRESH_AFTER seconds, the client asks startWaiter for the
        same serviceID, which by the service's contract starts nothing and
        answers the run's page.  Safe: UNCHANGED has just shown that the run
        exists for this token, and an expired serviceID is never reused.
        """
        token = self.args.token
        answer = self.client.status(service_id, token)
        if answer.status_base64 == UNCHANGED:
            seen = self.page_seen_at
            if last is None or seen is None or self.clock() - seen >= REFRESH_AFTER:
                answer = self.client.start(service_id, token, None, None)
        return self.snapshot(answer, last)

    def snapshot(self, answer: Answer, previous: Snapshot | None = None) -> Snapshot:
        try:
            return interpret(
                answer.status_base64, answer.result, previous, self.args.result_encoding
            )
        except PageError as error:
            raise ClientError("answer", f"unreadable status page: {error}") from None
        finally:
            if answer.status_base64 != UNCHANGED:
                self.page_seen_at = self.clock()

    def show(
        self, command: str, service_id: str, snapshot: Snapshot, elapsed: float | None = None
    ) -> ExitCode:
        """Print a run's final view for ``command``; the exit code it means."""
        code = exit_code(snapshot, command)
        if self.console.json:
            run_fields: dict[str, Any] = {}
            if elapsed is not None:
                run_fields = {"event": "end", "elapsed": round(elapsed, 1)}
            self.console.object(
                command=command,
                **run_fields,
                serviceID=service_id,
                **snapshot_json(snapshot),
                exit_code=int(code),
            )
        else:
            self.console.lines(human_report(service_id, snapshot, elapsed))
        return code

    def start(self) -> ExitCode:
        args = self.args
        service_id = args.service_id or new_service_id()
        try:
            answer = self.client.start(service_id, args.token, args.seconds, args.extra)
            return self.show("start", service_id, self.snapshot(answer))
        except ClientError as error:
            return self.console.error("start", service_id, error)

    def status(self) -> ExitCode:
        service_id = self.args.service_id
        try:
            return self.show("status", service_id, self.poll(service_id, None))
        except ClientError as error:
            return self.console.error("status", service_id, error)

    def abort(self) -> ExitCode:
        service_id = self.args.service_id
        try:
            success = self.client.abort(service_id, self.args.token)
        except ClientError as error:
            return self.console.error("abort", service_id, error)
        code = ExitCode.OK if success else ExitCode.ERROR
        if self.console.json:
            self.console.object(
                command="abort", serviceID=service_id, success=success, exit_code=int(code)
            )
        elif success:
            self.console.lines([field("run", one_line(service_id)), field("state", "aborted")])
        if not success:
            self.console.note("nothing to abort: the run had already ended")
        return code

    def notify(self) -> ExitCode:
        service_id = self.args.service_id
        try:
            response = self.client.notify(service_id, self.args.token, self.args.message)
        except ClientError as error:
            return self.console.error("notify", service_id, error)
        # The service's contract: "delivered ..." or "not delivered: why".
        delivered = not response.startswith("not delivered")
        code = ExitCode.OK if delivered else ExitCode.ERROR
        if self.console.json:
            self.console.object(
                command="notify",
                serviceID=service_id,
                response=response,
                delivered=delivered,
                exit_code=int(code),
            )
        elif delivered:
            self.console.lines([one_line(response)])
        if not delivered:
            self.console.note(one_line(response))
        return code

    def display(self, service_id: str) -> JsonLines | LiveBar | PlainLines:
        out = self.console.stdout
        if self.console.json:
            return JsonLines(out, self.clock, self.sleep, service_id)
        if out.isatty():
            encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "")
            return LiveBar(out, self.clock, self.sleep, self.columns, encoding == "utf8")
        return PlainLines(out, self.clock, self.sleep)

    def run(self) -> ExitCode:
        args = self.args
        service_id = args.service_id or new_service_id()
        display = self.display(service_id)
        follower = Follower(
            lambda last: self.poll(service_id, last),
            display,
        )
        if not self.console.json:
            hint = "  (Ctrl-C aborts it)" if isinstance(display, LiveBar) else ""
            self.console.lines([field("run", one_line(service_id)) + hint])
        started = False
        try:
            try:
                answer = self.client.start(service_id, args.token, args.seconds, args.extra)
                started = True
                final = follower.follow(self.snapshot(answer), args.interval)
            finally:
                display.close()
        except KeyboardInterrupt:
            return self.abort_interrupted(service_id, follower.last, display.elapsed, started)
        except ClientError as error:
            if started:
                self.console.note(f"the run may still go on: {PROG} status {one_line(service_id)}")
            return self.console.error("run", service_id, error)
        return self.show("run", service_id, final, display.elapsed())

    def abort_interrupted(
        self,
        service_id: str,
        last: Snapshot | None,
        elapsed: Callable[[], float],
        started: bool = True,
    ) -> ExitCode:
        """
        Ctrl-C during ``run``: abort the run, then show how it ended.

        Before startWaiter answered (``started`` false) the server may never
        have seen the start: an abort that finds no such run then means
        there is nothing to stop, which is not an error (exit 130).
        """
        self.console.note(f"Ctrl-C: aborting run {one_line(service_id)}")
        try:
            try:
                ended = not self.client.abort(service_id, self.args.token)
            except SoapFault as error:
                if started or error.code != UNKNOWN_SERVICE_ID:
                    raise
                self.console.note("interrupted before the run started")
                return ExitCode.INTERRUPTED
            if ended:
                self.console.note("the run had already ended")
            final = self.poll(service_id, last)
        except KeyboardInterrupt:
            self.console.note(
                f"interrupted again: the run may still go on ({PROG} abort {one_line(service_id)})"
            )
            return ExitCode.INTERRUPTED
        except ClientError as error:
            return self.console.error("run", service_id, error)
        return self.show("run", service_id, final, elapsed())


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    connect: Callable[[str, float], Client] = WaiterClient,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    columns: Callable[[], int] = lambda: shutil.get_terminal_size().columns,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """Run the command line ``argv``; the exit code."""
    stdout = stdout or _printable(sys.stdout)
    stderr = stderr or _printable(sys.stderr)
    parser = build_parser(environ)
    try:
        args = parser.parse_args(argv)
        if not args.wsdl:
            parser.error("--wsdl URL (or the WAITER_WSDL variable) is required")
    except SystemExit as exit:
        return int(exit.code or 0)
    console = Console(stdout, stderr, args.json)
    try:
        try:
            client = connect(args.wsdl, args.timeout)
        except ClientError as error:
            return console.error(args.command, getattr(args, "service_id", None), error)
        commands = Commands(args, client, console, clock, sleep, columns)
        handler: Callable[[], ExitCode] = getattr(commands, args.command)
        return int(handler())
    except KeyboardInterrupt:
        console.note("interrupted")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # Whoever read our output left (| head): nobody to tell, and nothing
        # more to flush at exit.
        if stdout is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.ERROR


def _printable(stream: TextIO) -> TextIO:
    """``stream``, writing ``?`` for what its encoding cannot show instead of failing."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")
    return stream
