"""``mtest service``'s decisions: when the next cycle starts, what a fault is, when to restart.

Pure functions of plain values (times on the monotonic clock, counts, the
environment as a mapping); ``service`` reads the clock, runs the cycles and
acts on what these say.

- **Cycles** start every ``--every`` on a grid from the first cycle's start.
  Cycles run one at a time: a start that falls while a cycle still runs is
  skipped and counted, and the next cycle starts at the next point of the grid.
- **Faults**: an exception in a cycle or in what follows it (history,
  metrics file). A run that failed tests is not a fault; neither is an
  interrupt. Bad input (pytest missing, pytest's usage error) ends the service
  as it would end a one-shot run, until a cycle has once completed: after
  that, the environment changed under a running service and it is a fault.
- **Restarts**: ``FaultLimit.faults`` faulty cycles among the last
  ``FaultLimit.cycles`` make the service re-execute itself after a backoff
  that doubles with each restart in the window. The restart budget is
  systemd's ``StartLimitBurst``/``StartLimitIntervalSec``: at most
  ``RestartLimit.burst`` restarts in a window that opens at the first one and
  lasts ``interval_s`` seconds or ``burst × FaultLimit.cycles`` cycles,
  whichever is longer; one more gives up (exit 3). The count of cycles makes
  sure that a service whose cycles fault spends its whole budget in one
  window however long its cycles take: it never restarts forever. What a
  restart must remember crosses the exec in ``STATE_VAR``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from supervisor.config import parse_duration, parse_positive
from supervisor.errors import Busy, MtestError

STATE_VAR = "MTEST_SERVICE_STATE"
"""Set by the service on the process it re-executes: ``Carried.encode``."""
FAULT_LIMIT_VAR = "MTEST_SERVICE_FAULT_LIMIT"
"""``K/W``: restart after K faulty cycles among the last W (default ``5/10``)."""
RESTART_LIMIT_VAR = "MTEST_SERVICE_RESTART_LIMIT"
"""``N/DUR``: N restarts within DUR (or N × W cycles) of the first (default ``3/1h``)."""
BACKOFF_VAR = "MTEST_SERVICE_BACKOFF"
"""``BASE/MAX``: the wait before a restart, doubling from BASE up to MAX (``1s/5m``)."""


@dataclass(frozen=True, kw_only=True)
class Tick:
    start: float
    """When the next cycle starts (monotonic seconds)."""
    skipped: int
    """Starts of the grid that fell while the cycle ran."""


def next_start(started: float, now: float, every_s: float) -> Tick:
    """The next cycle after one that started at ``started`` and ended at ``now``."""
    periods = max(1, math.ceil((now - started) / every_s))
    return Tick(start=started + periods * every_s, skipped=periods - 1)


@dataclass(frozen=True, kw_only=True)
class FaultLimit:
    faults: int = 5
    cycles: int = 10


def too_many_faults(faulty: Sequence[bool], limit: FaultLimit) -> bool:
    """``faulty``: this process's cycles, oldest first, ``True`` for one with a fault."""
    return sum(faulty[-limit.cycles :]) >= limit.faults


class Verdict(enum.Enum):
    STOPPED = "stopped"
    """A signal stopped the cycle: the service ends (exit 0)."""
    FAULT = "fault"
    """Logged and counted; the next cycle runs."""
    BAD_INPUT = "bad input"
    """Ends the service with the error's own message and exit code."""


def judge(exc: Exception, *, interrupted: bool, proven: bool) -> Verdict:
    """What an exception from a cycle means to the service.

    ``interrupted``: a signal stopped the cycle. ``proven``: a cycle has
    completed in this service (or it restarted), so the command line works.
    """
    if not isinstance(exc, MtestError):
        return Verdict.FAULT
    if interrupted and exc.code == 2:
        return Verdict.STOPPED
    if proven or isinstance(exc, Busy) or exc.code == 3:
        return Verdict.FAULT  # Busy: another mtest holds the lock for now
    return Verdict.BAD_INPUT


@dataclass(frozen=True, kw_only=True)
class RestartLimit:
    burst: int = 3
    interval_s: float = 3600.0


@dataclass(frozen=True, kw_only=True)
class Backoff:
    base_s: float = 1.0
    max_s: float = 300.0

    def delay(self, restart: int) -> float:
        """The wait before the ``restart``-th restart of a window (1-based)."""
        return min(self.max_s, self.base_s * 2.0 ** min(restart - 1, 64))


@dataclass(frozen=True, kw_only=True)
class Limits:
    faults: FaultLimit = FaultLimit()
    restarts: RestartLimit = RestartLimit()
    backoff: Backoff = Backoff()


