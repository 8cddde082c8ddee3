"""
Tests for waiter_service.spyne_compat: one test (or a few) per fix, each of
which fails when its fix is taken out.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import time
from pathlib import Path
from unittest import SkipTest

from lxml import etree
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import _getContentFile
from twisted.web.resource import Resource
from twisted.web.server import Site

from waiter_service import spyne_compat
from waiter_service.spyne_compat import (
    DeferredAwareApplication,
    DoctypeFreeSoap11,
    Integer,
    ServiceBase,
    TwistedWebResource,
    Unicode,
    base_url,
    rpc,
    soap_request_factory,
)
from waiter_service.testing import HTTPResponse, http_request, send_http_request

from .soap_messages import SOAP_HEADERS, envelope

NS = "urn:compat-test"
SOAP_ENV = "{http://schemas.xmlsoap.org/soap/envelope/}"


class Echo(ServiceBase):
    @rpc(Unicode, _returns=Unicode)
    def echo(ctx, text):  # noqa: N805
        return text

    @rpc(Unicode, _returns=(Unicode, Integer), _out_variable_names=("text", "length"))
    def measure(ctx, text):  # noqa: N805
        return succeed((text, len(text or "")))

    @rpc(_returns=Unicode)
    def later(ctx):  # noqa: N805
        d = Deferred()
        PENDING.append(d)
        return d


PENDING: list[Deferred] = []


def make_app() -> DeferredAwareApplication:
    return DeferredAwareApplication(
        [Echo],
        tns=NS,
        name="Echo",
        in_protocol=DoctypeFreeSoap11(validator="lxml"),
        out_protocol=DoctypeFreeSoap11(),
    )


def mounted(resource: TwistedWebResource) -> Resource:
    """The resource at /Echo, as a site serves it (not at the root)."""
    root = Resource()
    root.putChild(b"Echo", resource)
    return root


def make_site(max_body: int = 1024 * 1024) -> Site:
    return Site(
        mounted(TwistedWebResource(make_app())), requestFactory=soap_request_factory(max_body)
    )


class SpoolingRequest(soap_request_factory()):  # type: ignore[misc]
    """Keeps a body as Twisted's own Request does: 100,000 bytes or more on disk."""

    def gotLength(self, length: int | None) -> None:
        self.content = _getContentFile(length)

    def handleContentChunk(self, data: bytes) -> None:
        self.content.write(data)


def post(site: Site, body: bytes, **kwargs: object) -> HTTPResponse:
    return http_request(site, b"POST", b"/Echo", body, headers=SOAP_HEADERS, **kwargs)  # type: ignore[arg-type]


def fault_code(response: HTTPResponse) -> str:
    """The faultcode of a SOAP fault response (fails if it is not one)."""
    root = etree.fromstring(response.body)
    return root.find(f"{SOAP_ENV}Body/{SOAP_ENV}Fault/faultcode").text.split(":", 1)[1]


def result_texts(response: HTTPResponse) -> list[str]:
    root = etree.fromstring(response.body)
    return [e.text for e in root.iter() if not len(e) and e.text is not None]


class ImportTests(SynchronousTestCase):
    def test_constants_module(self) -> None:
        """Fix 1: Spyne's import of twisted.python.constants works."""
        module = importlib.import_module("twisted.python.constants")
        self.assertTrue(hasattr(module, "FlagConstant"))
        importlib.import_module("spyne.util._twisted_ws")

    def test_install_is_idempotent(self) -> None:
        """Installing the fixes twice changes nothing."""
        from spyne.server.twisted import http as spyne_http

        before = spyne_http._reconstruct_url
        spyne_compat.install()
        self.assertIs(spyne_http._reconstruct_url, before)


class WsdlTests(SynchronousTestCase):
    def test_wsdl_get(self) -> None:
        """Fix 2: GET ?wsdl on Spyne's own resource answers the WSDL, not 500."""
        response = http_request(make_site(), b"GET", b"/Echo?wsdl")
        self.assertEqual(response.code, 200)
        root = etree.fromstring(response.body)
        self.assertEqual(root.get("targetNamespace"), NS)

    def test_forwarded_url(self) -> None:
        """Fix 2: the URL honours the X-Forwarded headers a reverse proxy sets."""
        response = http_request(
            make_site(),
            b"GET",
            b"/Echo?wsdl",
            headers={b"X-Forwarded-Host": b"public.test", b"X-Forwarded-Proto": b"https"},
        )
        self.assertIn(b'location="https://public.test/Echo"', response.body)


