"""
Test doubles for code that spawns processes and serves HTTP, in the manner
of treq's ``testing`` module: shipped with the package so that tests of a
wrapped program can use them too.

- :class:`FakeProcessReactor`: a ``MemoryReactorClock`` that also provides
  ``IReactorProcess``; each ``spawnProcess`` gives a :class:`FakeProcess`.
- :class:`FakeProcess`: an ``IProcessTransport`` whose test pushes output,
  and ends it, by hand.
- :class:`SignalRecorder`: stands in for ``os.killpg``.
- :func:`http_request`, :func:`send_http_request`: one HTTP request
  through a ``Site``, in memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessProtocol, IProcessTransport, IReactorProcess
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web.server import Site
from zope.interface import implementer

from .runs.procinfo import ProcessIdentity

#: The boot id of the fake processes' machine.
FAKE_BOOT_ID = "00000000-fake-boot"


@implementer(IProcessTransport)
class FakeProcess:
    """A child that exists only in memory."""

    def __init__(
        self,
        reactor: FakeProcessReactor,
        protocol: IProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str],
        env: Mapping[Any, Any] | None,
        path: bytes | str | None,
        pid: int,
    ) -> None:
        self.reactor = reactor
        self.proto = protocol
        self.executable = executable
        self.args = list(args)
        self.env = dict(env or {})
        self.path = path
        self.pid: int | None = pid
        self.stdin = bytearray()
        self.stdin_closed = False
        self.signals: list[str | int] = []
        self.pipes_open = True
        self.ended = False
        self._reason: Exception | None = None

    # -- IProcessTransport ---------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.stdin_closed:
            raise RuntimeError("write to a closed stdin")
        self.stdin += data

    def writeSequence(self, data: Sequence[bytes]) -> None:
        for chunk in data:
            self.write(chunk)

    def writeToChild(self, childFD: int, data: bytes) -> None:
        if childFD == 0:
            self.write(data)

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def closeStdout(self) -> None:
        pass

    def closeStderr(self) -> None:
        pass

    def closeChildFD(self, descriptor: int) -> None:
        if descriptor == 0:
            self.closeStdin()

    def loseConnection(self) -> None:
        """The server closes its ends of the pipes."""
        self.closeStdin()
        self.close_pipes()

    def signalProcess(self, signalID: str | int) -> None:
        if self.pid is None:
            raise ProcessExitedAlready()
        self.signals.append(signalID)

    def getPeer(self) -> Any:
        return ("process", self.pid)

    def getHost(self) -> Any:
        return ("process", self.pid)

    # -- what tests do ------------------------------------------------------------

    def stdout(self, data: bytes) -> None:
        """The child prints ``data`` on stdout."""
        self.proto.childDataReceived(1, data)

    def stderr(self, data: bytes) -> None:
        """The child prints ``data`` on stderr."""
        self.proto.childDataReceived(2, data)

    def exit(self, code: int = 0, pipes_open: bool = False) -> None:
        """The child exits with ``code`` and is reaped.

        Its pipes close with it, unless ``pipes_open`` (processes it left
        behind still hold them): then it ends at :meth:`close_pipes`.
        """
        reason = ProcessDone(0) if code == 0 else ProcessTerminated(exitCode=code)
        self._exit(reason, pipes_open)

    def killed(self, signal: int, pipes_open: bool = False) -> None:
        """The child dies of ``signal``."""
        self._exit(ProcessTerminated(signal=signal), pipes_open)

    def close_pipes(self) -> None:
        """The last holder of the child's pipes is gone: the child ends."""
        self.pipes_open = False
        if self._reason is not None and not self.ended:
            self.ended = True
            self.proto.processEnded(Failure(self._reason))

    def _exit(self, reason: Exception, pipes_open: bool) -> None:
        if self.pid is None:
            raise RuntimeError("the process has already exited")
        self.reactor.alive.pop(self.pid, None)
        self.pid = None
        self.stdin_closed = True
        self._reason = reason
        self.proto.processExited(Failure(reason))
        if not pipes_open:
            self.close_pipes()


