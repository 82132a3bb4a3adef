"""Tests for supervisor.learn: durations, estimates, recency and the quarantine machine."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.learn import (
    DEFAULT_COLLECT_S,
    DEFAULT_STARTUP_S,
    DEFAULT_UNKNOWN_S,
    FAIL,
    FLAKY,
    HISTORY_LEN,
    PASS,
    RETENTION_RUNS,
    WINDOW,
    Durations,
    Quarantine,
    QuarantineKind,
    Sample,
    State,
    estimates,
    failure_recency,
    fixed_costs,
    merge_durations,
    merge_quarantine,
    retention_note,
    update_durations,
    update_quarantine,
)
from supervisor.model import Outcome, TestItem, TestRecord, file_of

T = "tests/test_a.py::test_one"


def rec(
    outcome: Outcome,
    duration_s: float = 0.1,
    *,
    test_id: str = T,
    run_id: str = "r1",
    ts: str = "2026-01-01T00:00:00Z",
    attempt: int = 1,
    message: str = "",
) -> TestRecord:
    return TestRecord(
        run_id=run_id,
        test_id=test_id,
        outcome=outcome,
        duration_s=duration_s,
        tier=1,
        attempt=attempt,
        message=message,
        ts=ts,
    )


def sample(outcome: Outcome, duration_s: float, run_id: str = "r") -> Sample:
    return Sample(ts="t", run_id=run_id, outcome=outcome.value, duration_s=duration_s)


def item(test_id: str) -> TestItem:
    return TestItem(test_id=test_id, file=file_of(test_id))


def via_json(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data))


def learn_runs(outcomes: list[Outcome], test_id: str = T) -> Durations:
    durations = Durations()
    for i, outcome in enumerate(outcomes):
        run = f"r{i}"
        records = [rec(outcome, 0.1, test_id=test_id, run_id=run, ts=f"ts{i}")]
        durations = update_durations(durations, records, startup_s=None, collect_s=None)
    return durations


# --- durations -------------------------------------------------------------------


def test_update_takes_the_last_record_of_each_test() -> None:
    records = [
        rec(Outcome.FAILED, 2.0, attempt=1, ts="a"),
        rec(Outcome.PASSED, 0.5, attempt=2, ts="b", run_id="r7"),
    ]
    new = update_durations(Durations(), records, startup_s=None, collect_s=None)
    assert new.tests == {T: (Sample(ts="b", run_id="r7", outcome="passed", duration_s=0.5),)}


def test_skipped_adds_nothing_but_hung_and_crashed_do() -> None:
    records = [
        rec(Outcome.SKIPPED, test_id="t.py::s"),
        rec(Outcome.HUNG, 60.0, test_id="t.py::h"),
        rec(Outcome.CRASHED, 0.3, test_id="t.py::c"),
    ]
    new = update_durations(Durations(), records, startup_s=None, collect_s=None)
    assert set(new.tests) == {"t.py::h", "t.py::c"}
    assert new.tests["t.py::h"][0].outcome == "hung"
    assert new.tests["t.py::h"][0].duration_s == 60.0


def test_history_keeps_the_last_ten_oldest_first() -> None:
    durations = learn_runs([Outcome.PASSED] * (HISTORY_LEN + 3))
    run_ids = [s.run_id for s in durations.tests[T]]
    assert run_ids == [f"r{i}" for i in range(3, HISTORY_LEN + 3)]


def test_update_does_not_touch_the_old_value() -> None:
    old = learn_runs([Outcome.PASSED])
    before = old.to_json()
    update_durations(old, [rec(Outcome.FAILED, run_id="r9")], startup_s=1.0, collect_s=1.0)
    assert old.to_json() == before


def test_fixed_costs_are_smoothed() -> None:
    d = Durations()
    assert fixed_costs(d) == (DEFAULT_STARTUP_S, DEFAULT_COLLECT_S)
    d = update_durations(d, [], startup_s=2.0, collect_s=None)
    assert fixed_costs(d) == (2.0, DEFAULT_COLLECT_S)
    d = update_durations(d, [], startup_s=1.0, collect_s=4.0)
    assert (d.startup_s, d.collect_s) == (1.5, 4.0)
    d = update_durations(d, [], startup_s=None, collect_s=2.0)
    assert fixed_costs(d) == (1.5, 3.0)


def test_estimate_is_robust_to_one_slow_outlier() -> None:
    samples = (*(sample(Outcome.PASSED, 0.1) for _ in range(4)), sample(Outcome.PASSED, 30.0))
    d = Durations(tests={T: samples})
    assert estimates(d, [item(T)]) == {T: 0.1}


def test_estimate_prefers_passing_runs_and_falls_back_to_failures() -> None:
    mixed = (sample(Outcome.HUNG, 60.0), sample(Outcome.PASSED, 0.25), sample(Outcome.FLAKY, 0.75))
    only_bad = (sample(Outcome.HUNG, 60.0), sample(Outcome.FAILED, 1.0), sample(Outcome.ERROR, 2.0))
    d = Durations(tests={"a.py::m": mixed, "a.py::b": only_bad})
    assert estimates(d, [item("a.py::m"), item("a.py::b")]) == {"a.py::m": 0.5, "a.py::b": 2.0}


def test_unknown_tests_are_estimated_from_what_is_known() -> None:
    d = Durations(
        tests={
            "a.py::x": (sample(Outcome.PASSED, 1.0),),
            "a.py::y": (sample(Outcome.PASSED, 3.0),),
            "b.py::z": (sample(Outcome.PASSED, 10.0),),
        }
    )
    got = estimates(d, [item("a.py::new"), item("c.py::new"), item("b.py::z")])
    assert got == {"a.py::new": 2.0, "c.py::new": 3.0, "b.py::z": 10.0}
    assert estimates(Durations(), [item("a.py::new")]) == {"a.py::new": DEFAULT_UNKNOWN_S}


def test_failure_recency_weighs_recent_failures_most() -> None:
    d = Durations(
        tests={
            "a.py::newest": (sample(Outcome.PASSED, 0.1), sample(Outcome.FAILED, 0.1)),
            "a.py::older": (sample(Outcome.HUNG, 0.1), sample(Outcome.PASSED, 0.1)),
            "a.py::both": (
                sample(Outcome.CRASHED, 0.1),
                sample(Outcome.PASSED, 0.1),
                sample(Outcome.FLAKY, 0.1),
            ),
            "a.py::error": (sample(Outcome.ERROR, 0.1),),
            "a.py::fine": (sample(Outcome.PASSED, 0.1), sample(Outcome.XFAILED, 0.1)),
        }
    )
    assert failure_recency(d) == {
        "a.py::newest": 1.0,
        "a.py::older": 0.5,
        "a.py::both": 1.25,
        "a.py::error": 1.0,
    }


def test_durations_round_trip_through_json() -> None:
    d = update_durations(
        learn_runs([Outcome.PASSED, Outcome.HUNG]), [], startup_s=0.7, collect_s=None
    )
    data = via_json(d.to_json())
    assert data["version"] == 1
    assert Durations.from_json(data) == d


def _durations_json(**overrides: Any) -> dict[str, Any]:
    sample = overrides.pop("sample", [0, "passed", 0.1])
    data: dict[str, Any] = {"version": 1, "startup_s": None, "collect_s": 0.2}
    data["runs"] = [{"run_id": "r", "ts": "t"}]
    data["tests"] = {T: [sample]}
    data.update(overrides)
    return data


def test_a_well_formed_durations_file_reads() -> None:
    d = Durations.from_json(_durations_json())
    assert d.tests[T] == (Sample(ts="t", run_id="r", outcome="passed", duration_s=0.1),)


def test_durations_on_disk_name_each_run_once() -> None:
    d = learn_runs([Outcome.PASSED, Outcome.FAILED])
    data = d.to_json()
    assert len(data["runs"]) == len({s.run_id for samples in d.tests.values() for s in samples})


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "{}",
        {},
        _durations_json(version=2),
        _durations_json(version="1"),
        _durations_json(version=True),
        _durations_json(tests=[]),
        _durations_json(tests={T: {}}),
        _durations_json(tests={T: ["x"]}),
        _durations_json(startup_s="fast"),
        _durations_json(collect_s=-1.0),
        _durations_json(sample=[0, "passed", "1"]),
        _durations_json(sample=[0, "passed", True]),
        _durations_json(sample=[0, "passed", float("nan")]),
        _durations_json(sample=[0, "passed", -1.0]),
        _durations_json(sample=[0, "exploded", 0.1]),
        _durations_json(sample=[1, "passed", 0.1]),
        _durations_json(sample=[True, "passed", 0.1]),
        _durations_json(sample={"ts": "t", "run_id": "r", "outcome": "passed", "duration_s": 1}),
        _durations_json(sample=[0, "passed"]),
        _durations_json(runs=[{"run_id": 5, "ts": "t"}]),
        _durations_json(runs={}),
    ],
)
def test_malformed_durations_raise_value_error(data: Any) -> None:
    with pytest.raises(ValueError):
        Durations.from_json(data)


run_ids_st = st.text(max_size=8)
samples_st = st.builds(
    lambda run_id, outcome, duration_s: Sample(
        ts=f"t-{run_id}", run_id=run_id, outcome=outcome, duration_s=duration_s
    ),
    run_id=run_ids_st,
    outcome=st.sampled_from([o.value for o in Outcome if o is not Outcome.SKIPPED]),
    duration_s=st.floats(min_value=0, max_value=1e6),
)
seconds_st = st.none() | st.floats(min_value=0, max_value=1e3)


@settings(max_examples=60, deadline=None)
@given(
    tests=st.dictionaries(
        st.text(min_size=1, max_size=12),
        st.lists(samples_st, min_size=1, max_size=HISTORY_LEN).map(tuple),
        max_size=4,
    ),
    startup_s=seconds_st,
    collect_s=seconds_st,
)
def test_durations_round_trip_property(
    tests: dict[str, tuple[Sample, ...]], startup_s: float | None, collect_s: float | None
) -> None:
    d = Durations(tests=tests, startup_s=startup_s, collect_s=collect_s)
    assert Durations.from_json(via_json(d.to_json())) == d


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(Outcome)), max_size=15))
def test_estimates_stay_within_the_samples(outcomes: list[Outcome]) -> None:
    d = learn_runs(outcomes)
    got = estimates(d, [item(T)])[T]
    samples = d.tests.get(T, ())
    assert len(samples) == min(HISTORY_LEN, sum(o is not Outcome.SKIPPED for o in outcomes))
    if samples:
        durations = [s.duration_s for s in samples]
        assert min(durations) <= got <= max(durations)
    else:
        assert got == DEFAULT_UNKNOWN_S


# --- quarantine --------------------------------------------------------------------


def run_quarantine(outcomes: list[Outcome], *, message: str = "boom") -> list[Quarantine]:
    """The quarantine after each run of one test ending with these outcomes."""
    q, history = Quarantine(), []
    for i, outcome in enumerate(outcomes, start=1):
        finals = {T: rec(outcome, run_id=f"r{i}", message=f"{message} {i}")}
        q = update_quarantine(q, finals, now=f"ts{i}", run_id=f"r{i}")
        history.append(q)
    return history


def state_of(q: Quarantine) -> State | None:
    entry = q.entries.get(T)
    return None if entry is None else entry.state


def gate_runs(outcomes: list[Outcome]) -> tuple[list[int], list[State | None], Quarantine]:
    """Exit code (of this one test) and state after each run, reading quarantine BEFORE the run."""
    q, exit_codes, states = Quarantine(), [], []
    for i, outcome in enumerate(outcomes, start=1):
        gating_off = q.quarantined_ids()
        finals = {T: rec(outcome, run_id=f"r{i}", message=f"AssertionError: run {i}")}
        failing = any(r.outcome.gating and t not in gating_off for t, r in finals.items())
        exit_codes.append(1 if failing else 0)
        q = update_quarantine(q, finals, now=f"ts{i}", run_id=f"r{i}")
        states.append(state_of(q))
    return exit_codes, states, q


def test_a_regression_fails_every_run_and_is_never_quarantined() -> None:
    F, P = Outcome.FAILED, Outcome.PASSED
    codes, states, q = gate_runs([P, P] + [F] * 12)
    assert codes == [0, 0] + [1] * 12
    assert states == [None, None] + [State.WATCHED] * 12
    assert q.kinds() == {T: QuarantineKind.BROKEN}


def test_fail_4_pass_3_fail_1_is_a_fixed_regression_not_a_flaky_test() -> None:
    F, P = Outcome.FAILED, Outcome.PASSED
    codes, states, q = gate_runs([F, F, F, F, P, P, P, F])
    assert codes == [1, 1, 1, 1, 0, 0, 0, 1]
    assert states == [State.WATCHED] * 8
    assert q.entries[T].recent == (FAIL, PASS, PASS, PASS, FAIL)
    assert q.kinds() == {T: QuarantineKind.FLAKY}, "a pass between two failures: it flips"


def test_a_test_that_flips_is_quarantined_and_stops_gating() -> None:
    F, P = Outcome.FAILED, Outcome.PASSED
    codes, states, q = gate_runs([F, P, F, P, F, P, F])
    assert states == [State.WATCHED] * 4 + [State.QUARANTINED] * 3
    assert codes == [1, 0, 1, 0, 1, 0, 0], "the failure after entering quarantine does not gate"
    assert q.kinds() == {T: QuarantineKind.FLAKY}


def test_passing_on_a_retry_is_evidence_of_flipping() -> None:
    codes, states, q = gate_runs([Outcome.FLAKY, Outcome.FAILED, Outcome.FAILED, Outcome.FAILED])
    assert states == [State.WATCHED] * 2 + [State.QUARANTINED] * 2
    assert codes == [0, 1, 1, 0]
    assert q.kinds() == {T: QuarantineKind.FLAKY}


def test_a_quarantined_test_that_passes_after_a_run_of_failures_stays_quarantined() -> None:
    F, P = Outcome.FAILED, Outcome.PASSED
    codes, states, q = gate_runs([F, P, F, F, F, P, F])
    assert states == [State.WATCHED] * 3 + [State.QUARANTINED] * 4
    assert codes == [1, 0, 1, 1, 0, 0, 0]
    assert q.kinds() == {T: QuarantineKind.FLAKY}


def test_a_quarantined_test_that_keeps_failing_gates_again() -> None:
    F, P = Outcome.FAILED, Outcome.PASSED
    codes, states, q = gate_runs([F, P, F, P, F] + [F] * 5)
    # The window loses its last pass between failures after three more failures.
    assert states[4:] == [State.QUARANTINED] * 3 + [State.WATCHED] * 3
    assert codes[-3:] == [0, 1, 1]
    assert q.kinds() == {T: QuarantineKind.BROKEN}
    assert q.entries[T].since == "ts8"


def test_entry_says_when_and_why() -> None:
    F, P = Outcome.FAILED, Outcome.PASSED
    after = run_quarantine([F, P, Outcome.ERROR, P, Outcome.HUNG, Outcome.CRASHED])
    entry = after[-1].entries[T]
    assert entry.state is State.QUARANTINED
    assert entry.since == "ts5"
    assert entry.last_failure == "boom 6"
    assert entry.failure_runs == ("r1", "r3", "r5", "r6")
    assert after[0].entries[T].since == "ts1"


def test_kinds_leave_out_a_test_recovering_from_one_failure() -> None:
    after = run_quarantine([Outcome.FAILED, Outcome.PASSED])
    assert after[0].kinds() == {T: QuarantineKind.BROKEN}
    assert after[1].watched_ids() == {T} and after[1].kinds() == {}


def test_a_quarantined_broken_test_from_an_older_mtest_loads_as_watched() -> None:
    data = _entry_json(state="quarantined", recent=["pass", "fail", "fail", "fail"])
    q = Quarantine.from_json(data)
    assert q.quarantined_ids() == frozenset() and q.watched_ids() == {T}
    assert q.kinds() == {T: QuarantineKind.BROKEN}
    for recent in (["fail", "pass", "fail"], ["pass", "fail", "fail", "fail", "pass"]):
        kept = Quarantine.from_json(_entry_json(state="quarantined", recent=recent))
        assert kept.quarantined_ids() == {T}, "flipping, or passing again: still quarantined"


def test_scattered_fails_stay_watched_until_three_fall_in_the_window() -> None:
    F, P = Outcome.FAILED, Outcome.PASSED
    spread = run_quarantine([F, P, P, F, P, P, F])
    assert [state_of(q) for q in spread] == [State.WATCHED] * 7
    assert spread[-1].entries[T].recent == (PASS, FAIL, PASS, PASS, FAIL)
    dense = run_quarantine([F, P, F, P, F])
    assert [state_of(q) for q in dense] == [State.WATCHED] * 4 + [State.QUARANTINED]
    assert dense[-1].entries[T].recent == (FAIL, PASS, FAIL, PASS, FAIL)


def test_watched_test_is_removed_once_its_window_holds_no_fail() -> None:
    after = run_quarantine([Outcome.FAILED] + [Outcome.PASSED] * WINDOW)
    assert [state_of(q) for q in after] == [State.WATCHED] * WINDOW + [None]


def test_passing_test_gets_no_entry_and_xfail_xpass_count_as_passes() -> None:
    after = run_quarantine([Outcome.PASSED, Outcome.XFAILED, Outcome.XPASSED])
    assert all(q.entries == {} for q in after)
    F, P = Outcome.FAILED, Outcome.PASSED
    released = run_quarantine([F, P, F, P, F, Outcome.XFAILED, Outcome.XPASSED, Outcome.PASSED])
    assert [state_of(q) for q in released][-2:] == [State.QUARANTINED, None]


def test_flaky_counts_as_a_fail_and_as_flipping() -> None:
    after = run_quarantine([Outcome.FLAKY] * 3)
    assert after[-1].quarantined_ids() == {T}
    assert after[-1].watched_ids() == frozenset()
    assert after[-1].entries[T].recent == (FLAKY,) * 3


def test_skipped_and_absent_tests_keep_their_entry() -> None:
    q = run_quarantine([Outcome.FAILED] * 2)[-1]
    skipped = {T: rec(Outcome.SKIPPED, run_id="r9")}
    assert update_quarantine(q, skipped, now="ts9", run_id="r9") == q
    other = {"b.py::t": rec(Outcome.PASSED, test_id="b.py::t")}
    assert update_quarantine(q, other, now="ts9", run_id="r9") == q
    assert q.watched_ids() == {T}


def test_quarantine_round_trips_through_json() -> None:
    outcomes = [Outcome.FAILED, Outcome.PASSED, Outcome.HUNG, Outcome.FLAKY, Outcome.CRASHED]
    q = run_quarantine(outcomes)[-1]
    assert q.quarantined_ids() == {T}
    data = via_json(q.to_json())
    assert data["version"] == 1
    assert Quarantine.from_json(data) == q


def _entry_json(**overrides: Any) -> dict[str, Any]:
    entry = {
        "test_id": T,
        "state": "watched",
        "recent": ["fail"],
        "consecutive_passes": 0,
        "since": "ts",
        "last_failure": "boom",
        "failure_runs": ["r1"],
    }
    return {"version": 1, "entries": [{**entry, **overrides}]}


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"version": 1},
        {"version": 1, "entries": {}},
        {"entries": []},
        {"version": 0, "entries": []},
        {"version": 1, "entries": [None]},
        {"version": 1, "entries": _entry_json()["entries"] * 2},
        _entry_json(state="banned"),
        _entry_json(recent=["fail"] * (WINDOW + 1)),
        _entry_json(recent=["maybe"]),
        _entry_json(recent="fail"),
        _entry_json(consecutive_passes=-1),
        _entry_json(consecutive_passes=1.5),
        _entry_json(since=None),
        _entry_json(failure_runs=[1]),
        _entry_json(test_id=7),
    ],
)
def test_malformed_quarantine_raises_value_error(data: Any) -> None:
    with pytest.raises(ValueError):
        Quarantine.from_json(data)


def flips(window: list[str]) -> bool:
    """The issue's evidence of flipping, as a pattern: a retry that passed, or F P+ F."""
    text = "".join({PASS: "P", FAIL: "F", FLAKY: "~"}[v] for v in window)
    return "~" in text or re.search("[F~]P+[F~]", text) is not None


