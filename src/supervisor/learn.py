"""Learn: a finished run's records become the next run's knowledge.

Two stored values come out of a run, both pure functions of the old value and
the run's records (no clock, no files — timestamps arrive as ISO strings):

* ``Durations`` (``.gates/durations.json``): the last ``HISTORY_LEN`` samples
  per test plus the smoothed fixed costs of one pytest child. From it come the
  per-test estimates the planner packs by, the failure recency the scheduler
  runs first by, and the start-up/collection costs of a chunk.
* ``Quarantine`` (``.gates/quarantine.json``): the quarantine state machine.
  A test with a failure in its window is *watched*. Quarantine (it runs but
  does not gate) is for flaky tests only: ``QUARANTINE_FAILS`` fails within
  its last ``WINDOW`` runs *and* evidence of flipping in that window (a pass
  between two failures, or a ``flaky`` outcome: it passed on a retry). A test
  that started failing and keeps failing is *broken*, a regression: it is
  never quarantined and a quarantined test whose window turns into that
  shape gates again. ``RELEASE_PASSES`` consecutive passes release a
  quarantined test and forget it.

Both forget a test that was not collected in ``RETENTION_RUNS`` runs in a row
(when the caller says what was collected), so renamed tests do not grow them.

``from_json`` raises ``ValueError`` on anything malformed; the store treats
that as "file absent" (SPEC, Files).
"""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from supervisor.model import FORMAT_VERSION, Outcome, TestItem, TestRecord, file_of

HISTORY_LEN = 5
"""Samples kept per test, oldest first."""
SMOOTHING_ALPHA = 0.5
"""Weight of the newest observation in the smoothed fixed costs."""
DEFAULT_UNKNOWN_S = 0.05
"""Estimate for a test when nothing at all is known."""
DEFAULT_STARTUP_S = 0.4
"""Start-up of a pytest child until the plugin is configured, when unknown."""
DEFAULT_COLLECT_S = 0.3
"""Collection of the suite by a pytest child, when unknown."""
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

# Outcomes that teach nothing about a test's duration.
_NO_SAMPLE = frozenset({Outcome.SKIPPED})
# Samples whose duration is a normal run of the test (flaky: its final attempt passed).
_PASSING_ISH = frozenset({Outcome.PASSED, Outcome.FLAKY, Outcome.XFAILED, Outcome.XPASSED})
# Gating failures for recency and quarantine; flaky counts (it did fail once).
_FAILURES = frozenset({Outcome.FAILED, Outcome.ERROR, Outcome.HUNG, Outcome.CRASHED, Outcome.FLAKY})
_PASSES = frozenset({Outcome.PASSED, Outcome.XPASSED, Outcome.XFAILED})
_OUTCOME_VALUES = frozenset(o.value for o in Outcome)


# --- validation helpers for from_json ------------------------------------------


def _obj(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what}: expected an object, got {type(data).__name__}")
    return data


def _check_version(data: Mapping[str, Any], what: str) -> None:
    version = data.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ValueError(f"{what}: unsupported version {version!r} (expected {FORMAT_VERSION})")


def _str(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{what}: `{key}` must be a string, got {value!r}")
    return value


def _int(data: Mapping[str, Any], key: str, what: str) -> int:
    value = data.get(key)
    if type(value) is not int or value < 0:
        raise ValueError(f"{what}: `{key}` must be a non-negative integer, got {value!r}")
    return value


def _seconds(value: object, key: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what}: `{key}` must be a number, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what}: `{key}` must be finite and >= 0, got {value!r}")
    return seconds


def _opt_seconds(data: Mapping[str, Any], key: str, what: str) -> float | None:
    value = data.get(key)
    return None if value is None else _seconds(value, key, what)


