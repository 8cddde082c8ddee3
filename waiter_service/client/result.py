"""
A completed run's ``result``: base64 (the service's default and the
tutorial's), or the text itself (``--result-encoding raw`` on the server).

The answer does not say which, so by default the client decodes what is
base64 of UTF-8 text and shows anything else as it came.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

#: How the client reads a result: guess, always decode, never decode.
MODES = ("auto", "base64", "raw")

_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
#: Controls that plain text does not have (tab and line breaks are text).
_BINARY = re.compile("[\x00-\x08\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Result:
    """A result as the client shows it, and whether it was base64-decoded."""

    text: str
    decoded: bool


def decode_result(value: str, mode: str = "auto") -> Result:
    """
    The result to show for the ``result`` a completed run answered.

    ``auto``: decoded when it is base64 of UTF-8 text, else as it came (so a
    raw result that happens to be valid base64 of text is decoded: use
    ``raw`` then).  ``base64``: decoded, undecodable bytes replaced.
    ``raw``: as it came.
    """
    if mode not in MODES:
        raise ValueError(f"unknown result mode {mode!r}")
    if mode == "raw":
        return Result(value, decoded=False)
    data = _base64_bytes(value)
    if data is None:
        return Result(value, decoded=False)
    if mode == "base64":
        return Result(data.decode("utf-8", errors="replace"), decoded=True)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Result(value, decoded=False)
    if _BINARY.search(text):
        return Result(value, decoded=False)
    return Result(text, decoded=True)


def _base64_bytes(value: str) -> bytes | None:
    """The bytes ``value`` encodes, if it is strict base64 (line breaks allowed)."""
    compact = "".join(value.split())
    if not compact or len(compact) % 4 or not _BASE64.fullmatch(compact):
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
