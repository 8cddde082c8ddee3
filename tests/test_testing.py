"""The test doubles of waiter_service.testing provide what they stand in for."""

from __future__ import annotations

from twisted.internet.interfaces import IProcessTransport, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from waiter_service.testing import FakeProcessReactor


class FakeTests(SynchronousTestCase):
    def test_reactor_interfaces(self) -> None:
        """The fake reactor provides IReactorProcess and IReactorTime."""
        reactor = FakeProcessReactor()
        self.assertTrue(verifyObject(IReactorProcess, reactor))
        self.assertTrue(verifyObject(IReactorTime, reactor))

    def test_process_transport(self) -> None:
        """A fake process provides IProcessTransport, and is alive until it exits."""
        reactor = FakeProcessReactor()
        process = reactor.spawnProcess(ProcessProtocol(), "prog", ["prog"])
        self.assertTrue(verifyObject(IProcessTransport, process))
        identity = reactor.identify(process.pid)
        self.assertTrue(reactor.is_alive(identity))
        reactor.processes[0].exit(0)
        self.assertFalse(reactor.is_alive(identity))
