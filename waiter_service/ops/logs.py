"""
The log's format (``--log-format text|json``) and level (``--log-level``).

twistd starts logging after ``makeService``, through an observer it builds
from its own ``--logger`` option (the fully qualified name of a factory
called without arguments), else from ``--logfile``/``--syslog``.  So the
``waiter`` options, parsed before twistd's ``postOptions`` resolves that
name, hand their choices to this module with :func:`configure` and name
:func:`observer` as twistd's ``--logger`` (unless the user gave one).  The
observer writes where twistd would have written (``--logfile``, stdout
with ``-n``, syslog), in the chosen format, dropping events below the
chosen level.

JSON: one event per line (no record separator), as twisted.logger's
``eventAsJSON`` writes it, plus ``log_text``, the event's formatted text
(with a failure's exception type and message), and ``traceback`` for a
``log.failure`` event.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any, cast

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LegacyLogObserverWrapper,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    eventAsJSON,
    formatEvent,
    textFileLogObserver,
)
from twisted.python import logfile
from twisted.python.failure import Failure
from twisted.python.reflect import qual

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warn", "error", "critical")


@dataclass(frozen=True)
class LogSettings:
    """Where and how the server logs: the waiter's options and twistd's."""

    format: str = "text"
    level: str = "info"
    #: twistd's --logfile: None or "" (stdout with -n, else twistd.log), "-" (stdout), a path.
    logfile: str | None = None
    nodaemon: bool = True
    syslog: bool = False
    syslog_prefix: str = "twisted"

    def problem(self) -> str | None:
        """Why these settings cannot work, or None."""
        if self.format not in FORMATS:
            return "--log-format must be text or json"
        if self.level not in LEVELS:
            return "--log-level must be one of " + ", ".join(LEVELS)
        if self.syslog and self.format == "json":
            return "--log-format json cannot go to syslog: give --logfile"
        if self.logfile == "-" and not self.nodaemon:
            return "a daemon cannot log to stdout: give --logfile or -n"
        return None


def settings_from(options: Mapping[str, Any], parent: Mapping[str, Any]) -> LogSettings:
    """The settings of the waiter's options and twistd's (the parent's)."""
    return LogSettings(
        format=options["log-format"],
        level=options["log-level"],
        logfile=parent.get("logfile"),
        nodaemon=bool(parent.get("nodaemon") or parent.get("debug")),
        syslog=bool(parent.get("syslog")),
        syslog_prefix=parent.get("prefix") or "twisted",
    )


_settings = LogSettings()


def configure(settings: LogSettings) -> str:
    """Keep ``settings`` for :func:`observer`; its name, for twistd's ``--logger``."""
    global _settings
    _settings = settings
    return f"{__name__}.{observer.__name__}"


def observer() -> ILogObserver:
    """twistd's log observer factory: the observer of the last :func:`configure`."""
    return build_observer(_settings)


def build_observer(settings: LogSettings, stdout: IO[str] | None = None) -> ILogObserver:
    """The observer for ``settings``; ``stdout``: where stdout logging goes."""
    inner: ILogObserver
    if settings.syslog:
        from twisted.python import syslog

        emit = syslog.SyslogObserver(settings.syslog_prefix).emit
        inner = LegacyLogObserverWrapper(cast(Any, emit))
    else:
        out = _log_file(settings, stdout if stdout is not None else sys.stdout)
        if settings.format == "json":
            inner = FileLogObserver(out, json_line)
        else:
            inner = textFileLogObserver(out)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(settings.level))
    return FilteringLogObserver(inner, [predicate])


def json_line(event: LogEvent) -> str:
    """
    One event as one line of JSON, with its text as ``log_text``.

    ``eventAsJSON`` cannot keep a failure's exception (it writes it as
    ``{"unpersistable": true}``), so a ``log.failure`` event also gets
    ``traceback``, and its ``log_text`` ends with the exception's type and
    message: what the text format shows, no more.
    """
    text = formatEvent(event)
    extra: dict[str, str] = {}
    failure = event.get("log_failure")
    if isinstance(failure, Failure):
        kind = qual(failure.type) if failure.type is not None else "exception"
        text = f"{text}: {kind}: {failure.getErrorMessage()}"
        extra["traceback"] = failure.getTraceback()
    return eventAsJSON({**event, **extra, "log_text": text}) + "\n"


def _log_file(settings: LogSettings, stdout: IO[str]) -> IO[str]:
    """The file twistd itself would log to (twisted.scripts._twistd_unix)."""
    name = settings.logfile
    if name == "-" or (settings.nodaemon and not name):
        return stdout
    log_file = logfile.LogFile.fromFullPath(name or "twistd.log")
    if not signal.getsignal(signal.SIGUSR1):
        # As twistd: SIGUSR1 rotates the log file.
        def rotate(signum: int, frame: Any) -> None:
            from twisted.internet import reactor

            reactor.callFromThread(log_file.rotate)  # type: ignore[attr-defined]

        signal.signal(signal.SIGUSR1, rotate)
    return cast(IO[str], log_file)
