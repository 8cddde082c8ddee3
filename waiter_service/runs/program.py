"""
What a wrapped program tells the core about itself.

The core (:mod:`.manager`, :mod:`.process`, the SOAP layer) knows nothing
about waiting: everything specific to one program is an object providing
:class:`Program`.  Wrapping another program (a mesher, a solver) means
writing one such object, as :mod:`waiter_service.programs.waiter` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .progress import Progress


class InputError(ValueError):
    """A start request with inputs the program cannot take.

    Its text is shown to the caller as it is, so it must not reveal any
    internals.
    """


class MissingOutput(Exception):
    """The program ended well but did not leave an output it promised."""


@dataclass(frozen=True)
class InputField:
    """One input of the start operation, after serviceID and sessionToken.

    ``kind`` is ``int`` or ``str``; the SOAP layer maps it to a schema type.
    A field that is not required may be left out by the caller: it arrives
    as None and the program's :meth:`Program.check_inputs` fills it in.
    """

    name: str
    kind: type
    required: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Invocation:
    """The command line and environment of one child."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


class Program(Protocol):
    """A long-running program served as a CloudFlow asynchronous service."""

    #: The SOAP service name; its endpoint is ``<context-root>/<name>``.
    name: str
    #: The name of the start operation, e.g. ``startWaiter``.
    start_operation: str
    #: The start operation's own inputs, in order.
    input_fields: tuple[InputField, ...]
    #: The names of the program's own outputs, in order (after status).
    output_names: tuple[str, ...]

    def check_inputs(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and complete the inputs; raise InputError if bad."""

    def invocation(self, inputs: Mapping[str, Any], folder: Path) -> Invocation:
        """The command that runs the program for one run in ``folder``."""

    def parse_line(self, line: str) -> Progress | None:
        """A progress report from one line of stdout, or None."""

    def collect_outputs(self, folder: Path) -> dict[str, bytes]:
        """Read the outputs after a successful exit; raise MissingOutput."""

    def read_progress(self, folder: Path) -> Progress | None:
        """
        The progress the program last left in its folder, if it leaves any.

        Used for a run adopted after a restart, whose stdout the server no
        longer reads.  Must be cheap: it is read every second or so.
        """

    def finished_outputs(self, folder: Path) -> dict[str, bytes] | None:
        """
        For a run whose exit status could not be seen (it ended while the
        server was down, or after the server adopted it): the outputs if the
        program's own files show that it finished, else None.
        """
