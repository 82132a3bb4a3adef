"""Learn: a finished run's records become the next run's knowledge.

Two stored values come out of a run, both pure functions of the old value and
the run's records (no clock, no files — timestamps arrive as ISO strings):

* ``Durations`` (``.gates/durations.json``): the last ``HISTORY_LEN`` samples
  per test plus the smoothed fixed costs of one pytest child. From it come the
  per-test estimates the planner packs by, the failure recency the scheduler
  runs first by, and the start-up/collection costs of a chunk.
* ``Quarantine`` (``.gates/quarantine.json``): the quarantine state machine,
  in ``supervisor.quarantine`` and re-exported here (``learn.Quarantine``,
  ``learn.QuarantineKind``, ``learn.update_quarantine`` ...).

Both forget a test that was not collected in ``RETENTION_RUNS`` runs in a row
(when the caller says what was collected), so renamed tests do not grow them.

``from_json`` raises ``ValueError`` on anything malformed; the store treats
that as "file absent" (SPEC, Files).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from supervisor.jsonshape import (
    as_object,
    check_version,
    int_field,
    list_field,
    opt_seconds_field,
    str_field,
)
from supervisor.model import FORMAT_VERSION, Outcome, TestItem, TestRecord, file_of
from supervisor.quarantine import (
    FAIL,
    FAILING_OUTCOMES,
    FLAKY,
    PASS,
    QUARANTINE_FAILS,
    RELEASE_PASSES,
    RETENTION_RUNS,
    WINDOW,
    Quarantine,
    QuarantineEntry,
    QuarantineKind,
    State,
    consistently_failing,
    flipping,
    merge_quarantine,
    update_quarantine,
)

__all__ = [  # the quarantine's names, re-exported: learn is what the pipeline calls
    "FAIL",
    "FLAKY",
    "PASS",
    "QUARANTINE_FAILS",
    "RELEASE_PASSES",
    "RETENTION_RUNS",
    "WINDOW",
    "Quarantine",
    "QuarantineEntry",
    "QuarantineKind",
    "State",
    "consistently_failing",
    "flipping",
    "merge_quarantine",
    "update_quarantine",
]

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
# Outcomes that teach nothing about a test's duration.
_NO_SAMPLE = frozenset({Outcome.SKIPPED})
# Samples whose duration is a normal run of the test (flaky: its final attempt passed).
_PASSING_ISH = frozenset({Outcome.PASSED, Outcome.FLAKY, Outcome.XFAILED, Outcome.XPASSED})
_OUTCOME_VALUES = frozenset(o.value for o in Outcome)


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
        obj = as_object(data, "durations")
        check_version(obj, "durations")
        runs = [
            (str_field(run, "run_id", "durations run"), str_field(run, "ts", "durations run"))
            for run in (as_object(r, "durations run") for r in list_field(obj, "runs", "durations"))
        ]
        raw_tests = as_object(obj.get("tests"), "durations `tests`")
        tests: dict[str, tuple[Sample, ...]] = {}
        for test_id, raw_samples in raw_tests.items():
            if not isinstance(raw_samples, list):
                raise ValueError(f"durations: samples of {test_id!r} must be a list")
            samples = tuple(_sample(entry, runs, test_id) for entry in raw_samples)
            if samples:
                tests[str(test_id)] = samples[-HISTORY_LEN:]
        raw_absent = as_object(obj.get("absent", {}), "durations `absent`")
        return cls(
            tests=tests,
            startup_s=opt_seconds_field(obj, "startup_s", "durations"),
            collect_s=opt_seconds_field(obj, "collect_s", "durations"),
            absent={
                t: int_field(raw_absent, t, "durations `absent`") for t in raw_absent if t in tests
            },
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
        score = sum(
            0.5 ** (newest - i) for i, s in enumerate(samples) if s.outcome in FAILING_OUTCOMES
        )
        if score > 0:
            scores[test_id] = score
    return scores


def fixed_costs(durations: Durations) -> tuple[float, float]:
    """``(startup_s, collect_s)`` of one pytest child, defaults when unknown."""
    startup = DEFAULT_STARTUP_S if durations.startup_s is None else durations.startup_s
    collect = DEFAULT_COLLECT_S if durations.collect_s is None else durations.collect_s
    return startup, collect


# --- quarantine ------------------------------------------------------------------