@dataclass(frozen=True, kw_only=True)
class Carried:
    """What a restarted service knows of the processes before it (``STATE_VAR``)."""

    restarts: int = 0
    """Restarts in the current window."""
    first_ts: float = 0.0
    """``time.monotonic()`` of the window's first restart (the clock is system-wide)."""
    first_cycle: int = 0
    """Cycles run when the window opened."""
    cycles: int = 0
    """Cycles run by the service so far, in all its processes (``--cycles`` counts them)."""

    def encode(self) -> str:
        return f"{self.restarts}/{self.first_ts!r}/{self.first_cycle}/{self.cycles}"

    @classmethod
    def decode(cls, text: str | None) -> Carried:
        """``None`` or ``""``: a service's first process."""
        if not text:
            return cls()
        parts = text.split("/")
        try:
            restarts, first_cycle, cycles = int(parts[0]), int(parts[2]), int(parts[3])
            first_ts = float(parts[1])
        except (ValueError, IndexError):
            restarts, first_ts, first_cycle, cycles = -1, 0.0, 0, 0
        if len(parts) != 4 or min(restarts, first_cycle, cycles) < 0 or not math.isfinite(first_ts):
            raise MtestError(
                f"invalid ${STATE_VAR} `{text}`",
                hint="mtest sets it when the service restarts itself: unset it",
            )
        return cls(restarts=restarts, first_ts=first_ts, first_cycle=first_cycle, cycles=cycles)


@dataclass(frozen=True, kw_only=True)
class Restart:
    number: int
    """This restart's place in the window (1 for the first)."""
    delay_s: float
    carried: Carried
    """What the restarted process is given."""


@dataclass(frozen=True, kw_only=True)
class GiveUp:
    restarts: int
    """The restarts already spent in the window."""


def plan_restart(carried: Carried, *, now: float, cycles: int, limits: Limits) -> Restart | GiveUp:
    """Restart once more (after which backoff), or give up: the budget is spent.

    ``cycles``: run by the service so far, this process's included.
    """
    limit = limits.restarts
    elapsed = now - carried.first_ts
    in_window = carried.restarts > 0 and (
        0 <= elapsed <= limit.interval_s or cycles - carried.first_cycle <= window_cycles(limits)
    )
    spent = carried.restarts if in_window else 0
    if spent >= limit.burst:
        return GiveUp(restarts=spent)
    if not in_window:
        carried = Carried(first_ts=now, first_cycle=cycles)
    number = spent + 1
    later = Carried(
        restarts=number, first_ts=carried.first_ts, first_cycle=carried.first_cycle, cycles=cycles
    )
    return Restart(number=number, delay_s=limits.backoff.delay(number), carried=later)


def window_cycles(limits: Limits) -> int:
    """The restart window in cycles: room for every restart of the budget, each after
    at most ``FaultLimit.cycles`` cycles."""
    return limits.restarts.burst * limits.faults.cycles


def limits_from(environ: Mapping[str, str]) -> Limits:
    """The limits, with the test-only overrides of the environment (bad ones: exit 4)."""
    faults, restarts, backoff = FaultLimit(), RestartLimit(), Backoff()
    if FAULT_LIMIT_VAR in environ:
        k, w = _fields(environ, FAULT_LIMIT_VAR, 2)
        faults = FaultLimit(faults=_count(k, FAULT_LIMIT_VAR), cycles=_count(w, FAULT_LIMIT_VAR))
        if faults.faults > faults.cycles:
            raise MtestError(
                f"invalid ${FAULT_LIMIT_VAR} `{environ[FAULT_LIMIT_VAR]}`: more faults than cycles",
                hint="expected K/W with K <= W, e.g. 5/10",
            )
    if RESTART_LIMIT_VAR in environ:
        n, interval = _fields(environ, RESTART_LIMIT_VAR, 2)
        restarts = RestartLimit(
            burst=_count(n, RESTART_LIMIT_VAR, zero=True),
            interval_s=parse_duration(interval, f"${RESTART_LIMIT_VAR}"),
        )
    if BACKOFF_VAR in environ:
        base, top = _fields(environ, BACKOFF_VAR, 2)
        backoff = Backoff(
            base_s=parse_duration(base, f"${BACKOFF_VAR}"),
            max_s=parse_duration(top, f"${BACKOFF_VAR}"),
        )
    return Limits(faults=faults, restarts=restarts, backoff=backoff)


def _fields(environ: Mapping[str, str], name: str, count: int) -> list[str]:
    parts = environ[name].split("/")
    if len(parts) != count:
        shape = {FAULT_LIMIT_VAR: "5/10", RESTART_LIMIT_VAR: "3/1h", BACKOFF_VAR: "1s/5m"}
        raise MtestError(
            f"invalid ${name} `{environ[name]}`", hint=f"expected {shape[name]}, or unset it"
        )
    return parts


def _count(text: str, name: str, *, zero: bool = False) -> int:
    return int(parse_positive(text, f"${name}", integer=True, allow_zero=zero))
