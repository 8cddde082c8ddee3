"""A small read-only HTTP resource: GET and HEAD at one exact path."""

from __future__ import annotations

from twisted.web.resource import Resource
from twisted.web.server import Request


class ReadOnlyResource(Resource):
    """
    Answers GET and HEAD with :meth:`answer`; any other method gets 405 and
    any path below it 404, as short plain text (never Twisted's HTML pages).
    """

    isLeaf = True

    def answer(self, request: Request) -> tuple[int, bytes, bytes]:
        """``(code, content type, body)`` for a GET."""
        raise NotImplementedError

    def render(self, request: Request) -> bytes:
        request.setHeader(b"cache-control", b"no-store")
        if request.postpath not in ([], [b""]):
            return _plain(request, 404, b"not found\n")
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return _plain(request, 405, b"only GET and HEAD\n")
        code, content_type, body = self.answer(request)
        request.setResponseCode(code)
        request.setHeader(b"content-type", content_type)
        return body


def _plain(request: Request, code: int, body: bytes) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return body
