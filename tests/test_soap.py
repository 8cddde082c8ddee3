"""
Tests for the SOAP interface of the waiter (waiter_service.soap), through
its real Twisted site, in memory, with the run manager on a fake reactor.
"""

from __future__ import annotations

import base64
import signal
from pathlib import Path
from typing import Any

from lxml import etree
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from waiter_service.programs.waiter import Waiter
from waiter_service.runs.manager import RunManager
from waiter_service.runs.store import RunStore
from waiter_service.soap.operations import NAMESPACE
from waiter_service.soap.site import build_site, parse_context_root
from waiter_service.testing import (
    FakeProcessReactor,
    HTTPResponse,
    SignalRecorder,
    http_request,
    parse_response,
    send_http_request,
)

from .soap_messages import SOAP_HEADERS, envelope, with_external_entity

SOAP_ENV = "{http://schemas.xmlsoap.org/soap/envelope/}"
WSDL = "{http://schemas.xmlsoap.org/wsdl/}"
XS = "{http://www.w3.org/2001/XMLSchema}"
ENDPOINT = b"/cloud/vm1/Waiter"


def fault(response: HTTPResponse) -> tuple[str, str]:
    """(faultcode without prefix, faultstring) of a SOAP fault response."""
    root = etree.fromstring(response.body)
    node = root.find(f"{SOAP_ENV}Body/{SOAP_ENV}Fault")
    assert node is not None, response.body
    return node.findtext("faultcode").split(":", 1)[1], node.findtext("faultstring")


def outputs(response: HTTPResponse) -> dict[str, str | None]:
    """The output elements of a SOAP response, by local name."""
    root = etree.fromstring(response.body)
    body = root.find(f"{SOAP_ENV}Body")
    wrapper = body[0]
    return {etree.QName(e).localname: e.text for e in wrapper}


class SoapTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.root = Path(self.mktemp())
        self.groups = SignalRecorder()
        self.manager = RunManager(
            self.reactor,
            RunStore(self.root),
            Waiter(max_seconds=3600),
            launcher=["/usr/bin/setsid", "/usr/bin/env"],
            signal_group=self.groups,
        )
        self.manager.start_service()
        self.site = build_site(
            Waiter(), self.manager, ["cloud", "vm1"], max_body=32768, reactor=self.reactor
        )

    def call(self, operation: str, **fields: object) -> HTTPResponse:
        return self.post(envelope(operation, **fields))

    def post(self, body: bytes, path: bytes = ENDPOINT) -> HTTPResponse:
        return http_request(self.site, b"POST", path, body, headers=SOAP_HEADERS)

    def assertNothingStarted(self) -> None:
        self.assertEqual(self.reactor.processes, [])
        self.assertEqual(list(self.root.iterdir()), [])


