"""
Load and soak check: the real server, 1,000 runs, polled like the workflow
manager, with aborts.

    .venv/bin/python benchmarks/load.py [--runs 1000] [--max-running 400]

Starts ``twistd -n waiter`` on a free loopback port in a temporary folder,
starts ``--runs`` short waiters (``--rate`` per second), polls each every
``--poll`` seconds (6, like the workflow manager) until it ends, aborts
``--aborts`` of them a few seconds after their start, then prints what
became of every run, the zombies left, the server's memory and the poll
latencies.  Everything goes to 127.0.0.1 only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import base64
import random
import re
import shutil
import sys
import tempfile
import time
import warnings
from io import BytesIO
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import envelope, percentile, twistd  # noqa: E402
from waiter_service.runs.procinfo import all_processes  # noqa: E402

STATUS = re.compile(rb"<tns:status_base64>([^<]*)</tns:status_base64>")
SUCCESS = re.compile(rb"<tns:success>([^<]*)</tns:success>")
FAULT = re.compile(rb"<faultcode>[^:<]*:?([^<]*)</faultcode>")


def processes_under(pid: int) -> tuple[int, int]:
    """(zombies whose parent is ``pid``, live processes whose parent is ``pid``)."""
    children = [stat for _, stat in all_processes() if stat.ppid == pid]
    zombies = sum(1 for stat in children if stat.state == "Z")
    return zombies, len(children) - zombies


class Load:
    def __init__(self, args: argparse.Namespace, url: str) -> None:
        self.args = args
        self.url = url.encode()
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 64
        self.agent = Agent(reactor, pool=pool)
        self.outcome: dict[str, str] = {}
        self.poll_latency: list[float] = []
        self.start_latency: list[float] = []
        self.faults: list[str] = []
        self.sem = defer.DeferredSemaphore(64)

    async def call(self, operation: str, **fields: object) -> tuple[bytes, float]:
        body = envelope(operation, **fields)

        async def send() -> tuple[bytes, float]:
            started = time.perf_counter()
            response = await self.agent.request(
                b"POST",
                self.url,
                Headers({b"content-type": [b"text/xml; charset=utf-8"]}),
                FileBodyProducer(BytesIO(body)),
            )
            data = await readBody(response)
            return data, time.perf_counter() - started

        return await self.sem.run(lambda: defer.ensureDeferred(send()))

    async def one_run(self, index: int, abort: bool) -> None:
        service_id = f"load_{index:05}"
        seconds = 60 if abort else random.randint(self.args.min_wait, self.args.max_wait)
        data, latency = await self.call(
            "startWaiter", serviceID=service_id, sessionToken="t", secondsToWait=seconds
        )
        self.start_latency.append(latency)
        if not STATUS.search(data):
            self.faults.append(f"start {service_id}: {data[:200]!r}")
            self.outcome[service_id] = "not started"
            return
        if abort:
            await task.deferLater(reactor, random.uniform(2, 5), lambda: None)
            data, _ = await self.call("abortService", serviceID=service_id, sessionToken="t")
            match = SUCCESS.search(data)
            if not match or match.group(1) != b"true":
                self.faults.append(f"abort {service_id}: {data[:200]!r}")
        deadline = time.monotonic() + seconds + self.args.poll * 3 + 120
        await task.deferLater(reactor, random.uniform(0, self.args.poll), lambda: None)
        while time.monotonic() < deadline:
            data, latency = await self.call(
                "getServiceStatus", serviceID=service_id, sessionToken="t"
            )
            self.poll_latency.append(latency)
            match = STATUS.search(data)
            if match is None:
                fault = FAULT.search(data)
                self.outcome[service_id] = f"fault {fault.group(1).decode() if fault else '?'}"
                return
            status = match.group(1)
            if status == b"COMPLETED":
                self.outcome[service_id] = "completed"
                return
            if status != b"UNCHANGED":
                page = base64.b64decode(status)
                if b"Aborted" in page:
                    self.outcome[service_id] = "aborted"
                    return
                if b"Failed" in page:
                    self.outcome[service_id] = "failed"
                    return
            await task.deferLater(reactor, self.args.poll, lambda: None)
        self.outcome[service_id] = "lost"

    async def run(self) -> None:
        aborted = set(random.sample(range(self.args.runs), self.args.aborts))
        runs = []
        for index in range(self.args.runs):
            runs.append(defer.ensureDeferred(self.one_run(index, index in aborted)))
            await task.deferLater(reactor, 1 / self.args.rate, lambda: None)
        await defer.gatherResults(runs, consumeErrors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--aborts", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0, help="starts per second")
    parser.add_argument("--min-wait", type=int, default=8)
    parser.add_argument("--max-wait", type=int, default=20)
    parser.add_argument("--poll", type=float, default=6.0)
    parser.add_argument("--max-running", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    random.seed(args.seed)
    # Agent's pooled transports lack abortConnection; readBody only warns.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=__name__)

    folder = Path(tempfile.mkdtemp(prefix="waiter-load-"))
    server = twistd(folder, "--max-running", str(args.max_running), "--max-queued", str(args.runs))
    url = f"http://127.0.0.1:{server.port}/Waiter"
    rss_before = server.rss_kib()
    load = Load(args, url)
    began = time.monotonic()
    failure: list[BaseException] = []

    def finished(result: object) -> None:
        if reactor.running:
            reactor.stop()

    def crashed(f) -> None:
        failure.append(f.value)
        finished(None)

    defer.ensureDeferred(load.run()).addCallbacks(finished, crashed)
    reactor.run()
    elapsed = time.monotonic() - began
    rss_after = server.rss_kib()
    time.sleep(1)
    zombies, alive = processes_under(server.pid)
    server.stop()
    if failure:
        raise failure[0]

    counts: dict[str, int] = {}
    for outcome in load.outcome.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    lost = args.runs - sum(counts.get(k, 0) for k in ("completed", "aborted", "failed"))
    rows = [
        ("runs started", args.runs - counts.get("not started", 0)),
        ("completed", counts.get("completed", 0)),
        ("aborted", counts.get("aborted", 0)),
        ("failed", counts.get("failed", 0)),
        ("lost (must be 0)", lost),
        ("zombie processes left (must be 0)", zombies),
        ("children still running at the end", alive),
        ("server RSS before / after (MiB)", f"{rss_before / 1024:.1f} / {rss_after / 1024:.1f}"),
        ("polls", len(load.poll_latency)),
        (
            "poll latency p50 / p99 (ms)",
            f"{percentile(load.poll_latency, 0.5) * 1e3:.1f} / "
            f"{percentile(load.poll_latency, 0.99) * 1e3:.1f}",
        ),
        (
            "start latency p50 / p99 (ms)",
            f"{percentile(load.start_latency, 0.5) * 1e3:.1f} / "
            f"{percentile(load.start_latency, 0.99) * 1e3:.1f}",
        ),
        ("wall time (s)", f"{elapsed:.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"load: {args.runs} runs, --max-running {args.max_running}, poll every {args.poll} s")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for line in load.faults[:10]:
        print("  unexpected:", line)
    other = {k: v for k, v in counts.items() if k not in ("completed", "aborted", "failed")}
    if other:
        print("  other outcomes:", other)
    shutil.rmtree(folder, ignore_errors=True)
    sys.exit(0 if lost == 0 and zombies == 0 and not load.faults else 1)


if __name__ == "__main__":
    main()
