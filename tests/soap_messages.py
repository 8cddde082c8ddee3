"""SOAP 1.1 request envelopes for the tests, built by hand as a client would."""

from __future__ import annotations

from xml.sax.saxutils import escape

from waiter_service.soap.operations import NAMESPACE


def envelope(operation: str, namespace: str = NAMESPACE, **fields: object) -> bytes:
    """A document/literal wrapped request for ``operation`` with ``fields``."""
    body = "".join(
        f"<tns:{name}>{escape(str(value))}</tns:{name}>" for name, value in fields.items()
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        f' xmlns:tns="{namespace}"><soapenv:Body><tns:{operation}>{body}</tns:{operation}>'
        "</soapenv:Body></soapenv:Envelope>"
    ).encode()


def with_external_entity(system: bytes) -> bytes:
    """A startWaiter whose serviceID is an external entity at ``system`` (XXE)."""
    body = envelope("startWaiter", serviceID="XXE", sessionToken="t").split(b"?>", 1)[1]
    return (
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "'
        + system
        + b'">]>'
        + body.replace(b">XXE<", b">&x;<")
    )


SOAP_HEADERS = {b"Content-Type": b"text/xml; charset=utf-8"}
