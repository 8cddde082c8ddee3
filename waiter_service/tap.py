"""``twistd waiter``: command-line options and the service they build."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.python import usage

from . import __version__
from .auth.checker import AuthManagerChecker, OpenAccess, TokenChecker
from .auth.client import AuthManagerClient
from .ops import logs
from .ops.health import FolderProbe, HealthResource, probe_folder
from .ops.metrics import Metrics, MetricsResource
from .programs.waiter import DEFAULT_MAX_SECONDS, Waiter
from .runs.manager import ON_STOP, RESULT_ENCODINGS, Limits, RunManager, find_launcher
from .runs.retention import parse_duration
from .runs.slurm import SlurmRunner, SlurmSettings, check_extra_arg, cluster_env
from .runs.store import RunStore
from .service import RunManagerService
from .soap.operations import OUTCOMES
from .soap.site import build_site, parse_context_root
from .spyne_compat import DEFAULT_MAX_BODY


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


def _optional_duration(text: str) -> float | None:
    value = parse_duration(text)
    return value if value > 0 else None


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("must be a finite number above 0")
    return value


def _poll(text: str) -> float:
    value = _positive_float(text)
    if value < 0.2:
        raise ValueError("must be 0.2 or more (each poll is a request to slurmctld)")
    return value


def _cache_duration(text: str) -> float:
    return parse_duration(text)


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError("must be a finite number, 0 or more")
    return value


def check_endpoint(description: str) -> None:
    """Raise ValueError for an endpoint string that cannot work."""
    from twisted.internet import endpoints, reactor

    try:
        endpoint = endpoints.serverFromString(reactor, description)
    except Exception as e:  # Twisted raises many kinds, e.g. for a missing key file
        raise ValueError(str(e) or type(e).__name__) from None
    port = getattr(endpoint, "_port", None)
    if isinstance(port, int) and not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not between 0 and 65535")
    interface = getattr(endpoint, "_interface", "")
    if interface:
        try:
            ipaddress.ip_address(interface)
        except ValueError:
            raise ValueError(f"interface {interface!r} is not an IP address") from None
    address = getattr(endpoint, "_address", None)
    if isinstance(address, str | bytes):
        folder = os.path.dirname(os.fsdecode(address)) or "."
        if not os.path.isdir(folder):
            raise ValueError(f"folder {folder} does not exist")


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serves the waiter as a CloudFlow asynchronous SOAP service. Options"
        " override the environment variables CONTEXT_ROOT and WAITER_LOG_FOLDER."
    )
    optFlags = [
        ["log-polls", None, "Log successful getServiceStatus calls too (one a run every 6 s)."],
    ]
    optParameters = [
        ["listen", "l", "tcp:8080", "Twisted server endpoint to listen on."],
        ["context-root", None, None, "Path prefix of the service [env CONTEXT_ROOT]."],
        ["workdir", "w", None, "Folder of the runs [env WAITER_LOG_FOLDER; ./waiter-work]."],
        ["result-encoding", None, "base64", "How 'result' is sent: base64 or raw."],
        ["max-wait", None, DEFAULT_MAX_SECONDS, "Largest secondsToWait accepted.", _positive_int],
        ["kill-grace", None, 10.0, "Seconds between TERM and KILL on abort.", _non_negative_float],
        ["max-body", None, DEFAULT_MAX_BODY, "Largest request body, in bytes.", _positive_int],
        ["max-running", None, 32, "Runs whose programs run at once.", _positive_int],
        ["max-queued", None, 1000, "Runs that may wait for a slot.", _non_negative_int],
        ["max-seconds", None, None, "Wall-time limit of a run (0: none).", _optional_duration],
        ["retention", None, 7 * 86400.0, "Keep finished runs this long (7d).", _duration],
        ["on-stop", None, "keep", "On a graceful stop, keep or stop children."],
        ["auth-timeout", None, 10.0, "Seconds to wait for the auth manager.", _positive_float],
        ["auth-cache", None, 60.0, "Keep token answers this long (60s).", _cache_duration],
        ["http-timeout", None, 60.0, "Close idle HTTP connections after (s).", _positive_float],
        ["log-format", None, "text", "Log as text or json (one JSON event a line)."],
        ["log-level", None, "info", "Lowest level logged: debug, info, warn, error, critical."],
        ["runner", None, "local", "Where programs run: local (children) or slurm (batch jobs)."],
        ["slurm-partition", None, None, "Slurm partition of the jobs (sbatch --partition)."],
        ["slurm-time", None, None, "Time limit of a job (sbatch --time, e.g. 2:00:00)."],
        ["slurm-cpus", None, None, "CPUs of a job (sbatch --cpus-per-task).", _positive_int],
        ["slurm-mem", None, None, "Memory of a job (sbatch --mem, e.g. 4G)."],
        ["slurm-poll", None, 2.0, "Seconds between two squeue calls (0.2 or more).", _poll],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["auth-wsdl"] = []
        self["slurm-arg"] = []

    def opt_auth_wsdl(self, url: str) -> None:
        """WSDL URL of an authentication manager (may be given several times;
        the first checks tokens unless extraParameters names another one)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise usage.UsageError(f"--auth-wsdl {url!r}: an http or https URL is needed")
        if url not in self["auth-wsdl"]:
            self["auth-wsdl"].append(url)

    def opt_slurm_arg(self, argument: str) -> None:
        """One more sbatch argument, e.g. --slurm-arg=--account=cfd (may be
        given several times)."""
        try:
            check_extra_arg(argument)
        except ValueError as e:
            raise usage.UsageError(f"--slurm-arg {argument!r}: {e}") from None
        self["slurm-arg"].append(argument)

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"waiter_service {__version__}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        try:
            check_endpoint(self["listen"])
        except ValueError as e:
            raise usage.UsageError(f"--listen {self['listen']!r}: {e}") from None

        root = self["context-root"]
        if root is None:
            root = os.environ.get("CONTEXT_ROOT", "")
        try:
            self["context-root"] = parse_context_root(root)
        except ValueError as e:
            raise usage.UsageError(f"--context-root: {e}") from None

        if self["result-encoding"] not in RESULT_ENCODINGS:
            raise usage.UsageError("--result-encoding must be base64 or raw")
        if self["on-stop"] not in ON_STOP:
            raise usage.UsageError("--on-stop must be keep or stop")

        self["slurm"] = self._slurm_settings()

        workdir = self["workdir"] or os.environ.get("WAITER_LOG_FOLDER") or "waiter-work"
        store = RunStore(Path(workdir))
        try:
            store.prepare()
        except OSError as e:
            raise usage.UsageError(f"--workdir {workdir}: {e.strerror}") from None
        problem = probe_folder(store.root).problem
        if problem is not None:
            raise usage.UsageError(f"--workdir {workdir}: {problem}")
        self["store"] = store

        try:
            self["launcher"] = find_launcher()
        except RuntimeError as e:
            raise usage.UsageError(str(e)) from None

        self._configure_logging()

    def _configure_logging(self) -> None:
        """
        Check --log-format and --log-level; under twistd, name the observer
        that applies them as twistd's --logger (twistd resolves that name
        after this, and starts logging after makeService).
        """
        parent = self.parent if self.parent is not None else {}
        settings = logs.settings_from(self, parent)
        problem = settings.problem()
        if problem is not None:
            raise usage.UsageError(problem)
        if self.parent is None:
            return
        if self.parent.get("logger") is None:
            self.parent["logger"] = logs.configure(settings)
        elif (settings.format, settings.level) != ("text", "info"):
            raise usage.UsageError("--log-format and --log-level do not apply with --logger")

    def _slurm_settings(self) -> SlurmSettings | None:
        if self["runner"] not in ("local", "slurm"):
            raise usage.UsageError("--runner must be local or slurm")
        for name in ("slurm-partition", "slurm-time", "slurm-mem"):
            value = self[name]
            if value is not None and not _SLURM_VALUE.fullmatch(value):
                raise usage.UsageError(f"--{name} {value!r}: not a Slurm value")
        if self["runner"] != "slurm":
            return None
        settings = SlurmSettings(
            partition=self["slurm-partition"],
            time_limit=self["slurm-time"],
            cpus=self["slurm-cpus"],
            memory=self["slurm-mem"],
            extra_args=tuple(self["slurm-arg"]),
            poll_interval=self["slurm-poll"],
        )
        for command in (settings.sbatch, settings.squeue, settings.scancel):
            if shutil.which(command) is None:
                raise usage.UsageError(f"--runner slurm: {command} is not on the PATH")
        return settings


