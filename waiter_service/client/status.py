"""
What one answer of ``startWaiter`` or ``getServiceStatus`` means.

The two outputs are ``status_base64`` and ``result``: a base64 page and
``UNSET`` while the run is queued or running (or when it failed or was
aborted), ``UNCHANGED`` when nothing changed since the previous poll of the
serviceID (keep the last page), ``COMPLETED`` and the result at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .page import Page, decode_status, parse_page
from .result import Result, decode_result

COMPLETED = "COMPLETED"
UNCHANGED = "UNCHANGED"

#: States after which nothing changes.
FINISHED = ("completed", "failed", "aborted")


@dataclass(frozen=True)
class Snapshot:
    """
    A run as the client last saw it.

    ``state`` is None only when the first answer seen was ``UNCHANGED``
    (someone else polled the run before: it is queued or running, but which
    is not known).  ``unchanged`` says the latest answer was ``UNCHANGED``.
    """

    state: str | None
    percent: float | None = None
    position: int | None = None
    reason: str | None = None
    ended: str | None = None
    output: tuple[str, ...] = ()
    cluster: str | None = None
    result: Result | None = None
    unchanged: bool = False

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def same_as(self, other: Snapshot) -> bool:
        """Whether ``other`` shows nothing new (the ``unchanged`` flag aside)."""
        return replace(self, unchanged=False) == replace(other, unchanged=False)


def from_page(page: Page) -> Snapshot:
    return Snapshot(
        state=page.state,
        percent=page.percent,
        position=page.position,
        reason=page.reason,
        ended=page.ended,
        output=page.output,
        cluster=page.cluster,
    )


def interpret(
    status_base64: str,
    result: str | None,
    previous: Snapshot | None = None,
    result_mode: str = "auto",
) -> Snapshot:
    """The snapshot an answer gives, ``previous`` being the last one seen."""
    if status_base64 == COMPLETED:
        return Snapshot(state="completed", result=decode_result(result or "", result_mode))
    if status_base64 == UNCHANGED:
        if previous is None:
            return Snapshot(state=None, unchanged=True)
        return replace(previous, unchanged=True)
    return from_page(parse_page(decode_status(status_base64)))