class PostTests(SynchronousTestCase):
    def test_post_is_allowed(self) -> None:
        """Fix 3: a SOAP POST reaches the method instead of answering 405."""
        response = post(make_site(), envelope("echo", NS, text="hello"))
        self.assertEqual(response.code, 200)
        self.assertIn("hello", result_texts(response))

    def test_deferred_with_several_outputs(self) -> None:
        """Fix 4: a multi-output method may return a Deferred."""
        response = post(make_site(), envelope("measure", NS, text="four"))
        self.assertEqual(response.code, 200)
        self.assertEqual(result_texts(response), ["four", "4"])

    def test_spooled_body(self) -> None:
        """Fix 5: a body of 100,000 bytes or more (spooled by Twisted) is read."""
        site = Site(mounted(TwistedWebResource(make_app())), requestFactory=SpoolingRequest)
        text = "x" * 150_000
        response = post(site, envelope("measure", NS, text=text))
        self.assertEqual(response.code, 200)
        self.assertEqual(result_texts(response)[-1], "150000")


class BodyCapTests(SynchronousTestCase):
    def test_under_the_cap(self) -> None:
        """Fix 6: a body within the cap is served as usual."""
        response = post(make_site(max_body=2048), envelope("echo", NS, text="hi"))
        self.assertEqual(response.code, 200)

    def test_over_the_cap(self) -> None:
        """Fix 6: a body over the cap is answered 413 with a SOAP fault."""
        body = envelope("echo", NS, text="x" * 5000)
        response = post(make_site(max_body=2048), body)
        self.assertEqual(response.code, 413)
        self.assertEqual(fault_code(response), "Client.RequestTooLong")

    def test_chunked_over_the_cap(self) -> None:
        """Fix 6: a chunked body that grows over the cap is refused the same way."""
        body = envelope("echo", NS, text="x" * 5000)
        response = post(make_site(max_body=2048), body, chunked=True)
        self.assertEqual(response.code, 413)
        self.assertEqual(fault_code(response), "Client.RequestTooLong")

    def test_response_written_at_once(self) -> None:
        """Fix 10: the response is written whole, with its length, in the same turn."""
        from twisted.internet import reactor

        before = len(reactor.getDelayedCalls())
        response = post(make_site(), envelope("echo", NS, text="hi"))
        self.assertEqual(int(response.headers["content-length"]), len(response.body))
        self.assertEqual(len(reactor.getDelayedCalls()), before)

    def test_cap_must_be_positive(self) -> None:
        """A cap below one byte is a programming error."""
        self.assertRaises(ValueError, soap_request_factory, 0)


XXE_FILE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
 xmlns:tns="urn:compat-test"><soapenv:Body><tns:echo><tns:text>&xxe;</tns:text>
</tns:echo></soapenv:Body></soapenv:Envelope>"""

LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]>"
    + envelope("echo", NS, text="T").split(b"?>", 1)[1].replace(b">T<", b">&lol9;<")
)


class DoctypeTests(SynchronousTestCase):
    def test_external_entity(self) -> None:
        """Fix 7: a DTD with an external entity gets a SOAP fault, not HTML 500."""
        response = post(make_site(), XXE_FILE)
        self.assertEqual(fault_code(response), "Client.DoctypeForbidden")
        self.assertNotIn(b"root:", response.body)

    def test_billion_laughs(self) -> None:
        """An entity expansion bomb is refused by the parser, quickly, with a fault.

        lxml's amplification limit stops it before fix 7 sees the DTD: this
        pins the parser's settings (no huge trees, no entity resolution).
        """
        started = time.monotonic()
        response = post(make_site(), LAUGHS)
        self.assertLess(time.monotonic() - started, 5)
        self.assertTrue(fault_code(response).startswith("Client."))


class LibraryUseTests(SynchronousTestCase):
    def test_no_global_reactor_call(self) -> None:
        """Fix 8: building the resource schedules nothing on the global reactor."""
        from twisted.internet import reactor

        before = len(reactor.getDelayedCalls())
        TwistedWebResource(make_app())
        self.assertEqual(len(reactor.getDelayedCalls()), before)

    def test_spyne_logs_no_request_bodies(self) -> None:
        """Fix 9: a malformed request's body (and its token) is not logged."""
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append  # type: ignore[method-assign]
        root = logging.getLogger()
        root.addHandler(handler)
        self.addCleanup(root.removeHandler, handler)
        response = post(make_site(), b"<broken sessionToken='secret-token'")
        self.assertEqual(fault_code(response), "Client.XMLSyntaxError")
        self.assertEqual([r for r in records if "secret-token" in r.getMessage()], [])


class FakeRequest:
    """Just what base_url reads of a request."""

    def __init__(self, headers: dict[bytes, bytes], host: object, secure: bool = False) -> None:
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.host = host
        self.secure = secure

    def getHeader(self, name: bytes) -> bytes | None:
        return self.headers.get(name.lower())

    def getHost(self) -> object:
        return self.host

    def isSecure(self) -> bool:
        return self.secure


