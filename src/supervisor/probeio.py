"""What the probe does without pytest: its event stream, control pipe, stack timer and text.

``probe`` (the pytest plugin) loads this module from the file beside it, as
the bootstrap loads ``probe`` itself: the child's interpreter may not have
mtest installed. Standard library only, and nothing of ``supervisor``; mtest's
own tests import it as ``supervisor.probeio``.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Sequence
from typing import IO, Any

# Captured output and tracebacks in the event stream are capped, keeping the
# head and the tail: a test that floods 150 MiB must not flood mtest too.
CAP_BYTES = 1024 * 1024
MESSAGE_CHARS = 500
PARENT_POLL_S = 0.5

# The real clock, process id and JSON encoder, taken before any test can patch
# them: a test that patches ``time.monotonic`` and leaks the patch must not
# move the probe's.
monotonic = time.monotonic
_sleep = time.sleep
getpid = os.getpid
cpu_seconds = time.process_time
"""This process's CPU seconds, user + system, all its threads (not its children)."""
_open, _read, _close = os.open, os.read, os.close
# ASCII JSON: a lone surrogate, NUL or terminal escape becomes a \uXXXX escape.
_encode = json.JSONEncoder(ensure_ascii=True).encode

_FAIL = "failed"
_SKIP = "skipped"


def cap_text(text: str, limit: int = CAP_BYTES) -> str:
    """Keep the head and tail of ``text`` within ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    half = max(1, limit // 2)
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... mtest cut {cut} characters ...]\n{text[-half:]}"


def first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()[:MESSAGE_CHARS]
    return ""


def outcome_of(phases: Sequence[tuple[str, str, bool]]) -> tuple[str, int]:
    """Decide a test's outcome from its phase reports.

    ``phases`` holds ``(when, outcome, wasxfail)`` for each setup/call/teardown
    report in order. Returns the outcome name and the index of the phase that
    decided it (its traceback is the test's story). A failed body wins over a
    teardown error; a failed setup or teardown alone is an ``error``.
    """
    decided = ("passed", -1)
    for index, (when, outcome, wasxfail) in enumerate(phases):
        if when == "call":
            if outcome == _FAIL:
                return "failed", index
            if outcome == _SKIP:
                decided = ("xfailed" if wasxfail else "skipped", index)
            elif wasxfail:
                decided = ("xpassed", index)
            else:
                decided = ("passed", index)
        elif outcome == _FAIL:
            return "error", index
        elif outcome == _SKIP and when == "setup":
            decided = ("xfailed" if wasxfail else "skipped", index)
    if not phases:
        return "error", -1
    return decided


def error_line(text: str) -> str:
    """The line of a failure's text that says what went wrong.

    pytest marks the exception's lines with ``E`` (``E   fixture 'x' not
    found``); the first of them is the headline. Without one, the last
    non-blank line.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("E ") or line == "E":
            return line[1:].strip()[:MESSAGE_CHARS]
    return lines[-1][:MESSAGE_CHARS] if lines else ""


