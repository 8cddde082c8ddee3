"""
Session tokens: who is calling, and for which project.

:class:`AuthManagerChecker` asks the platform's authentication manager
(``validateSessionToken``, then ``getUsername`` and ``getProject``), caches
the answer for a short time (a poll every 6 s must not become a remote call
each time), and shares one question between calls that arrive together.
Tokens are kept only as SHA-256 digests.  :class:`OpenAccess` is the local
mode: no checks at all.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

#: Cached answers kept at most (least recently used go first).
MAX_CACHED = 10_000


@dataclass(frozen=True)
class Identity:
    """The user and project a valid token stands for, and who said so."""

    user: str
    project: str
    auth_url: str | None = None


class InvalidToken(Exception):
    """The token is not valid (unknown, expired, malformed)."""


class AuthUnavailable(Exception):
    """The authentication manager could not be asked (down, slow, broken)."""


class AuthNotAllowed(Exception):
    """The caller named an authentication manager this server does not use."""


class Caller(Protocol):
    """What the checker needs of a SOAP client."""

    async def call(self, operation: str, value: str) -> str | None: ...


class TokenChecker(Protocol):
    """Turns a session token into an Identity (or None when nothing is checked)."""

    enabled: bool

    def identify(self, token: str | None, auth_url: str | None = None) -> Deferred[Any]: ...


class OpenAccess:
    """No authentication manager: every call is accepted, nobody is anybody."""

    enabled = False

    def identify(self, token: str | None, auth_url: str | None = None) -> Deferred[Any]:
        return succeed(None)


class AuthManagerChecker:
    """Checks tokens against one of the allowed authentication managers."""

    enabled = True
    log = Logger()

    def __init__(
        self,
        clients: Mapping[str, Caller],
        clock: IReactorTime,
        ttl: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        if not clients:
            raise ValueError("at least one authentication manager is needed")
        self.clients = dict(clients)
        self.default = next(iter(self.clients))
        self.clock = clock
        self.ttl = ttl
        self.timeout = timeout
        self._cache: OrderedDict[tuple[str, str], tuple[float, Identity | None]] = OrderedDict()
        self._asking: dict[tuple[str, str], list[Deferred[Any]]] = {}

    def identify(self, token: str | None, auth_url: str | None = None) -> Deferred[Any]:
        """
        Fires with the token's Identity, or fails with one of the errors above.

        With ``auth_url`` (a start naming its manager) only that manager is
        asked; without it the managers are asked in order until one knows
        the token, so that nothing about a run is looked at before its
        caller is known.
        """
        if not token:
            return fail(InvalidToken())
        if auth_url is not None:
            if auth_url not in self.clients:
                return fail(AuthNotAllowed(auth_url))
            return self._identify_at(auth_url, token)
        return Deferred.fromCoroutine(self._identify_anywhere(token))

    async def _identify_anywhere(self, token: str) -> Identity:
        unavailable = False
        for url in self.clients:
            try:
                identity: Identity = await self._identify_at(url, token)
                return identity
            except InvalidToken:
                continue
            except AuthUnavailable:
                unavailable = True
        raise AuthUnavailable() if unavailable else InvalidToken()

    def _identify_at(self, url: str, token: str) -> Deferred[Any]:
        key = (url, hashlib.sha256(token.encode("utf-8")).hexdigest())
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self.clock.seconds():
            self._cache.move_to_end(key)
            return succeed(cached[1]) if cached[1] is not None else fail(InvalidToken())
        d: Deferred[Any] = Deferred()
        waiting = self._asking.setdefault(key, [])
        waiting.append(d)
        if len(waiting) == 1:
            question = Deferred.fromCoroutine(self._ask(self.clients[url], token, url))
            question.addTimeout(self.timeout, self.clock)
            question.addBoth(self._answered, key, url, token)
        return d

    async def _ask(self, client: Caller, token: str, url: str) -> Identity | None:
        valid = await client.call("validateSessionToken", token)
        if (valid or "").strip().lower() not in ("true", "1"):
            return None
        user, project = await gatherResults(
            [
                Deferred.fromCoroutine(client.call("getUsername", token)),
                Deferred.fromCoroutine(client.call("getProject", token)),
            ]
        )
        if not project:
            return None
        return Identity(user or "", project, url)

    def _answered(self, result: Any, key: tuple[str, str], url: str, token: str) -> None:
        waiting = self._asking.pop(key, [])
        if isinstance(result, Failure):
            error: Any = result.value
            while hasattr(error, "subFailure"):  # gatherResults' FirstError
                error = error.subFailure.value
            self.log.warn(
                "cannot validate a session token at {url}: {error}",
                url=url,
                error=_loggable_error(error, token),
            )
            for d in waiting:
                d.errback(AuthUnavailable())
            return
        self._cache[key] = (self.clock.seconds() + self.ttl, result)
        self._cache.move_to_end(key)
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        for d in waiting:
            if result is None:
                d.errback(InvalidToken())
            else:
                d.callback(result)


def _loggable_error(error: BaseException, token: str) -> str:
    """
    What went wrong, for the log: the type and the text, on one line, cut,
    and without the token (a manager's fault text may quote it).
    """
    text = " ".join(str(error).split())
    if token:
        text = text.replace(token, "<token>")
    return f"{type(error).__name__}: {text[:200]}"