class WsdlTests(SoapTestCase):
    def test_wsdl_operations(self) -> None:
        """The WSDL declares the four operations with the protocol's parts in order."""
        response = http_request(self.site, b"GET", ENDPOINT + b"?wsdl")
        self.assertEqual(response.code, 200)
        root = etree.fromstring(response.body)
        self.assertEqual(root.get("targetNamespace"), NAMESPACE)
        types = {
            t.get("name"): [e.get("name") for e in t.iter(f"{XS}element")]
            for t in root.iter(f"{XS}complexType")
        }
        self.assertEqual(
            types["startWaiter"],
            ["serviceID", "sessionToken", "secondsToWait", "extraParameters"],
        )
        self.assertEqual(types["startWaiterResponse"], ["status_base64", "result"])
        self.assertEqual(types["getServiceStatus"], ["serviceID", "sessionToken"])
        self.assertEqual(types["getServiceStatusResponse"], ["status_base64", "result"])
        self.assertEqual(types["abortServiceResponse"], ["success"])
        self.assertEqual(types["notifyService"], ["sessionToken", "serviceID", "message"])
        self.assertEqual(types["notifyServiceResponse"], ["response"])

    def test_wsdl_address_per_client(self) -> None:
        """Each client's WSDL names the host it used; a forged Host does not stick."""
        forged = http_request(
            self.site, b"GET", ENDPOINT + b"?wsdl", headers={b"Host": b"evil.test"}
        )
        honest = http_request(
            self.site, b"GET", ENDPOINT + b"?wsdl", headers={b"Host": b"portal.test:8080"}
        )
        self.assertIn(b'location="http://evil.test/cloud/vm1/Waiter"', forged.body)
        self.assertIn(b'location="http://portal.test:8080/cloud/vm1/Waiter"', honest.body)

    def test_context_root(self) -> None:
        """The service lives under its context root; elsewhere a SOAP fault, 404."""
        for method, path in [
            (b"GET", b"/Waiter?wsdl"),
            (b"GET", b"/"),
            (b"POST", b"/cloud"),
            (b"GET", b"/cloud/vm1"),
            (b"POST", b"/cloud/vm1/Other"),
            (b"POST", b"/cloud/vm1/Waiter/startWaiter"),
            (b"DELETE", b"/x/y/z"),
        ]:
            response = http_request(self.site, method, path, b"<a/>", headers=SOAP_HEADERS)
            self.assertEqual(response.code, 404)
            self.assertEqual(fault(response)[0], "Client.NotFound")

    def test_required_input(self) -> None:
        """A program input marked required is required by the schema, with its doc."""
        from waiter_service.runs.program import InputField
        from waiter_service.soap.operations import schema_type

        required = schema_type(InputField("geometry", str, required=True, doc="a URL"))
        optional = schema_type(InputField("cells", int))
        self.assertEqual((required.Attributes.min_occurs, optional.Attributes.min_occurs), (1, 0))
        self.assertEqual(required.Annotations.doc, "a URL")

    def test_parse_context_root(self) -> None:
        """Context roots are plain path segments; anything else is refused."""
        self.assertEqual(parse_context_root("/mycompany/myvm/"), ["mycompany", "myvm"])
        self.assertEqual(parse_context_root(""), [])
        for bad in ("/a/../b", "/a b", "/a?x", "/%2e%2e"):
            self.assertRaises(ValueError, parse_context_root, bad)


class StartAndStatusTests(SoapTestCase):
    def test_start_and_poll(self) -> None:
        """Start answers a status page and UNSET; polls follow the run to COMPLETED."""
        started = outputs(
            self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait=5)
        )
        self.assertEqual(started["result"], "UNSET")
        self.assertIn(b"0 %", base64.b64decode(started["status_base64"]))
        process = self.reactor.processes[0]
        process.stdout(b"progress 50\n")
        polled = outputs(self.call("getServiceStatus", serviceID="s1", sessionToken="t"))
        self.assertIn(b"50 %", base64.b64decode(polled["status_base64"]))
        again = outputs(self.call("getServiceStatus", serviceID="s1", sessionToken="t"))
        self.assertEqual(again, {"status_base64": "UNCHANGED", "result": "UNSET"})
        (self.root / "s1" / "result").write_bytes(b"Waited 5 of 5 seconds.\n")
        process.exit(0)
        done = outputs(self.call("getServiceStatus", serviceID="s1", sessionToken="t"))
        self.assertEqual(done["status_base64"], "COMPLETED")
        self.assertEqual(base64.b64decode(done["result"]), b"Waited 5 of 5 seconds.\n")

    def test_extra_parameters(self) -> None:
        """An optional extraParameters string is parsed and kept with the run."""
        self.call(
            "startWaiter",
            serviceID="s1",
            sessionToken="t",
            secondsToWait=5,
            extraParameters="WFM=http://wfm/x?a=b,gss=http://gss,",
        )
        record = self.manager.runs["s1"].record
        self.assertEqual(record.extra_parameters, {"WFM": "http://wfm/x?a=b", "gss": "http://gss"})

    def test_default_wait(self) -> None:
        """Without secondsToWait the waiter waits the tutorial's 300 seconds."""
        self.call("startWaiter", serviceID="s1", sessionToken="t")
        self.assertIn("300", self.reactor.processes[0].args)

    def test_abort(self) -> None:
        """abortService answers true once the child is gone; then the page says aborted."""
        self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait=60)
        process = self.reactor.processes[0]
        _channel, transport = send_http_request(
            self.site,
            b"POST",
            ENDPOINT,
            envelope("abortService", serviceID="s1", sessionToken="t"),
            headers=SOAP_HEADERS,
        )
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.groups.sent, [(process.pid, signal.SIGTERM)])
        process.killed(signal.SIGTERM)
        self.assertEqual(outputs(parse_response(transport.value())), {"success": "true"})
        page = outputs(self.call("getServiceStatus", serviceID="s1", sessionToken="t"))
        self.assertIn(b"Aborted", base64.b64decode(page["status_base64"]))
        again = outputs(self.call("abortService", serviceID="s1", sessionToken="t"))
        self.assertEqual(again, {"success": "false"})

    def test_notify(self) -> None:
        """notifyService passes the message to the program and says so."""
        self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait=60)
        answer = outputs(
            self.call("notifyService", sessionToken="t", serviceID="s1", message="finish")
        )
        self.assertEqual(answer, {"response": "delivered to the running program"})
        self.assertEqual(bytes(self.reactor.processes[0].stdin), b"finish\n")


