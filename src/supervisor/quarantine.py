"""The quarantine state machine (``.gates/quarantine.json``): pure, no clock, no files.

A test with a failure in its window is *watched*. Quarantine (it runs but
does not gate) is for flaky tests only: ``QUARANTINE_FAILS`` fails within its
last ``WINDOW`` runs *and* evidence of flipping in that window (a pass
between two failures, or a ``flaky`` outcome: it passed on a retry). A test
that started failing and keeps failing is *broken*, a regression: it is never
quarantined, and a quarantined test whose window turns into that shape gates
again. ``RELEASE_PASSES`` consecutive passes release a quarantined test and
forget it. An entry whose test was not collected in ``RETENTION_RUNS`` runs in
a row is dropped.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from supervisor.jsonshape import (
    as_object,
    check_version,
    int_field,
    list_field,
    str_field,
    strs_field,
)
from supervisor.model import FORMAT_VERSION, Outcome, TestRecord

WINDOW = 5
"""Runs (that moved the state machine) a quarantine decision looks back over."""
QUARANTINE_FAILS = 3
"""Fails within ``WINDOW`` runs that quarantine a test."""
RELEASE_PASSES = 3
"""Consecutive passes that release a quarantined test."""
RETENTION_RUNS = 10
"""Runs in a row in which a test was not collected before its history is dropped."""
PASS = "pass"
FAIL = "fail"
FLAKY = "flaky"
"""A run that failed and passed on a retry: a failure, and evidence of flipping."""
_VERDICTS = frozenset({PASS, FAIL, FLAKY})

FAILING_OUTCOMES = frozenset(
    {Outcome.FAILED, Outcome.ERROR, Outcome.HUNG, Outcome.CRASHED, Outcome.FLAKY,
     Outcome.ORDER_DEPENDENT}
)  # fmt: skip
"""Gating failures for recency and quarantine; flaky counts (it did fail once), and so
does order_dependent (it fails in the suite's order, which the plan may change)."""
_PASSES = frozenset({Outcome.PASSED, Outcome.XPASSED, Outcome.XFAILED})


class State(enum.StrEnum):
    WATCHED = "watched"
    """A failure in the window: reported, still gates."""
    QUARANTINED = "quarantined"
    """Flaky: runs but does not gate until ``RELEASE_PASSES`` consecutive passes."""


class QuarantineKind(enum.StrEnum):
    """What a tracked test's window shows."""

    FLAKY = "flaky"
    """It flips: a pass between two failures, or a pass on a retry."""
    BROKEN = "broken"
    """It started failing and keeps failing: a regression, never quarantined."""


def _is_fail(verdict: str) -> bool:
    return verdict != PASS


def flipping(recent: Sequence[str]) -> bool:
    """Evidence of flakiness in a window: a ``FLAKY`` run, or a pass between two failures."""
    if FLAKY in recent:
        return True
    fails = [i for i, verdict in enumerate(recent) if _is_fail(verdict)]
    return bool(fails) and PASS in recent[fails[0] : fails[-1]]


def consistently_failing(recent: Sequence[str]) -> bool:
    """A window that ends failing with no pass since its first failure (``P* F+``)."""
    fails = [i for i, verdict in enumerate(recent) if _is_fail(verdict)]
    return bool(fails) and FLAKY not in recent and PASS not in recent[fails[0] :]


@dataclass(frozen=True, kw_only=True, slots=True)
class QuarantineEntry:
    """Where one test stands in the state machine, and since when and why."""

    test_id: str
    state: State
    recent: tuple[str, ...]
    """``PASS``/``FAIL``/``FLAKY`` of the last ``WINDOW`` runs that moved it, oldest first."""
    consecutive_passes: int
    since: str
    """Timestamp of the run in which it entered ``state``."""
    last_failure: str
    """Message of its last gating failure."""
    failure_runs: tuple[str, ...]
    """Run ids of its last ``WINDOW`` failures, oldest first."""
    absent_runs: int = 0
    """Runs in a row in which it was not collected (``RETENTION_RUNS`` forget it)."""

    @property
    def kind(self) -> QuarantineKind | None:
        """``FLAKY`` (quarantined, or flipping) or ``BROKEN`` (failing since its first
        failure in the window); ``None`` for a watched test recovering from a failure."""
        if self.state is State.QUARANTINED or flipping(self.recent):
            return QuarantineKind.FLAKY
        if consistently_failing(self.recent):
            return QuarantineKind.BROKEN
        return None

    def to_json(self) -> dict[str, Any]:
        # Nested inside Quarantine, which carries the version.
        return {
            "test_id": self.test_id,
            "state": self.state.value,
            "recent": list(self.recent),
            "consecutive_passes": self.consecutive_passes,
            "since": self.since,
            "last_failure": self.last_failure,
            "failure_runs": list(self.failure_runs),
            "absent_runs": self.absent_runs,
        }

    @classmethod
    def from_json(cls, data: object) -> QuarantineEntry:
        """One entry; a quarantined entry whose window is a regression (written by an
        mtest that quarantined any three failures) reads as watched: it gates."""
        obj = as_object(data, "quarantine entry")
        what = "quarantine entry"
        recent = strs_field(obj, "recent", what)
        if len(recent) > WINDOW or not set(recent) <= _VERDICTS:
            raise ValueError(f"{what}: `recent` must be at most {WINDOW} of 'pass'/'fail'/'flaky'")
        try:
            state = State(str_field(obj, "state", what))
        except ValueError as exc:
            raise ValueError(f"{what}: unknown state {obj.get('state')!r}") from exc
        if state is State.QUARANTINED and consistently_failing(recent):
            state = State.WATCHED
        return cls(
            test_id=str_field(obj, "test_id", what),
            state=state,
            recent=recent,
            consecutive_passes=int_field(obj, "consecutive_passes", what),
            since=str_field(obj, "since", what),
            last_failure=str_field(obj, "last_failure", what),
            failure_runs=strs_field(obj, "failure_runs", what),
            absent_runs=int_field(obj, "absent_runs", what) if "absent_runs" in obj else 0,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Quarantine:
    """The tests the state machine tracks; a test without an entry is healthy."""

    entries: Mapping[str, QuarantineEntry] = field(default_factory=dict)

    def quarantined_ids(self) -> frozenset[str]:
        return frozenset(t for t, e in self.entries.items() if e.state is State.QUARANTINED)

    def watched_ids(self) -> frozenset[str]:
        return frozenset(t for t, e in self.entries.items() if e.state is State.WATCHED)

    def kinds(self) -> dict[str, QuarantineKind]:
        """Test id → ``FLAKY`` (every quarantined test; watched ones that flip) or
        ``BROKEN`` (watched, failing since its first failure in the window)."""
        return {t: kind for t, e in self.entries.items() if (kind := e.kind) is not None}

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "entries": [self.entries[t].to_json() for t in sorted(self.entries)],
        }

    @classmethod
    def from_json(cls, data: object) -> Quarantine:
        obj = as_object(data, "quarantine")
        check_version(obj, "quarantine")
        entries: dict[str, QuarantineEntry] = {}
        for raw in list_field(obj, "entries", "quarantine"):
            entry = QuarantineEntry.from_json(raw)
            if entry.test_id in entries:
                raise ValueError(f"quarantine: duplicate entry for {entry.test_id!r}")
            entries[entry.test_id] = entry
        return cls(entries=entries)


def _verdict(outcome: Outcome) -> str | None:
    """``FAIL``/``FLAKY``/``PASS`` for outcomes that move the state machine, else ``None``."""
    if outcome is Outcome.FLAKY:
        return FLAKY
    if outcome in FAILING_OUTCOMES:
        return FAIL
    if outcome in _PASSES:
        return PASS
    return None


def _step(
    entry: QuarantineEntry | None, test_id: str, record: TestRecord, *, now: str, run_id: str
) -> QuarantineEntry | None:
    """One test's transition for one run; ``None`` means "no entry" (healthy)."""
    verdict = _verdict(record.outcome)
    if verdict is None:
        return None if entry is None else replace(entry, absent_runs=0)
    if entry is None:
        if verdict == PASS:
            return None
        entry = QuarantineEntry(
            test_id=test_id,
            state=State.WATCHED,
            recent=(),
            consecutive_passes=0,
            since=now,
            last_failure="",
            failure_runs=(),
        )
    moved = replace(
        entry,
        recent=(*entry.recent, verdict)[-WINDOW:],
        consecutive_passes=entry.consecutive_passes + 1 if verdict == PASS else 0,
        absent_runs=0,
    )
    if verdict != PASS:
        moved = replace(
            moved,
            last_failure=record.message,
            failure_runs=(*entry.failure_runs, run_id)[-WINDOW:],
        )
    return _settle(moved, now=now)


def _settle(moved: QuarantineEntry, *, now: str) -> QuarantineEntry | None:
    """The state a moved entry ends in: released, quarantined, watched or forgotten."""
    if moved.state is State.QUARANTINED:
        if moved.consecutive_passes >= RELEASE_PASSES:
            return None
        if consistently_failing(moved.recent):  # a regression now: it gates again
            return replace(moved, state=State.WATCHED, since=now)
        return moved
    fails = sum(1 for verdict in moved.recent if _is_fail(verdict))
    if fails >= QUARANTINE_FAILS and flipping(moved.recent):
        return replace(moved, state=State.QUARANTINED, since=now)
    return moved if fails else None


def update_quarantine(
    old: Quarantine,
    finals: Mapping[str, TestRecord],
    *,
    now: str,
    run_id: str,
    collected: Collection[str] | None = None,
) -> Quarantine:
    """Move every test of this run (``finals``: test id → its final record)
    through the state machine. Skipped tests and tests absent from ``finals``
    keep their place; with ``collected`` (every test id this run collected),
    an entry whose test was not collected in ``RETENTION_RUNS`` runs in a row
    is dropped."""
    entries = dict(old.entries)
    for test_id, record in finals.items():
        new = _step(entries.get(test_id), test_id, record, now=now, run_id=run_id)
        if new is None:
            entries.pop(test_id, None)
        else:
            entries[test_id] = new
    if collected is not None:
        for test_id, entry in list(entries.items()):
            if test_id in finals or test_id in collected:
                if entry.absent_runs:
                    entries[test_id] = replace(entry, absent_runs=0)
            elif entry.absent_runs + 1 >= RETENTION_RUNS:
                del entries[test_id]
            else:
                entries[test_id] = replace(entry, absent_runs=entry.absent_runs + 1)
    return Quarantine(entries=entries)


def merge_quarantine(shards: Sequence[tuple[Quarantine, frozenset[str]]]) -> Quarantine:
    """Join shards' quarantine states: each shard's state and the tests it ran.

    Shards start from the same state and run disjoint tests, so a test's
    entry comes from the shard that ran it — including its absence, when
    that shard released the test. Tests no shard ran keep the shared entry.
    """
    ran_by = {test_id: q for q, ran in shards for test_id in ran}
    entries: dict[str, QuarantineEntry] = {}
    for quarantine, _ in shards:
        for test_id, entry in quarantine.entries.items():
            if test_id not in ran_by:
                entries.setdefault(test_id, entry)
    for test_id, quarantine in ran_by.items():
        if test_id in quarantine.entries:
            entries[test_id] = quarantine.entries[test_id]
    return Quarantine(entries=entries)
