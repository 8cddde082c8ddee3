"""
A non-blocking SOAP client for the authentication manager, on Twisted's
HTTP client: no thread, no blocking call; every request has a timeout and
every answer a size limit.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from .wsdl import MAX_DOCUMENT, BadDocument, Service, read_wsdl, request_body, response_value


class _CappedBody(Protocol):
    """Collects a response body of at most ``limit`` bytes."""

    def __init__(self, finished: Deferred[bytes], limit: int) -> None:
        self.finished = finished
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.transport.stopProducing()  # type: ignore[union-attr]
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:  # noqa: B008
        if self.finished.called:
            return
        if self.size > self.limit:
            self.finished.errback(BadDocument("answer too large"))
        elif reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.chunks))
        else:
            self.finished.errback(reason)


class AuthManagerClient:
    """Calls one authentication manager, known by its WSDL's URL."""

    def __init__(
        self,
        reactor: IReactorTime,
        wsdl_url: str,
        timeout: float = 10.0,
        agent: IAgent | None = None,
    ) -> None:
        self.reactor = reactor
        self.wsdl_url = wsdl_url
        self.timeout = timeout
        if agent is None:
            pool = HTTPConnectionPool(reactor, persistent=True)
            agent = Agent(reactor, connectTimeout=timeout, pool=pool)
        self.agent = agent
        self._service: Service | None = None

    async def call(self, operation: str, value: str) -> str | None:
        """Call a one-argument operation; its single result."""
        service = await self.service()
        op = service.operations.get(operation)
        if op is None:
            raise BadDocument(f"the authentication manager has no {operation}")
        body = await self._fetch(
            b"POST",
            service.address,
            request_body(op, value),
            {b"content-type": [b"text/xml; charset=utf-8"], b"soapaction": [b'""']},
        )
        return response_value(body)

    async def service(self) -> Service:
        """The service its WSDL describes (read once, again after a failure)."""
        if self._service is None:
            self._service = read_wsdl(await self._fetch(b"GET", self.wsdl_url, None, {}))
        return self._service

    async def _fetch(
        self, method: bytes, url: str, body: bytes | None, headers: dict[bytes, list[bytes]]
    ) -> bytes:
        producer = FileBodyProducer(_bytes_io(body)) if body is not None else None
        request: Deferred[IResponse] = self.agent.request(
            method, url.encode("ascii"), Headers(headers), producer
        )
        request.addTimeout(self.timeout, self.reactor)
        response = await request
        finished: Deferred[bytes] = Deferred()
        finished.addTimeout(self.timeout, self.reactor)
        response.deliverBody(_CappedBody(finished, MAX_DOCUMENT))
        data = await finished
        # SOAP faults come with status 500; anything else but 200 is trouble.
        if response.code not in (200, 500):
            raise BadDocument(f"HTTP status {response.code}")
        return data


def _bytes_io(data: bytes) -> Any:
    return BytesIO(data)