class BaseUrlTests(SynchronousTestCase):
    server = IPv4Address("TCP", "10.0.0.5", 8080)

    def url(self, headers: dict[bytes, bytes], host: object = None, secure: bool = False) -> str:
        return base_url(FakeRequest(headers, host or self.server, secure))

    def test_host_header(self) -> None:
        """The Host header is used as the client sent it, port included."""
        self.assertEqual(self.url({b"Host": b"portal.test:8443"}), "http://portal.test:8443")
        self.assertEqual(self.url({b"Host": b"portal.test"}, secure=True), "https://portal.test")

    def test_forwarded(self) -> None:
        """X-Forwarded-Host, -Proto and -Port describe the proxy's side."""
        headers = {
            b"Host": b"backend:8080",
            b"X-Forwarded-Host": b"cloud.test",
            b"X-Forwarded-Proto": b"https",
            b"X-Forwarded-Port": b"9443",
        }
        self.assertEqual(self.url(headers), "https://cloud.test:9443")
        headers[b"X-Forwarded-Port"] = b"443"
        self.assertEqual(self.url(headers), "https://cloud.test")

    def test_ipv6(self) -> None:
        """IPv6 hosts keep their brackets; a forwarded port is added once."""
        headers = {b"Host": b"[::1]:8080", b"X-Forwarded-Port": b"9000"}
        self.assertEqual(self.url(headers), "http://[::1]:8080")
        self.assertEqual(self.url({b"Host": b"[::1]"}), "http://[::1]")
        fallback = self.url({}, host=IPv6Address("TCP", "::1", 8080))
        self.assertEqual(fallback, "http://[::1]:8080")

    def test_bad_host_falls_back(self) -> None:
        """A malformed Host is replaced by the server's own address."""
        for bad in (b"evil.test/x", b'a"b', b"", b"host:99999999"):
            headers = {b"Host": bad, b"X-Forwarded-Port": b"81"}
            self.assertEqual(self.url(headers), "http://10.0.0.5:8080")
        self.assertEqual(self.url({}, host=UNIXAddress(b"/run/w.sock")), "http://localhost")


class RobustnessTests(SynchronousTestCase):
    def test_answer_after_disconnect(self) -> None:
        """Fix 11: an answer that comes after the client left is dropped quietly."""
        channel, _transport = send_http_request(
            make_site(), b"POST", b"/Echo", envelope("later", NS), headers=SOAP_HEADERS
        )
        import gc

        from twisted.logger import globalLogPublisher
        from twisted.python.failure import Failure

        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        channel.connectionLost(Failure(ConnectionError("client went away")))
        PENDING.pop().callback("too late")
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])
        errors = [e for e in events if e.get("isError") or "log_failure" in e]
        self.assertEqual(errors, [])

    def test_non_utf8_content_type(self) -> None:
        """Fix 12: a Content-Type that is not UTF-8 is read, not a Server fault."""
        response = http_request(
            make_site(),
            b"POST",
            b"/Echo",
            envelope("echo", NS, text="hi"),
            headers={b"Content-Type": b"text/xml; x=\xff"},
        )
        self.assertEqual(response.code, 200)
        self.assertIn("hi", result_texts(response))

    def test_spyne_server_errors_are_logged(self) -> None:
        """Fix 9: Spyne's own server errors still reach twisted.logger."""
        from twisted.logger import globalLogPublisher

        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        logging.getLogger("spyne.application.server").error("broken %s", "here")
        logging.getLogger("spyne.application.client").error("client fault, token")
        texts = [e.get("text") for e in events if e.get("log_namespace") == "spyne"]
        self.assertEqual(texts, ["broken here"])


class PythonVersionTests(SynchronousTestCase):
    def run_python(self, code: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
            timeout=60,
        )

    def test_whole_service_imports_cleanly(self) -> None:
        """Fix 13 and the warning filters: the service imports on this Python, warning-free."""
        done = self.run_python(
            "import waiter_service.tap; from waiter_service.spyne_compat import Wsdl11;"
            "import spyne.util.six.moves.urllib.parse"
        )
        self.assertEqual(done.returncode, 0, done.stderr)

    def test_six_moves_finder(self) -> None:
        """Fix 13: the finder serves six.moves names through Spyne's importer only."""
        from waiter_service.spyne_compat import SixMovesFinder, spyne_six_importer

        finder = SixMovesFinder()
        spec = finder.find_spec("spyne.util.six.moves.urllib.parse")
        self.assertEqual(spec.name, "spyne.util.six.moves.urllib.parse")
        self.assertIs(spec.loader.importer, spyne_six_importer())
        self.assertIsNone(finder.find_spec("os"))
        self.assertIsNone(finder.find_spec("spyne.util.six.moves.no_such_module"))
        importer = spyne_six_importer()
        importer.find_spec = lambda *args: None  # as a fixed Spyne would have
        self.addCleanup(delattr, importer, "find_spec")
        self.assertIsNone(finder.find_spec("spyne.util.six.moves.urllib.parse"))

    def test_spyne_alone_still_needs_the_fix(self) -> None:
        """On 3.12+, Spyne 2.14 alone cannot be imported (remove fix 13 when this fails)."""
        if sys.version_info < (3, 12):
            raise SkipTest("Python 3.11 and older import Spyne's six without help")
        done = self.run_python("import spyne")
        self.assertIn("spyne.util.six.moves", done.stderr)
