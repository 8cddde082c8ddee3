"""
A real ``twistd -n waiter`` for end-to-end tests: started on a free port in
a folder of its own, stopped (and waited for) at the end of the test.

The server runs this checkout's ``waiter_service`` (``PYTHONPATH``) through
the installed plugin file, as ``pip install .`` puts it in place; with
``from_source=False`` it runs the installed package alone.  Unless a test
says otherwise, children are stopped with the server (``--on-stop stop``),
and any process still running in the work folder is killed at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from waiter_service.runs.procinfo import all_processes

REPO = Path(__file__).resolve().parent.parent
CONTEXT_ROOT = "/cloud/vm1"


def twistd_command() -> list[str]:
    """``twistd`` of the Python that runs the tests."""
    script = Path(sys.executable).parent / "twistd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)


def process_gone(pid: int) -> bool:
    """True once ``pid`` is not a live process (reaped, or a zombie of another)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    return [pid for pid, stat in all_processes() if stat.pgrp == pgid and stat.state != "Z"]


class Server:
    """One ``twistd -n waiter`` process."""

    def __init__(
        self,
        folder: Path,
        *options: str,
        listen: str = "tcp:0:interface=127.0.0.1",
        from_source: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.workdir = folder / "work"
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"twistd-{len(list(folder.glob('twistd-*.log')))}.log"
        extra_env = env or {}
        env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", **extra_env}
        if from_source:
            env["PYTHONPATH"] = str(REPO)
        if "--on-stop" not in options:
            # Tests stop their servers with TERM: leave no child behind.
            options = (*options, "--on-stop", "stop")
        command = [
            *twistd_command(),
            "-n",
            "--pidfile=",
            "waiter",
            "--listen",
            listen,
            "--context-root",
            CONTEXT_ROOT,
            "--workdir",
            str(self.workdir),
            *options,
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.port = wait_for(self._port, 20)
        scheme = "https" if listen.startswith("ssl:") else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}{CONTEXT_ROOT}/Waiter"

    def _port(self) -> int | None:
        if self.process.poll() is not None:
            raise AssertionError(f"twistd exited early:\n{self.log()}")
        match = re.search(r"Site (?:\(TLS\) )?starting on (\d+)", self.log())
        return int(match.group(1)) if match else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def record(self, service_id: str) -> dict[str, Any]:
        """The run's record as saved on disk."""
        return json.loads((self.workdir / service_id / "run.json").read_text())

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash."""
        self.process.kill()
        self.process.wait()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then wait; KILL if it does not stop in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"twistd did not stop on TERM:\n{self.log()}") from None
        return self.process.returncode

    def cleanup(self) -> None:
        """Stop the server and kill whatever still runs in its folder."""
        try:
            self.stop()
        finally:
            kill_left_in(self.folder)


def kill_left_in(folder: Path) -> list[int]:
    """KILL every process working in ``folder`` (a test's leftovers); their pids."""
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(folder) or cwd.startswith(str(folder) + "/"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed
