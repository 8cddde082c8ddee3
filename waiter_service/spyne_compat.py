"""
Everything this project needs to run Spyne 2.14 on a current Twisted.

Spyne's last release (2.14.0) predates several changes in Python 3 and
Twisted, and its Twisted transport has gaps that matter for a service on the
network.  Each fix below is small, named after the defect it holds, and has
its own test in ``tests/test_spyne_compat.py`` that fails without it.  No
other module of the project patches Spyne: import Spyne's Twisted transport
through this module (``install()`` runs when it is imported).

1. ``spyne.util._twisted_ws`` imports ``twisted.python.constants``, removed
   in Twisted 24.11; it lives on as the ``constantly`` package.
2. ``GET ...?wsdl`` answered 500: ``_reconstruct_url`` joined ``str`` and
   ``bytes``.
3. Every SOAP POST answered 405: the transport context returned the HTTP
   method as ``bytes`` and SOAP 1.1 compares it with ``"POST"``.
4. A method with several outputs that returned a ``Deferred`` failed with
   "'Deferred' object is not subscriptable"
   (:class:`DeferredAwareApplication`).
5. A request body of 100,000 bytes or more is spooled by Twisted to a
   temporary file, which Spyne then mishandled as an ``mmap``.
6. No request-size limit on this transport, none in Twisted either
   (:func:`soap_request_factory`).
7. An XML document with a DTD (external entities, billion laughs) made the
   lxml schema validator raise an internal error that escaped as an HTML
   500 page (:class:`DoctypeFreeSoap11`: SOAP 1.1 forbids DTDs anyway).

Two more that only show when the transport is used as a library:

8. The transport's constructor scheduled a call on the *global* reactor to
   learn which thread runs it; with this fix it records the constructing
   thread, so a resource can be built without touching the global reactor.
9. Spyne logs every fault with its traceback and every malformed request
   with its whole body (session tokens included) through ``logging``; the
   project logs calls itself, so Spyne's loggers are kept quiet.
10. A response, complete in memory, was written through a pull producer
    that Twisted drives with the global cooperator, one reactor turn per
    XML fragment (:func:`soap_request_factory` writes it at once).
11. An answer that came after its client disconnected (an abort waiting
    for a child) raised "Request.finish called on a request after its
    connection was lost", logged as an unhandled error.
12. A ``Content-Type`` header that is not UTF-8 made Spyne raise
    ``UnicodeDecodeError`` (a Server fault); it is read as Latin-1.
13. On Python 3.12 and later ``import spyne`` failed ("No module named
    'spyne.util.six.moves'"): the meta-path importer of Spyne's bundled
    ``six`` has only ``find_module``, which 3.12 no longer calls
    (:class:`SixMovesFinder`).  (On 3.13 Spyne also needs ``cgi``, which
    the ``legacy-cgi`` package provides: a dependency, not code.)
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import re
import sys
import threading
import traceback
import warnings
from io import BytesIO
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web import server

from .xmlsafe import has_doctype

_installed = False


def _provide_twisted_python_constants() -> None:
    """Fix 1: make ``twisted.python.constants`` importable again."""
    try:
        importlib.import_module("twisted.python.constants")
    except ImportError:
        import constantly

        sys.modules["twisted.python.constants"] = constantly


def _decode(value: bytes | str | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


_HOST = re.compile(r"(?P<name>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")


def reconstruct_url(request: Any) -> str:
    """Fix 2: the URL a client used to reach this request, as text."""
    return base_url(request) + request.uri.decode("latin-1")


def base_url(request: Any) -> str:
    """
    ``scheme://host[:port]`` as the client of ``request`` sees this server.

    The host is taken as the client named it (``X-Forwarded-Host``, set by a
    reverse proxy, else ``Host``), port included, so that a WSDL built from
    it names an address the client can reach; a malformed host falls back
    to the server's own address.  ``X-Forwarded-Proto`` and
    ``X-Forwarded-Port`` are honoured as Spyne meant to.
    """
    forwarded_host = _decode(request.getHeader(b"x-forwarded-host"))
    forwarded_port = _decode(request.getHeader(b"x-forwarded-port"))
    proto = _decode(request.getHeader(b"x-forwarded-proto"))
    secure = proto.strip().lower() == "https" if proto else bool(request.isSecure())
    given = (forwarded_host or _decode(request.getHeader(b"host")) or "").split(",")[0]
    match = _HOST.fullmatch(given.strip())
    if match:
        name, port = match.group("name"), match.group("port")
        if port is None and forwarded_port and forwarded_port.strip().isdigit():
            port = forwarded_port.strip()
    else:
        address = request.getHost()
        name = str(getattr(address, "host", "") or "localhost")
        name = "[%s]" % name if ":" in name else name
        port = str(getattr(address, "port", "") or "") or None
    if port is not None and (secure, port) not in ((True, "443"), (False, "80")):
        name = "%s:%s" % (name, port)
    return "%s://%s" % ("https" if secure else "http", name)


def _get_request_method_as_text(self: Any) -> str:
    """Fix 3: the HTTP method as ``str``, which is what Spyne compares."""
    method = self.req.method
    return method.decode("ascii") if isinstance(method, bytes) else method


def _get_request_content_type_as_text(self: Any) -> str | None:
    """Fix 12: the Content-Type as text, whatever bytes a client sent."""
    return _decode(self.req.getHeader(b"content-type"))


def _body_is_never_an_fd(istr: object) -> bool:
    """Fix 5: always read the request body into bytes (it is capped)."""
    return False


def _transport_init_without_global_reactor(
    self: Any,
    app: Any,
    chunked: bool = False,
    max_content_length: int = 2 * 1024 * 1024,
    block_length: int = 8 * 1024,
) -> None:
    """Fix 8: record the constructing thread as the reactor's."""
    from spyne.server.http import HttpBase

    HttpBase.__init__(
        self,
        app,
        chunked=chunked,
        max_content_length=max_content_length,
        block_length=block_length,
    )
    self.reactor_thread = threading.current_thread()


