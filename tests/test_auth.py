"""Unit tests for waiter_service.auth: reading WSDLs and messages, and the token checker."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from waiter_service.auth.checker import (
    AuthManagerChecker,
    AuthNotAllowed,
    AuthUnavailable,
    Identity,
    InvalidToken,
    OpenAccess,
)
from waiter_service.auth.wsdl import (
    BadDocument,
    RemoteFault,
    read_wsdl,
    request_body,
    response_value,
)

JAXWS_WSDL = b"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/"
  xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
  xmlns:tns="http://auth.cloudflow.eu/" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
  targetNamespace="http://auth.cloudflow.eu/" name="AuthManagerService">
 <types><xsd:schema targetNamespace="http://auth.cloudflow.eu/" version="1.0">
  <xsd:element name="validateSessionToken" type="tns:validateSessionToken"/>
  <xsd:element name="getProject" type="tns:getProject"/>
  <xsd:complexType name="validateSessionToken"><xsd:sequence>
    <xsd:element name="arg0" type="xsd:string" minOccurs="0"/></xsd:sequence></xsd:complexType>
  <xsd:complexType name="getProject"><xsd:sequence>
    <xsd:element name="arg0" type="xsd:string" minOccurs="0"/></xsd:sequence></xsd:complexType>
 </xsd:schema></types>
 <service name="AuthManagerService"><port name="AuthManagerPort" binding="tns:B">
  <soap:address location="https://platform.test/authManager/AuthManager"/></port></service>
</definitions>"""

ENV = "http://schemas.xmlsoap.org/soap/envelope/"


class WsdlTests(SynchronousTestCase):
    def test_jaxws_wsdl(self) -> None:
        """A JAX-WS WSDL gives the address and unqualified arg0 arguments."""
        service = read_wsdl(JAXWS_WSDL)
        self.assertEqual(service.address, "https://platform.test/authManager/AuthManager")
        op = service.operations["validateSessionToken"]
        self.assertEqual(
            (op.namespace, op.argument, op.argument_namespace),
            ("http://auth.cloudflow.eu/", "arg0", None),
        )
        body = request_body(op, "tok<&>")
        self.assertIn(b'<arg0 xmlns="">tok&lt;&amp;&gt;</arg0>', body)

    def test_spyne_wsdl(self) -> None:
        """A Spyne WSDL (qualified elements) gives a qualified argument."""
        from waiter_service.spyne_compat import (
            DeferredAwareApplication,
            DoctypeFreeSoap11,
            Wsdl11,
        )

        from .auth_manager import NAMESPACE, make_service

        app = DeferredAwareApplication(
            [make_service({}, None)],
            tns=NAMESPACE,
            name="AuthManager",  # type: ignore[arg-type]
            in_protocol=DoctypeFreeSoap11(),
            out_protocol=DoctypeFreeSoap11(),
        )
        document = Wsdl11(app.interface)
        document.build_interface_document("http://127.0.0.1:1/AuthManager")
        service = read_wsdl(document.get_interface_document())
        op = service.operations["getProject"]
        self.assertEqual((op.argument, op.argument_namespace), ("sessionToken", NAMESPACE))

    def test_bad_wsdls(self) -> None:
        """Garbage, a DTD, or no SOAP address are refused."""
        for bad in (b"not xml", b'<!DOCTYPE x [<!ENTITY e "x">]><x/>', b"<definitions/>"):
            self.assertRaises(BadDocument, read_wsdl, bad)
        self.assertRaises(BadDocument, read_wsdl, b"<x>" + b" " * (2 * 1024 * 1024) + b"</x>")

    def test_response_values(self) -> None:
        """The single value of a response is read; faults and odd shapes are errors."""

        def envelope(body: str) -> bytes:
            return f'<e:Envelope xmlns:e="{ENV}"><e:Body>{body}</e:Body></e:Envelope>'.encode()

        self.assertEqual(response_value(envelope("<r><return>true</return></r>")), "true")
        self.assertIsNone(response_value(envelope("<r><return/></r>")))
        fault = envelope(
            "<e:Fault><faultcode>e:Server</faultcode><faultstring>no</faultstring></e:Fault>"
        )
        self.assertRaises(RemoteFault, response_value, fault)
        self.assertRaises(BadDocument, response_value, envelope("<r><a>1</a><b>2</b></r>"))
        self.assertRaises(BadDocument, response_value, envelope(""))


class FakeAuthManager:
    """Answers like an authentication manager; calls are counted; answers can wait."""

    def __init__(self) -> None:
        self.tokens = {"good": ("ann", "p1"), "noproject": ("bob", "")}
        self.calls: list[tuple[str, str]] = []
        self.hold: list[Deferred[None]] | None = None
        self.broken = False

    async def call(self, operation: str, value: str) -> str | None:
        self.calls.append((operation, value))
        if self.hold is not None:
            d: Deferred[None] = Deferred()
            self.hold.append(d)
            await d
        if self.broken:
            raise ConnectionRefusedError("down")
        entry = self.tokens.get(value)
        if operation == "validateSessionToken":
            return "true" if entry else "false"
        if entry is None:
            raise RemoteFault("invalid")
        return entry[0] if operation == "getUsername" else entry[1]


class CheckerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.manager = FakeAuthManager()
        self.other = FakeAuthManager()
        self.other.tokens = {}
        self.checker = AuthManagerChecker(
            {"http://a/wsdl": self.manager, "http://b/wsdl": self.other},
            self.clock,
            ttl=60,
            timeout=5,
        )

    def test_valid_token(self) -> None:
        """A valid token gives the user, the project and the manager that said so."""
        identity = self.successResultOf(self.checker.identify("good"))
        self.assertEqual(identity, Identity("ann", "p1", "http://a/wsdl"))

    def test_invalid_tokens(self) -> None:
        """Unknown, empty and project-less tokens are invalid."""
        for token in ("bad", "", None, "noproject"):
            self.failureResultOf(self.checker.identify(token), InvalidToken)

    def test_cache(self) -> None:
        """Answers are cached for the ttl, good and bad alike, then asked again."""
        self.successResultOf(self.checker.identify("good"))
        self.failureResultOf(self.checker.identify("bad"), InvalidToken)
        asked = len(self.manager.calls)
        self.clock.advance(59)
        self.successResultOf(self.checker.identify("good"))
        self.failureResultOf(self.checker.identify("bad"), InvalidToken)
        self.assertEqual(len(self.manager.calls), asked)
        self.clock.advance(2)
        self.successResultOf(self.checker.identify("good"))
        self.assertEqual(len(self.manager.calls), asked + 3)

    def test_concurrent_calls_share_a_question(self) -> None:
        """Calls that arrive together while a question is out share its answer."""
        self.manager.hold = []
        first = self.checker.identify("good")
        second = self.checker.identify("good")
        self.assertEqual(len(self.manager.calls), 1)
        while self.manager.hold:
            self.manager.hold.pop(0).callback(None)
        self.assertEqual(self.successResultOf(first), self.successResultOf(second))

    def test_unavailable_is_not_cached(self) -> None:
        """An unreachable manager fails the call; the next call asks again."""
        self.manager.broken = True
        self.failureResultOf(self.checker.identify("good"), AuthUnavailable)
        self.manager.broken = False
        self.successResultOf(self.checker.identify("good"))

    def test_auth_url_must_be_allowed(self) -> None:
        """A caller may pick an allowed manager, never another one."""
        self.other.tokens = {"elsewhere": ("eve", "p9")}
        identity = self.successResultOf(self.checker.identify("elsewhere", "http://b/wsdl"))
        self.assertEqual(identity.auth_url, "http://b/wsdl")
        self.failureResultOf(self.checker.identify("good", "http://evil/wsdl"), AuthNotAllowed)
        self.assertEqual(self.manager.calls[-1:], [])

    def test_managers_asked_in_order(self) -> None:
        """Without a named manager, the first that knows the token tells who it is."""
        self.other.tokens = {"elsewhere": ("eve", "p9")}
        identity = self.successResultOf(self.checker.identify("elsewhere"))
        self.assertEqual(identity, Identity("eve", "p9", "http://b/wsdl"))
        self.failureResultOf(self.checker.identify("nowhere"), InvalidToken)

    def test_one_manager_down(self) -> None:
        """If a manager that was not asked cannot answer, an unknown token is "unavailable"."""
        self.other.broken = True
        self.successResultOf(self.checker.identify("good"))
        self.failureResultOf(self.checker.identify("nowhere"), AuthUnavailable)

    def test_deadline(self) -> None:
        """A manager that does not answer in time gives AuthUnavailable at the deadline."""
        self.manager.hold = []
        d = self.checker.identify("good", "http://a/wsdl")
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.failureResultOf(d, AuthUnavailable)

    def test_manager_errors_never_log_the_token(self) -> None:
        """A manager's error text may quote the token: the log gets it cut, without it."""
        token = "s3cret-token-" + "x" * 20

        async def quoting(operation: str, value: str) -> str | None:
            raise RemoteFault(f"session {value} is\nnot valid here " + "blah " * 200)

        self.manager.call = quoting  # type: ignore[method-assign]
        self.other.broken = True
        with capturedLogs() as events:
            self.failureResultOf(self.checker.identify(token), AuthUnavailable)
        logged = [e for e in events if "cannot validate" in e.get("log_format", "")]
        self.assertTrue(logged)
        for event in logged:
            self.assertNotIn("s3cret", event["error"])
            self.assertNotIn("\n", event["error"])
            self.assertLessEqual(len(event["error"]), 240)

    def test_tokens_are_not_kept(self) -> None:
        """The cache keeps digests, not tokens."""
        self.successResultOf(self.checker.identify("good"))
        self.assertNotIn("good", repr(self.checker._cache))

    def test_open_access(self) -> None:
        """Without a manager nothing is checked and nobody is identified."""
        self.assertIsNone(self.successResultOf(OpenAccess().identify(None)))
        self.assertIsNone(self.successResultOf(OpenAccess().identify("x", "http://any")))
