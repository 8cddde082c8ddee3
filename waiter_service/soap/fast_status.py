"""
The hot path: ``getServiceStatus``, which the workflow manager sends for
every run every 6 s, answered without Spyne's per-call machinery.

A request that is a plain, well-formed ``getServiceStatus`` (one Body, no
Header, no DTD, the two elements in order, nothing else) is read with one
lxml parse; the answer goes through the same :class:`Operations` (token
check, ownership, logging, faults) and is written into a response skeleton
built once.  Everything else, and every doubt, goes to Spyne, which answers
as it always did.  The response bodies are Spyne's byte for byte (tested;
the HTTP framing of faults differs: a Content-Length, not chunks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request

from ..spyne_compat import Fault, soap_fault_bytes
from ..xmlsafe import PARSER, has_doctype

ENV = "http://schemas.xmlsoap.org/soap/envelope/"

log = Logger()


#: lxml writes a carriage return in text as a character reference (a bare
#: one would reach the client as a line feed).
_CR = {"\r": "&#13;"}


def _blank(text: str | None) -> bool:
    # XML's whitespace only: the schema refuses other blanks (U+00A0...).
    return text is None or not text.strip(" \t\r\n")


class FastStatus:
    """Answers plain getServiceStatus calls; says None to anything else."""

    def __init__(self, operations: Any, namespace: str, output_names: Sequence[str]) -> None:
        self.operations = operations
        self.call_tag = f"{{{namespace}}}getServiceStatus"
        self.id_tag = f"{{{namespace}}}serviceID"
        self.token_tag = f"{{{namespace}}}sessionToken"
        self.head = (
            "<?xml version='1.0' encoding='UTF-8'?>\n"
            f'<soap11env:Envelope xmlns:soap11env="{ENV}" xmlns:tns="{namespace}">'
            "<soap11env:Body><tns:getServiceStatusResponse>"
        ).encode()
        self.tail = b"</tns:getServiceStatusResponse></soap11env:Body></soap11env:Envelope>"
        self.fields = [
            (f"<tns:{name}>".encode(), f"</tns:{name}>".encode())
            for name in ("status_base64", *output_names)
        ]

    def parse(self, body: bytes) -> tuple[str, str] | None:
        """``(serviceID, sessionToken)`` of a plain call, else None (Spyne's turn)."""
        if b"getServiceStatus" not in body or b"<!" in body or b"<?xml-" in body:
            return None
        try:
            root = etree.fromstring(body, PARSER)
        except etree.XMLSyntaxError:
            return None
        if has_doctype(root):
            return None  # a DTD in an encoding the byte check cannot see
        if root.tag != f"{{{ENV}}}Envelope" or root.attrib or len(root) != 1:
            return None
        soap_body = root[0]
        if soap_body.tag != f"{{{ENV}}}Body" or soap_body.attrib or len(soap_body) != 1:
            return None
        call = soap_body[0]
        if call.tag != self.call_tag or call.attrib or len(call) != 2:
            return None
        service_id, token = call
        for element, tag in ((service_id, self.id_tag), (token, self.token_tag)):
            if element.tag != tag or element.attrib or len(element):
                return None
        if not all(_blank(e.text) for e in (root, soap_body, call)):
            return None
        if not all(_blank(e.tail) for e in (soap_body, call, service_id, token)):
            return None
        return service_id.text or "", token.text or ""

    def render(self, request: Request, service_id: str, token: str) -> Any:
        """Answer through the operations; the response is written when they are done."""

        def ok(outputs: Sequence[str]) -> None:
            parts = [self.head]
            for (opening, closing), value in zip(self.fields, outputs, strict=True):
                parts += [opening, escape(value, _CR).encode("utf-8"), closing]
            parts.append(self.tail)
            self._write(request, 200, b"".join(parts))

        def failed(failure: Failure) -> None:
            fault = failure.value
            if not isinstance(fault, Fault):  # serve() makes every error a Fault...
                log.failure("answering a status call failed", failure)  # ...but ok() might fail
                fault = Fault("Server", "InternalError: An unknown error has occured.")
            self._write(request, 500, soap_fault_bytes(fault.faultcode, fault.faultstring))

        self.operations.status(service_id, token).addCallback(ok).addErrback(failed)
        return NOT_DONE_YET

    @staticmethod
    def _write(request: Request, code: int, body: bytes) -> None:
        if request._disconnected:
            return
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()
