"""``--failed``: the pure selection of the last run's failures and the new tests."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supervisor.model import Outcome, TestItem
from supervisor.select import DEFAULT_TIERS, RERUN, FixedCosts, choose, rerun_failed


def item(test_id: str, *markers: str) -> TestItem:
    return TestItem(test_id=test_id, file=test_id.split("::", 1)[0], markers=markers)


SUITE = [
    item("a.py::ok"),
    item("a.py::bad"),
    item("a.py::hangs"),
    item("b.py::dies"),
    item("b.py::order"),
    item("b.py::flaky"),
    item("b.py::errs"),
    item("c.py::fresh"),
]
LAST = {
    "a.py::ok": Outcome.PASSED,
    "a.py::bad": Outcome.FAILED,
    "a.py::hangs": Outcome.HUNG,
    "b.py::dies": Outcome.CRASHED,
    "b.py::order": Outcome.ORDER_DEPENDENT,
    "b.py::flaky": Outcome.FLAKY,
    "b.py::errs": Outcome.ERROR,
    "gone.py::was_bad": Outcome.FAILED,
    "<session>::child-0003": Outcome.ERROR,
}
KNOWN = frozenset(LAST) - {"<session>::child-0003"}


def test_the_failures_of_the_last_run_and_the_new_tests() -> None:
    rerun = rerun_failed(SUITE, LAST, KNOWN)
    assert rerun.keep == frozenset({
        "a.py::bad", "a.py::hangs", "b.py::dies", "b.py::order", "b.py::errs", "c.py::fresh",
    })  # fmt: skip
    assert rerun.note == (
        "--failed: 5 test(s) that failed in the last run, 1 new; 1 no longer collected"
    )


def test_a_file_that_failed_to_import_brings_all_its_tests() -> None:
    last = {"a.py": Outcome.ERROR, "b.py::dies": Outcome.PASSED}
    known = frozenset(t.test_id for t in SUITE)
    kept = rerun_failed(SUITE, last, known).keep
    assert kept == frozenset({"a.py::ok", "a.py::bad", "a.py::hangs"})


def test_no_last_run_runs_everything_and_says_so() -> None:
    rerun = rerun_failed(SUITE, None, frozenset())
    assert rerun.keep is None
    assert rerun.note == "--failed: no last run is recorded; running all"


def test_nothing_failed_and_nothing_new_runs_everything_as_pytest_lf_does() -> None:
    last = {t.test_id: Outcome.PASSED for t in SUITE}
    rerun = rerun_failed(SUITE, last, frozenset(last))
    assert rerun.keep is None and "no test failed in the last run and none is new" in rerun.note


def test_only_new_tests_after_a_green_run() -> None:
    last = {t.test_id: Outcome.PASSED for t in SUITE[:-1]}
    rerun = rerun_failed(SUITE, last, frozenset(last))
    assert rerun.keep == frozenset({"c.py::fresh"})
    assert rerun.note == "--failed: 0 test(s) that failed in the last run, 1 new"


outcomes = st.sampled_from(list(Outcome))


@given(
    last=st.dictionaries(st.sampled_from([t.test_id for t in SUITE]), outcomes),
    known=st.sets(st.sampled_from([t.test_id for t in SUITE])),
)
def test_exactly_the_failing_and_the_unknown(last: dict[str, Outcome], known: set[str]) -> None:
    rerun = rerun_failed(SUITE, last, frozenset(known))
    wanted = {t.test_id for t in SUITE if last.get(t.test_id) in RERUN or t.test_id not in known}
    assert rerun.keep == (wanted or None)


def test_choose_applies_it_first_and_the_other_filters_after() -> None:
    tests = [item("t.py::smoke_bad", "smoke"), item("t.py::slow_bad", "slow"), item("t.py::ok")]
    selection = choose(
        tests, tiers=frozenset({0}), tier_map=DEFAULT_TIERS, quarantined=frozenset(),
        skip_quarantined=False, shard=None, budget_s=None, jobs=1, estimates={}, recency={},
        costs=FixedCosts(startup_s=0.0, collect_s=0.0),
        only=frozenset({"t.py::smoke_bad", "t.py::slow_bad"}),
    )  # fmt: skip
    assert [t.test_id for t in selection.chosen] == ["t.py::smoke_bad"]
    left = {lo.reason: lo.test_ids for lo in selection.left_out}
    assert left == {"--failed": ("t.py::ok",), "tier": ("t.py::slow_bad",)}
