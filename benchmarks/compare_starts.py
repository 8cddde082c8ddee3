"""
Start latency and starts per second of two checkouts, alternated in one run.

    git worktree add /tmp/base c177fc6
    .venv/bin/python benchmarks/compare_starts.py /tmp/base . [--rounds 3] [--starts 300]

For each round and each checkout: a fresh ``twistd -n waiter`` (that
checkout's code through PYTHONPATH, this venv's Twisted), 60 starts paced at
20/s on one connection (latency), then a burst of starts on 10 connections
(rate).  Every start spawns a real waiter of 60 s, stopped with the server.
Prints each round and the medians: on a shared machine, compare only
figures from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.bench import Connection  # noqa: E402
from benchmarks.common import envelope, percentile  # noqa: E402


def start_server(tree: Path, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    folder.mkdir(parents=True)
    log = folder / "twistd.log"
    twistd = Path(sys.executable).parent / "twistd"
    command = [
        str(twistd), "-n", "--pidfile=", "waiter", "--listen", "tcp:0:interface=127.0.0.1",
        "--workdir", str(folder / "work"), "--on-stop", "stop", "--kill-grace", "1",
        "--max-running", "5000", "--max-queued", "0",
    ]  # fmt: skip
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tree), "LANG": "C.UTF-8"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(rb"Site starting on (\d+)", log.read_bytes())
        if match:
            return process, int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"twistd of {tree} did not start:\n{log.read_text()}")


async def measure(port: int, starts: int, tag: str) -> tuple[float, float]:
    """(starts per second on 10 connections, p50 latency in ms of paced starts)."""

    def body(name: str) -> bytes:
        return envelope("startWaiter", serviceID=name, sessionToken="t", secondsToWait=60)

    latency = []
    one = Connection(port)
    for i in range(60):
        began = time.perf_counter()
        await one.post("/Waiter", body(f"{tag}_paced_{i}"))
        latency.append(time.perf_counter() - began)
        await asyncio.sleep(0.05)
    one.close()
    numbers = iter(range(starts))
    pool = [Connection(port) for _ in range(10)]

    async def worker(connection: Connection) -> None:
        for i in numbers:
            await connection.post("/Waiter", body(f"{tag}_{i}"))

    began = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in pool))
    rate = starts / (time.perf_counter() - began)
    for connection in pool:
        connection.close()
    return rate, percentile(latency, 0.5) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs=2, type=Path, help="two checkouts to compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--starts", type=int, default=300)
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.trees]
    results: dict[Path, list[tuple[float, float]]] = {tree: [] for tree in trees}
    root = Path(tempfile.mkdtemp(prefix="waiter-starts-"))
    try:
        for round_ in range(args.rounds):
            for n, tree in enumerate(trees):
                process, port = start_server(tree, root / f"{round_}-{n}")
                try:
                    rate, p50 = asyncio.run(measure(port, args.starts, f"r{round_}"))
                finally:
                    process.terminate()
                    process.wait()
                results[tree].append((rate, p50))
                print(f"round {round_}  {tree}: {rate:.0f} starts/s, p50 {p50:.2f} ms", flush=True)
                time.sleep(2)  # let the stopped children go
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for tree, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        p50 = statistics.median(r[1] for r in rows)
        print(f"median  {tree}: {rate:.0f} starts/s, start p50 {p50:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
