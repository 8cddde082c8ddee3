"""
Start-to-progress latency, local children against Slurm batch jobs.

Starts a private single-node Slurm cluster (tests/slurm_cluster.py: needs
Slurm installed and root), then for each runner a real ``twistd -n
waiter`` and RUNS waiters of 60 s one after the other, and prints, as
medians and maxima over the runs:

- program started: from the ``startWaiter`` call to the waiter's first
  status file in the run's folder (the program is running);
- first progress: from the call to the first poll (every 20 ms) whose page
  shows 1 % or more.

    .venv/bin/python benchmarks/slurm_latency.py [--runs 10]

The waiter reports once a second, so "first progress" includes about 1 s of
waiting in both cases; the difference between the runners is what counts.
"""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import zeep  # noqa: E402

from tests.e2e_server import Server  # noqa: E402
from tests.slurm_cluster import SlurmCluster, missing  # noqa: E402


def percent(status: str) -> int:
    if status in ("UNCHANGED", "COMPLETED"):
        return -1
    html = base64.b64decode(status).decode("utf-8")
    match = re.search(r'<progress[^>]*value="(\d+)"', html) or re.search(
        r'aria-valuenow="(\d+)"', html
    )
    return int(match.group(1)) if match else 0


def measure(server: Server, runs: int, label: str) -> tuple[list[float], list[float]]:
    soap = zeep.Client(server.url + "?wsdl").service
    started_after, progress_after = [], []
    for i in range(runs):
        service_id = f"{label}_{i}"
        status_file = server.workdir / service_id / "status"
        t0 = time.monotonic()
        soap.startWaiter(service_id, "t", 60)
        seen_start = None
        deadline = t0 + 60
        while time.monotonic() < deadline:
            if seen_start is None and status_file.exists():
                seen_start = time.monotonic() - t0
            if percent(soap.getServiceStatus(service_id, "t").status_base64) >= 1:
                progress_after.append(time.monotonic() - t0)
                break
            time.sleep(0.02)
        else:
            raise SystemExit(f"{service_id}: no progress within 60 s\n{server.log()[-2000:]}")
        started_after.append(seen_start if seen_start is not None else float("nan"))
        soap.abortService(service_id, "t")
    return started_after, progress_after


def row(name: str, values: list[float]) -> str:
    return f"{name:<34} {statistics.median(values) * 1000:9.0f} ms {max(values) * 1000:9.0f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    reason = missing()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    top = Path(tempfile.mkdtemp(prefix="waiter-bench-"))
    cluster = SlurmCluster(top / "slurm", cpus=4)
    results = {}
    try:
        cluster.start()
        env = {"SLURM_CONF": str(cluster.conf)}
        setups = {
            "local": (),
            "slurm, --slurm-poll 2 (default)": ("--runner", "slurm"),
            "slurm, --slurm-poll 0.5": ("--runner", "slurm", "--slurm-poll", "0.5"),
        }
        for n, (label, options) in enumerate(setups.items()):
            server = Server(top / f"server{n}", *options, env=env)
            try:
                results[label] = measure(server, args.runs, f"r{n}")
            finally:
                server.cleanup()
    finally:
        cluster.stop()
        shutil.rmtree(top, ignore_errors=True)
    print(f"{args.runs} waiters per runner, one at a time          median        max")
    for label, (started, progress) in results.items():
        print(f"-- {label}")
        print(row("  start -> program running", started))
        print(row("  start -> first progress (>= 1 %)", progress))
    base = statistics.median(results["local"][1])
    for label, (_, progress) in results.items():
        print(f"first progress, {label}: {statistics.median(progress) / base:.2f} x local")
    return 0


if __name__ == "__main__":
    sys.exit(main())
