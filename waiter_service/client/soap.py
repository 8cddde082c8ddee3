"""
The only module that talks to the service: zeep, kept thin.

Every call answers plain values or raises :class:`ClientError` with one
line a person can read (never a traceback, never the token, never a URL's
password); what the server sent goes through :mod:`.text` first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import zeep
import zeep.exceptions
from lxml import etree
from zeep.transports import Transport

from .text import one_line

#: zeep logs through ``logging``; unconfigured, its warnings would reach
#: stderr around our one-line errors.
logging.getLogger("zeep").addHandler(logging.NullHandler())
logging.getLogger("zeep").propagate = False


class ClientError(Exception):
    """A call that did not work, said in one line; ``kind`` is for scripts."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class SoapFault(ClientError):
    """The service answered a SOAP fault."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__("fault", f"SOAP fault {code}: {message}")
        self.code = code
        self.fault_message = message


@dataclass(frozen=True)
class Answer:
    """The two outputs of ``startWaiter`` and ``getServiceStatus``."""

    status_base64: str
    result: str | None


def wsdl_url(url: str) -> str:
    """The WSDL address for ``url``: an endpoint URL without a query gets ``?wsdl``."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and not parts.query:
        if not parts.path.lower().endswith((".wsdl", ".xml")):
            return url + "?wsdl"
    return url


def where(url: str) -> str:
    """``url`` shown in a message: scheme, host and port only (no password, no query)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "the WSDL file"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return one_line(f"{parts.scheme}://{parts.hostname}{port}", 200)


def same_origin(address: str, wsdl: str) -> str:
    """
    The WSDL's ``soap:address`` moved to the scheme, host and port of the
    ``wsdl`` URL the person gave (its path and query kept).

    The server writes that address from the Host header of the WSDL request,
    so a hostile server or a rewriting proxy could name any host, and every
    call (with the token) would go there.  A local WSDL file names no host:
    its address is used as it is.
    """
    base = urlsplit(wsdl)
    if base.scheme not in ("http", "https") or not base.netloc:
        return address
    target = urlsplit(address)
    return urlunsplit((base.scheme, base.netloc, target.path, target.query, ""))


def bind(client: zeep.Client, wsdl: str) -> Any:
    """The WSDL's first port (zeep's default service), its calls sent to ``wsdl``'s host."""
    for service in client.wsdl.services.values():
        for port in service.ports.values():
            address = port.binding_options.get("address")
            if not isinstance(address, str) or not address:
                continue
            return client.create_service(port.binding.name.text, same_origin(address, wsdl))
    raise ClientError("wsdl", "the WSDL names no SOAP service address")


def fault_code(code: object) -> str:
    """``soap11env:Client.UnknownServiceID`` -> ``Client.UnknownServiceID``."""
    text = one_line(str(code or "Server"), 200)
    return text.rsplit(":", 1)[-1] or text


def translate(error: BaseException, url: str, timeout: float) -> ClientError:
    """The one-line error for what zeep or requests raised."""
    place = where(url)
    if isinstance(error, zeep.exceptions.Fault):
        return SoapFault(fault_code(error.code), one_line(str(error.message or ""), 1000))
    if isinstance(error, requests.exceptions.Timeout):
        return ClientError("timeout", f"no answer from {place} within {timeout:g} s")
    if isinstance(error, requests.exceptions.ConnectionError):
        said = str(error)
        if "refused" in said:
            why = "connection refused"
        elif "resolve" in said or "Name or service not known" in said:
            why = "unknown host"
        else:
            why = "connection failed"
        return ClientError("connection", f"cannot connect to {place}: {why}")
    if isinstance(error, requests.exceptions.HTTPError):
        status = error.response.status_code if error.response is not None else "?"
        return ClientError("http", f"{place} answered HTTP {status} for the WSDL")
    if isinstance(error, zeep.exceptions.TransportError):
        return ClientError("http", f"{place} answered HTTP {error.status_code}")
    if isinstance(error, requests.exceptions.RequestException):
        return ClientError("connection", f"cannot reach {place}: {type(error).__name__}")
    if isinstance(error, zeep.exceptions.ValidationError):
        return ClientError("input", f"invalid input: {one_line(str(error.message), 300)}")
    if isinstance(error, (zeep.exceptions.Error, etree.LxmlError)):
        return ClientError("answer", f"unreadable XML from {place}: {one_line(str(error), 300)}")
    if isinstance(error, OSError):
        return ClientError("wsdl", f"cannot read the WSDL: {one_line(error.strerror or '', 200)}")
    return ClientError("error", f"unexpected {type(error).__name__}: {one_line(str(error), 300)}")


class WaiterClient:
    """The waiter's four operations, through zeep."""

    def __init__(self, url: str, timeout: float, session: requests.Session | None = None) -> None:
        """Read the WSDL at ``url``; ``session`` is for tests (HTTP without a network)."""
        self.url = wsdl_url(url)
        self.timeout = timeout
        settings = zeep.Settings(
            strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
        transport = Transport(timeout=timeout, operation_timeout=timeout, session=session)
        try:
            self._service = bind(
                zeep.Client(self.url, transport=transport, settings=settings), self.url
            )
        except ClientError:
            raise
        except Exception as error:
            raise self._wsdl_error(error) from None

    def _wsdl_error(self, error: Exception) -> ClientError:
        found = translate(error, self.url, self.timeout)
        if found.kind == "answer":
            return ClientError("wsdl", f"{where(self.url)} did not give a usable WSDL")
        return found

    def _call(self, operation: str, **arguments: Any) -> Any:
        try:
            method = getattr(self._service, operation)
        except AttributeError:
            raise ClientError("wsdl", f"the WSDL has no operation {operation}") from None
        try:
            return method(**arguments)
        except Exception as error:
            raise translate(error, self.url, self.timeout) from None

    def _answer(self, value: Any) -> Answer:
        status = getattr(value, "status_base64", None)
        result = getattr(value, "result", None)
        if not isinstance(status, str) or not isinstance(result, (str, type(None))):
            raise ClientError("answer", "the answer has no status_base64 and result")
        return Answer(status, result)

    def start(self, service_id: str, token: str, seconds: int | None, extra: str | None) -> Answer:
        arguments: dict[str, Any] = {"serviceID": service_id, "sessionToken": token}
        if seconds is not None:
            arguments["secondsToWait"] = seconds
        if extra is not None:
            arguments["extraParameters"] = extra
        return self._answer(self._call("startWaiter", **arguments))

    def status(self, service_id: str, token: str) -> Answer:
        return self._answer(
            self._call("getServiceStatus", serviceID=service_id, sessionToken=token)
        )

    def abort(self, service_id: str, token: str) -> bool:
        value = self._call("abortService", serviceID=service_id, sessionToken=token)
        if not isinstance(value, bool):
            raise ClientError("answer", "abortService did not answer a boolean")
        return value

    def notify(self, service_id: str, token: str, message: str) -> str:
        value = self._call(
            "notifyService", serviceID=service_id, sessionToken=token, message=message
        )
        if not isinstance(value, str):
            raise ClientError("answer", "notifyService did not answer a text")
        return value
