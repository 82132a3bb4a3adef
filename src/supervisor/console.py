"""Terminal output: problems as they happen, one live status line, warnings and errors.

On a terminal the status line updates in place (``\\r``); elsewhere (CI logs)
a plain progress line is printed every ``PLAIN_EVERY_S`` seconds. ``NO_COLOR``
is respected. Nothing here decides anything: it prints what it is given.

Every text goes through ``text.console_text`` before it is written, so a test
id, message or note cannot move the cursor, clear the screen, set the title or
start a GitHub workflow command; mtest's own colour codes are added afterwards
(``line(..., outcome=...)``), and its annotations go through ``command``.
What the stream's encoding cannot carry (a lone surrogate, or anything outside
ASCII on an ASCII terminal) is written as a backslash escape, never an error.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import TextIO

from supervisor.model import Outcome
from supervisor.text import console_text, one_line

PLAIN_EVERY_S = 15.0
TTY_EVERY_S = 0.2

_COLORS = {
    Outcome.PASSED: "32", Outcome.FLAKY: "33", Outcome.SKIPPED: "33", Outcome.XFAILED: "33",
    Outcome.XPASSED: "33", Outcome.FAILED: "31", Outcome.ERROR: "31", Outcome.HUNG: "35",
    Outcome.CRASHED: "35", Outcome.ORDER_DEPENDENT: "31",
}  # fmt: skip


class Console:
    def __init__(self, stream: TextIO, *, verbosity: int, tty: bool, color: bool) -> None:
        self.stream = stream
        self.verbosity = verbosity
        self.tty = tty
        self.color = color
        self._status_shown = False
        self._last_status = time.monotonic() - (TTY_EVERY_S if tty else 0.0)

    @classmethod
    def for_stream(cls, stream: TextIO, *, verbosity: int = 0) -> Console:
        tty = stream.isatty() and os.environ.get("TERM") != "dumb"
        color = tty and "NO_COLOR" not in os.environ
        return cls(stream, verbosity=verbosity, tty=tty, color=color)

    def _paint(self, text: str, outcome: Outcome | None) -> str:
        if outcome is None or not self.color:
            return text
        return f"\033[{_COLORS[outcome]}m{text}\033[0m"

    @staticmethod
    def _write(stream: TextIO, text: str) -> None:
        """Write ``text``; what ``stream``'s encoding cannot carry becomes a backslash escape."""
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            stream.write(text)
        except UnicodeEncodeError:
            stream.write(text.encode(encoding, "backslashreplace").decode(encoding))

    def _clear_status(self) -> None:
        if self._status_shown:
            self.stream.write("\r\033[K")
            self._status_shown = False

    def line(self, text: str, *, level: int = 0, outcome: Outcome | None = None) -> None:
        """Print ``text`` if verbosity >= ``level`` (``-q`` is -1, ``-v`` is 1).

        ``outcome`` colours the line (on a colour terminal) in that outcome's colour.
        """
        if self.verbosity < level:
            return
        self._clear_status()
        self._write(self.stream, self._paint(console_text(text), outcome) + "\n")
        self.stream.flush()

    def command(self, text: str) -> None:
        """Print one GitHub workflow command (``::error ...``) as is, on one line, always.

        The one way to start a line with ``::``: ``line`` and ``always`` escape
        that, so a test id or message cannot forge an annotation or a command.
        """
        self._clear_status()
        self._write(self.stream, one_line(text) + "\n")
        self.stream.flush()

    def always(self, text: str) -> None:
        """Print ``text`` whatever the verbosity (views, listings)."""
        self.line(text, level=-100)

    def warn(self, text: str) -> None:
        self._clear_status()
        self._write(sys.stderr, f"mtest: warning: {console_text(text)}\n")
        sys.stderr.flush()

    def error(self, message: str, hint: str) -> None:
        self._clear_status()
        self.stream.flush()
        tail = f" (hint: {hint})" if hint else ""
        self._write(sys.stderr, console_text(f"mtest: error: {message}{tail}") + "\n")
        sys.stderr.flush()

    def status_due(self) -> bool:
        """Whether ``status`` would draw now; callers check before building the line."""
        every = TTY_EVERY_S if self.tty else PLAIN_EVERY_S
        return self.verbosity >= 0 and time.monotonic() - self._last_status >= every

    def status(self, text: str, *, force: bool = False) -> None:
        """The live progress line: in place on a terminal, every few seconds elsewhere."""
        if not force and not self.status_due():
            return
        self._last_status = time.monotonic()
        if self.tty:
            width = max(20, shutil.get_terminal_size().columns - 1)
            self._write(self.stream, "\r\033[K" + console_text(text)[:width])
            self._status_shown = True
        else:
            self._write(self.stream, console_text(text) + "\n")
        self.stream.flush()

    def end_status(self) -> None:
        self._clear_status()
        self.stream.flush()
