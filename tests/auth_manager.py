"""
A stand-in for the platform's authentication manager, for the tests: a real
SOAP service (Spyne on Twisted, through waiter_service.spyne_compat) on a
real port, with the platform's operations.

    python -m tests.auth_manager TOKENS.json CALLS.log

TOKENS.json maps each token to ``{"user", "project", "valid", "delay"}``
(``valid`` false: an expired token; ``delay``: seconds before answering).
Every call is appended to CALLS.log (operation name and a digest of the
token, never the token).  Prints ``listening on PORT`` when ready.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.web.resource import Resource
from twisted.web.server import Site

from waiter_service.soap.resource import SoapResource
from waiter_service.spyne_compat import (
    Boolean,
    DeferredAwareApplication,
    DoctypeFreeSoap11,
    Fault,
    ServiceBase,
    Unicode,
    rpc,
    soap_request_factory,
)

NAMESPACE = "http://authmanager.test/"


def make_service(tokens: dict[str, dict[str, Any]], calls: Path) -> type[ServiceBase]:
    def lookup(operation: str, token: str) -> Any:
        with calls.open("a") as f:
            f.write(f"{operation} {hashlib.sha256(token.encode()).hexdigest()[:8]}\n")
        entry = tokens.get(token or "")
        delay = (entry or {}).get("delay", 0)
        return task.deferLater(reactor, delay, lambda: entry)

    class AuthManager(ServiceBase):
        @rpc(Unicode, _returns=Boolean)
        def validateSessionToken(ctx, sessionToken):  # noqa: N805
            return lookup("validateSessionToken", sessionToken).addCallback(
                lambda entry: bool(entry and entry.get("valid", True))
            )

        @rpc(Unicode, _returns=Unicode)
        def getUsername(ctx, sessionToken):  # noqa: N805
            return lookup("getUsername", sessionToken).addCallback(lambda e: _field(e, "user"))

        @rpc(Unicode, _returns=Unicode)
        def getProject(ctx, sessionToken):  # noqa: N805
            return lookup("getProject", sessionToken).addCallback(lambda e: _field(e, "project"))

    return AuthManager


def _field(entry: dict[str, Any] | None, name: str) -> str:
    if entry is None or not entry.get("valid", True):
        raise Fault("Client.InvalidToken", "invalid token")
    return str(entry[name])


def main(tokens_path: str, calls_path: str) -> None:
    tokens = json.loads(Path(tokens_path).read_text())
    app = DeferredAwareApplication(
        [make_service(tokens, Path(calls_path))],
        tns=NAMESPACE,
        name="AuthManager",
        in_protocol=DoctypeFreeSoap11(validator="lxml"),
        out_protocol=DoctypeFreeSoap11(),
    )
    root = Resource()
    root.putChild(b"AuthManager", SoapResource(app, "/AuthManager", 1024 * 1024))
    port = reactor.listenTCP(
        0, Site(root, requestFactory=soap_request_factory()), interface="127.0.0.1"
    )
    print(f"listening on {port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