class LoggingTests(SoapTestCase):
    def test_one_event_per_call(self) -> None:
        """Each call logs its operation, serviceID, outcome and duration; never the token."""
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.call("startWaiter", serviceID="s1", sessionToken="secret-token", secondsToWait=5)
        self.call("getServiceStatus", serviceID="../../etc" + "x" * 500, sessionToken="t")
        calls = [e for e in events if "operation" in e and "outcome" in e]
        self.assertEqual(
            [(e["operation"], e["outcome"]) for e in calls],
            [("startWaiter", "ok"), ("getServiceStatus", "Client.InvalidInput")],
        )
        self.assertEqual(calls[0]["service_id"], "s1")
        self.assertLess(len(str(calls[1]["service_id"])), 60)
        self.assertTrue(all(isinstance(e["duration"], float) for e in calls))
        self.assertNotIn("secret-token", repr(events))

    def test_routine_polls_are_quiet(self) -> None:
        """Successful polls: no event, or info with log_polls, debug with log_debug."""
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait=5)
        self.call("getServiceStatus", serviceID="s1", sessionToken="t")
        self.call("getServiceStatus", serviceID="nobody", sessionToken="t")
        outcomes = [(e["operation"], e["outcome"]) for e in events if "outcome" in e]
        self.assertEqual(
            outcomes,
            [("startWaiter", "ok"), ("getServiceStatus", "Client.UnknownServiceID")],
        )
        body = envelope("getServiceStatus", serviceID="s1", sessionToken="t")
        for option, level in [("log_polls", LogLevel.info), ("log_debug", LogLevel.debug)]:
            events.clear()
            site = build_site(Waiter(), self.manager, [], reactor=self.reactor, **{option: True})
            http_request(site, b"POST", b"/Waiter", body, headers=SOAP_HEADERS)
            self.assertEqual(
                [(e["outcome"], e["log_level"]) for e in events if "outcome" in e],
                [("ok", level)],
            )