_spyne_log = Logger(namespace="spyne")


class _SpyneServerErrors(logging.Handler):
    """Passes Spyne's own server errors (with tracebacks) to twisted.logger."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        _spyne_log.error("spyne: {text}", text=text)


def _quiet_spyne_logging() -> None:
    """
    Fix 9: Spyne's log lines carry tracebacks of client faults and whole
    request bodies (session tokens included).  Only the errors of its
    server part (``spyne.application.server``: failures in Spyne itself)
    reach the log, through twisted.logger; the rest is dropped.
    """
    spyne_logger = logging.getLogger("spyne")
    spyne_logger.addHandler(logging.NullHandler())
    spyne_logger.propagate = False
    spyne_logger.setLevel(logging.CRITICAL)
    server_errors = logging.getLogger("spyne.application.server")
    server_errors.setLevel(logging.ERROR)
    server_errors.propagate = False
    server_errors.addHandler(_SpyneServerErrors())


class SixMovesFinder:
    """
    Fix 13: finds ``spyne.util.six.moves`` and its submodules for Spyne's
    bundled ``six``, whose importer lacks ``find_spec``.

    It hands the import to that importer's ``load_module`` (as Python 3.11
    did, through :class:`_SixMovesLoader`), and does nothing once the
    importer has a ``find_spec`` of its own (a fixed Spyne) or is not there.
    """

    prefix = "spyne.util.six.moves"

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> Any:
        if fullname != self.prefix and not fullname.startswith(self.prefix + "."):
            return None
        importer = spyne_six_importer()
        if importer is None or hasattr(importer, "find_spec"):
            return None
        if importer.find_module(fullname) is None:
            return None
        return importlib.util.spec_from_loader(
            fullname, _SixMovesLoader(importer), is_package=importer.is_package(fullname)
        )

    def invalidate_caches(self) -> None:
        pass


class _SixMovesLoader(importlib.abc.Loader):
    """A PEP 451 loader around six's ``load_module``."""

    def __init__(self, importer: Any) -> None:
        self.importer = importer
        self._specs: dict[str, Any] = {}

    def create_module(self, spec: Any) -> Any:
        module = self.importer.load_module(spec.name)
        self._specs[spec.name] = getattr(module, "__spec__", None)
        return module

    def exec_module(self, module: Any) -> None:
        # A "moved" name resolves to a real module (http.client for
        # moves.http_client): give it back its own spec.
        spec = self._specs.pop(module.__spec__.name, None)
        if spec is not None and module.__name__ != module.__spec__.name:
            module.__spec__ = spec


