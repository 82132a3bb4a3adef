"""The driver's decisions as pure functions: which deadline fires, whether a kill
still stands, who is blamed, and whether a child's session failed on its own.

No clock, no files, no processes: the pool passes what it read (a ``Watch`` of
one worker, on mtest's own ``time.monotonic()``) and acts on the answer.

The kill is a sequence the event loop steps through without sleeping:

1. a deadline is overdue (``overdue``) → ask the child for its stacks
   (``KillReason.dumps_stacks``; the probe's per-test ``dump_traceback_later``
   writes them too, even if the test replaced the SIGUSR2 handler);
2. a few loop turns later, with the events read meanwhile, the deadline is
   computed again (``still_due``): if the overdue test ended in the meantime,
   nobody is killed and the next test has its own fresh deadline;
3. SIGTERM to the child's group, SIGKILL after the grace (a test in flight while
   its worker is above ``--max-rss`` skips steps 1 and 2: ``over_max_rss``);
4. when the child is gone, ``culprit`` names the test still in flight at the
   kill (``hung``), a test in flight when a child died on its own
   (``crashed``), or an innocent test that had only just started (requeued).
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from supervisor import events, parse, resources


class KillReason(enum.Enum):
    HUNG = "hung"
    """A test ran past its limit."""
    COLLECT_HUNG = "collect-hung"
    """Importing one test file took longer than the timeout."""
    STARTUP_HUNG = "startup-hung"
    """Start-up or collection made no progress (a hanging conftest or plugin)."""
    STALLED = "stalled"
    """A chunk was sent but no test has been in flight for longer than the timeout."""
    EXIT_HUNG = "exit-hung"
    """The session did not end after ``exit`` (session-scoped teardown hangs)."""
    LINGERING = "lingering"
    """The session ended but the process stays (a test left a non-daemon thread)."""
    HALT = "halt"
    """The run stops now (interrupt, budget)."""
    CLOSING = "closing"
    """The pool closes and this child is still there."""
    MAX_RSS = "max-rss"
    """The worker went above ``--max-rss`` while a test ran (that test is ``crashed``)."""

    @property
    def dumps_stacks(self) -> bool:
        """Whether the kill starts by asking for the child's stacks."""
        return self in _DUMPS


_DUMPS = frozenset(
    {KillReason.HUNG, KillReason.COLLECT_HUNG, KillReason.STALLED, KillReason.EXIT_HUNG}
)


class Phase(enum.Enum):
    """What a worker is doing, as far as deadlines go."""

    STARTING = "starting"
    READY = "ready"
    RUNNING = "running"
    EXITING = "exiting"


@dataclass(frozen=True, kw_only=True)
class Limits:
    timeout_s: float
    """The run's per-test limit; also bounds one file's import and a quiet chunk."""
    startup_s: float
    """The least time a child gets to load the probe and make progress collecting."""
    linger_s: float
    """How long a child may stay after its session said it finished."""
    exit_s: float
    """The least time a child gets to finish its session after ``exit``."""
    per_test: Mapping[str, float] = field(default_factory=dict)
    """Tests with their own ``@pytest.mark.timeout``."""
    max_rss_bytes: int | None = None
    """``--max-rss``: a test in flight while its worker is above it is killed."""

    def of(self, test_id: str) -> float:
        return self.per_test.get(test_id, self.timeout_s)


@dataclass(frozen=True, kw_only=True)
class Watch:
    """One worker, as deadlines see it. Every time is mtest's ``time.monotonic()``."""

    phase: Phase
    since: float
    """When the phase began or last made progress (spawn, a file collected, a chunk
    sent, a test ended, ``exit`` sent)."""
    in_flight: str | None = None
    in_flight_since: float = 0.0
    collecting: str | None = None
    """The file being imported the longest, if any."""
    collecting_since: float = 0.0
    session_over_at: float | None = None
    """When the child's final ``exit`` event was read."""
    rss_bytes: int | None = None
    """The worker's RSS when last measured (mtest's sample, or its last event)."""


