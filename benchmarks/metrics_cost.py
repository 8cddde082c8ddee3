"""
What a scrape of ``/metrics`` (and a health check) costs with many runs in
memory.

    .venv/bin/python benchmarks/metrics_cost.py [--runs 10000] [--running 1000]

Builds the real site (run manager, metrics, health) in memory on the fake
process reactor, loads ``--runs`` finished runs from a temporary work
folder as a restarted server would, starts ``--running`` more (fake
children), then times, best of five rounds of 50 each: the exposition
alone, a whole in-memory HTTP GET of ``/metrics`` (Twisted's parsing and
writing included), and a GET of ``/health``.  One core; the reactor is
busy for that long per scrape.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import write_finished_runs  # noqa: E402
from waiter_service import __version__  # noqa: E402
from waiter_service.ops.health import FolderProbe, HealthResource  # noqa: E402
from waiter_service.ops.metrics import Metrics, MetricsResource  # noqa: E402
from waiter_service.programs.waiter import Waiter  # noqa: E402
from waiter_service.runs.manager import Limits, RunManager  # noqa: E402
from waiter_service.runs.store import RunStore  # noqa: E402
from waiter_service.soap.operations import OUTCOMES  # noqa: E402
from waiter_service.soap.site import build_site  # noqa: E402
from waiter_service.testing import FakeProcessReactor, SignalRecorder, http_request  # noqa: E402

OPERATIONS = ("startWaiter", "getServiceStatus", "abortService", "notifyService")


def best_ms(action: Callable[[], object], rounds: int = 5, per_round: int = 50) -> float:
    """Best of ``rounds`` mean times of ``action``, in milliseconds."""
    means = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(per_round):
            action()
        means.append((time.perf_counter() - began) / per_round * 1e3)
    return min(means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="finished runs loaded")
    parser.add_argument("--running", type=int, default=1_000, help="runs started on top")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "work"
        write_finished_runs(workdir, args.runs)
        reactor = FakeProcessReactor()
        metrics = Metrics(OPERATIONS, OUTCOMES, __version__)
        manager = RunManager(
            reactor,
            RunStore(workdir),
            Waiter(max_seconds=3600),
            limits=Limits(max_running=args.running or 1),
            launcher=["/usr/bin/setsid", "/usr/bin/env"],
            signal_group=SignalRecorder(),
            identify=reactor.identify,
            is_alive=reactor.is_alive,
            on_transition=metrics.transition,
        )
        manager.start_service()
        metrics.watch(manager)
        for i in range(args.running):
            manager.start(f"run_{i:05}", {"secondsToWait": 600})
        health = HealthResource(manager, FolderProbe(workdir, reactor), reactor, __version__)
        site = build_site(
            Waiter(),
            manager,
            [],
            reactor=reactor,
            on_call=metrics.call,
            extra={"health": health, "metrics": MetricsResource(metrics)},
        )
        for operation in OPERATIONS:
            for outcome in ("ok", "Client.UnknownServiceID", "Client.InvalidInput"):
                metrics.call(operation, outcome, 0.001)
        size = len(metrics.exposition())
        exposition = best_ms(metrics.exposition)
        scrape = best_ms(lambda: http_request(site, b"GET", b"/metrics"))
        checked = best_ms(lambda: http_request(site, b"GET", b"/health"))
        observe = best_ms(lambda: metrics.call("getServiceStatus", "ok", 0.001), 5, 10_000)
    total = len(manager.runs)
    python = sys.version.split()[0]
    print(f"metrics cost with {total} runs in memory ({args.running} running), Python {python}")
    print(f"  exposition alone              {exposition:7.2f} ms  ({size} bytes)")
    print(f"  GET /metrics, in memory       {scrape:7.2f} ms")
    print(f"  GET /health, in memory        {checked:7.2f} ms  (probe cached)")
    print(f"  one call counted (histogram)  {observe * 1e3:7.2f} us")
    print(f"  scraped every second: {scrape / 10:.2f} % of one core")


if __name__ == "__main__":
    main()
