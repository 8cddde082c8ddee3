"""
Checks for everything that arrives from the network, before it is used.

Pure functions: each returns the checked value or raises
:class:`InvalidInput` with a text that is safe to send back to the caller.
"""

from __future__ import annotations

import re

#: A serviceID: letters, digits, ``_``, ``-`` and ``.``, starting with a
#: letter or digit, at most 128 characters.  The platform's own IDs (a hex
#: digest, ``_``, a number) fit; nothing that could name another folder does.
SERVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

#: Longest ``message`` that notifyService passes to a program.
MAX_MESSAGE_LENGTH = 4096

#: Longest ``extraParameters`` string, and most ``key=value`` pairs in it.
MAX_EXTRA_PARAMETERS_LENGTH = 8192
MAX_EXTRA_PARAMETERS = 64

_KEY_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class InvalidInput(ValueError):
    """A value from the network that the service will not use."""


def check_service_id(value: str | None) -> str:
    """Return ``value`` if it is a safe serviceID, else raise InvalidInput."""
    if not isinstance(value, str) or value == "":
        raise InvalidInput("serviceID is required")
    if not SERVICE_ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            "serviceID must be 1 to 128 characters: letters, digits, '_', '-'"
            " and '.', starting with a letter or a digit"
        )
    return value


def parse_extra_parameters(value: str | None) -> dict[str, str]:
    """
    Parse the platform's ``key=value,key=value,`` string.

    Empty items (the trailing comma) are skipped; a value may itself contain
    ``=`` (URLs do); a key given twice, a malformed item or control
    characters are refused.
    """
    if not value:
        return {}
    if len(value) > MAX_EXTRA_PARAMETERS_LENGTH:
        raise InvalidInput(
            f"extraParameters is longer than {MAX_EXTRA_PARAMETERS_LENGTH} characters"
        )
    if _CONTROL.search(value):
        raise InvalidInput("extraParameters must not contain control characters")
    parsed: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep or not _KEY_PATTERN.fullmatch(key):
            raise InvalidInput("extraParameters must be key=value items separated by commas")
        if key in parsed:
            raise InvalidInput(f"extraParameters gives {key} twice")
        parsed[key] = val.strip()
        if len(parsed) > MAX_EXTRA_PARAMETERS:
            raise InvalidInput(f"extraParameters has more than {MAX_EXTRA_PARAMETERS} items")
    return parsed


def check_message(value: str | None) -> str:
    """A notifyService message: one line of printable text, not too long."""
    if value is None or value.strip() == "":
        raise InvalidInput("message is required")
    if len(value) > MAX_MESSAGE_LENGTH:
        raise InvalidInput(f"message is longer than {MAX_MESSAGE_LENGTH} characters")
    if _CONTROL.search(value):
        raise InvalidInput("message must be one line without control characters")
    return value


#: One segment of a context root (the deployment path behind the proxy).
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


def parse_context_root(value: str) -> list[str]:
    """
    ``/mycompany/myvm`` -> ``["mycompany", "myvm"]``; ``""`` or ``/`` -> ``[]``.

    Raises ValueError for anything but plain path segments.
    """
    segments = [s for s in value.strip().strip("/").split("/") if s]
    for segment in segments:
        if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise ValueError(
                f"context root segment {segment!r} may only use letters, digits and . _ ~ -"
            )
    return segments