def regressed(window: list[str]) -> bool:
    """The issue's regression, as a pattern: some passes, then failures only."""
    text = "".join({PASS: "P", FAIL: "F", FLAKY: "~"}[v] for v in window)
    return re.fullmatch("P*F+", text) is not None


def reference(verdicts: list[str]) -> tuple[bool, bool]:
    """(quarantined, tracked) straight from the issue's wording."""
    quarantined, since_release = False, []
    for verdict in verdicts:
        since_release.append(verdict)
        window = since_release[-WINDOW:]
        fails = sum(1 for v in window if v != PASS)
        if quarantined and since_release[-3:] == [PASS] * 3:
            quarantined, since_release = False, []
        elif quarantined:
            quarantined = not regressed(window)
        else:
            quarantined = fails >= 3 and flips(window)
    return quarantined, quarantined or any(v != PASS for v in since_release[-WINDOW:])


VERDICT = {
    Outcome.SKIPPED: None,
    Outcome.PASSED: PASS,
    Outcome.XFAILED: PASS,
    Outcome.XPASSED: PASS,
    Outcome.FLAKY: FLAKY,
}  # every other outcome is a FAIL


def trailing_passes(recent: tuple[str, ...]) -> int:
    count = 0
    for verdict in reversed(recent):
        if verdict != PASS:
            break
        count += 1
    return count


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(Outcome)), max_size=30))
def test_quarantine_matches_the_reference_model(outcomes: list[Outcome]) -> None:
    q, verdicts = Quarantine(), []
    for i, outcome in enumerate(outcomes):
        before = q
        q = update_quarantine(q, {T: rec(outcome)}, now=f"ts{i}", run_id=f"r{i}")
        verdict = VERDICT.get(outcome, FAIL)
        if verdict is None:
            assert q == before
            continue
        verdicts.append(verdict)
        quarantined, tracked = reference(verdicts)
        assert (T in q.quarantined_ids()) == quarantined
        assert (T in q.entries) == tracked
        if tracked:
            entry = q.entries[T]
            assert len(entry.recent) <= WINDOW
            assert entry.recent[-1] == verdict
            assert any(v != PASS for v in entry.recent)
            assert entry.consecutive_passes == trailing_passes(entry.recent)
            if entry.state is State.QUARANTINED:
                assert entry.consecutive_passes < 3
                assert q.kinds()[T] is QuarantineKind.FLAKY
        assert Quarantine.from_json(via_json(q.to_json())) == q