class FaultTests(SoapTestCase):
    def assertClientFault(self, response: HTTPResponse, code: str) -> str:
        self.assertEqual(response.code, 500 if code != "Client.RequestTooLong" else 413)
        got, text = fault(response)
        self.assertEqual(got, code)
        self.assertNotIn("Traceback", text)
        return text

    def test_bad_service_ids(self) -> None:
        """Unsafe serviceIDs are Client faults and create nothing."""
        for bad in ("../x", "/etc/passwd", "a/b", "\u0430bc", "x" * 10_000, " "):
            response = self.call("startWaiter", serviceID=bad, sessionToken="t", secondsToWait=1)
            self.assertClientFault(response, "Client.InvalidInput")
        self.assertNothingStarted()

    def test_bad_waits(self) -> None:
        """Negative and too long waits are Client faults; non-integers too."""
        for bad in (-1, 3601):
            response = self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait=bad)
            text = self.assertClientFault(response, "Client.InvalidInput")
            self.assertIn("secondsToWait", text)
        response = self.call("startWaiter", serviceID="s1", sessionToken="t", secondsToWait="ten")
        self.assertTrue(fault(response)[0].startswith("Client."))
        self.assertNothingStarted()

    def test_bad_extra_parameters(self) -> None:
        """A malformed extraParameters string is a Client fault."""
        response = self.call(
            "startWaiter", serviceID="s1", sessionToken="t", extraParameters="no-equals-sign"
        )
        self.assertClientFault(response, "Client.InvalidInput")
        self.assertNothingStarted()

    def test_missing_service_id(self) -> None:
        """A call without its serviceID fails schema validation."""
        response = self.call("getServiceStatus", sessionToken="t")
        self.assertClientFault(response, "Client.SchemaValidationError")

    def test_unknown_service_id(self) -> None:
        """Status, abort and notify for an unknown serviceID are Client faults."""
        for operation, fields in [
            ("getServiceStatus", {"serviceID": "nobody", "sessionToken": "t"}),
            ("abortService", {"serviceID": "nobody", "sessionToken": "t"}),
            ("notifyService", {"sessionToken": "t", "serviceID": "nobody", "message": "hi"}),
        ]:
            response = self.call(operation, **fields)
            self.assertClientFault(response, "Client.UnknownServiceID")

    def test_malformed_requests(self) -> None:
        """Broken XML, unknown operations, wrong namespaces and SOAP 1.2 get faults."""
        soap12 = (
            b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>'
            b"</e:Body></e:Envelope>"
        )
        cases = [
            b"<not xml",
            envelope("startWaiter", serviceID="s1", sessionToken="t")[:-30],
            envelope("dropTables", serviceID="s1", sessionToken="t"),
            envelope("startWaiter", namespace="urn:other", serviceID="s1", sessionToken="t"),
            soap12,
            b"",
        ]
        for body in cases:
            response = self.post(body)
            self.assertEqual(response.headers["content-type"].split(";")[0], "text/xml")
            self.assertTrue(fault(response)[0].startswith("Client"), body)
        self.assertNothingStarted()
        self.assertEqual(self.call("startWaiter", serviceID="s1", sessionToken="t").code, 200)

    def test_external_entities(self) -> None:
        """Documents with a DTD (file or network entities) are refused."""
        for system in (b"file:///etc/passwd", b"http://127.0.0.1:9/x"):
            response = self.post(with_external_entity(system))
            self.assertClientFault(response, "Client.DoctypeForbidden")
        self.assertNothingStarted()

    def test_body_over_cap(self) -> None:
        """A body over --max-body is answered 413 with a SOAP fault."""
        body = envelope("startWaiter", serviceID="s1", sessionToken="t" * 40_000)
        self.assertClientFault(self.post(body), "Client.RequestTooLong")
        self.assertNothingStarted()

    def test_get_without_wsdl(self) -> None:
        """A plain GET of the endpoint is a SOAP fault, not an HTML page."""
        response = http_request(self.site, b"GET", ENDPOINT)
        self.assertEqual(fault(response)[0], "Client.RequestNotAllowed")

    def test_internal_error_hidden(self) -> None:
        """An unexpected error is a Server fault that reveals nothing, and is logged."""
        events: list[dict[str, object]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)

        def broken(service_id: object, owner: object = None) -> None:
            raise RuntimeError("secret internals at /srv/x")

        self.patch(self.manager, "status", broken)
        self.call("startWaiter", serviceID="s1", sessionToken="t")
        response = self.call("getServiceStatus", serviceID="s1", sessionToken="t")
        code, _text = fault(response)
        self.assertEqual(code, "Server")
        self.assertNotIn("secret", response.body.decode())
        failures = [e for e in events if e.get("log_level") == LogLevel.critical]
        self.assertEqual(len(failures), 1)
        self.flushLoggedErrors(RuntimeError)