_SLURM_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:,+-]{0,63}")


def makeService(options: Options) -> IService:
    from twisted.internet import reactor

    program = Waiter(max_seconds=options["max-wait"])
    checker: TokenChecker = OpenAccess()
    if options["auth-wsdl"]:
        clients = {
            url: AuthManagerClient(reactor, url, timeout=options["auth-timeout"])
            for url in options["auth-wsdl"]
        }
        checker = AuthManagerChecker(
            clients, reactor, ttl=options["auth-cache"], timeout=options["auth-timeout"]
        )
    metrics = Metrics(
        (program.start_operation, "getServiceStatus", "abortService", "notifyService"),
        OUTCOMES,
        __version__,
    )
    manager = RunManager(
        reactor,  # type: ignore[arg-type]
        options["store"],
        program,
        limits=Limits(
            max_running=options["max-running"],
            max_queued=options["max-queued"],
            max_seconds=options["max-seconds"],
            retention=options["retention"],
        ),
        on_stop=options["on-stop"],
        result_encoding=options["result-encoding"],
        kill_grace=options["kill-grace"],
        launcher=options["launcher"],
        on_transition=metrics.transition,
        cluster=(
            SlurmRunner(reactor, options["slurm"], cluster_env(os.environ))
            if options["slurm"] is not None
            else None
        ),
    )
    metrics.watch(manager)
    health = HealthResource(
        manager, FolderProbe(options["store"].root, reactor), reactor, __version__
    )
    site = build_site(
        program,
        manager,
        options["context-root"],
        max_body=options["max-body"],
        timeout=options["http-timeout"],
        reactor=reactor,
        checker=checker,
        log_polls=bool(options["log-polls"]),
        on_call=metrics.call,
        extra={"health": health, "metrics": MetricsResource(metrics)},
        log_debug=options["log-level"] == "debug",
    )
    top = MultiService()
    RunManagerService(manager, checker).setServiceParent(top)
    strports.service(options["listen"], site).setServiceParent(top)
    return top
