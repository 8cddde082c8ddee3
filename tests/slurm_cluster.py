"""
A real single-node Slurm cluster in a temporary folder, for tests and
benchmarks: its own ``munged``, ``slurmctld`` and ``slurmd``, on free
ports, started and torn down by :class:`SlurmCluster`.

It needs Debian's ``slurmctld``, ``slurmd``, ``slurm-client`` and
``munge`` packages and root (``slurmd`` starts jobs as their users).  No
systemd, no cgroups: ``proctrack/linuxproc`` and ``task/none``.

From a shell (the folder is kept until ``down``)::

    python tests/slurm_cluster.py up /tmp/slurm      # prints SLURM_CONF=...
    python tests/slurm_cluster.py down /tmp/slurm
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
NODE = "waiternode"
PARTITION = "waiter"


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    absent = [c for c in (*DAEMONS, *CLIENTS) if shutil.which(c, path=_PATH) is None]
    if absent:
        return (
            "Slurm is not installed (missing " + ", ".join(absent) + "); install"
            " slurmctld slurmd slurm-client munge (.ci/run does) to run these tests"
        )
    if os.geteuid() != 0:
        return "a private Slurm cluster needs root (slurmd starts jobs as their users)"
    return None


_PATH = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlurmCluster:
    """One node, ``cpus`` CPUs (may be more than the machine has)."""

    def __init__(self, folder: Path, cpus: int = 2, kill_wait: int = 5) -> None:
        self.folder = folder
        self.cpus = cpus
        self.kill_wait = kill_wait
        self.conf = folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": _PATH}

    # -- life ------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start munged, slurmctld and slurmd; wait until the node is idle."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        f = self.folder
        for sub in ("munge", "spool", "state", "log"):
            (f / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(f, 0o755)
        os.chmod(f / "munge", 0o755)
        key = f / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o400)
        self.socket = f / "munge" / "munge.socket"
        self._run(
            "munged",
            f"--key-file={key}",
            f"--socket={self.socket}",
            f"--pid-file={f / 'munge' / 'munged.pid'}",
            f"--log-file={f / 'log' / 'munged.log'}",
            f"--seed-file={f / 'munge' / 'munged.seed'}",
            "--force",
        )
        self.conf.write_text(self.config())
        self._run("slurmctld", "-f", str(self.conf))
        self._run("slurmd", "-f", str(self.conf), "-N", NODE)
        deadline = time.monotonic() + timeout
        while True:
            state = self.command("sinfo", "--noheader", "--format=%T", check=False).strip()
            if state == "idle":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Slurm node did not become idle (state {state!r})")
            time.sleep(0.05)

    def stop(self) -> None:
        """Cancel every job, stop the daemons; safe after a failed start."""
        if self.conf.exists():
            self.command("scancel", "--full", f"--partition={PARTITION}", check=False)
            # Let slurmd end the jobs' processes before it goes (bounded).
            deadline = time.monotonic() + self.kill_wait + 5
            while (
                time.monotonic() < deadline
                and self.command("squeue", "--noheader", check=False).strip()
            ):
                time.sleep(0.1)
        for daemon, pid_file in (
            ("slurmd", "slurmd.pid"),
            ("slurmctld", "slurmctld.pid"),
            ("munged", "munge/munged.pid"),
        ):
            self._terminate(self.folder / pid_file, daemon)

    def _terminate(self, pid_file: Path, name: str, timeout: float = 10.0) -> None:
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.02)

    # -- helpers ---------------------------------------------------------

    def command(self, *argv: str, check: bool = True) -> str:
        """Run a Slurm client command against this cluster; its stdout."""
        done = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=30, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
        return done.stdout

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller still knows, as ``scontrol`` fields."""
        out = self.command("scontrol", "--oneliner", "show", "job", check=False)
        jobs = []
        for line in out.splitlines():
            if "JobId=" in line:
                jobs.append(dict(p.split("=", 1) for p in line.split() if "=" in p))
        return jobs

    def _run(self, *argv: str) -> None:
        done = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} did not start: {(done.stderr or done.stdout).strip()}")

    def config(self) -> str:
        f = self.folder
        return f"""\
ClusterName=waitertest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
StateSaveLocation={f / "state"}
SlurmdSpoolDir={f / "spool"}
SlurmctldPidFile={f / "slurmctld.pid"}
SlurmdPidFile={f / "slurmd.pid"}
SlurmctldLogFile={f / "log" / "slurmctld.log"}
SlurmdLogFile={f / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
SchedulerParameters=batch_sched_delay=0
InactiveLimit=10
KillWait={self.kill_wait}
MinJobAge=300
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={self.cpus} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("up", "down"):
        print(__doc__)
        return 2
    cluster = SlurmCluster(Path(argv[2]).resolve())
    if argv[1] == "up":
        reason = missing()
        if reason:
            print(reason, file=sys.stderr)
            return 1
        cluster.start()
        print(f"SLURM_CONF={cluster.conf}")
    else:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
