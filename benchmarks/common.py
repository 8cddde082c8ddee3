"""What the benchmark scripts share: SOAP envelopes, servers to start, percentiles."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape

from waiter_service.runs.record import RunRecord

REPO = Path(__file__).resolve().parent.parent

NS = "urn:waiter-service:cloudflow-async"
HZ = os.sysconf("SC_CLK_TCK")


def envelope(operation: str, **fields: object) -> bytes:
    body = "".join(f"<w:{k}>{escape(str(v))}</w:{k}>" for k, v in fields.items())
    return (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:w="{NS}"><s:Body><w:{operation}>{body}</w:{operation}></s:Body></s:Envelope>'
    ).encode()


# -- processes ------------------------------------------------------------------


class Process:
    """A server process whose port is read from its output."""

    def __init__(self, command: list[str], folder: Path, pattern: bytes) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.log = folder / f"{len(list(folder.glob('*.log')))}.log"
        with open(self.log, "wb") as out:
            self.popen = subprocess.Popen(
                command,
                cwd=folder,
                env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started = time.monotonic()
        deadline = self.started + 120
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log.read_bytes())
            if match:
                self.port = int(match.group(1))
                return
            if self.popen.poll() is not None:
                raise SystemExit(f"{command[0]} exited:\n{self.log.read_text()}")
            time.sleep(0.01)
        raise SystemExit(f"{command} did not start")

    @property
    def pid(self) -> int:
        return self.popen.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def serving(port: int, deadline: float) -> None:
    """Wait until the server answers its WSDL: its runs are loaded by then."""
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/Waiter?wsdl", timeout=5):
                return
        except OSError:
            time.sleep(0.01)
    raise SystemExit("the server did not answer in time")


def twistd(folder: Path, *options: str) -> Process:
    command = [
        str(Path(sys.executable).parent / "twistd"), "-n", "--pidfile=", "waiter",
        "--listen", "tcp:0:interface=127.0.0.1", "--workdir", str(folder / "work"),
        "--on-stop", "stop", "--kill-grace", "2", *options,
    ]  # fmt: skip
    process = Process(command, folder, rb"Site starting on (\d+)")
    # The port opens before the service has loaded its runs (twistd binds
    # ports first, then starts services, then runs the reactor).
    serving(process.port, time.monotonic() + 120)
    return process


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


# -- run folders ---------------------------------------------------------------


def write_finished_runs(workdir: Path, count: int) -> None:
    """``count`` finished runs on disk, as a server leaves them."""
    workdir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for i in range(count):
        record = RunRecord(f"done_{i:05}", "Waiter", {"secondsToWait": 1}, now - 60)
        record.launching(now - 60)
        record.started(100000 + i)
        record.complete({"result": "V2FpdGVkIDEuMCBvZiAxIHNlY29uZHMuCg=="}, now - 59)
        folder = workdir / record.service_id
        folder.mkdir()
        (folder / "run.json").write_text(json.dumps(record.to_dict()))
        (folder / "result").write_text("Waited 1.0 of 1 seconds.\n")
        (folder / "status").write_text("100\n")
