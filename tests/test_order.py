"""Order dependence, the pure parts: predecessors, what a rerun alone means, the bisection."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor import order
from supervisor.model import Outcome, TestRecord
from supervisor.order import Found


def test_predecessors_are_what_the_worker_started_before_the_test() -> None:
    started = ["a.py::t1", "a.py::t2", "b.py::t3", "b.py::t4"]
    assert order.predecessors(started, "b.py::t3") == ("a.py::t1", "a.py::t2")
    assert order.predecessors(started, "a.py::t1") == ()
    # The test in flight is the last start; an earlier run of the same id counts before it.
    assert order.predecessors(["x::a", "x::b", "x::a"], "x::a") == ("x::a", "x::b")


def test_only_failures_and_errors_are_rerun_alone() -> None:
    assert {o for o in Outcome if order.isolates(o)} == {Outcome.FAILED, Outcome.ERROR}
    assert order.isolates(Outcome.ERROR, "setup") and order.isolates(Outcome.FAILED, "call")
    # A wider fixture's teardown is reported on whichever test ran last: not an order question.
    assert not order.isolates(Outcome.ERROR, "teardown")


@pytest.mark.parametrize(
    ("alone", "retries", "found", "expected"),
    [
        (Outcome.PASSED, False, None, Outcome.ORDER_DEPENDENT),
        (Outcome.SKIPPED, False, None, Outcome.ORDER_DEPENDENT),
        (Outcome.FAILED, False, None, Outcome.FAILED),
        (Outcome.ERROR, False, None, Outcome.ERROR),
        (Outcome.HUNG, False, None, Outcome.HUNG),
        (Outcome.CRASHED, True, None, Outcome.CRASHED),
        # --retries absorbs one-off failures: a pass alone is flaky ...
        (Outcome.PASSED, True, None, Outcome.FLAKY),
        (Outcome.PASSED, True, Found.NOT_REPRODUCED, Outcome.FLAKY),
        (Outcome.PASSED, True, Found.STOPPED, Outcome.FLAKY),
        # ... unless the failure came back after its predecessors.
        (Outcome.PASSED, True, Found.POLLUTER, Outcome.ORDER_DEPENDENT),
        (Outcome.PASSED, True, Found.SEVERAL, Outcome.ORDER_DEPENDENT),
        (Outcome.PASSED, False, Found.NOT_REPRODUCED, Outcome.ORDER_DEPENDENT),
    ],
)
def test_what_a_rerun_alone_means(
    alone: Outcome, retries: bool, found: Found | None, expected: Outcome
) -> None:
    assert order.after_alone(alone, retries=retries, found=found) is expected


def test_order_dependent_gates_and_is_not_retried() -> None:
    assert Outcome.ORDER_DEPENDENT.gating
    assert not Outcome.ORDER_DEPENDENT.retryable


def test_at_most_the_limit_is_rerun() -> None:
    ids = [f"t.py::t{i}" for i in range(order.ISOLATE_LIMIT + 7)]
    kept, left = order.chosen(ids)
    assert kept == tuple(ids[: order.ISOLATE_LIMIT]) and left == 7
    assert order.chosen(ids[:3]) == (tuple(ids[:3]), 0)


def _bound(n: int) -> float:
    return 2 * math.log2(n) + 2 if n > 1 else 2


@given(n=st.integers(min_value=1, max_value=300), data=st.data())
def test_bisection_names_the_single_polluter_within_the_bound(n: int, data: st.DataObject) -> None:
    preds = [f"t.py::p{i}" for i in range(n)]
    culprit = data.draw(st.sampled_from(preds))
    asked: list[tuple[str, ...]] = []

    def fails(subset: tuple[str, ...]) -> bool:
        asked.append(subset)
        assert list(subset) == [p for p in preds if p in subset], "the order is kept"
        return culprit in subset

    search = order.bisect(preds, fails)
    assert search.found is Found.POLLUTER and search.polluter == culprit
    assert search.runs == len(asked) <= order.max_runs(n) <= _bound(n)


@given(n=st.integers(min_value=2, max_value=200), data=st.data())
def test_a_pair_of_polluters_is_never_reported_as_one(n: int, data: st.DataObject) -> None:
    preds = [f"t.py::p{i}" for i in range(n)]
    pair = data.draw(st.lists(st.sampled_from(preds), min_size=2, max_size=2, unique=True))
    asked: list[tuple[str, ...]] = []

    def fails(subset: tuple[str, ...]) -> bool:
        asked.append(subset)
        return all(p in subset for p in pair)

    search = order.bisect(preds, fails)
    assert search.found is Found.SEVERAL and search.polluter is None
    assert set(pair) <= set(search.candidates), "the set named holds both"
    assert len(asked) <= order.max_runs(n) <= _bound(n)
    assert "no single polluter: needs" in order.verdict_text(search, n)


@given(n=st.integers(min_value=1, max_value=100))
def test_a_failure_that_does_not_come_back_names_nobody(n: int) -> None:
    search = order.bisect([f"t.py::p{i}" for i in range(n)], lambda subset: False)
    assert search.found is Found.NOT_REPRODUCED and search.polluter is None
    assert search.runs <= order.max_runs(n)


def test_a_lone_predecessor_is_checked_before_it_is_named() -> None:
    asked: list[tuple[str, ...]] = []

    def fails(subset: tuple[str, ...]) -> bool:
        asked.append(subset)
        return True

    search = order.bisect(["t.py::a"], fails)
    assert asked == [("t.py::a",)] and search.polluter == "t.py::a"


def test_nothing_ran_before_it_means_nothing_to_bisect() -> None:
    search = order.start(())
    assert search.query is None and search.found is Found.NOTHING
    assert "no test ran before it" in order.verdict_text(search, 0)


def test_a_stopped_search_says_how_far_it_got() -> None:
    search = order.answer(order.start([f"t.py::p{i}" for i in range(8)]), True)
    stopped = order.stopped(search)
    assert stopped.found is Found.STOPPED and stopped.runs == 1
    assert stopped.candidates == ("t.py::p0", "t.py::p1", "t.py::p2", "t.py::p3")
    text = order.verdict_text(stopped, 8)
    assert "stopped after 1 run(s)" in text and "t.py::p3" in text
    assert order.stopped(order.answer(order.start(["t.py::a"]), True)).found is Found.POLLUTER


def test_the_messages() -> None:
    assert order.verdict_text(None, 3) == "failed after 3 other test(s) in its worker, passed alone"
    named = order.bisect(["a::x", "a::y"], lambda s: "a::y" in s)
    assert order.verdict_text(named, 2) == "fails after a::y (passes alone)"
    many = order.Search(candidates=tuple(f"a::t{i}" for i in range(9)), found=Found.SEVERAL)
    assert order.verdict_text(many, 9).endswith("a::t4 and 4 more (together)")
    assert order.section(("a::x", "a::y"), "a::y").splitlines() == [
        "polluter: a::y", "ran before it in its worker (2, in order):", "  a::x", "  a::y",
    ]  # fmt: skip


def test_the_order_fields_round_trip_and_only_where_they_belong() -> None:
    record = TestRecord(
        run_id="r", test_id="t.py::b", outcome=Outcome.ORDER_DEPENDENT, duration_s=0.1, tier=1,
        predecessors=("t.py::a", "t.py::x"), polluter="t.py::a",
    )  # fmt: skip
    data = record.to_json()
    assert data["predecessors"] == ["t.py::a", "t.py::x"] and data["polluter"] == "t.py::a"
    assert TestRecord.from_json(data) == record
    plain = TestRecord(run_id="r", test_id="t.py::b", outcome=Outcome.FAILED, duration_s=0, tier=1)
    assert "predecessors" not in plain.to_json() and "polluter" not in plain.to_json()