@dataclass(frozen=True, kw_only=True)
class Deadline:
    reason: KillReason
    at: float
    subject: str | None = None
    """The test or file the deadline is about."""
    limit_s: float = 0.0
    rss_bytes: int | None = None
    """``MAX_RSS``: the RSS measured above the limit..."""
    limit_bytes: int | None = None
    """...and the limit (``--max-rss``)."""


def deadline(watch: Watch, limits: Limits) -> Deadline | None:
    """The deadline this worker is under right now (``None``: waiting for mtest)."""
    if watch.phase is Phase.READY:
        return None
    if watch.phase is Phase.RUNNING and (watch.in_flight is not None or watch.collecting is None):
        if watch.in_flight is not None:
            limit = limits.of(watch.in_flight)
            at = watch.in_flight_since + limit
            return Deadline(reason=KillReason.HUNG, at=at, subject=watch.in_flight, limit_s=limit)
        return Deadline(
            reason=KillReason.STALLED, at=watch.since + limits.timeout_s, limit_s=limits.timeout_s
        )
    if watch.phase is Phase.EXITING:
        if watch.session_over_at is not None:
            at = watch.session_over_at + limits.linger_s
            return Deadline(reason=KillReason.LINGERING, at=at, limit_s=limits.linger_s)
        limit = max(limits.exit_s, limits.timeout_s)
        return Deadline(reason=KillReason.EXIT_HUNG, at=watch.since + limit, limit_s=limit)
    if watch.collecting is not None:
        at = watch.collecting_since + limits.timeout_s
        return Deadline(
            reason=KillReason.COLLECT_HUNG, at=at, subject=watch.collecting,
            limit_s=limits.timeout_s,
        )  # fmt: skip
    limit = max(limits.startup_s, limits.timeout_s)
    return Deadline(reason=KillReason.STARTUP_HUNG, at=watch.since + limit, limit_s=limit)


def overdue(watch: Watch, limits: Limits, now: float) -> Deadline | None:
    """The deadline that has fired, if one has; first, a test in flight while its
    worker is above ``--max-rss`` (``over_max_rss``)."""
    over = over_max_rss(watch, limits, now)
    if over is not None:
        return over
    due = deadline(watch, limits)
    return due if due is not None and now >= due.at else None


def over_max_rss(watch: Watch, limits: Limits, now: float) -> Deadline | None:
    """A test is in flight and its worker's RSS is above ``--max-rss``: kill, now.

    Between tests nobody is killed for memory: the probe ends the chunk after a
    test that left its worker above the limit, and mtest replaces an idle worker
    that is (``resources.recycles``).
    """
    if watch.phase is not Phase.RUNNING or watch.in_flight is None:
        return None
    if not resources.exceeds(watch.rss_bytes, limits.max_rss_bytes):
        return None
    return Deadline(
        reason=KillReason.MAX_RSS, at=now, subject=watch.in_flight,
        rss_bytes=watch.rss_bytes, limit_bytes=limits.max_rss_bytes,
    )  # fmt: skip


def still_due(decided: Deadline, watch: Watch, limits: Limits, now: float) -> bool:
    """After the stacks were asked for: whether the kill decided then still stands.

    It stands only if the same deadline (same reason, same test or file) is
    still overdue; a test that ended meanwhile took its deadline with it.
    """
    due = overdue(watch, limits, now)
    return due is not None and (due.reason, due.subject) == (decided.reason, decided.subject)


class Blamed(enum.Enum):
    NOBODY = "nobody"
    HUNG = "hung"
    CRASHED = "crashed"
    REQUEUE = "requeue"
    """A test had only just started when the child was killed for something else."""


@dataclass(frozen=True, kw_only=True)
class Culprit:
    how: Blamed
    test_id: str | None = None


