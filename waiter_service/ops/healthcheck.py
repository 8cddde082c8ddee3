"""
The container's health check: ``python -m waiter_service.ops.healthcheck``.

The Dockerfile's ``HEALTHCHECK`` runs it.  It asks the server's own
``<context-root>/health`` and exits 0 only on HTTP 200 with
``"status": "ok"``; else it prints one line (why) and exits 1.

The URL is ``WAITER_HEALTH_URL`` when set (a ``CMD`` that listens on
another interface, or over TLS), else
``http://127.0.0.1:${WAITER_HEALTH_PORT:-8080}/<CONTEXT_ROOT>/health``,
with ``CONTEXT_ROOT`` read by the server's own :func:`~waiter_service.validation.parse_context_root`
so that the check asks exactly where the server answers.  Never through a
proxy (the container's ``http_proxy`` is for the programs it runs), with a
3 s timeout (the ``HEALTHCHECK`` allows 5 s).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from ..validation import parse_context_root

DEFAULT_PORT = "8080"
TIMEOUT = 3.0

#: Opens a URL (a urllib opener's ``open``): url, timeout -> a response.
Opener = Callable[..., Any]


def health_url(environ: Mapping[str, str]) -> str:
    """
    The URL to check, from the environment.

    Raises ValueError for a port or context root the server would refuse.
    """
    url = environ.get("WAITER_HEALTH_URL", "").strip()
    if url:
        return url
    port = environ.get("WAITER_HEALTH_PORT", "").strip() or DEFAULT_PORT
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"WAITER_HEALTH_PORT {port!r} is not a TCP port")
    path = "".join(segment + "/" for segment in parse_context_root(environ.get("CONTEXT_ROOT", "")))
    return f"http://127.0.0.1:{int(port)}/{path}health"


def check(url: str, opener: Opener) -> str | None:
    """None when ``url`` answers 200 with ``"status": "ok"``; else why not, in one line."""
    try:
        with opener(url, timeout=TIMEOUT) as response:
            code = response.status
            body = response.read(65536)
    except urllib.error.HTTPError as e:
        return f"unhealthy: HTTP {e.code} from {url}{_reason(e)}"
    except (OSError, ValueError) as e:
        # URLError, timeouts, refused connections, malformed URLs.
        return f"unhealthy: no answer from {url} ({_one_line(e)})"
    if code != 200:
        return f"unhealthy: HTTP {code} from {url}"
    try:
        status = json.loads(body).get("status")
    except (ValueError, AttributeError):
        return f"unhealthy: {url} did not answer a JSON object"
    if status != "ok":
        return f"unhealthy: status {_one_line(status)} from {url}"
    return None


def _reason(error: urllib.error.HTTPError) -> str:
    """``: <reason>`` of a 503 document (why the work folder fails), else ``""``."""
    try:
        reason = json.loads(error.read(65536)).get("reason")
    except (OSError, ValueError, AttributeError):
        return ""
    return f": {_one_line(reason)}" if isinstance(reason, str) else ""


def _one_line(value: object) -> str:
    """``value`` as a short single line (an answer or error can be anything)."""
    return " ".join(str(value).split())[:200]


def main(environ: Mapping[str, str] | None = None, opener: Opener | None = None) -> int:
    """Check the server's health; the exit code (0 healthy, 1 not)."""
    try:
        url = health_url(os.environ if environ is None else environ)
    except ValueError as e:
        print(f"unhealthy: {e}")
        return 1
    if opener is None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({})).open
    problem = check(url, opener)
    if problem is not None:
        print(problem)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
