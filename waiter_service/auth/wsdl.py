"""
Reading an authentication manager's WSDL, and its SOAP messages: pure
functions on bytes, no I/O.

Only what the service needs: for each one-argument operation of a
document/literal service, the endpoint address, the request element and
the name (and namespace) of its single argument.  A Spyne service names it
``sessionToken``, a JAX-WS one ``arg0`` in no namespace: both are read from
the schema, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from lxml import etree

from ..xmlsafe import PARSER, has_doctype

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP11_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XS_NS = "http://www.w3.org/2001/XMLSchema"
ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"

#: Largest WSDL or response accepted from an authentication manager.
MAX_DOCUMENT = 1024 * 1024


class BadDocument(ValueError):
    """A WSDL or a SOAP message that cannot be used."""


@dataclass(frozen=True)
class Operation:
    """A one-argument document/literal operation."""

    namespace: str
    element: str
    argument: str
    argument_namespace: str | None


@dataclass(frozen=True)
class Service:
    """Where to send requests, and how to write them."""

    address: str
    operations: dict[str, Operation]


def _parse(data: bytes) -> etree._Element:
    if len(data) > MAX_DOCUMENT:
        raise BadDocument("document too large")
    try:
        root = etree.fromstring(data, PARSER)
    except etree.XMLSyntaxError as e:
        raise BadDocument(f"not XML: {e}") from None
    if has_doctype(root):
        raise BadDocument("a DTD is not allowed")
    return root


def _local(qname: str, element: etree._Element) -> tuple[str | None, str]:
    prefix, _, name = qname.rpartition(":")
    return element.nsmap.get(prefix or None), name


def read_wsdl(data: bytes) -> Service:
    """The service described by a WSDL document (SOAP 1.1, document/literal)."""
    root = _parse(data)
    address = root.find(f".//{{{WSDL_NS}}}port/{{{SOAP11_NS}}}address")
    if address is None or not address.get("location"):
        raise BadDocument("the WSDL has no SOAP 1.1 address")
    operations: dict[str, Operation] = {}
    for schema in root.iter(f"{{{XS_NS}}}schema"):
        tns = schema.get("targetNamespace", "")
        qualified = schema.get("elementFormDefault") == "qualified"
        types = {t.get("name"): t for t in schema.findall(f"{{{XS_NS}}}complexType")}
        for element in schema.findall(f"{{{XS_NS}}}element"):
            name = element.get("name")
            complex_type = element.find(f"{{{XS_NS}}}complexType")
            if complex_type is None and element.get("type"):
                _, type_name = _local(element.get("type", ""), element)
                complex_type = types.get(type_name)
            if name is None or complex_type is None:
                continue
            children = complex_type.findall(f"{{{XS_NS}}}sequence/{{{XS_NS}}}element")
            if len(children) != 1 or not children[0].get("name"):
                continue
            child = children[0]
            child_qualified = child.get("form", "qualified" if qualified else "unqualified")
            operations[name] = Operation(
                namespace=tns,
                element=name,
                argument=child.get("name", ""),
                argument_namespace=tns if child_qualified == "qualified" else None,
            )
    return Service(address.get("location", ""), operations)


def request_body(operation: Operation, value: str) -> bytes:
    """A SOAP 1.1 request calling ``operation`` with ``value``."""
    if operation.argument_namespace is None:
        argument = f'<{operation.argument} xmlns="">{escape(value)}</{operation.argument}>'
    else:
        argument = f"<o:{operation.argument}>{escape(value)}</o:{operation.argument}>"
    return (
        f'<?xml version="1.0" encoding="utf-8"?><e:Envelope xmlns:e="{ENV_NS}">'
        f'<e:Body><o:{operation.element} xmlns:o="{escape(operation.namespace)}">'
        f"{argument}</o:{operation.element}></e:Body></e:Envelope>"
    ).encode()


class RemoteFault(Exception):
    """The authentication manager answered with a SOAP fault."""


def response_value(data: bytes) -> str | None:
    """The single value in a document/literal response (None if it is nil)."""
    root = _parse(data)
    body = root.find(f"{{{ENV_NS}}}Body")
    if body is None or len(body) == 0:
        raise BadDocument("no SOAP body")
    wrapper = body[0]
    if wrapper.tag == f"{{{ENV_NS}}}Fault":
        raise RemoteFault(wrapper.findtext("faultstring") or "fault")
    leaves = [e for e in wrapper.iter() if e is not wrapper and len(e) == 0]
    if len(leaves) != 1:
        raise BadDocument("expected one value in the response")
    text: str | None = leaves[0].text
    return text