def culprit(kill: Deadline | None, in_flight: str | None) -> Culprit:
    """Who a dead child's end is recorded against: the test still in flight at the kill.

    ``kill`` is the deadline mtest killed the child for (``None``: it died on its own).
    A test killed for its own timeout is ``hung``; one in flight while its worker went
    above ``--max-rss`` is ``crashed`` (it took the worker down, as an OOM kill would).
    """
    if in_flight is None:
        return Culprit(how=Blamed.NOBODY)
    if kill is None:
        return Culprit(how=Blamed.CRASHED, test_id=in_flight)
    if kill.subject == in_flight and kill.reason is KillReason.HUNG:
        return Culprit(how=Blamed.HUNG, test_id=in_flight)
    if kill.subject == in_flight and kill.reason is KillReason.MAX_RSS:
        return Culprit(how=Blamed.CRASHED, test_id=in_flight)
    return Culprit(how=Blamed.REQUEUE, test_id=in_flight)


def session_failure(
    *,
    errors: Sequence[events.SessionError],
    exit_code: int | None,
    returncode: int | None,
    kill: KillReason | None,
    explained: bool,
    blamed: bool = False,
    rss_bytes: int | None = None,
) -> str | None:
    """Why a child's session failed on its own, or ``None`` when it did not.

    ``exit_code`` is what ``pytest.main`` returned (the bootstrap's ``exit``
    event), ``returncode`` the process's; ``explained``: the child recorded a
    failing test or a collection error, or collected nothing, which account for
    a non-zero status; ``blamed``: its death was recorded against the test in
    flight (``crashed``/``hung``). A child mtest killed for a deadline is
    blamed by the kill, except one that lingered after its session ended or
    whose session did not end in time (``exit-hung``); ``rss_bytes``: the worker's
    memory when last measured, for a SIGKILL mtest did not send (``parse.death``).
    Silence is never success: a child that ended without finishing its session
    (no ``exit`` event), without a kill and at exit code 0 is a failure too.
    """
    if errors:
        return "; ".join(_describe(error) for error in errors)
    if kill is KillReason.EXIT_HUNG:
        return (
            "the session did not end in time after its last chunk "
            "(a pytest_sessionfinish hook, a plugin or an atexit handler hangs?)"
        )
    if blamed or (kill is not None and kill is not KillReason.LINGERING):
        return None
    if exit_code is not None:
        if exit_code == 0 or explained:
            return None
        return f"pytest's session ended with exit status {exit_code} though no test failed"
    if explained and returncode not in (0, None):
        return None
    if returncode == -signal.SIGKILL:  # not mtest's: it sent no signal to get here
        return (
            f"the child {parse.death(returncode, rss_bytes=rss_bytes)} before its session finished"
        )
    return f"the child ended before its session finished ({_exit(returncode)})"


def _describe(error: events.SessionError) -> str:
    where = {
        "sessionfinish": "pytest_sessionfinish raised",
        "teardown": "a session-scoped teardown failed",
        "exitstatus": "a plugin set pytest's exit status",
    }.get(error.where, error.where or "the session failed")
    return f"{where}: {error.message}" if error.message else where


def _exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        return f"signal {-returncode}"
    return f"exit code {returncode}"


def replaces(*, dedicated: bool, waiting: int, starting: int) -> bool:
    """Whether an empty slot (its worker died or exited) gets a fresh worker now.

    A dedicated chunk (``--retries``) always starts its own child. Otherwise a
    child that is still collecting will take a chunk soon: another starts only
    for the ``waiting`` chunks beyond what the ``starting`` ones will take.
    """
    return dedicated or waiting > starting


@dataclass(frozen=True, kw_only=True)
class Deaths:
    """Children in a row that died before running a test (and not in an import)."""

    in_a_row: int = 0
    limit: int = 3

    def after_death(self) -> Deaths:
        return Deaths(in_a_row=self.in_a_row + 1, limit=self.limit)

    def after_progress(self) -> Deaths:
        return Deaths(in_a_row=0, limit=self.limit)

    @property
    def exhausted(self) -> bool:
        """Whether the run must end: children keep dying, whatever the cause."""
        return self.in_a_row >= self.limit


def gives_up_listing(exit_code: int | None) -> bool:
    """Whether a child that died before listing the suite ended with pytest's verdict on
    the selection itself (4: usage or not found, 5: nothing collected): retrying
    cannot help, the run ends with that code."""
    return exit_code in (4, 5)
