"""The web site: the SOAP endpoint under its context root."""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Site

from ..auth.checker import TokenChecker
from ..ops.access import AccessLogSite
from ..runs.manager import RunManager
from ..runs.program import Program
from ..spyne_compat import (
    DEFAULT_MAX_BODY,
    DeferredAwareApplication,
    DoctypeFreeSoap11,
    soap_request_factory,
)
from ..validation import parse_context_root
from .fast_status import FastStatus
from .operations import NAMESPACE, CallObserver, Operations, build_service
from .resource import NotHere, SoapResource

__all__ = ["build_application", "build_site", "parse_context_root"]


def build_application(
    program: Program,
    manager: RunManager,
    checker: TokenChecker | None = None,
    operations: Operations | None = None,
) -> DeferredAwareApplication:
    """The Spyne application of one program: SOAP 1.1 in and out."""
    return DeferredAwareApplication(
        [build_service(program, manager, checker, operations)],
        tns=NAMESPACE,
        name=program.name,
        in_protocol=DoctypeFreeSoap11(validator="lxml"),
        out_protocol=DoctypeFreeSoap11(),
    )


def build_site(
    program: Program,
    manager: RunManager,
    context_root: list[str],
    max_body: int = DEFAULT_MAX_BODY,
    timeout: float = 60.0,
    reactor: IReactorTime | None = None,
    checker: TokenChecker | None = None,
    fast_path: bool = True,
    log_polls: bool = False,
    on_call: CallObserver | None = None,
    extra: Mapping[str, Resource] | None = None,
    log_debug: bool = False,
) -> Site:
    """
    A ``Site`` serving ``<context-root>/<program name>`` (and its WSDL), and
    each of ``extra`` (e.g. ``health``) at ``<context-root>/<name>``.
    ``log_debug``: the log takes debug events, so successful polls and HTTP
    access lines are logged (at debug); else they are not even built.
    """
    root = NotHere()
    node: Resource = root
    for segment in context_root:
        child = NotHere()
        node.putChild(segment.encode("ascii"), child)
        node = child
    endpoint_path = "/" + "/".join([*context_root, program.name])
    for name, resource in (extra or {}).items():
        node.putChild(name.encode("ascii"), resource)
    operations = Operations(
        program, manager, checker, log_polls=log_polls, on_call=on_call, debug_polls=log_debug
    )
    fast = FastStatus(operations, NAMESPACE, program.output_names) if fast_path else None
    soap = SoapResource(
        build_application(program, manager, checker, operations),
        endpoint_path,
        max_body,
        fast,
        on_call=on_call,
    )
    node.putChild(program.name.encode("ascii"), soap)
    site = AccessLogSite(
        root,
        requestFactory=soap_request_factory(max_body),
        timeout=timeout,
        reactor=reactor,
        # SOAP bodies are never HTML forms: skip Twisted's parsing of their
        # Content-Type (an e-mail header parser, a fifth of a poll's time).
        parsePOSTFormSubmission=False,
    )
    site.access_log = log_debug
    site.displayTracebacks = False
    site.noisy = False
    return site
