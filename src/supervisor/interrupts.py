"""Signals to mtest: who sent each one, and what it means for the run.

A test can signal any process it can name, and the supervisor is one
``os.getppid()`` away. So while a run is on, mtest blocks every signal a
process can send that would end, stop or disturb it (``pthread_sigmask``),
and a thread reads them with ``sigtimedwait``, which says who sent each one
(``si_pid``). Whether the sender is of the run, and what the signal means,
is decided in ``senders``. A signal from the run is ignored for the whole
run and becomes a note naming the test the sender's worker was running; a
signal from anyone else keeps its usual meaning:

- ``SIGINT``, ``SIGTERM``, ``SIGHUP`` (and the fault signals, sent by
  ``kill``): halt — children get SIGTERM, the grace, SIGKILL; exit 2. The
  second one kills the children at once.
- ``SIGQUIT`` (Ctrl-\\): halt with SIGKILL at once; exit 2.
- ``SIGTSTP``, ``SIGTTIN``, ``SIGTTOU`` (Ctrl-Z): the workers' groups and
  mtest stop; the watchdog is told not to continue mtest; ``fg`` continues all.
- ``SIGUSR1``, ``SIGUSR2``, ``SIGALRM`` and the other signals with no meaning
  to mtest: ignored, with a note naming the sender.
- ``SIGCONT`` from the watchdog means mtest had been stopped (``SIGSTOP``
  cannot be caught): noted with the tests in flight.

Children inherit a blocked mask: the worker's bootstrap and the watchdog
clear it, and the guard restores mtest's own mask when it exits. Without
``sigtimedwait`` (macOS) the guard falls back to plain handlers for SIGINT,
SIGTERM and SIGHUP, which cannot tell the run from the user.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Protocol

from supervisor import parse, reaper
from supervisor.control import Stop, StopControl
from supervisor.senders import (
    GUARDED,
    Action,
    Origin,
    Sender,
    decide,
    identify,
    last_started,
    note,
    parent_chain,
)  # fmt: skip
from supervisor.worker import Worker

WAIT_S = 0.25
"""How long the reader thread waits for a signal before checking it should end."""
WAKE = signal.SIGURG
"""Sent by the guard to its own reader thread when the run ends, so that it stops
now rather than after its wait (SIGURG is ignored by default: from anyone else it
only wakes the reader)."""
MAX_NOTES = 20
GONE_WAIT_S = 0.2
"""For a sender already gone: how long to watch for a worker reaping it."""


class Followed(Protocol):
    """What the guard reads from the running pool (``drive.Pool``)."""

    watchdog: reaper.Watchdog | None
    workers: list[Worker | None]

    def in_flight_by_pid(self) -> dict[int, str | None]: ...


class Guard:
    """``with Guard(stop) as guard:`` — signals to mtest, read and judged for the run.

    ``follow(pool)`` once the pool exists, so a signal from a worker can name
    its test. ``notes`` collects one line per signal ignored (per sender and
    signal, at most ``MAX_NOTES``).
    """

    def __init__(self, stop: StopControl) -> None:
        self.stop = stop
        self.notes: list[str] = []
        self._run: Followed | None = None
        self._seen: set[tuple[int, int]] = set()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._mask: set[int] = set()
        self._handlers: dict[int, object] = {}
        self._last_faults: dict[int, int] = {}
        """Each worker's ``reaped_faults`` at the reader's last turn."""

    def follow(self, run: Followed) -> None:
        self._run = run

    def __enter__(self) -> Guard:
        if not hasattr(signal, "sigtimedwait"):
            self._install_handlers()
            return self
        self._mask = {int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [*GUARDED, WAKE])}
        self._thread = threading.Thread(target=self._read, name="mtest-signals", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread is None:
            for signum, handler in self._handlers.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            return
        self._done.set()
        if self._thread.ident is not None:
            with contextlib.suppress(OSError):
                signal.pthread_kill(self._thread.ident, WAKE)
        self._thread.join()
        try:
            while (info := signal.sigtimedwait(GUARDED, 0)) is not None:
                self._judge(info.si_signo, info.si_pid, late=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)

    def _read(self) -> None:
        while not self._done.is_set():
            info = signal.sigtimedwait([*GUARDED, WAKE], WAIT_S)
            if info is not None and info.si_signo != WAKE:
                self._judge(info.si_signo, info.si_pid)
            with contextlib.suppress(Exception):
                fresh = self._faults(self._in_flight())
                # A signal that came while we looked may be from a child reaped
                # meanwhile: keep the older look, which cannot have seen it.
                if not signal.sigpending() & GUARDED:
                    self._last_faults = fresh
            with contextlib.suppress(Exception):  # a helper, not worth the reader thread
                self._continue_watchdog()

    def _judge(self, signum: int, pid: int, *, late: bool = False) -> None:
        """``on_signal``, but a failure to judge honours the signal as the user's.

        The thread must outlive anything: if it died, the signals would stay
        blocked and nobody, not even the user, could interrupt the run.
        """
        try:
            self.on_signal(signum, pid, late=late)
        except Exception:  # whatever went wrong, Ctrl-C must still work
            self._act(decide(signum, Origin.OUTSIDE, interrupted=self.stop.interrupted))

    def on_signal(self, signum: int, pid: int, *, late: bool = False) -> None:
        """Judge one signal and act on it (called from the reader thread).

        ``late``: it arrived as the guard closed; the workers are gone, so it
        can stop nothing any more, and mtest does not suspend itself for it.
        """
        me = os.getpid()
        in_flight = self._in_flight()
        written = self._written()  # first: the worker that sent it may move on meanwhile
        watchdog = self._watchdog()
        parents = parent_chain(pid, me)
        reaping = () if pid in parents or pid <= 1 else self._reaping(in_flight)
        sender = identify(
            pid, me=me, parents=parents, workers=in_flight,
            watchdog=watchdog.pid if watchdog else None, reaping=reaping,
        )  # fmt: skip
        action = decide(signum, sender.origin, interrupted=self.stop.interrupted)
        if action in (Action.HALT, Action.KILL_NOW):
            self._act(action)
        elif action is Action.SUSPEND and not late:
            self._suspend(in_flight)
        elif action in (Action.IGNORE, Action.CONTINUED) and self._first(signum, sender):
            test = None
            if sender.worker is not None:
                test = self._test_of(sender.worker, written.get(sender.worker, 0))
            tests = [t for t in in_flight.values() if t is not None]
            self.notes.append(note(signum, sender, test=test, in_flight=tests))

    def _faults(self, workers: Iterable[int]) -> dict[int, int]:
        infos = {pid: reaper.read_proc(pid) for pid in workers}
        return {pid: info.reaped_faults for pid, info in infos.items() if info is not None}

    def _reaping(self, workers: Collection[int]) -> list[int]:
        """The workers that reaped a child since the last look (waiting ``GONE_WAIT_S`` for one).

        A test's ``kill`` command is gone as soon as it has signalled, and its
        worker reaps it at once (or a shell between them does, and exits).
        """
        deadline = time.monotonic() + GONE_WAIT_S
        while True:
            now = self._faults(workers)
            # A worker started since the last look has reaped nothing before it.
            reaping = [w for w, n in now.items() if n > self._last_faults.get(w, 0)]
            if reaping or time.monotonic() >= deadline:
                return reaping
            time.sleep(0.02)

    def _act(self, action: Action) -> None:
        if action in (Action.HALT, Action.KILL_NOW):
            self.stop.hurry = self.stop.hurry or action is Action.KILL_NOW
            self.stop.interrupted = True
            self.stop.mode = Stop.HALT

    def _first(self, signum: int, sender: Sender) -> bool:
        """Whether this sender's signal deserves a note: once each, ``MAX_NOTES`` in all."""
        key = (signum, sender.pid)
        if key in self._seen or len(self._seen) > MAX_NOTES:
            return False
        self._seen.add(key)
        if len(self._seen) > MAX_NOTES:
            self.notes.append(f"more than {MAX_NOTES} signals to mtest were ignored")
            return False
        return True

    def _events(self) -> dict[int, Path]:
        run = self._run
        try:
            workers = [w for w in (run.workers if run else ()) if w is not None]
            return {w.proc.pid: w.files.events_path for w in workers}
        except AttributeError:  # the pool's shape changed: no names
            return {}

    def _written(self) -> dict[int, int]:
        """How much each worker had written to its events file when the signal came."""
        sizes = {}
        for pid, path in self._events().items():
            with contextlib.suppress(OSError):
                sizes[pid] = path.stat().st_size
        return sizes

    def _test_of(self, worker: int, written: int) -> str | None:
        """The test ``worker`` was running when it signalled: its last start by then.

        The loop may not have read the ``start`` event yet, so its own idea of
        the test in flight can lag: the events file cannot.
        """
        path = self._events().get(worker)
        try:
            with open(path or os.devnull, "rb") as handle:
                data = handle.read(written)
        except OSError:
            return None
        return last_started(parse.decode_events(data)[0], worker)

    def _in_flight(self) -> dict[int, str | None]:
        try:
            return self._run.in_flight_by_pid() if self._run is not None else {}
        except (RuntimeError, AttributeError):  # the pool changed under us: no names this time
            return {}

    def _watchdog(self) -> reaper.Watchdog | None:
        return self._run.watchdog if self._run is not None else None

    def _continue_watchdog(self) -> None:
        """The watchdog continues mtest; mtest continues the watchdog (a test may stop either)."""
        watchdog = self._watchdog()
        info = reaper.read_proc(watchdog.pid) if watchdog is not None else None
        if watchdog is not None and info is not None and info.state == "T":
            with contextlib.suppress(OSError):
                os.kill(watchdog.pid, signal.SIGCONT)

    def _suspend(self, in_flight: Mapping[int, str | None]) -> None:
        """Ctrl-Z: stop the workers' groups and mtest; ``fg`` continues them."""
        watchdog = self._watchdog()
        if watchdog is not None:
            watchdog.hold()
        for group in in_flight:
            with contextlib.suppress(OSError):
                os.killpg(group, signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)
        # The stop reaches this thread a moment later: wait for the SIGCONT that
        # ends it (a stop signal discards any SIGCONT pending before it).
        while not self._done.is_set() and signal.sigtimedwait([signal.SIGCONT], WAIT_S) is None:
            pass
        for group in in_flight:
            with contextlib.suppress(OSError):
                os.killpg(group, signal.SIGCONT)
        if watchdog is not None:
            watchdog.release()

    def _install_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            self.on_signal(signum, 0)

        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            signum = signal.Signals[name]
            self._handlers[signum] = signal.signal(signum, handler)
