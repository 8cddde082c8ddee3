"""
How close the service is to what its stack can do.

    .venv/bin/python benchmarks/bench.py [--quick]

Starts the real server (``twistd -n waiter``) and, in the same run, a
baseline: a plain twisted.web resource (without form parsing, as the
server) that answers every POST with canned bytes identical to the server's
answer to the measured poll.  Prints:

1. getServiceStatus throughput and latency, 10 connections, one running
   run, and the ratio to the baseline's throughput (wrk if installed, else
   the load generator below);
2. 1,000 runs active, each polled every 6 s while each reports progress
   every second: poll latency p50/p99 and the server's CPU share;
3. startWaiter latency p50/p99 and starts per second (the 1,000 starts);
4. server memory per tracked run (RSS with 1,000 finished runs, and with
   the 1,000 running ones, minus the empty server);
5. time to start with 10,000 finished runs on disk.

Everything runs on 127.0.0.1; every loop is bounded.  About 2 minutes on
2 cores (``--quick``: fewer runs, shorter windows, to try it out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    REPO,
    Process,
    envelope,
    percentile,
    twistd,
    write_finished_runs,
)

BASELINE = """
import sys
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
body = open(sys.argv[1], "rb").read()
class Canned(Resource):
    isLeaf = True
    def render_POST(self, request):
        request.content.read()
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        return body
# As lean as twisted.web goes: no form parsing of POST bodies (the server
# skips it too), so the ratio compares like with like.
site = Site(Canned(), parsePOSTFormSubmission=False)
port = reactor.listenTCP(0, site, interface="127.0.0.1")
print("baseline on", port.getHost().port, flush=True)
reactor.run()
"""


# -- a small HTTP/1.1 load generator (keep-alive, one request at a time per connection)


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> bytes:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8"
            f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        if length:
            return await self.reader.readexactly(int(length.group(1)))
        data = b""  # chunked (a fault written in pieces)
        while True:
            size = int((await self.reader.readline()).strip(), 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return data
            data += chunk[:-2]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def hammer(
    port: int, path: str, body: bytes, connections: int, seconds: float
) -> list[float]:
    """Send ``body`` as fast as possible for ``seconds``; every latency."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        connection = Connection(port)
        try:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                await connection.post(path, body)
                latencies.append(time.perf_counter() - started)
        finally:
            connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return latencies


def wrk(port: int, path: str, body: bytes, connections: int, seconds: int, folder: Path) -> dict:
    """wrk's figures, or None without wrk."""
    if shutil.which("wrk") is None:
        return {}
    (folder / "body.xml").write_bytes(body)
    script = folder / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "text/xml; charset=utf-8"\n'
        f'local f = io.open("{folder / "body.xml"}", "rb"); wrk.body = f:read("*a"); f:close()\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip

    def ms(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms("50%"),
        "p99": ms("99%"),
    }


# -- the measurements -------------------------------------------------------------


def throughput(folder: Path, seconds: int) -> dict:
    """(1) getServiceStatus against the canned baseline, alternating, best of two."""
    server = twistd(folder / "t", "--max-running", "10")
    try:
        path = "/Waiter"
        start = envelope("startWaiter", serviceID="bench", sessionToken="t", secondsToWait=3600)
        poll = envelope("getServiceStatus", serviceID="bench", sessionToken="t")

        async def prime() -> bytes:
            c = Connection(server.port)
            await c.post(path, start)
            await c.post(path, poll)
            answer = await c.post(path, poll)  # what every later poll gets
            c.close()
            return answer

        canned = asyncio.run(prime())
        (folder / "canned.xml").write_bytes(canned)
        (folder / "baseline.py").write_text(BASELINE)
        baseline = Process(
            [sys.executable, str(folder / "baseline.py"), str(folder / "canned.xml")],
            folder,
            rb"baseline on (\d+)",
        )
        try:
            tool = "wrk" if shutil.which("wrk") else "bench.py's own generator"
            results: dict[str, list[dict]] = {"server": [], "baseline": []}
            for _ in range(2):
                for name, port in (("baseline", baseline.port), ("server", server.port)):
                    figures = wrk(port, path, poll, 10, seconds, folder)
                    if not figures:
                        lat = asyncio.run(hammer(port, path, poll, 10, seconds))
                        figures = {
                            "rps": len(lat) / seconds,
                            "p50": percentile(lat, 0.5) * 1e3,
                            "p99": percentile(lat, 0.99) * 1e3,
                        }
                    results[name].append(figures)
        finally:
            baseline.stop()
    finally:
        server.stop()
    best = {name: max(runs, key=lambda r: r["rps"]) for name, runs in results.items()}
    return {"tool": tool, "bytes": len(canned), **best}


