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

from twisted.internet.defer import Deferred
from twisted.logger import Logger

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


def to_fault(error: Exception) -> Fault:
    """The SOAP fault for an error of the core; safe texts only."""
    if isinstance(error, (InvalidInput, InputError)):
        return Fault("Client.InvalidInput", str(error))
    if isinstance(error, UnknownRun):
        return Fault("Client.UnknownServiceID", "no run has this serviceID")
    if isinstance(error, ExpiredRun):
        return Fault(
            "Client.ExpiredServiceID",
            "this run has expired: it ended long ago and its results were removed",
        )
    if isinstance(error, ServiceBusy):
        return Fault("Server.Busy", str(error))
    if isinstance(error, ServiceTrouble):
        return Fault("Server.Unavailable", str(error))
    return InternalError(error)


def loggable(service_id: object) -> str:
    """A serviceID as it may appear in the log: as it is if valid, else cut."""
    try:
        return check_service_id(service_id)  # type: ignore[arg-type]
    except InvalidInput:
        return "(invalid) " + repr(service_id)[:40]


def _logged(operation: str, call: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``call`` for ``operation``, log one event, map errors to faults."""

    def run(service_id: str | None, *args: Any) -> Any:
        started = time.perf_counter()

        def done(outcome: str, result: Any = None) -> Any:
            log.info(
                "{operation} {service_id}: {outcome}",
                operation=operation,
                service_id=loggable(service_id),
                outcome=outcome,
                duration=time.perf_counter() - started,
            )
            return result

        try:
            result = call(service_id, *args)
        except Fault as f:
            done(f.faultcode)
            raise
        except (InvalidInput, InputError, UnknownRun, ExpiredRun, ServiceTrouble) as e:
            fault = to_fault(e)
            done(fault.faultcode)
            raise fault from None
        except Exception:
            log.failure("{operation} failed", operation=operation)
            done("Server")
            raise InternalError(None) from None
        if isinstance(result, Deferred):

            def failed(failure: Any) -> Any:
                log.failure("{operation} failed", failure, operation=operation)
                done("Server")
                raise InternalError(None)

            return result.addCallbacks(lambda r: done("ok", r), failed)
        return done("ok", result)

    return run


def build_service(program: Program, manager: RunManager) -> type[ServiceBase]:
    """A Spyne service class for ``program``, backed by ``manager``."""
    field_names = [f.name for f in program.input_fields]
    out_names = ["status_base64", *program.output_names]
    out_types = [Unicode] * len(out_names)

    def start_call(service_id: str | None, *args: Any) -> tuple[str, ...]:
        *values, extra = args
        extra_parameters = parse_extra_parameters(extra)
        answer = manager.start(
            service_id, dict(zip(field_names, values, strict=True)), extra_parameters
        )
        return (answer.status, *answer.outputs)

    def status_call(service_id: str | None) -> tuple[str, ...]:
        answer = manager.status(service_id)
        return (answer.status, *answer.outputs)

    start_logged = _logged(program.start_operation, start_call)
    status_logged = _logged("getServiceStatus", status_call)
    abort_logged = _logged("abortService", manager.abort)
    notify_logged = _logged("notifyService", manager.notify)

    def start(ctx: Any, serviceID: str, sessionToken: str, *args: Any) -> Any:
        return start_logged(serviceID, *args)

    start.__name__ = start.__qualname__ = program.start_operation

    def getServiceStatus(ctx: Any, serviceID: str, sessionToken: str) -> Any:
        return status_logged(serviceID)

    def abortService(ctx: Any, serviceID: str, sessionToken: str) -> Any:
        return abort_logged(serviceID)

    def notifyService(ctx: Any, sessionToken: str, serviceID: str, message: str) -> Any:
        return notify_logged(serviceID, message)

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
