"""
The Twisted resource that serves one SOAP application and its WSDL.

On top of Spyne's resource (fixed by :mod:`waiter_service.spyne_compat`):

- the WSDL is built for the URL the client used and cached per URL (Spyne
  caches the first one it builds for everybody, so one request with a
  forged ``Host`` header would send every later client elsewhere);
- an error that escapes Spyne becomes a SOAP Server fault, never Twisted's
  HTML error page.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from twisted.logger import Logger
from twisted.web.server import Request

from ..spyne_compat import TwistedWebResource, reconstruct_url, soap_fault_bytes

log = Logger()

#: How many WSDL documents (one per distinct URL) are kept.
WSDL_CACHE_SIZE = 16


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

    def __init__(self, app: Any, max_body: int) -> None:
        super().__init__(app, max_content_length=max_body)
        self._wsdl_cache: OrderedDict[str, bytes] = OrderedDict()

    def render(self, request: Request) -> Any:
        try:
            if wants_wsdl(request):
                return self.render_wsdl(request)
            return self.handle_rpc(request)
        except Exception:
            log.failure("unexpected error while serving a SOAP request")
            request.setResponseCode(500)
            request.setHeader(b"content-type", b"text/xml; charset=utf-8")
            return soap_fault_bytes("Server", "internal error")

    def render_wsdl(self, request: Request) -> bytes:
        url = reconstruct_url(request).split("?", 1)[0]
        wsdl = self._wsdl_cache.get(url)
        if wsdl is None:
            interface = self.http_transport.doc.wsdl11
            interface.build_interface_document(url)
            wsdl = interface.get_interface_document()
            self._wsdl_cache[url] = wsdl
            if len(self._wsdl_cache) > WSDL_CACHE_SIZE:
                self._wsdl_cache.popitem(last=False)
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return wsdl