FAILING = st.sampled_from([Outcome.FAILED, Outcome.ERROR, Outcome.HUNG, Outcome.CRASHED])
PASSING = st.sampled_from([Outcome.PASSED, Outcome.XFAILED, Outcome.XPASSED])


@settings(max_examples=200, deadline=None)
@given(
    passes=st.lists(PASSING | st.just(Outcome.SKIPPED), max_size=8),
    fails=st.lists(FAILING | st.just(Outcome.SKIPPED), min_size=1, max_size=20),
)
def test_passing_then_failing_is_never_quarantined(
    passes: list[Outcome], fails: list[Outcome]
) -> None:
    """P* F+ (a regression): never quarantined, at any run, however many runs it failed."""
    q = Quarantine()
    for i, outcome in enumerate(passes + fails):
        q = update_quarantine(q, {T: rec(outcome)}, now=f"ts{i}", run_id=f"r{i}")
        assert T not in q.quarantined_ids()
    if any(outcome is not Outcome.SKIPPED for outcome in fails):
        assert q.kinds() == {T: QuarantineKind.BROKEN}


@settings(max_examples=200, deadline=None)
@given(
    history=st.lists(st.sampled_from(list(Outcome)), max_size=20),
    fails=st.lists(FAILING, min_size=WINDOW, max_size=WINDOW + 5),
)
def test_whatever_came_before_a_window_of_failures_gates(
    history: list[Outcome], fails: list[Outcome]
) -> None:
    """After a full window of failures a test gates, even if it was quarantined as flaky."""
    q = Quarantine()
    for i, outcome in enumerate(history + fails):
        q = update_quarantine(q, {T: rec(outcome)}, now=f"ts{i}", run_id=f"r{i}")
    assert T not in q.quarantined_ids()
    assert q.kinds() == {T: QuarantineKind.BROKEN}