async def many_runs(
    port: int, runs: int, poll_every: float, window: float, server: Process
) -> dict:
    """(2, 3) start ``runs`` waiters, then poll each every ``poll_every`` s for ``window`` s."""
    path = "/Waiter"
    start_latency: list[float] = []

    def start_body(i: int) -> bytes:
        return envelope(
            "startWaiter", serviceID=f"many_{i:05}", sessionToken="t", secondsToWait=100
        )

    # Latency: one client starting 20 runs a second, as workflow managers do.
    paced = min(100, runs // 2)
    one = Connection(port)
    for i in range(paced):
        t = time.perf_counter()
        answer = await one.post(path, start_body(i))
        start_latency.append(time.perf_counter() - t)
        if b"Fault" in answer:
            raise SystemExit(f"start failed: {answer[:300]!r}")
        await asyncio.sleep(max(0.0, 0.05 - (time.perf_counter() - t)))
    one.close()

    # Throughput: the rest as fast as 10 connections can.
    pool = [Connection(port) for _ in range(10)]

    async def starter(k: int) -> None:
        for i in range(paced + k, runs, len(pool)):
            answer = await pool[k].post(path, start_body(i))
            if b"Fault" in answer:
                raise SystemExit(f"start failed: {answer[:300]!r}")

    began = time.perf_counter()
    await asyncio.gather(*(starter(k) for k in range(len(pool))))
    start_seconds = time.perf_counter() - began
    for c in pool:
        c.close()
    await asyncio.sleep(2)  # every child up and reporting
    rss_running = server.rss_kib()

    poll_latency: list[float] = []
    polls = [Connection(port) for _ in range(20)]
    cpu_before, wall_before = server.cpu_seconds(), time.monotonic()

    async def poller(k: int) -> None:
        mine = list(range(k, runs, len(polls)))
        # spread this connection's runs evenly over the polling period
        gap = poll_every / max(1, len(mine))
        # Stagger the connections: together they poll at an even rate, as
        # many independent workflow managers' runs would (not in bursts).
        await asyncio.sleep(gap * k / len(polls))
        stop = time.monotonic() + window
        while time.monotonic() < stop:
            for i in mine:
                t = time.perf_counter()
                body = envelope("getServiceStatus", serviceID=f"many_{i:05}", sessionToken="t")
                await polls[k].post(path, body)
                poll_latency.append(time.perf_counter() - t)
                await asyncio.sleep(max(0.0, gap - (time.perf_counter() - t)))

    await asyncio.gather(*(poller(k) for k in range(len(polls))))
    cpu = (server.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
    for c in polls:
        c.close()
    return {
        "start_p50": percentile(start_latency, 0.5) * 1e3,
        "start_p99": percentile(start_latency, 0.99) * 1e3,
        "starts_per_s": (runs - paced) / start_seconds,
        "paced": paced,
        "poll_p50": percentile(poll_latency, 0.5) * 1e3,
        "poll_p99": percentile(poll_latency, 0.99) * 1e3,
        "polls": len(poll_latency),
        "cpu": cpu,
        "rss_running": rss_running,
    }


def startup(folder: Path, count: int) -> tuple[float, int]:
    """(5) seconds from launch to serving with ``count`` finished runs; RSS then."""
    write_finished_runs(folder / "work", count)
    began = time.monotonic()
    server = twistd(folder)
    seconds = time.monotonic() - began
    rss = server.rss_kib()
    server.stop()
    return seconds, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to try it out")
    args = parser.parse_args()
    runs, window, seconds, stored = (100, 12, 3, 1000) if args.quick else (1000, 36, 10, 10_000)
    root = Path(tempfile.mkdtemp(prefix="waiter-bench-"))
    try:
        t = throughput(root / "1", seconds)

        empty = twistd(root / "e")
        rss_empty = empty.rss_kib()
        empty.stop()
        _, rss_finished = startup(root / "f", runs)

        many = twistd(root / "m", "--max-running", str(runs + 10), "--max-queued", "0")
        try:
            m = asyncio.run(many_runs(many.port, runs, 6.0, window, many))
        finally:
            many.stop()
        start_seconds, rss_stored = startup(root / "s", stored)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ratio = t["server"]["rps"] / t["baseline"]["rps"]
    per_finished = (rss_finished - rss_empty) / runs
    per_running = (m["rss_running"] - rss_empty) / runs
    rows = [
        ("1", f"getServiceStatus, 10 connections ({t['tool']}, {t['bytes']} B answers)", ""),
        ("", "  server: requests/s, p50, p99",
         f"{t['server']['rps']:.0f}/s, {t['server']['p50']:.2f} ms, {t['server']['p99']:.2f} ms"),
        ("", "  baseline (canned twisted.web): requests/s, p50, p99",
         f"{t['baseline']['rps']:.0f}/s, {t['baseline']['p50']:.2f} ms, "
         f"{t['baseline']['p99']:.2f} ms"),
        ("", "  ratio server / baseline (goal >= 0.5)", f"{ratio:.2f}"),
        ("2", f"{runs} runs active, progress every 1 s, polled every 6 s ({window} s window)", ""),
        ("", "  poll p50 / p99 (goal p99 < 25 ms)",
         f"{m['poll_p50']:.2f} ms / {m['poll_p99']:.2f} ms ({m['polls']} polls)"),
        ("", "  server CPU, share of one core (goal < 15 %)", f"{m['cpu'] * 100:.1f} %"),
        ("3", "startWaiter", ""),
        ("", f"  p50 / p99, {m['paced']} starts at 20/s (goal p50 < 5 ms)",
         f"{m['start_p50']:.2f} ms / {m['start_p99']:.2f} ms"),
        ("", f"  starts per second, {runs - m['paced']} starts on 10 connections",
         f"{m['starts_per_s']:.0f}/s"),
        ("4", "server memory per tracked run (RSS minus the empty server's)", ""),
        ("", f"  {runs} finished (goal < 20 kB each)", f"{per_finished:.1f} kB"),
        ("", f"  {stored} finished", f"{(rss_stored - rss_empty) / stored:.1f} kB"),
        ("", f"  {runs} running (goal < 60 kB each)", f"{per_running:.1f} kB"),
        ("", "  empty server RSS", f"{rss_empty / 1024:.1f} MiB"),
        ("5", f"start with {stored} finished runs on disk (goal < 3 s)", f"{start_seconds:.2f} s"),
    ]  # fmt: skip
    width = max(len(r[1]) for r in rows)
    print(f"waiter_service benchmark ({os.cpu_count()} cores, Python {sys.version.split()[0]})")
    for number, name, value in rows:
        print(f"{number:>2} {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
