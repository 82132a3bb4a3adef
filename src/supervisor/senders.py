"""Who sent a signal to mtest, and what it means for the run: pure decisions.

The sender is *of the run* when it is a worker, or when its parent chain
(``/proc/<pid>/stat``, read by ``parent_chain``) reaches mtest, or when it
was gone before it could be looked up and a worker reaped a child just then
(a test's ``kill`` command). A signal from the run is ignored and becomes a
note; one from anyone else keeps its meaning (``decide``). ``interrupts``
reads the signals and acts on these decisions.
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from supervisor import events, reaper

MAX_CHAIN = 256
"""A parent chain longer than this is not followed further (a loop, or absurd)."""


class Meaning(enum.Enum):
    INTERRUPT = "interrupt"
    QUIT = "quit"
    SUSPEND = "suspend"
    CONTINUE = "continue"
    NONE = "none"


class Origin(enum.Enum):
    OUTSIDE = "outside"
    """The user, a CI runner, the kernel (a terminal's Ctrl-C), mtest itself."""
    RUN = "run"
    """A worker or one of the processes below mtest."""
    WATCHDOG = "watchdog"


class Action(enum.Enum):
    HALT = "halt"
    KILL_NOW = "kill-now"
    SUSPEND = "suspend"
    IGNORE = "ignore"
    """Ignored, with a note."""
    CONTINUED = "continued"
    """mtest had been stopped and the watchdog continued it: a note."""
    NOTHING = "nothing"


_MEANINGS = {
    **dict.fromkeys(("SIGINT", "SIGTERM", "SIGHUP", "SIGABRT", "SIGSEGV", "SIGBUS", "SIGFPE",
                     "SIGILL", "SIGTRAP", "SIGSYS", "SIGXCPU"), Meaning.INTERRUPT),
    "SIGQUIT": Meaning.QUIT,
    **dict.fromkeys(("SIGTSTP", "SIGTTIN", "SIGTTOU"), Meaning.SUSPEND),
    "SIGCONT": Meaning.CONTINUE,
    **dict.fromkeys(("SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO",
                     "SIGPWR", "SIGSTKFLT"), Meaning.NONE),
}  # fmt: skip


def _guarded() -> frozenset[int]:
    names = signal.Signals.__members__
    found = {int(names[name]) for name in _MEANINGS if name in names}
    if hasattr(signal, "SIGRTMIN"):
        found.update(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
    return frozenset(found)


GUARDED = _guarded()
"""Every signal the guard blocks and reads (SIGKILL and SIGSTOP cannot be)."""


def meaning(signum: int) -> Meaning:
    return _MEANINGS.get(signal_name(signum), Meaning.NONE)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@dataclass(frozen=True, kw_only=True)
class Sender:
    pid: int
    origin: Origin
    worker: int | None = None
    """The worker on the sender's parent chain (the sender itself, if it is one)."""
    gone: bool = False
    """It exited before mtest could read its parent (a ``kill`` command, say)."""


def identify(
    pid: int, *, me: int, parents: Mapping[int, int], workers: Collection[int],
    watchdog: int | None, reaping: Collection[int] = (),
) -> Sender:  # fmt: skip
    """Whose signal this is, from the sender's pid and its chain of parents.

    ``parents`` maps a pid to its parent for as much of the chain as could be
    read. A sender that is gone before it could be looked up is of the run
    when a worker reaped a child just then (``reaping``), else outside.
    """
    if pid > 1 and pid not in parents and pid not in workers and pid not in (me, watchdog):
        origin = Origin.RUN if reaping else Origin.OUTSIDE
        return Sender(pid=pid, origin=origin, worker=min(reaping, default=None), gone=True)
    if pid <= 1 or pid == me:  # the kernel (a terminal), init (a container's), mtest itself
        return Sender(pid=pid, origin=Origin.OUTSIDE)
    if pid == watchdog:
        return Sender(pid=pid, origin=Origin.WATCHDOG)
    worker = None
    current = pid
    for _ in range(MAX_CHAIN):
        if current in workers and worker is None:
            worker = current
        if current == me:
            return Sender(pid=pid, origin=Origin.RUN, worker=worker)
        if current not in parents:
            break
        current = parents[current]
    if worker is not None:
        return Sender(pid=pid, origin=Origin.RUN, worker=worker)
    return Sender(pid=pid, origin=Origin.OUTSIDE)


def decide(signum: int, origin: Origin, *, interrupted: bool) -> Action:
    """What a signal does to the run, given who sent it and whether it was interrupted already."""
    kind = meaning(signum)
    if origin is not Origin.OUTSIDE:
        if kind is Meaning.CONTINUE:
            return Action.CONTINUED if origin is Origin.WATCHDOG else Action.NOTHING
        return Action.IGNORE
    if kind is Meaning.INTERRUPT:
        return Action.KILL_NOW if interrupted else Action.HALT
    return {
        Meaning.QUIT: Action.KILL_NOW,
        Meaning.SUSPEND: Action.SUSPEND,
        Meaning.CONTINUE: Action.NOTHING,
        Meaning.NONE: Action.IGNORE,
    }[kind]


def note(signum: int, sender: Sender, *, test: str | None, in_flight: Collection[str]) -> str:
    """The line a run's notes get for a signal that was ignored, or for a stop undone."""
    name = signal_name(signum)
    if sender.origin is Origin.WATCHDOG:
        running = ", ".join(sorted(in_flight)) or "none"
        return f"mtest was stopped (SIGSTOP) and the watchdog continued it; in flight: {running}"
    if sender.origin is Origin.OUTSIDE:
        return f"pid {sender.pid} sent {name} to mtest; ignored (it means nothing to mtest)"
    # The signal is read a moment after it was sent, and the worker may have
    # moved on meanwhile: the test is named as a witness, not as a certainty.
    witness = f" (the last test its worker had started: {test})" if test is not None else ""
    if sender.gone:
        through = f"a short-lived process (pid {sender.pid}) of worker pid {sender.worker}"
        return f"{through} sent {name} to mtest; ignored{witness}"
    if test is not None:
        return f"pid {sender.pid} of the run sent {name} to mtest; ignored{witness}"
    return f"pid {sender.pid} (of the run, no test in flight) sent {name} to mtest; ignored"


def last_started(stream: Iterable[events.Event], worker: int) -> str | None:
    """The last test a worker's own events say it started (``None``: none yet).

    A signal is read a moment after it was sent: by then the test that sent
    it may have ended, so the last test started is the best witness.
    """
    started = None
    for event in stream:
        if isinstance(event, events.Start) and event.pid in (worker, None):
            started = event.test_id  # a forked copy's events speak for nothing
    return started


def parent_chain(pid: int, me: int) -> dict[int, int]:
    """``pid → ppid`` from ``pid`` up to mtest, init, or a process that is gone."""
    parents: dict[int, int] = {}
    current = pid
    while current > 1 and current != me and len(parents) < MAX_CHAIN:
        info = reaper.read_proc(current)
        if info is None:
            break
        parents[current] = info.ppid
        current = info.ppid
    return parents