@pytest.mark.parametrize(
    "pattern",
    ["FPFPF", "FPPFF", "FFPFF", "FPFFF", "~F~", "~~~", "F~F"],
)
def test_flipping_patterns_are_quarantined(pattern: str) -> None:
    outcome = {"F": Outcome.FAILED, "P": Outcome.PASSED, "~": Outcome.FLAKY}
    after = run_quarantine([outcome[c] for c in pattern])
    assert after[-1].quarantined_ids() == {T}


def test_merge_quarantine_takes_each_entry_from_the_shard_that_ran_the_test() -> None:
    def step(q: Quarantine, test_id: str, outcome: Outcome, run: int) -> Quarantine:
        finals = {test_id: rec(outcome, test_id=test_id, run_id=f"r{run}")}
        return update_quarantine(q, finals, now=f"2026-01-0{run}T00:00:00Z", run_id=f"r{run}")

    base = Quarantine()
    F, P = Outcome.FAILED, Outcome.PASSED
    for run, outcome in enumerate([F, P, F, P, F], start=1):  # a.py::t flips: quarantined
        base = step(base, "a.py::t", outcome, run)
    base = step(base, "b.py::t", F, 1)  # watched, before the split
    base = step(base, "c.py::t", F, 4)
    assert base.quarantined_ids() == {"a.py::t"}
    # Shard 1 ran a.py::t (passed three times: released); shard 2 ran b.py::t (failed again).
    shard1 = base
    for run in (6, 7, 8):
        shard1 = step(shard1, "a.py::t", Outcome.PASSED, run)
    shard2 = step(base, "b.py::t", Outcome.FAILED, 6)
    ran1, ran2 = frozenset({"a.py::t"}), frozenset({"b.py::t"})
    for order in ([(shard1, ran1), (shard2, ran2)], [(shard2, ran2), (shard1, ran1)]):
        merged = merge_quarantine(order)
        assert "a.py::t" not in merged.entries, "the release in shard 1 is kept"
        assert merged.entries["b.py::t"] == shard2.entries["b.py::t"], "shard 2's new failure"
        assert merged.entries["c.py::t"] == base.entries["c.py::t"], "run by neither: unchanged"
    assert merge_quarantine([]) == Quarantine()


