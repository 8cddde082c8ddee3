"""
The four operations of a CloudFlow asynchronous service, for one program.

:func:`build_service` makes a Spyne service class whose start operation
takes the program's own inputs and returns its own outputs; the other three
operations are the same for every program.  Each operation only translates:
SOAP values in, a call on the :class:`RunManager`, SOAP values or a fault
out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ..auth.checker import AuthNotAllowed, AuthUnavailable, InvalidToken, OpenAccess, TokenChecker
from ..runs.manager import ExpiredRun, RunManager, ServiceBusy, ServiceTrouble, UnknownRun
from ..runs.program import InputError, InputField, Program
from ..spyne_compat import (
    Boolean,
    Fault,
    Integer,
    InternalError,
    ServiceBase,
    Unicode,
    rpc,
)
from ..validation import InvalidInput, check_service_id, parse_extra_parameters

log = Logger()

#: The WSDL's target namespace: the workflow manager registers a service by
#: its WSDL, so this must never change between releases.
NAMESPACE = "urn:waiter-service:cloudflow-async"

_REQUIRED_TEXT = Unicode(min_occurs=1, nillable=False)
_OPTIONAL_TEXT = Unicode(min_occurs=0)
_SCHEMA_TYPES: dict[type, Any] = {int: Integer, str: Unicode}


def schema_type(field: InputField) -> Any:
    """The Spyne type of a program's input, required or not, documented."""
    base = _SCHEMA_TYPES[field.kind]
    if field.required:
        return base(min_occurs=1, nillable=False, doc=field.doc)
    return base(min_occurs=0, doc=field.doc)


#: Errors of the core, and the faults they become (``None``: the error's own
#: text, written to be shown).  Order matters: subclasses first.  Any other
#: error is a Server fault that says nothing.
_FAULTS: list[tuple[type[Exception], str, str | None]] = [
    (InvalidToken, "Client.InvalidToken", "the session token is not valid"),
    (
        AuthUnavailable,
        "Server.AuthUnavailable",
        "cannot validate the session token now; try again later",
    ),
    (
        AuthNotAllowed,
        "Client.AuthNotAllowed",
        "extraParameters names an authentication manager that this service does not use",
    ),
    (InvalidInput, "Client.InvalidInput", None),
    (InputError, "Client.InvalidInput", None),
    (UnknownRun, "Client.UnknownServiceID", "no run has this serviceID"),
    (
        ExpiredRun,
        "Client.ExpiredServiceID",
        "this run has expired: it ended long ago and its results were removed",
    ),
    (ServiceBusy, "Server.Busy", None),
    (ServiceTrouble, "Server.Unavailable", None),
]


#: Every outcome of a call that reaches an operation: ``ok`` or a fault code
#: (the fixed set a metric may use as a label).
#: What Spyne answers to calls it refuses before any operation runs.
REFUSED = ("Client.SchemaValidationError", "Client.XMLSyntaxError", "Client.ResourceNotFound")
OUTCOMES = frozenset({"ok", "Server", *(code for _, code, _ in _FAULTS), *REFUSED})

#: Told ``(operation, outcome, duration in seconds)`` of every call (metrics).
CallObserver = Callable[[str, str, float], None]


def to_fault(error: Exception) -> Fault | None:
    """The SOAP fault for an error of the core, or None for an unexpected one."""
    for kind, code, text in _FAULTS:
        if isinstance(error, kind):
            return Fault(code, str(error) if text is None else text)
    return None


def loggable(service_id: object) -> str:
    """A serviceID as it may appear in the log: as it is if valid, else cut."""
    try:
        return check_service_id(service_id)  # type: ignore[arg-type]
    except InvalidInput:
        return "(invalid) " + repr(service_id)[:40]


def serve(
    operation: str,
    service_id: object,
    work: Callable[[], Any],
    ok_level: LogLevel | None = LogLevel.info,
    on_call: CallObserver | None = None,
) -> Deferred[Any]:
    """
    Run ``work`` (which may return a Deferred) for one SOAP call: tell
    ``on_call``, log one ``soap_call`` event with its outcome and duration
    (a success at ``ok_level``, or not at all if None; a fault at info),
    and turn errors into faults.
    """
    started = time.perf_counter()

    def logged(outcome: str) -> None:
        duration = time.perf_counter() - started
        if on_call is not None:
            on_call(operation, outcome, duration)
        level = LogLevel.info if outcome != "ok" else ok_level
        if level is None:
            return
        log.emit(
            level,
            "{operation} {service_id}: {outcome}",
            event="soap_call",
            operation=operation,
            service_id=loggable(service_id),
            outcome=outcome,
            duration=duration,
        )

    def ok(result: Any) -> Any:
        logged("ok")
        return result

    def failed(failure: Failure) -> Any:
        error = failure.value
        if isinstance(error, Fault):
            logged(error.faultcode)
            return failure
        fault = to_fault(error)
        if fault is not None:
            logged(fault.faultcode)
            raise fault
        log.failure("{operation} failed", failure, operation=operation)
        logged("Server")
        raise InternalError(None)

    return maybeDeferred(work).addCallbacks(ok, failed)