@implementer(IReactorProcess)
class FakeProcessReactor(MemoryReactorClock):
    """A memory reactor and clock whose ``spawnProcess`` records children."""

    def __init__(self, first_pid: int = 1000) -> None:
        super().__init__()
        self.processes: list[FakeProcess] = []
        self.spawn_error: Exception | None = None
        #: The fake machine's live processes, by pid (see identify, is_alive).
        self.alive: dict[int, ProcessIdentity] = {}
        self._next_pid = first_pid

    def identify(self, pid: int) -> ProcessIdentity | None:
        """Stands in for ``procinfo.identify``."""
        return self.alive.get(pid)

    def is_alive(self, identity: ProcessIdentity) -> bool:
        """Stands in for ``procinfo.is_alive``."""
        return self.alive.get(identity.pid) == identity

    def add_foreign_process(self, pid: int, start_ticks: int = 1) -> ProcessIdentity:
        """A live process that this reactor did not start (e.g. an orphan)."""
        identity = ProcessIdentity(pid, start_ticks, FAKE_BOOT_ID)
        self.alive[pid] = identity
        return identity

    def spawnProcess(
        self,
        processProtocol: IProcessProtocol,
        executable: bytes | str,
        args: Sequence[bytes | str],
        env: Mapping[Any, Any] | None = None,
        path: bytes | str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        usePTY: bool = False,
        childFDs: Mapping[int, int | str] | None = None,
    ) -> IProcessTransport:
        if self.spawn_error is not None:
            raise self.spawn_error
        process = FakeProcess(self, processProtocol, executable, args, env, path, self._next_pid)
        self.alive[self._next_pid] = ProcessIdentity(self._next_pid, self._next_pid, FAKE_BOOT_ID)
        self._next_pid += 1
        self.processes.append(process)
        processProtocol.makeConnection(process)
        return process


@dataclass
class SignalRecorder:
    """Stands in for ``os.killpg``: records ``(pgid, signal)`` pairs."""

    sent: list[tuple[int, int]] = field(default_factory=list)
    missing_groups: set[int] = field(default_factory=set)

    def __call__(self, pgid: int, signum: int) -> None:
        if pgid in self.missing_groups:
            raise ProcessLookupError(pgid)
        self.sent.append((pgid, signum))


@dataclass
class HTTPResponse:
    """What :func:`http_request` got back."""

    code: int
    headers: dict[str, str]
    body: bytes


def http_request(
    site: Site,
    method: bytes,
    path: bytes,
    body: bytes = b"",
    headers: Mapping[bytes, bytes] | None = None,
    chunked: bool = False,
) -> HTTPResponse:
    """Send one HTTP/1.1 request to ``site`` in memory and parse the answer.

    The response must be complete once the request is handled, as it is for
    every synchronous SOAP call on a site whose requests come from
    :func:`waiter_service.spyne_compat.soap_request_factory`.
    """
    channel, transport = send_http_request(site, method, path, body, headers, chunked)
    channel.connectionLost(Failure(ConnectionError("test over")))
    return parse_response(transport.value())


def send_http_request(
    site: Site,
    method: bytes,
    path: bytes,
    body: bytes = b"",
    headers: Mapping[bytes, bytes] | None = None,
    chunked: bool = False,
) -> tuple[Any, StringTransport]:
    """Send one request to ``site``: ``(channel, transport)``.

    The answer accumulates in the transport.

    For calls answered later (a ``Deferred``): parse ``transport.value()``
    with :func:`parse_response` once it has fired.
    """
    all_headers = {b"Host": b"example.test"}
    all_headers.update(headers or {})
    if chunked:
        all_headers[b"Transfer-Encoding"] = b"chunked"
        wire_body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    else:
        all_headers.setdefault(b"Content-Length", b"%d" % len(body))
        wire_body = body
    head = b"%s %s HTTP/1.1\r\n" % (method, path)
    head += b"".join(b"%s: %s\r\n" % kv for kv in all_headers.items())
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    channel.makeConnection(transport)
    channel.dataReceived(head + b"\r\n" + wire_body)
    return channel, transport


def parse_response(raw: bytes) -> HTTPResponse:
    """Split a raw HTTP/1.1 response (plain or chunked) into its parts."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        chunks = []
        while body:
            size_line, _, rest = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            chunks.append(rest[:size])
            body = rest[size + 2 :]
        body = b"".join(chunks)
    return HTTPResponse(code, headers, body)