# --- retention: tests that are gone ------------------------------------------------

GONE = "tests/test_old.py::test_renamed"


def runs_without(durations: Durations, n: int, collected: frozenset[str] | None) -> Durations:
    """``n`` runs that record only T; ``collected`` is what each run collected."""
    for i in range(n):
        records = [rec(Outcome.PASSED, run_id=f"x{i}", ts=f"x{i}")]
        durations = update_durations(
            durations, records, startup_s=None, collect_s=None, collected=collected
        )
    return durations


def test_a_test_not_collected_for_the_retention_is_dropped_from_durations() -> None:
    old = update_durations(
        Durations(), [rec(Outcome.PASSED, test_id=GONE)], startup_s=None, collect_s=None
    )
    almost = runs_without(old, RETENTION_RUNS - 1, frozenset({T}))
    assert GONE in almost.tests and almost.absent == {GONE: RETENTION_RUNS - 1}
    assert retention_note(old, almost) is None
    gone = runs_without(almost, 1, frozenset({T}))
    assert set(gone.tests) == {T} and gone.absent == {}
    note = retention_note(almost, gone)
    assert note is not None and "1 test(s)" in note and f"last {RETENTION_RUNS} runs" in note


def test_being_collected_again_resets_the_count() -> None:
    old = update_durations(
        Durations(), [rec(Outcome.PASSED, test_id=GONE)], startup_s=None, collect_s=None
    )
    away = runs_without(old, RETENTION_RUNS - 1, frozenset({T}))
    back = runs_without(away, 1, frozenset({T, GONE}))  # collected, deselected: still exists
    assert back.absent == {}
    assert GONE in runs_without(back, RETENTION_RUNS - 1, frozenset({T})).tests