class FastPathTests(SynchronousTestCase):
    """getServiceStatus on the fast path answers exactly as through Spyne."""

    def make(self, fast_path: bool, encoding: str = "base64") -> tuple[Any, Any, Path]:
        reactor = FakeProcessReactor()
        root = Path(self.mktemp())
        manager = RunManager(
            reactor,
            RunStore(root),
            Waiter(),
            launcher=["/usr/bin/setsid", "/usr/bin/env"],
            signal_group=SignalRecorder(),
            identify=reactor.identify,
            is_alive=reactor.is_alive,
            result_encoding=encoding,
        )
        manager.start_service()
        site = build_site(Waiter(), manager, [], reactor=reactor, fast_path=fast_path)
        return site, reactor, root

    def test_same_answers(self) -> None:
        """Pages, UNCHANGED, COMPLETED, raw results and faults are byte for byte Spyne's."""
        bodies: dict[bool, list[bytes]] = {}
        for fast in (True, False):
            site, reactor, root = self.make(fast, encoding="raw")

            def poll(service_id: str = "s1", token: str = "t", site: Any = site) -> bytes:
                body = envelope("getServiceStatus", serviceID=service_id, sessionToken=token)
                return http_request(site, b"POST", b"/Waiter", body, headers=SOAP_HEADERS).body

            start = envelope("startWaiter", serviceID="s1", sessionToken="t", secondsToWait=5)
            http_request(site, b"POST", b"/Waiter", start, headers=SOAP_HEADERS)
            got = [poll(), poll()]
            reactor.processes[0].stdout(b"progress 40\n")
            got.append(poll())
            got += [poll("nobody"), poll("../x"), poll("")]
            (root / "s1" / "result").write_bytes("<done> & \u00e9\r\n".encode())
            reactor.processes[0].exit(0)
            got += [poll(), poll()]
            bodies[fast] = got
        self.assertEqual(bodies[True], bodies[False])
        self.assertIn(b"UNCHANGED", bodies[True][1])
        self.assertIn(b"&lt;done&gt; &amp; \xc3\xa9", bodies[True][-1])

    def test_others_go_to_spyne(self) -> None:
        """Requests that are not plain status calls are left to Spyne."""
        site, _, _ = self.make(True)
        fast = site.resource.children[b"Waiter"].fast
        plain = envelope("getServiceStatus", serviceID="a", sessionToken="t")
        self.assertEqual(fast.parse(plain), ("a", "t"))
        header = plain.replace(b"<soapenv:Body>", b"<soapenv:Header/><soapenv:Body>")
        comment = plain.replace(b"<soapenv:Body>", b"<!-- x --><soapenv:Body>")
        extra = plain.replace(b"</tns:sessionToken>", b"</tns:sessionToken><tns:x>1</tns:x>")
        swapped = envelope("getServiceStatus", sessionToken="t", serviceID="a")
        nbsp = plain.replace(b"<tns:serviceID>", "\u00a0<tns:serviceID>".encode())
        # "<!" written in UTF-7 ("+ADwAIQ-"): invisible to a byte search.
        utf7_dtd = (
            b'<?xml version="1.0" encoding="UTF-7"?>+ADwAIQ-DOCTYPE x+AD4-'
            + plain.split(b"?>", 1)[1]
        )
        for body in (header, comment, extra, swapped, b"<broken", plain[:-20], nbsp, utf7_dtd):
            self.assertIsNone(fast.parse(body), body)