def spyne_six_importer() -> Any:
    """The meta-path importer that Spyne's bundled six registered, if any."""
    for finder in sys.meta_path:
        if (
            type(finder).__name__ == "_SixMetaPathImporter"
            and getattr(finder, "name", None) == "spyne.util.six"
        ):
            return finder
    return None


def _find_six_moves() -> None:
    # Python 3.11 and older still call find_module: nothing to do there.
    if sys.version_info >= (3, 12) and not any(
        isinstance(f, SixMovesFinder) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, SixMovesFinder())


#: Deprecation warnings that importing Spyne 2.14 causes, by the module that
#: they are raised for (the README lists them).  Nothing else is filtered.
SPYNE_WARNINGS = [
    # Spyne imports cgi (deprecated in 3.11, gone in 3.13: legacy-cgi).
    (r"'cgi' is deprecated", r"spyne\."),
    # Spyne imports twisted.web.static, which builds Twisted's old HTML
    # error pages at import time.
    (r"twisted\.web\.resource\._Unsafe", r"twisted\.web\.static"),
]


def _filter_spyne_warnings() -> None:
    for message, module in SPYNE_WARNINGS:
        warnings.filterwarnings("ignore", message, DeprecationWarning, module)


def install() -> None:
    """Apply every fix, once.  Safe to call any number of times."""
    global _installed
    if _installed:
        return
    _filter_spyne_warnings()
    _find_six_moves()
    _provide_twisted_python_constants()
    _quiet_spyne_logging()
    from spyne.server.twisted import http as spyne_http

    spyne_http._reconstruct_url = reconstruct_url
    spyne_http.TwistedHttpTransportContext.get_request_method = _get_request_method_as_text
    spyne_http.TwistedHttpTransportContext.get_request_content_type = (
        _get_request_content_type_as_text
    )
    spyne_http._has_fd = _body_is_never_an_fd
    spyne_http.TwistedHttpTransport.__init__ = _transport_init_without_global_reactor
    _installed = True


install()

# Only now is it safe to import Spyne.  The rest of the project imports
# Spyne's names from here, never from spyne itself.
from spyne import (  # noqa: E402
    Application,
    Boolean,
    Fault,
    Integer,
    ServiceBase,
    Unicode,
    rpc,
)
from spyne.error import InternalError  # noqa: E402
from spyne.interface.wsdl import Wsdl11  # noqa: E402
from spyne.protocol.soap import Soap11  # noqa: E402
from spyne.server.twisted import TwistedWebResource  # noqa: E402
from spyne.server.twisted._base import Producer as _SpyneProducer  # noqa: E402


class DeferredAwareApplication(Application):  # type: ignore[misc]
    """
    Fix 4: a method with several outputs may return a ``Deferred``.

    Spyne wraps the return value of a single-output method in a list and
    leaves a multi-output one as it is; its Twisted transport then looks for
    a ``Deferred`` at index 0 of that value.  Wrapping the ``Deferred`` of a
    multi-output method too lets the transport wait for it; when it fires,
    the transport unpacks the tuple of outputs as usual.
    """

    def call_wrapper(self, ctx: Any) -> Any:
        retval = super().call_wrapper(ctx)
        if isinstance(retval, Deferred) and _has_several_outputs(ctx):
            return [retval]
        return retval


def _has_several_outputs(ctx: Any) -> bool:
    from spyne import BODY_STYLE_WRAPPED

    descriptor = ctx.descriptor
    return (
        descriptor.body_style is BODY_STYLE_WRAPPED and len(descriptor.out_message._type_info) > 1
    )


class DoctypeForbidden(Fault):  # type: ignore[misc]
    """A SOAP message carried a document type declaration."""

    def __init__(self) -> None:
        super().__init__(
            "Client.DoctypeForbidden",
            "a SOAP message must not contain a document type declaration",
        )