class Operations:
    """The operations of one program: token check, then the run manager."""

    def __init__(
        self,
        program: Program,
        manager: RunManager,
        checker: TokenChecker | None = None,
        log_polls: bool = False,
        on_call: CallObserver | None = None,
        debug_polls: bool = False,
    ) -> None:
        self.program = program
        self.manager = manager
        self.checker = checker or OpenAccess()
        # A successful poll is routine (every run, every 6 s): an info event
        # with log_polls, a debug one with debug_polls (the log takes debug
        # events), else none at all: not even built, on the hot path.
        # Failed polls and every other call are info events.
        self.log_polls = log_polls
        self.poll_level: LogLevel | None = (
            LogLevel.info if log_polls else LogLevel.debug if debug_polls else None
        )
        self.on_call = on_call
        self.field_names = [f.name for f in program.input_fields]

    def start(self, service_id: str | None, token: str | None, *args: Any) -> Deferred[Any]:
        *values, extra = args

        def work() -> Deferred[Any]:
            extra_parameters = parse_extra_parameters(extra)
            auth_url = extra_parameters.get("auth") if self.checker.enabled else None

            def started(owner: Any) -> tuple[str, ...]:
                inputs = dict(zip(self.field_names, values, strict=True))
                answer = self.manager.start(service_id, inputs, extra_parameters, owner)
                return (answer.status, *answer.outputs)

            return self.checker.identify(token, auth_url).addCallback(started)

        return serve(self.program.start_operation, service_id, work, on_call=self.on_call)

    def _for_run(
        self, operation: str, service_id: str | None, token: str | None, then: Callable[..., Any]
    ) -> Deferred[Any]:
        level = self.poll_level if operation == "getServiceStatus" else LogLevel.info
        if not self.checker.enabled:
            # Nothing to check: the hot path stays synchronous.
            return serve(operation, service_id, lambda: then(None), level, self.on_call)

        async def work() -> Any:
            identity = await self.checker.identify(token)
            try:
                return await maybeDeferred(then, identity)
            except UnknownRun:
                # The caller is known, but not to the manager that checked
                # this run's start: ask that one (if it is ours) about them.
                url = self.manager.auth_url_of(service_id)
                if identity is None or url is None or url == identity.auth_url:
                    raise
                try:
                    identity = await self.checker.identify(token, url)
                except (InvalidToken, AuthNotAllowed, AuthUnavailable):
                    raise UnknownRun(service_id) from None
                return await maybeDeferred(then, identity)

        return serve(
            operation, service_id, lambda: Deferred.fromCoroutine(work()), level, self.on_call
        )

    def status(self, service_id: str | None, token: str | None) -> Deferred[Any]:
        def answer(owner: Any) -> tuple[str, ...]:
            result = self.manager.status(service_id, owner)
            return (result.status, *result.outputs)

        return self._for_run("getServiceStatus", service_id, token, answer)

    def abort(self, service_id: str | None, token: str | None) -> Deferred[Any]:
        return self._for_run(
            "abortService", service_id, token, lambda owner: self.manager.abort(service_id, owner)
        )

    def notify(self, service_id: str | None, token: str | None, message: str | None) -> Any:
        return self._for_run(
            "notifyService",
            service_id,
            token,
            lambda owner: self.manager.notify(service_id, message, owner),
        )


def build_service(
    program: Program,
    manager: RunManager,
    checker: TokenChecker | None = None,
    operations: Operations | None = None,
) -> type[ServiceBase]:
    """A Spyne service class for ``program``, backed by ``manager``."""
    operations = operations or Operations(program, manager, checker)
    field_names = operations.field_names
    out_names = ["status_base64", *program.output_names]
    out_types = [Unicode] * len(out_names)

    def start(ctx: Any, serviceID: str, sessionToken: str, *args: Any) -> Any:
        return operations.start(serviceID, sessionToken, *args)

    start.__name__ = start.__qualname__ = program.start_operation

    def getServiceStatus(ctx: Any, serviceID: str, sessionToken: str) -> Any:
        return operations.status(serviceID, sessionToken)

    def abortService(ctx: Any, serviceID: str, sessionToken: str) -> Any:
        return operations.abort(serviceID, sessionToken)

    def notifyService(ctx: Any, sessionToken: str, serviceID: str, message: str) -> Any:
        return operations.notify(serviceID, sessionToken, message)

    in_types = [schema_type(f) for f in program.input_fields]
    members = {
        program.start_operation: rpc(
            _REQUIRED_TEXT,
            _REQUIRED_TEXT,
            *in_types,
            _OPTIONAL_TEXT,
            _args=("serviceID", "sessionToken", *field_names, "extraParameters"),
            _returns=tuple(out_types),
            _out_variable_names=tuple(out_names),
        )(start),
        "getServiceStatus": rpc(
            _REQUIRED_TEXT,
            _REQUIRED_TEXT,
            _returns=tuple(out_types),
            _out_variable_names=tuple(out_names),
        )(getServiceStatus),
        "abortService": rpc(
            _REQUIRED_TEXT,
            _REQUIRED_TEXT,
            _returns=Boolean,
            _out_variable_name="success",
        )(abortService),
        "notifyService": rpc(
            _REQUIRED_TEXT,
            _REQUIRED_TEXT,
            Unicode(min_occurs=1),
            _returns=Unicode,
            _out_variable_name="response",
        )(notifyService),
    }
    return type(f"{program.name}Service", (ServiceBase,), members)
