"""The one exception type stages raise; only ``cli`` prints it and exits."""

from __future__ import annotations


class MtestError(Exception):
    """A problem to report in one line, with a hint and the exit code from the spec."""

    def __init__(self, message: str, *, hint: str = "", code: int = 4) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


class Busy(MtestError):
    """Something mtest needs is held by someone else now (``.gates/lock``): the same
    command may work later. ``mtest service`` counts it as a fault and goes on."""