class DoctypeFreeSoap11(Soap11):  # type: ignore[misc]
    """
    Fix 7: refuse any message with a DTD before it is validated.

    SOAP 1.1 (section 3) says a message must not contain a DTD.  Without
    one no entity can be declared, so neither external entities nor entity
    expansion bombs reach the schema validator, whose internal error on an
    unresolved entity escaped as an HTML 500 page.  The parser already
    resolves no entities and loads nothing from the network.
    """

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        super().create_in_document(ctx, charset)
        document = ctx.in_document
        root = document[0] if isinstance(document, tuple) else document  # (root, ids)
        if has_doctype(root):
            ctx.in_document = None
            raise DoctypeForbidden()


#: The largest request body accepted by default: 1 MiB.
DEFAULT_MAX_BODY = 1024 * 1024


def soap_request_factory(max_body: int = DEFAULT_MAX_BODY) -> type[server.Request]:
    """
    The ``Request`` class of a site that serves Spyne: fixes 6 and 10.

    Fix 6: at most ``max_body`` bytes of a body are kept, in memory (never
    spooled to disk).  A body over the cap, whether announced by
    ``Content-Length`` or found while reading a chunked body, is read and
    dropped; the request is then answered 413 with a SOAP fault without
    reaching Spyne.

    Fix 10: Spyne hands its response, already complete in memory, to the
    request as a *pull* producer; Twisted drives that through the global
    cooperator, one reactor turn per XML fragment.  This request writes the
    whole response at once, with its ``Content-Length``, and finishes.
    """
    if max_body < 1:
        raise ValueError("max_body must be positive")

    class SoapRequest(server.Request):
        body_limit = max_body
        body_too_large = False
        _body_seen = 0

        def gotLength(self, length: int | None) -> None:
            self.content = BytesIO()
            self._body_seen = 0
            self.body_too_large = length is not None and length > self.body_limit

        def handleContentChunk(self, data: bytes) -> None:
            self._body_seen += len(data)
            if self.body_too_large:
                return
            if self._body_seen > self.body_limit:
                self.body_too_large = True
                self.content = BytesIO()
                return
            self.content.write(data)

        def process(self) -> None:
            if not self.body_too_large:
                super().process()
                return
            self.setResponseCode(413)
            self.setHeader(b"content-type", b"text/xml; charset=utf-8")
            self.setHeader(b"connection", b"close")
            self.write(
                soap_fault_bytes(
                    "Client.RequestTooLong",
                    "the request body exceeds %d bytes" % self.body_limit,
                )
            )
            self.finish()

        def write(self, data: bytes) -> None:
            if not self._disconnected:
                super().write(data)

        def finish(self) -> None:
            # Fix 11: an answer that comes after the client left (an abort
            # that waited for a child) is dropped, not a logged error.
            if not self._disconnected:
                super().finish()

        def registerProducer(self, producer: Any, streaming: bool) -> None:
            # Fix 10 relies on Producer.body and Producer.deferred of
            # spyne.server.twisted._base in Spyne 2.14.0.
            if streaming or not isinstance(producer, _SpyneProducer):
                super().registerProducer(producer, streaming)
                return
            body = b"".join(producer.body)
            producer.body = iter(())
            self.setHeader(b"content-length", b"%d" % len(body))
            self.write(body)
            finished, producer.deferred = producer.deferred, None
            if finished is not None:
                finished.callback(self)

    return SoapRequest


def soap_fault_bytes(code: str, message: str) -> bytes:
    """A SOAP 1.1 fault envelope, for answers given before Spyne runs."""
    from xml.sax.saxutils import escape

    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n"
        '<soap11env:Envelope xmlns:soap11env="http://schemas.xmlsoap.org/soap/envelope/">'
        "<soap11env:Body><soap11env:Fault>"
        "<faultcode>soap11env:%s</faultcode><faultstring>%s</faultstring>"
        "<faultactor></faultactor>"
        "</soap11env:Fault></soap11env:Body></soap11env:Envelope>" % (escape(code), escape(message))
    ).encode("utf-8")


__all__ = [
    "DEFAULT_MAX_BODY",
    "Boolean",
    "DeferredAwareApplication",
    "DoctypeForbidden",
    "DoctypeFreeSoap11",
    "Fault",
    "Integer",
    "InternalError",
    "ServiceBase",
    "SixMovesFinder",
    "TwistedWebResource",
    "Unicode",
    "Wsdl11",
    "base_url",
    "install",
    "reconstruct_url",
    "rpc",
    "soap_fault_bytes",
    "soap_request_factory",
]
