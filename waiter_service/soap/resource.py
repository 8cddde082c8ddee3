"""
The Twisted resource that serves one SOAP application and its WSDL.

On top of Spyne's resource (fixed by :mod:`waiter_service.spyne_compat`):

- the WSDL is built once, and each client gets it with the endpoint address
  as that client reaches it (Spyne caches the first one it builds for
  everybody, so one request with a forged ``Host`` header would send every
  later client, session tokens and all, elsewhere);
- an error that escapes Spyne becomes a SOAP Server fault, never Twisted's
  HTML error page;
- a call that Spyne refuses before it reaches an operation (bad XML, a
  schema error, an unknown operation) is logged and counted like any other
  call: one ``soap_call`` event, and the call observer, with the operation
  if it is one of ours (else ``unknown``) and Spyne's fault code.
"""

from __future__ import annotations

import time
from typing import Any
from xml.sax.saxutils import quoteattr

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from ..spyne_compat import TwistedWebResource, Wsdl11, base_url, soap_fault_bytes
from .fast_status import FastStatus
from .operations import CallObserver

log = Logger()

#: The address the WSDL is built with, replaced in each answer.
_PLACEHOLDER = "http://waiter-service.invalid/endpoint"


def wants_wsdl(request: Request) -> bool:
    """``GET ...?wsdl`` (any case) or ``GET ....wsdl``."""
    if request.method not in (b"GET", b"HEAD"):
        return False
    path, _, query = request.uri.partition(b"?")
    if path.endswith(b".wsdl"):
        return True
    return any(item.split(b"=", 1)[0].lower() == b"wsdl" for item in query.split(b"&"))


class SoapResource(TwistedWebResource):  # type: ignore[misc]
    """Serves SOAP POSTs and ``?wsdl`` GETs for one Spyne application."""

    def __init__(
        self,
        app: Any,
        endpoint_path: str,
        max_body: int,
        fast: FastStatus | None = None,
        on_call: CallObserver | None = None,
    ) -> None:
        super().__init__(app, max_content_length=max_body)
        self.endpoint_path = endpoint_path
        self.fast = fast
        self.on_call = on_call
        #: Spyne's "{namespace}name" of each operation -> its name.
        self.operations = {key: key.rsplit("}", 1)[-1] for key in app.interface.service_method_map}
        self._wsdl_template: bytes | None = None

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        # SOAP has one endpoint: ".../Waiter/" is it, anything below is not.
        # (Spyne's own traversal serves every sub-path, for its HttpRpc.)
        return self if path == b"" else NotHere()

    def render(self, request: Request) -> Any:
        request.waiter_started = time.perf_counter()  # type: ignore[attr-defined]
        try:
            if wants_wsdl(request):
                return self.render_wsdl(request)
            if (
                self.fast is not None
                and request.method == b"POST"
                and request.getHeader(b"content-type") is not None
            ):
                call = self.fast.parse(request.content.getvalue())
                if call is not None:
                    return self.fast.render(request, *call)
            return self.handle_rpc(request)
        except Exception:
            log.failure("unexpected error while serving a SOAP request")
            request.setResponseCode(500)
            request.setHeader(b"content-type", b"text/xml; charset=utf-8")
            return soap_fault_bytes("Server", "internal error")

    def handle_rpc_error(self, p_ctx: Any, others: Any, error: Any, request: Request) -> Any:
        if error is p_ctx.in_error:
            self.rejected(p_ctx, error, request)
        return super().handle_rpc_error(p_ctx, others, error, request)

    def rejected(self, p_ctx: Any, error: Any, request: Request) -> None:
        """A call refused before any operation ran: log it and count it."""
        started = getattr(request, "waiter_started", None)
        duration = time.perf_counter() - started if started is not None else 0.0
        # The client named the operation: only ever one of ours, or "unknown".
        operation = self.operations.get(getattr(p_ctx, "method_request_string", None), "unknown")
        code = getattr(error, "faultcode", None)
        outcome = code if isinstance(code, str) and len(code) <= 64 else "Server"
        if self.on_call is not None:
            self.on_call(operation, outcome, duration)
        log.info(
            "{operation}: refused, {outcome}",
            event="soap_call",
            operation=operation,
            service_id=None,
            outcome=outcome,
            duration=duration,
        )

    def render_wsdl(self, request: Request) -> bytes:
        if self._wsdl_template is None:
            document = Wsdl11(self.app.interface)
            document.build_interface_document(_PLACEHOLDER)
            self._wsdl_template = document.get_interface_document()
        address = quoteattr(base_url(request) + self.endpoint_path).encode("utf-8")
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return self._wsdl_template.replace(
            b'location="%s"' % _PLACEHOLDER.encode("ascii"), b"location=" + address
        )


class NotHere(Resource):
    """
    Every path that is not the endpoint: a SOAP fault (404), never one of
    Twisted's HTML pages.  Also the nodes of the context root.
    """

    isLeaf = False

    def getChild(self, path: bytes, request: Request) -> Resource:
        return self

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return soap_fault_bytes("Client.NotFound", "no service at this path")