def test_without_the_collected_ids_nothing_is_dropped() -> None:
    old = update_durations(
        Durations(), [rec(Outcome.PASSED, test_id=GONE)], startup_s=None, collect_s=None
    )
    kept = runs_without(old, RETENTION_RUNS * 2, None)
    assert GONE in kept.tests and kept.absent == {}


def test_absence_counts_round_trip_and_an_older_file_without_them_loads() -> None:
    old = update_durations(
        Durations(), [rec(Outcome.PASSED, test_id=GONE)], startup_s=None, collect_s=None
    )
    away = runs_without(old, 3, frozenset({T}))
    data = via_json(away.to_json())
    assert data["absent"] == {GONE: 3}
    assert Durations.from_json(data) == away
    del data["absent"]
    assert Durations.from_json(data).absent == {}
    with pytest.raises(ValueError):
        Durations.from_json({**via_json(away.to_json()), "absent": {GONE: -1}})


def test_merged_durations_keep_the_smaller_absence() -> None:
    old = update_durations(
        Durations(), [rec(Outcome.PASSED, test_id=GONE)], startup_s=None, collect_s=None
    )
    assert merge_durations(runs_without(old, 4, frozenset({T})), old).absent == {}
    merged = merge_durations(
        runs_without(old, 4, frozenset({T})), runs_without(old, 2, frozenset())
    )
    assert merged.absent == {GONE: 2}


def test_a_quarantine_entry_not_collected_for_the_retention_is_dropped() -> None:
    F, P = Outcome.FAILED, Outcome.PASSED
    q = run_quarantine([F, P, F, P, F])[-1]
    assert q.quarantined_ids() == {T}
    other = {"b.py::t": rec(P, test_id="b.py::t")}
    for i in range(RETENTION_RUNS - 1):
        q = update_quarantine(q, other, now=f"n{i}", run_id=f"n{i}", collected={"b.py::t"})
    assert q.entries[T].absent_runs == RETENTION_RUNS - 1
    assert Quarantine.from_json(via_json(q.to_json())) == q
    seen = update_quarantine(q, other, now="s", run_id="s", collected={"b.py::t", T})
    assert seen.entries[T].absent_runs == 0
    assert update_quarantine(q, other, now="s", run_id="s") == q, "not known: kept as is"
    gone = update_quarantine(q, other, now="g", run_id="g", collected={"b.py::t"})
    assert gone.entries == {}


def test_an_older_quarantine_entry_without_an_absence_count_loads() -> None:
    data = _entry_json()
    assert "absent_runs" not in data["entries"][0]
    assert Quarantine.from_json(data).entries[T].absent_runs == 0
