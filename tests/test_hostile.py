"""
A corpus of hostile requests against a real server: each gets a SOAP fault
or a clean HTTP error, nothing is created outside the work folder, no child
is started by a rejected call, and the server keeps serving.  Also TLS.
"""

from __future__ import annotations

import base64
import datetime
import socket
import time
from pathlib import Path
from typing import Any

import requests
import zeep
from twisted.trial.unittest import SynchronousTestCase

from .e2e_server import CONTEXT_ROOT, Server, wait_for
from .soap_messages import SOAP_HEADERS, envelope, with_external_entity

BAD_IDS = [
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "a/b",
    ".hidden",
    "\uff41bc",  # fullwidth a
    "abc\u2215x",  # division slash
    "abc\u200bdef",  # zero-width space
    "x" * 10_000,
    "<script>alert(1)</script>",
]


def raw_http(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, read until the server closes or the timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
        return b"".join(chunks)


def nested(depth: int) -> bytes:
    return envelope("getServiceStatus", serviceID="a", sessionToken="t").replace(
        b">a<", b">" + b"<x>" * depth + b"a" + b"</x>" * depth + b"<"
    )


class HostileCorpusTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = Path(self.mktemp()).resolve()
        self.server = Server(self.folder, "--http-timeout", "2", "--kill-grace", "2")
        self.addCleanup(self.server.cleanup)
        self.soap = zeep.Client(self.server.url + "?wsdl").service

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.post(
            self.server.url, data=body, headers={**SOAP_HEADERS, **(headers or {})}, timeout=10
        )

    def assertFault(self, response: requests.Response, code: bytes) -> None:
        self.assertIn(response.status_code, (400, 404, 405, 413, 500))
        self.assertEqual(response.headers["content-type"], "text/xml; charset=utf-8")
        self.assertIn(b"<faultcode>soap11env:" + code, response.content)
        self.assertNotIn(b"Traceback", response.content)
        self.assertNotIn(str(self.folder).encode(), response.content)

    def test_corpus(self) -> None:
        """Every hostile request is refused cleanly; nothing is created or started."""
        for bad in BAD_IDS:
            for operation in ("startWaiter", "getServiceStatus", "abortService"):
                body = envelope(operation, serviceID=bad, sessionToken="t")
                self.assertFault(self.post(body), b"Client.InvalidInput")
        nul = envelope("startWaiter", serviceID="ab", sessionToken="t").replace(
            b">ab<", b">a&#0;b<"
        )
        self.assertFault(self.post(nul), b"Client.XMLSyntaxError")
        for system in (b"file:///etc/passwd", b"http://127.0.0.1:9/x"):
            self.assertFault(self.post(with_external_entity(system)), b"Client.DoctypeForbidden")
        laughs = (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
            + b"".join(b'<!ENTITY a%d "%s">' % (i, b"&a;" * 10) for i in range(1, 10))
            + b"]>"
            + envelope("getServiceStatus", serviceID="z", sessionToken="t")
            .split(b"?>", 1)[1]
            .replace(b">z<", b">&a9;<")
        )
        started = time.monotonic()
        self.assertFault(self.post(laughs), b"Client.")
        self.assertLess(time.monotonic() - started, 5)
        self.assertFault(self.post(nested(100_000)), b"Client.")
        self.assertFault(
            self.post(envelope("startWaiter", serviceID="big", sessionToken="t" * 2_000_000)),
            b"Client.RequestTooLong",
        )
        good = envelope("startWaiter", serviceID="trunc", sessionToken="t")
        self.assertFault(self.post(good[: len(good) // 2]), b"Client.XMLSyntaxError")
        self.assertFault(
            self.post(envelope("startWaiter", "urn:evil", serviceID="ns", sessionToken="t")),
            b"Client.SchemaValidationError",
        )
        soap12 = (
            b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>'
            + envelope("getServiceStatus", serviceID="a", sessionToken="t").split(b"Body>")[1][:-10]
            + b"</e:Body></e:Envelope>"
        )
        self.assertFault(self.post(soap12, {"Content-Type": "application/soap+xml"}), b"Client.")
        self.assertFault(self.post(envelope("rm", serviceID="a", sessionToken="t")), b"Client.")
        for method, path in [("GET", "/"), ("PUT", CONTEXT_ROOT + "/Waiter"), ("GET", "/../etc")]:
            response = requests.request(
                method, self.server.url.split(CONTEXT_ROOT)[0] + path, timeout=10
            )
            self.assertIn(response.status_code, (404, 405))
        # A body that lies about its length: shorter than announced, the
        # connection is dropped at the idle timeout; longer, the rest is
        # read as a (bad) next request.
        short = raw_http(
            self.server.port,
            b"POST /cloud/vm1/Waiter HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            b"Content-Length: 1000\r\n\r\n<short/>",
        )
        self.assertNotIn(b"Traceback", short)
        long = raw_http(
            self.server.port,
            b"POST /cloud/vm1/Waiter HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
            b"Content-Length: 5\r\n\r\n<a/>GARBAGE GARBAGE\r\n\r\n",
        )
        self.assertIn(b"HTTP/1.1 ", long)
        self.assertNotIn(b"Traceback", long)

        # The server still serves, and created or started nothing.
        self.soap.startWaiter(serviceID="ok", sessionToken="t", secondsToWait=600)
        huge = "x" * 5000
        self.assertRaises(
            zeep.exceptions.Fault,
            lambda: self.soap.notifyService(sessionToken="t", serviceID="ok", message=huge),
        )
        self.soap.notifyService(
            sessionToken="t", serviceID="ok", message="fail <script>alert(1)</script>"
        )
        page = wait_for(
            lambda: (lambda p: p if "Failed" in p else None)(
                base64.b64decode(
                    self.soap.getServiceStatus(serviceID="ok", sessionToken="t").status_base64
                ).decode()
            ),
            10,
            0.2,
        )
        self.assertNotIn("<script>", page)
        self.assertIn("&lt;script&gt;", page)
        self.assertNotIn(str(self.folder), page)
        self.assertEqual(sorted(p.name for p in self.server.workdir.iterdir()), ["ok"])
        self.assertEqual(
            sorted(p.name for p in self.folder.iterdir() if p.name != "work"),
            sorted(p.name for p in self.folder.glob("twistd-*.log")),
        )
        self.assertEqual(self.server.log().count(" started, pid "), 1)

    def test_idle_connections_are_closed(self) -> None:
        """Many idle connections are closed by the server's timeout; it keeps serving."""
        sockets = [socket.create_connection(("127.0.0.1", self.server.port)) for _ in range(50)]
        try:
            time.sleep(3)
            for s in sockets:
                s.settimeout(2)
                self.assertEqual(s.recv(1), b"")
        finally:
            for s in sockets:
                s.close()
        self.assertEqual(
            self.soap.startWaiter(serviceID="after", sessionToken="t", secondsToWait=0).result,
            "UNSET",
        )


def make_certificate(folder: Path) -> None:
    """A CA (ca.pem) and a certificate for 127.0.0.1 it signed (cert.pem, key.pem)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def build(subject: str, issuer: str, public_key: Any, signer: Any, ca: bool) -> Any:
        # Python 3.13 verifies strictly (RFC 5280): key identifiers included.
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                critical=False,
            )
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    ca = build("waiter test CA", "waiter test CA", ca_key.public_key(), ca_key, True)
    cert = build("127.0.0.1", "waiter test CA", key.public_key(), ca_key, False)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "cert.pem").write_bytes(cert.public_bytes(pem))
    (folder / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


class TlsTests(SynchronousTestCase):
    def test_tls_endpoint(self) -> None:
        """Over an ssl: endpoint the service works, and its WSDL names https."""
        folder = Path(self.mktemp()).resolve()
        folder.mkdir()
        make_certificate(folder)
        server = Server(
            folder / "server",
            listen=f"ssl:0:interface=127.0.0.1:privateKey={folder}/key.pem:certKey={folder}/cert.pem",
        )
        self.addCleanup(server.cleanup)
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would win over verify
        session.verify = str(folder / "ca.pem")
        wsdl = session.get(server.url + "?wsdl", timeout=10)
        self.assertIn(f'location="{server.url}"'.encode(), wsdl.content)
        soap = zeep.Client(server.url + "?wsdl", transport=zeep.Transport(session=session)).service
        answer = soap.startWaiter(serviceID="tls", sessionToken="t", secondsToWait=0)
        self.assertEqual(answer.result, "UNSET")
        with self.assertRaises(requests.exceptions.SSLError):
            requests.get(server.url + "?wsdl", timeout=10)
        plain = raw_http(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2)
        self.assertFalse(plain.startswith(b"HTTP/1.1"))