def _list(data: Mapping[str, Any], key: str, what: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{what}: `{key}` must be a list, got {type(value).__name__}")
    return value


def _strs(data: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    values = _list(data, key, what)
    if not all(isinstance(v, str) for v in values):
        raise ValueError(f"{what}: `{key}` must hold strings only")
    return tuple(values)


# --- durations -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Sample:
    """One run's final result of one test: when, which run, how, how long."""

    ts: str
    run_id: str
    outcome: str
    """An ``Outcome`` value (never ``skipped``)."""
    duration_s: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Durations:
    """Duration history per test (last ``HISTORY_LEN``, oldest first) and the
    smoothed fixed costs of one pytest child (``None`` until first measured)."""

    tests: Mapping[str, tuple[Sample, ...]] = field(default_factory=dict)
    startup_s: float | None = None
    collect_s: float | None = None
    absent: Mapping[str, int] = field(default_factory=dict)
    """Test id → runs in a row it was not collected (only tests with a count)."""

    def to_json(self) -> dict[str, Any]:
        """Compact on disk: a table of runs, then ``[run, outcome, seconds]`` per sample.

        A suite of thousands of tests keeps ``HISTORY_LEN`` samples each;
        spelling out the run id and time in every sample made the file five
        times bigger and slow to read before every run. A sample's time is its
        run's time (the earliest of the run's samples).
        """
        first: dict[str, str] = {}
        for samples in self.tests.values():
            for s in samples:
                if s.run_id not in first or s.ts < first[s.run_id]:
                    first[s.run_id] = s.ts
        index = {run_id: n for n, run_id in enumerate(sorted(first, key=lambda r: (first[r], r)))}
        tests = {
            test_id: [[index[s.run_id], s.outcome, s.duration_s] for s in self.tests[test_id]]
            for test_id in sorted(self.tests)
        }
        return {
            "version": FORMAT_VERSION,
            "startup_s": self.startup_s,
            "collect_s": self.collect_s,
            "runs": [{"run_id": run_id, "ts": first[run_id]} for run_id in index],
            "tests": tests,
            "absent": {test_id: self.absent[test_id] for test_id in sorted(self.absent)},
        }

    @classmethod
    def from_json(cls, data: object) -> Durations:
        obj = _obj(data, "durations")
        _check_version(obj, "durations")
        runs = [
            (_str(run, "run_id", "durations run"), _str(run, "ts", "durations run"))
            for run in (_obj(r, "durations run") for r in _list(obj, "runs", "durations"))
        ]
        raw_tests = _obj(obj.get("tests"), "durations `tests`")
        tests: dict[str, tuple[Sample, ...]] = {}
        for test_id, raw_samples in raw_tests.items():
            if not isinstance(raw_samples, list):
                raise ValueError(f"durations: samples of {test_id!r} must be a list")
            samples = tuple(_sample(entry, runs, test_id) for entry in raw_samples)
            if samples:
                tests[str(test_id)] = samples[-HISTORY_LEN:]
        raw_absent = _obj(obj.get("absent", {}), "durations `absent`")
        return cls(
            tests=tests,
            startup_s=_opt_seconds(obj, "startup_s", "durations"),
            collect_s=_opt_seconds(obj, "collect_s", "durations"),
            absent={t: _int(raw_absent, t, "durations `absent`") for t in raw_absent if t in tests},
        )


def _sample(entry: object, runs: Sequence[tuple[str, str]], test_id: str) -> Sample:
    """One ``[run index, outcome, seconds]`` triple; checked inline (it runs per sample)."""
    if not isinstance(entry, list) or len(entry) != 3:
        raise ValueError(f"durations: a sample of {test_id!r} is not [run, outcome, seconds]")
    run, outcome, seconds = entry
    if type(run) is not int or not 0 <= run < len(runs):
        raise ValueError(f"durations: a sample of {test_id!r} names no known run")
    if outcome not in _OUTCOME_VALUES:
        raise ValueError(f"durations: unknown outcome {outcome!r}")
    if type(seconds) not in (int, float) or not 0 <= seconds < math.inf:
        raise ValueError(f"durations: bad seconds {seconds!r} for {test_id!r}")
    run_id, ts = runs[run]
    return Sample(ts=ts, run_id=run_id, outcome=outcome, duration_s=float(seconds))


def _last_per_test(records: Iterable[TestRecord]) -> dict[str, TestRecord]:
    last: dict[str, TestRecord] = {}
    for record in records:
        last[record.test_id] = record
    return last


def _smooth(old: float | None, observed: float | None) -> float | None:
    if observed is None or not math.isfinite(observed) or observed < 0:
        return old
    if old is None:
        return observed
    return SMOOTHING_ALPHA * observed + (1 - SMOOTHING_ALPHA) * old


def update_durations(
    old: Durations,
    records: Sequence[TestRecord],
    *,
    startup_s: float | None,
    collect_s: float | None,
    collected: Collection[str] | None = None,
) -> Durations:
    """Add one sample per test of this run (its last record; skips add none)
    and fold this run's measured fixed costs (``None``: not measured) in.

    With ``collected`` (every test id this run collected), a test neither
    collected nor recorded in ``RETENTION_RUNS`` runs in a row is dropped;
    ``None`` (not known) keeps every test and its count.
    """
    tests = dict(old.tests)
    for test_id, record in _last_per_test(records).items():
        if record.outcome in _NO_SAMPLE or not math.isfinite(record.duration_s):
            continue
        sample = Sample(
            ts=record.ts,
            run_id=record.run_id,
            outcome=record.outcome.value,
            duration_s=round(max(0.0, record.duration_s), 6),
        )
        tests[test_id] = (*tests.get(test_id, ()), sample)[-HISTORY_LEN:]
    absent = dict(old.absent)
    if collected is not None:
        seen = {r.test_id for r in records}
        for test_id in list(tests):
            if test_id in collected or test_id in seen:
                absent.pop(test_id, None)
            elif absent.get(test_id, 0) + 1 >= RETENTION_RUNS:
                del tests[test_id]
                absent.pop(test_id, None)
            else:
                absent[test_id] = absent.get(test_id, 0) + 1
    return Durations(
        tests=tests,
        startup_s=_smooth(old.startup_s, startup_s),
        collect_s=_smooth(old.collect_s, collect_s),
        absent=absent,
    )


def retention_note(old: Durations, new: Durations) -> str | None:
    """The run's note when ``update_durations`` dropped tests that are gone, else ``None``."""
    dropped = len(set(old.tests) - set(new.tests))
    if not dropped:
        return None
    return (
        f"forgot the history of {dropped} test(s) not collected in the last {RETENTION_RUNS} "
        "runs (durations.json, quarantine.json)"
    )


def merge_durations(a: Durations, b: Durations) -> Durations:
    """Join two histories (shards of one suite): samples by time, duplicates once."""
    tests: dict[str, tuple[Sample, ...]] = {}
    for test_id in set(a.tests) | set(b.tests):
        joined = {
            (s.ts, s.run_id): s for s in (*a.tests.get(test_id, ()), *b.tests.get(test_id, ()))
        }
        tests[test_id] = tuple(joined[key] for key in sorted(joined))[-HISTORY_LEN:]

    def mean(x: float | None, y: float | None) -> float | None:
        known = [v for v in (x, y) if v is not None]
        return sum(known) / len(known) if known else None

    # A shard that collected the test more recently knows it exists: the smaller count.
    counts = [{t: d.absent.get(t, 0) for t in d.tests} for d in (a, b)]
    absent = {
        test_id: n
        for test_id in tests
        if (n := min(c[test_id] for c in counts if test_id in c)) > 0
    }
    return Durations(
        tests=tests,
        startup_s=mean(a.startup_s, b.startup_s),
        collect_s=mean(a.collect_s, b.collect_s),
        absent=absent,
    )


def _estimate(samples: Sequence[Sample]) -> float:
    """Median (robust to one slow outlier) of the normal runs, else of all."""
    passing = [s.duration_s for s in samples if s.outcome in _PASSING_ISH]
    return statistics.median(passing or [s.duration_s for s in samples])


def estimates(durations: Durations, items: Sequence[TestItem]) -> dict[str, float]:
    """Expected seconds per item. A test never seen gets the median estimate of
    known tests in its file, else of all known tests, else ``DEFAULT_UNKNOWN_S``."""
    known = {t: _estimate(s) for t, s in durations.tests.items() if s}
    by_file: dict[str, list[float]] = {}
    for test_id, value in known.items():
        by_file.setdefault(file_of(test_id), []).append(value)
    overall = statistics.median(known.values()) if known else DEFAULT_UNKNOWN_S
    result: dict[str, float] = {}
    for item in items:
        if item.test_id in known:
            result[item.test_id] = known[item.test_id]
        elif item.file in by_file:
            result[item.test_id] = statistics.median(by_file[item.file])
        else:
            result[item.test_id] = overall
    return result


def failure_recency(durations: Durations) -> dict[str, float]:
    """Score per test that failed recently: each failing sample adds ``0.5**k``
    where k is how many of the test's runs are newer (newest run failed → 1.0).
    Tests without a failure in their history are absent."""
    scores: dict[str, float] = {}
    for test_id, samples in durations.tests.items():
        newest = len(samples) - 1
        score = sum(0.5 ** (newest - i) for i, s in enumerate(samples) if s.outcome in _FAILURES)
        if score > 0:
            scores[test_id] = score
    return scores


def fixed_costs(durations: Durations) -> tuple[float, float]:
    """``(startup_s, collect_s)`` of one pytest child, defaults when unknown."""
    startup = DEFAULT_STARTUP_S if durations.startup_s is None else durations.startup_s
    collect = DEFAULT_COLLECT_S if durations.collect_s is None else durations.collect_s
    return startup, collect


# --- quarantine ------------------------------------------------------------------


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
        """``FLAKY`` or ``BROKEN`` by its window; ``None`` for a test recovering from one fail."""
        if flipping(self.recent):
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
        """One entry; a quarantined entry without flipping in its window (written by an
        mtest that quarantined any three failures) reads as watched: it gates."""
        obj = _obj(data, "quarantine entry")
        what = "quarantine entry"
        recent = _strs(obj, "recent", what)
        if len(recent) > WINDOW or not set(recent) <= _VERDICTS:
            raise ValueError(f"{what}: `recent` must be at most {WINDOW} of 'pass'/'fail'/'flaky'")
        try:
            state = State(_str(obj, "state", what))
        except ValueError as exc:
            raise ValueError(f"{what}: unknown state {obj.get('state')!r}") from exc
        if state is State.QUARANTINED and not flipping(recent):
            state = State.WATCHED
        return cls(
            test_id=_str(obj, "test_id", what),
            state=state,
            recent=recent,
            consecutive_passes=_int(obj, "consecutive_passes", what),
            since=_str(obj, "since", what),
            last_failure=_str(obj, "last_failure", what),
            failure_runs=_strs(obj, "failure_runs", what),
            absent_runs=_int(obj, "absent_runs", what) if "absent_runs" in obj else 0,
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
        obj = _obj(data, "quarantine")
        _check_version(obj, "quarantine")
        entries: dict[str, QuarantineEntry] = {}
        for raw in _list(obj, "entries", "quarantine"):
            entry = QuarantineEntry.from_json(raw)
            if entry.test_id in entries:
                raise ValueError(f"quarantine: duplicate entry for {entry.test_id!r}")
            entries[entry.test_id] = entry
        return cls(entries=entries)


def _verdict(outcome: Outcome) -> str | None:
    """``FAIL``/``FLAKY``/``PASS`` for outcomes that move the state machine, else ``None``."""
    if outcome is Outcome.FLAKY:
        return FLAKY
    if outcome in _FAILURES:
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
    flips = flipping(moved.recent)
    if moved.state is State.QUARANTINED:
        if moved.consecutive_passes >= RELEASE_PASSES:
            return None
        # No flip left in the window: it fails every time now, a regression that gates.
        return moved if flips else replace(moved, state=State.WATCHED, since=now)
    fails = sum(1 for verdict in moved.recent if _is_fail(verdict))
    if fails >= QUARANTINE_FAILS and flips:
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