STATM = "/proc/self/statm"
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """This process's resident memory now, in bytes; ``None`` when it cannot be told.

    Linux: the second field of ``/proc/self/statm`` (pages) — one small read, a few
    microseconds. Elsewhere (or without ``/proc``): ``getrusage``'s ``ru_maxrss``,
    which is the peak so far, not the current size (bytes on macOS, KiB elsewhere).
    """
    try:
        fd = _open(STATM, os.O_RDONLY)
    except OSError:
        return max_rss_bytes()
    try:
        return int(_read(fd, 256).split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return max_rss_bytes()
    finally:
        _close(fd)


def max_rss_bytes() -> int | None:
    """The most this process has been resident (``getrusage``), in bytes.

    On Linux it may count the parent's memory at the fork that made it; ``rss_bytes``
    uses it only where ``/proc`` cannot be read.
    """
    try:
        import resource
    except ImportError:  # not a Unix
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def over_max_rss(rss: int | None, growth: int | None, limit: int | None) -> bool:
    """Whether a worker whose test just ended is replaced before its next test: its RSS
    is above ``--max-rss``, or would be if the next test grew it as much as this one
    did. A steady leak then moves to a fresh worker before a test takes it over the
    limit (mtest kills a test in flight above it: ``blame.over_max_rss``)."""
    if rss is None or limit is None:
        return False
    return rss + max(0, growth or 0) > limit


def env_size(name: str) -> int | None:
    """A size in bytes the supervisor passed (``MTEST_MAX_RSS``); ``None``: none or not one."""
    try:
        size = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return size if size > 0 else None


def to_devnull(fd: int) -> None:
    """Point ``fd`` at /dev/null, keeping its number taken (nothing else reuses it)."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, fd)
        os.close(null)


class EventWriter:
    """Append-only JSONL; ``flush=True`` for events the supervisor must see at once.

    Every event carries the sender's pid. Only the process that opened the
    stream writes to it: a forked copy (``silence``, or a pid that is not ours,
    for a fork that skipped Python's at-fork hooks) writes nothing, and what
    the parent had buffered at the fork goes to /dev/null in the copy.
    """

    def __init__(self, path: str) -> None:
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 (lives as long as the child)
        self.pid = getpid()
        self.silent = False

    def emit(self, event: dict[str, Any], *, flush: bool = False) -> None:
        if self._copy():
            return
        event["pid"] = self.pid
        self._file.write(_encode(event).encode() + b"\n")
        if flush:
            self._file.flush()

    def flush(self) -> None:
        if not self._copy():
            self._file.flush()

    def _copy(self) -> bool:
        """Whether this is a forked copy (silenced now if the fork skipped the hooks)."""
        if not self.silent and getpid() != self.pid:
            self.silence()
        return self.silent

    def silence(self) -> None:
        if not self.silent:
            self.silent = True
            to_devnull(self._file.fileno())


class Control:
    """The supervisor's commands, one per line: ``run N PATH``, ``stop``, ``exit``.

    ``next_command`` waits for the next ``run``/``exit``; ``stop_requested``
    reads what has arrived without waiting, between tests. A ``stop`` ends the
    chunk that is running when it is read; one read between chunks is stale.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False
        self.stopped = False
        self._lines: deque[str] = deque()
        self._partial = b""
        self._poll = select.poll()  # not select.select: the fd number may exceed FD_SETSIZE
        self._poll.register(fd, select.POLLIN)

    def next_command(self) -> str | None:
        """The next ``run``/``exit`` line; ``None`` when the supervisor is gone."""
        while True:
            while not self._lines and not self.closed:
                self._read(None)
            if not self._lines:
                return None
            line = self._lines.popleft()
            if line != "stop":
                return line

    def start_chunk(self) -> None:
        self.stopped = False

    def stop_requested(self) -> bool:
        """Whether the running chunk must end after the test in flight (never waits)."""
        while not self.closed and self._read(0):
            pass
        if "stop" in self._lines:
            self.stopped = True
            self._lines = deque(line for line in self._lines if line != "stop")
        return self.stopped or self.closed

    def _read(self, timeout_ms: int | None) -> bool:
        if not self._poll.poll(timeout_ms):
            return False
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return False
        if not data:  # the supervisor is gone
            self.closed = True
            return False
        *lines, self._partial = (self._partial + data).split(b"\n")
        self._lines.extend(os.fsdecode(line) for line in lines)
        return True


def exit_status_of(error: BaseException | None) -> int:
    """The status a process ends with when ``error`` ends it, as the interpreter would."""
    if error is None:
        return 0
    if isinstance(error, SystemExit):
        if error.code is None:
            return 0
        return error.code if isinstance(error.code, int) else 1
    return 1


def env_timeout() -> float | None:
    """The run's per-test limit as the supervisor passed it (``MTEST_TIMEOUT``)."""
    try:
        seconds = float(os.environ.get("MTEST_TIMEOUT", ""))
    except ValueError:
        return None
    return seconds if 0 < seconds < float("inf") else None


REARM_FRACTION = 0.02
REARM_MAX_S = 1.0


def rearm_needed(armed: tuple[float, float] | None, limit: float, now: float) -> bool:
    """Whether a test starting at ``now`` with ``limit`` needs a fresh stack timer.

    ``armed`` is ``(when, limit)`` of the timer that is running. It is kept when
    it has the same limit and would fire at most ``REARM_FRACTION`` of it (and
    at most ``REARM_MAX_S``) before this test reaches its limit.
    """
    if armed is None or armed[1] != limit:
        return True
    return now - armed[0] > min(REARM_FRACTION * limit, REARM_MAX_S)


class StackTimer:
    """Every thread's stack in the stacks file when a test outlives its limit.

    ``faulthandler.dump_traceback_later`` needs no signal (a test may replace
    the SIGUSR2 handler) and writes from a C thread even while C code holds
    the GIL. Arming it starts that thread (~40 us), too much for every test of
    a sub-millisecond suite, so a timer armed for an earlier test is kept while
    it fires only a little early (``rearm_needed``). faulthandler has one such
    timer per process: a test that arms its own replaces this one.
    """

    def __init__(self, stacks: IO[str]) -> None:
        self.stacks = stacks
        self.armed: tuple[float, float] | None = None

    def test_starts(self, limit: float | None, now: float) -> None:
        if limit is None:
            self.cancel()
        elif rearm_needed(self.armed, limit, now):
            faulthandler.dump_traceback_later(limit, file=self.stacks)
            self.armed = (now, limit)

    def cancel(self) -> None:
        if self.armed is not None:
            faulthandler.cancel_dump_traceback_later()
            self.armed = None


def format_error(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


# -- process hygiene ------------------------------------------------------------


def die_with_parent(parent: int) -> None:
    """Exit this child's whole process group when the supervisor disappears."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(70)

    def watch() -> None:
        while True:
            _sleep(PARENT_POLL_S)
            if os.getppid() != parent:
                try:
                    os.killpg(os.getpgrp(), signal.SIGKILL)
                finally:
                    os._exit(70)

    threading.Thread(target=watch, name="mtest-parent-watch", daemon=True).start()
