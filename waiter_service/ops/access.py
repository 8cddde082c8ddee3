"""
HTTP access lines as structured ``debug`` events.

Twisted's ``Site`` writes one combined-log line per request, at info, to
the legacy log: every poll (one a run every 6 s), every health check and
every scrape.  A SOAP call already logs one ``soap_call`` event (with its
operation, serviceID, outcome and duration), so the access line is only
wanted when debugging: it becomes an ``http_access`` event at ``debug``,
built only when the log takes debug events (``access_log``; a poll is the
hot path).
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.web.http import Request
from twisted.web.server import Site

log = Logger()

#: Longest part of a request's URI in a log event.
MAX_URI = 200


def printable(data: bytes, limit: int = MAX_URI) -> str:
    """Bytes from the network as a short, single-line, escaped text."""
    return repr(data[:limit])[2:-1]


class AccessLogSite(Site):
    """A ``Site`` whose access lines are ``http_access`` debug events."""

    #: Whether to log them at all (the log takes debug events).
    access_log = False

    def logPrefix(self) -> str:
        # "Site starting on PORT", as before: tools wait for that line.
        return "Site"

    def log(self, request: Request) -> None:
        if not self.access_log:
            return
        client = request.getClientAddress()
        log.debug(
            "{client} {method} {uri} {code} {length}",
            event="http_access",
            client=getattr(client, "host", "-"),
            method=printable(request.method, 16),
            uri=printable(request.uri),
            code=request.code,
            length=request.sentLength,
        )
