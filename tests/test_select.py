"""Unit and property tests for ``supervisor.select``: plain values, no mocks."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.model import TestItem
from supervisor.select import (
    BUDGET_MARGIN,
    DEFAULT_ESTIMATE_S,
    DEFAULT_TIERS,
    MIN_TEST_COST_S,
    PARALLEL_EFFICIENCY,
    Capacity,
    FixedCosts,
    LeftOut,
    capacity_of,
    choose,
    cost_of,
    estimate_of,
    fit_budget,
    parse_shard,
    parse_tiers,
    shard_of,
    stable_bucket,
    tier_of,
    wall_estimate,
)

NO_COSTS = FixedCosts(startup_s=0.0, collect_s=0.0)


def item(test_id: str, *markers: str) -> TestItem:
    return TestItem(test_id=test_id, file=test_id.split("::", 1)[0], markers=markers)


def items(count: int, prefix: str = "tests/test_a.py::test_") -> list[TestItem]:
    return [item(f"{prefix}{i:03d}") for i in range(count)]


def ids(tests: Sequence[TestItem]) -> list[str]:
    return [t.test_id for t in tests]


# --- tiers -------------------------------------------------------------------


def test_default_tiers_cover_the_documented_markers() -> None:
    by_tier: dict[int, set[str]] = {}
    for marker, tier in DEFAULT_TIERS.items():
        by_tier.setdefault(tier, set()).add(marker)
    assert by_tier == {
        0: {"smoke"},
        1: {"contract", "property", "regression", "fuzz", "integration"},
        2: {"concurrency", "conformance", "use_case"},
        3: {"perf", "stress", "e2e", "slow"},
    }


def test_default_tiers_cannot_be_changed() -> None:
    with pytest.raises(TypeError):
        DEFAULT_TIERS["smoke"] = 2  # type: ignore[index]


@pytest.mark.parametrize(
    ("markers", "expected"),
    [
        ((), 1),
        (("parametrize", "timeout"), 1),
        (("smoke",), 0),
        (("conformance",), 2),
        (("smoke", "slow"), 3),
        (("slow", "smoke", "skipif"), 3),
    ],
)
def test_tier_of(markers: tuple[str, ...], expected: int) -> None:
    assert tier_of(markers, DEFAULT_TIERS) == expected


def test_tier_of_uses_the_given_map() -> None:
    assert tier_of(("gpu",), {"gpu": 3}) == 3
    assert tier_of(("smoke",), {"gpu": 3}) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", {0}),
        ("3", {3}),
        ("0-2", {0, 1, 2}),
        ("1,3", {1, 3}),
        ("0-1,3", {0, 1, 3}),
        ("2-2", {2}),
        (" 0 , 2 ", {0, 2}),
        ("1,1", {1}),
    ],
)
def test_parse_tiers_accepts(text: str, expected: set[int]) -> None:
    assert parse_tiers(text) == frozenset(expected)


@pytest.mark.parametrize("text", ["5", "", "a", "0-4", "2-1", "1,", "-1", "0--2", "1;2", "+1", "١"])
def test_parse_tiers_rejects_with_a_message_naming_value_and_form(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_tiers(text)
    message = str(caught.value)
    assert f"'{text}'" in message
    assert "0, 0-2 or 1,3" in message
    assert message == message.lower()


def test_parse_tiers_message_example() -> None:
    with pytest.raises(ValueError, match=r"^invalid tier spec '5': tiers are 0 to 3, written"):
        parse_tiers("5")


def test_parse_tiers_explains_a_backwards_range() -> None:
    with pytest.raises(ValueError, match="runs backwards"):
        parse_tiers("2-1")


# --- shard parsing -----------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [("1/1", (1, 1)), ("2/4", (2, 4)), ("4/4", (4, 4))])
def test_parse_shard_accepts(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "1", "a/b", "1/2/3", "", "-1/2", "1 / 2"])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=rf"^invalid shard '{text}': expected K/N"):
        parse_shard(text)


# --- estimates and capacity --------------------------------------------------


def test_estimate_of_falls_back_for_unknown_or_broken_values() -> None:
    estimates = {"a": 2.5, "b": -1.0, "c": float("nan"), "d": float("inf"), "e": 0.0}
    assert estimate_of("a", estimates) == 2.5
    assert estimate_of("e", estimates) == 0.0
    for test_id in ("b", "c", "d", "missing"):
        assert estimate_of(test_id, estimates) == DEFAULT_ESTIMATE_S


def test_cost_of_is_never_zero() -> None:
    assert cost_of("e", {"e": 0.0}) == MIN_TEST_COST_S
    assert cost_of("a", {"a": 3.0}) == 3.0


def test_capacity_alone_keeps_the_margin_and_fixed_costs() -> None:
    costs = FixedCosts(startup_s=1.0, collect_s=4.0)
    assert capacity_of(budget_s=100.0, jobs=1, costs=costs) == Capacity(
        total_s=85.0, per_test_s=85.0
    )


def test_capacity_in_parallel_applies_efficiency() -> None:
    costs = FixedCosts(startup_s=1.0, collect_s=4.0)
    capacity = capacity_of(budget_s=100.0, jobs=4, costs=costs)
    per_worker = 100.0 * (1 - BUDGET_MARGIN) - 5.0
    assert capacity.per_test_s == pytest.approx(per_worker)
    assert capacity.total_s == pytest.approx(per_worker * 4 * PARALLEL_EFFICIENCY)


def test_capacity_is_zero_when_fixed_costs_eat_the_budget() -> None:
    capacity = capacity_of(budget_s=5.0, jobs=2, costs=FixedCosts(startup_s=3.0, collect_s=3.0))
    assert capacity == Capacity(total_s=0.0, per_test_s=0.0)


def test_wall_estimate() -> None:
    tests = items(4)
    estimates = {t.test_id: 3.0 for t in tests}
    costs = FixedCosts(startup_s=0.5, collect_s=1.5)
    assert wall_estimate(tests, jobs=1, estimates=estimates, costs=costs) == pytest.approx(14.0)
    expected = 2.0 + 12.0 / (2 * PARALLEL_EFFICIENCY)
    assert wall_estimate(tests, jobs=2, estimates=estimates, costs=costs) == pytest.approx(expected)
    # With more workers than tests the longest test bounds the wall clock.
    assert wall_estimate(tests, jobs=16, estimates=estimates, costs=costs) == pytest.approx(5.0)
    assert wall_estimate([], jobs=2, estimates=estimates, costs=costs) == 0.0


# --- sharding ----------------------------------------------------------------


def all_shards(
    tests: Sequence[TestItem], n: int, estimates: Mapping[str, float], known: frozenset[str]
) -> list[tuple[TestItem, ...]]:
    return [shard_of(tests, k, n, estimates, known) for k in range(1, n + 1)]


def seventy_known() -> tuple[list[TestItem], dict[str, float]]:
    tests = items(70)
    rng = random.Random(7)
    estimates = {t.test_id: round(rng.uniform(0.05, 6.0), 3) for t in tests}
    return tests, estimates


def test_shards_are_disjoint_complete_and_in_collection_order() -> None:
    tests, estimates = seventy_known()
    shards = all_shards(tests, 4, estimates, frozenset(estimates))
    flat = [t for shard in shards for t in shard]
    assert sorted(ids(flat)) == sorted(ids(tests))
    assert len(set(ids(flat))) == len(tests)
    position = {t.test_id: i for i, t in enumerate(tests)}
    for shard in shards:
        assert [position[t.test_id] for t in shard] == sorted(position[t.test_id] for t in shard)


def test_shards_are_deterministic() -> None:
    tests, estimates = seventy_known()
    known = frozenset(estimates)
    assert all_shards(tests, 4, estimates, known) == all_shards(tests, 4, dict(estimates), known)


def test_shards_do_not_depend_on_input_order() -> None:
    tests, _ = seventy_known()
    estimates = {t.test_id: float(i % 9 + 1) for i, t in enumerate(tests)}  # exact sums
    shuffled = list(tests)
    random.Random(3).shuffle(shuffled)
    known = frozenset(list(estimates)[:50])  # 20 tests without history
    first = [set(ids(s)) for s in all_shards(tests, 3, estimates, known)]
    second = [set(ids(s)) for s in all_shards(shuffled, 3, estimates, known)]
    assert first == second


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_shards_with_history_balance_within_1_3x(n: int) -> None:
    tests, estimates = seventy_known()
    loads = [
        sum(estimates[t.test_id] for t in shard)
        for shard in all_shards(tests, n, estimates, frozenset(estimates))
    ]
    assert max(loads) <= 1.3 * min(loads)


def test_tests_without_history_stay_put_when_tests_are_added() -> None:
    before = items(40)
    after = before + items(25, prefix="tests/test_new.py::test_")
    placed_before = [set(ids(s)) for s in all_shards(before, 4, {}, frozenset())]
    placed_after = [set(ids(s)) for s in all_shards(after, 4, {}, frozenset())]
    for old, new in zip(placed_before, placed_after, strict=True):
        assert old <= new
    for k, shard in enumerate(placed_before):
        assert all(stable_bucket(test_id, 4) == k for test_id in shard)


def test_stable_bucket_is_a_fixed_function_of_the_id() -> None:
    # Pinned values: str hash() is salted per process, so only an unsalted
    # digest can give the same answer on every machine of a sharded CI run.
    assert stable_bucket("tests/test_a.py::test_x", 7) == 1
    assert stable_bucket("tests/test_a.py::test_y", 7) == 5
    assert {stable_bucket(f"t{i}", 5) for i in range(200)} == set(range(5))


def test_shard_of_rejects_a_bad_shard() -> None:
    with pytest.raises(ValueError, match="invalid shard 3/2"):
        shard_of(items(3), 3, 2, {}, frozenset())


@settings(max_examples=60, deadline=None)
@given(
    durations=st.lists(
        st.one_of(st.none(), st.floats(min_value=0.0, max_value=100.0)), max_size=40
    ),
    n=st.integers(min_value=1, max_value=6),
)
def test_shards_always_partition(durations: list[float | None], n: int) -> None:
    tests = items(len(durations))
    estimates = {t.test_id: d for t, d in zip(tests, durations, strict=True) if d is not None}
    shards = all_shards(tests + tests[:3], n, estimates, frozenset(estimates))
    flat = ids([t for shard in shards for t in shard])
    assert sorted(flat) == sorted(ids(tests))
    assert shards == all_shards(tests, n, estimates, frozenset(estimates))


# --- budget knapsack ---------------------------------------------------------


def fit(
    tests: Sequence[TestItem],
    *,
    budget_s: float,
    estimates: Mapping[str, float],
    jobs: int = 1,
    recency: Mapping[str, float] | None = None,
    tiers: Mapping[str, int] | None = None,
    costs: FixedCosts = NO_COSTS,
) -> tuple[list[str], list[str]]:
    chosen, left = fit_budget(
        tests,
        budget_s=budget_s,
        jobs=jobs,
        estimates=estimates,
        recency=recency or {},
        tier_of_item=tiers or {},
        costs=costs,
    )
    return ids(chosen), list(left)


def test_budget_prefers_cheap_tests_and_keeps_collection_order() -> None:
    estimates = {"a": 5.0, "b": 1.0, "c": 2.0, "d": 1.0}
    # capacity = 11 * 0.9 = 9.9: cheapest first → b, d, c (4 s), then a (5 s) fits too.
    assert fit([item(k) for k in "abcd"], budget_s=11.0, estimates=estimates) == (
        ["a", "b", "c", "d"],
        [],
    )
    # capacity 7.2: b, d, c take 4 s; a (5 s) no longer fits.
    assert fit([item(k) for k in "abcd"], budget_s=8.0, estimates=estimates) == (
        ["b", "c", "d"],
        ["a"],
    )


def test_budget_puts_tier_0_first_even_when_expensive() -> None:
    estimates = {"cheap1": 1.0, "cheap2": 1.0, "smoke": 8.0}
    chosen, left = fit(
        [item("cheap1"), item("cheap2"), item("smoke")],
        budget_s=10.0,
        estimates=estimates,
        tiers={"smoke": 0, "cheap1": 1, "cheap2": 1},
    )
    assert chosen == ["cheap1", "smoke"]
    assert left == ["cheap2"]


def test_a_recent_failure_does_not_jump_ahead_of_tier_0() -> None:
    chosen, left = fit(
        [item("failing"), item("smoke")],
        budget_s=10.0,  # capacity 9: room for one of the two
        estimates={"failing": 5.0, "smoke": 5.0},
        recency={"failing": 1.0},
        tiers={"smoke": 0, "failing": 1},
    )
    assert (chosen, left) == (["smoke"], ["failing"])


def test_budget_puts_recent_failures_next_most_recent_first() -> None:
    estimates = {"plain": 1.0, "old_fail": 4.0, "new_fail": 4.0}
    chosen, left = fit(
        [item("plain"), item("old_fail"), item("new_fail")],
        budget_s=11.0,  # capacity 9.9: new_fail (4) + old_fail (4) + plain (1)
        estimates=estimates,
        recency={"old_fail": 0.2, "new_fail": 0.9},
    )
    assert chosen == ["plain", "old_fail", "new_fail"]
    chosen, left = fit(
        [item("plain"), item("old_fail"), item("new_fail")],
        budget_s=6.0,  # capacity 5.4: new_fail, then plain fits in 1.4; old_fail does not
        estimates=estimates,
        recency={"old_fail": 0.2, "new_fail": 0.9},
    )
    assert (chosen, left) == (["plain", "new_fail"], ["old_fail"])


def test_budget_skips_a_test_that_does_not_fit_and_tries_smaller_ones() -> None:
    estimates = {"big": 50.0, "fail": 8.0, "small": 0.5}
    chosen, left = fit(
        [item("big"), item("fail"), item("small")],
        budget_s=10.0,
        estimates=estimates,
        recency={"big": 1.0, "fail": 0.5},
    )
    assert (chosen, left) == (["fail", "small"], ["big"])


def test_a_test_longer_than_one_worker_can_run_never_fits() -> None:
    # 8 workers give 8 * 0.9 * 90 = 648 s of capacity, but one worker has 90 s.
    chosen, left = fit(
        [item("long"), item("short")],
        budget_s=100.0,
        jobs=8,
        estimates={"long": 95.0, "short": 1.0},
    )
    assert (chosen, left) == (["short"], ["long"])


def test_fixed_costs_come_off_the_budget() -> None:
    costs = FixedCosts(startup_s=2.0, collect_s=3.0)
    chosen, left = fit(
        [item("a"), item("b")], budget_s=10.0, estimates={"a": 2.0, "b": 2.5}, costs=costs
    )
    # 10 s * 0.9 - 5 s of fixed costs leaves 4 s: a (2 s) fits, then b (2.5 s) does not.
    assert (chosen, left) == (["a"], ["b"])


def test_zero_estimates_still_cost_something() -> None:
    tests = items(3000, prefix="t.py::t")
    chosen, left = fit(tests, budget_s=1.0, estimates={t.test_id: 0.0 for t in tests})
    # 0.9 s of capacity at MIN_TEST_COST_S each: 900, give or take float rounding.
    assert 899 <= len(chosen) <= 900
    assert len(chosen) + len(left) == 3000


NAMES = st.sampled_from([f"t{i}" for i in range(30)])


@dataclass(frozen=True, kw_only=True)
class BudgetCase:
    test_ids: list[str]
    estimates: dict[str, float]
    tier0: frozenset[str]
    recency: dict[str, float]
    budget_s: float
    jobs: int
    costs: FixedCosts


@st.composite
def budget_cases(draw: st.DrawFn) -> BudgetCase:
    """A knapsack input whose budget is drawn relative to the suite's own size,
    and whose tier-0 and recent tests are among its tests, so they compete."""
    test_ids = draw(st.lists(NAMES, min_size=3, max_size=30))
    unique_ids = sorted(set(test_ids))
    known = draw(st.lists(st.floats(0.0, 20.0), min_size=len(unique_ids)))
    estimates = dict(zip(unique_ids, known, strict=False))  # the rest have no history
    jobs = draw(st.integers(1, 4))
    fixed = draw(st.floats(0.0, 5.0))
    suite_s = sum(cost_of(t, estimates) for t in unique_ids)
    tier0_flags = draw(st.lists(st.booleans(), min_size=len(unique_ids), max_size=len(unique_ids)))
    share = draw(st.one_of(st.floats(0.05, 0.95), st.floats(0.0, 1.2)))
    return BudgetCase(
        test_ids=test_ids,
        estimates=estimates,
        tier0=frozenset(t for t, flag in zip(unique_ids, tier0_flags, strict=True) if flag),
        recency=draw(st.dictionaries(st.sampled_from(unique_ids), st.floats(0.0, 1.0))),
        budget_s=(fixed + share * suite_s / jobs) / (1 - BUDGET_MARGIN),
        jobs=jobs,
        costs=FixedCosts(startup_s=fixed, collect_s=0.0),
    )


@settings(max_examples=300, deadline=None)
@given(case=budget_cases())
def test_budget_invariants(case: BudgetCase) -> None:
    chosen_ids, durations, tier0 = case.test_ids, case.estimates, case.tier0
    budget_s, jobs, costs = case.budget_s, case.jobs, case.costs
    tests = [item(test_id) for test_id in chosen_ids]
    tiers = {test_id: (0 if test_id in tier0 else 2) for test_id in chosen_ids}
    chosen, left = fit(
        tests,
        budget_s=budget_s,
        jobs=jobs,
        estimates=durations,
        recency=case.recency,
        tiers=tiers,
        costs=costs,
    )
    capacity = capacity_of(budget_s=budget_s, jobs=jobs, costs=costs)
    unique_ids = list(dict.fromkeys(chosen_ids))
    # chosen ⊆ items, no duplicates, nothing lost, collection order kept.
    assert len(set(chosen)) == len(chosen)
    assert sorted(chosen + left) == sorted(unique_ids)
    assert chosen == [t for t in unique_ids if t in set(chosen)]
    # The budget is never exceeded by the estimate.
    spent = sum(cost_of(t, durations) for t in chosen)
    assert spent <= capacity.total_s + 1e-9
    assert all(cost_of(t, durations) <= capacity.per_test_s for t in chosen)
    # A left-out tier-0 test did not fit even with only tier-0 tests ahead of it.
    tier0_spent = sum(cost_of(t, durations) for t in chosen if t in tier0)
    for test_id in left:
        if test_id in tier0:
            cost = cost_of(test_id, durations)
            assert cost > capacity.per_test_s or cost > capacity.total_s - tier0_spent
    # Tier 0 goes first: adding the other tests never changes which tier-0 tests run.
    alone, _ = fit(
        [t for t in tests if t.test_id in tier0],
        budget_s=budget_s,
        jobs=jobs,
        estimates=durations,
        recency=case.recency,
        tiers=tiers,
        costs=costs,
    )
    assert [t for t in chosen if t in tier0] == alone


# --- choose ------------------------------------------------------------------


def run_choose(
    tests: Sequence[TestItem],
    *,
    tiers: frozenset[int] = frozenset({0, 1, 2, 3}),
    quarantined: frozenset[str] = frozenset(),
    skip_quarantined: bool = False,
    shard: tuple[int, int] | None = None,
    budget_s: float | None = None,
    jobs: int = 1,
    estimates: Mapping[str, float] | None = None,
    recency: Mapping[str, float] | None = None,
    costs: FixedCosts = NO_COSTS,
) -> tuple[list[str], dict[str, LeftOut], float]:
    selection = choose(
        tests,
        tiers=tiers,
        tier_map=DEFAULT_TIERS,
        quarantined=quarantined,
        skip_quarantined=skip_quarantined,
        shard=shard,
        budget_s=budget_s,
        jobs=jobs,
        estimates=estimates or {},
        recency=recency or {},
        costs=costs,
    )
    reasons = [entry.reason for entry in selection.left_out]
    assert len(reasons) == len(set(reasons))
    return ids(selection.chosen), {e.reason: e for e in selection.left_out}, selection.estimate_s


SUITE = [
    item("t.py::smoke", "smoke"),
    item("t.py::plain"),
    item("t.py::slow", "slow"),
    item("t.py::flaky", "regression"),
    item("t.py::race", "concurrency"),
]


def test_choose_without_filters_keeps_everything() -> None:
    chosen, left, estimate = run_choose(SUITE + SUITE[:2], estimates={"t.py::slow": 10.0})
    assert chosen == ids(SUITE)
    assert left == {}
    assert estimate == pytest.approx(4 * DEFAULT_ESTIMATE_S + 10.0)


def test_choose_filters_by_tier() -> None:
    chosen, left, _ = run_choose(SUITE, tiers=frozenset({0, 1}), estimates={"t.py::slow": 10.0})
    assert chosen == ["t.py::smoke", "t.py::plain", "t.py::flaky"]
    assert left == {
        "tier": LeftOut(
            reason="tier",
            count=2,
            estimate_s=10.0 + DEFAULT_ESTIMATE_S,
            test_ids=("t.py::slow", "t.py::race"),
        )
    }


def test_choose_runs_quarantined_tests_unless_told_to_skip_them() -> None:
    quarantined = frozenset({"t.py::flaky", "t.py::slow"})
    chosen, left, _ = run_choose(SUITE, tiers=frozenset({0, 1}), quarantined=quarantined)
    assert "t.py::flaky" in chosen
    assert "quarantine" not in left
    chosen, left, _ = run_choose(
        SUITE, tiers=frozenset({0, 1}), quarantined=quarantined, skip_quarantined=True
    )
    assert chosen == ["t.py::smoke", "t.py::plain"]
    # slow was already out by tier: the quarantine entry counts only what it removed.
    assert left["quarantine"].test_ids == ("t.py::flaky",)
    assert left["tier"].count == 2


def test_choose_shards_then_budgets() -> None:
    tests = items(40)
    estimates = {t.test_id: 1.0 for t in tests}
    shards = [run_choose(tests, shard=(k, 2), budget_s=12.0, estimates=estimates) for k in (1, 2)]
    for chosen, left, estimate in shards:
        assert left["shard"].count == 20
        assert len(chosen) == 10  # 12 s * 0.9 = 10.8 s of capacity per shard
        assert left["budget"].count == 10
        assert estimate <= 12.0
    assert not set(shards[0][0]) & set(shards[1][0])


def test_choose_reports_left_out_in_filter_order() -> None:
    selection = choose(
        SUITE,
        tiers=frozenset({0, 1, 2}),
        tier_map=DEFAULT_TIERS,
        quarantined=frozenset({"t.py::race"}),
        skip_quarantined=True,
        shard=None,
        budget_s=1.2,
        jobs=1,
        estimates={},
        recency={},
        costs=NO_COSTS,
    )
    assert [entry.reason for entry in selection.left_out] == ["tier", "quarantine", "budget"]
    assert ids(selection.chosen) == ["t.py::smoke"]


def test_choose_rejects_zero_jobs() -> None:
    with pytest.raises(ValueError, match="invalid jobs 0"):
        run_choose([], jobs=0)


@settings(max_examples=80, deadline=None)
@given(
    markers=st.lists(st.sampled_from(["", "smoke", "slow", "use_case", "fuzz"]), max_size=25),
    tiers=st.frozensets(st.integers(0, 3)),
    budget_s=st.one_of(st.none(), st.floats(0.0, 50.0)),
    jobs=st.integers(1, 4),
    shard_n=st.integers(1, 3),
)
def test_choose_accounts_for_every_test(
    markers: list[str], tiers: frozenset[int], budget_s: float | None, jobs: int, shard_n: int
) -> None:
    tests = [item(f"f.py::t{i}", *([m] if m else [])) for i, m in enumerate(markers)]
    estimates = {t.test_id: float(i % 5) for i, t in enumerate(tests)}
    costs = FixedCosts(startup_s=1.0, collect_s=1.0)
    chosen, left, estimate = run_choose(
        tests,
        tiers=tiers,
        shard=(1, shard_n),
        budget_s=budget_s,
        jobs=jobs,
        estimates=estimates,
        costs=costs,
    )
    out = [test_id for entry in left.values() for test_id in entry.test_ids]
    assert sorted(chosen + out) == sorted(ids(tests))
    assert all(entry.count == len(entry.test_ids) > 0 for entry in left.values())
    if budget_s is not None:
        assert estimate <= budget_s


def test_choose_keeps_only_the_changed_files_first() -> None:
    tests = [item("a.py::x", "smoke"), item("a.py::y", "slow"), item("b.py::z", "smoke")]
    selection = choose(
        tests, tiers=frozenset({0}), tier_map=DEFAULT_TIERS, quarantined=frozenset(),
        skip_quarantined=False, shard=None, budget_s=None, jobs=1, estimates={}, recency={},
        costs=NO_COSTS, files=frozenset({"a.py"}),
    )  # fmt: skip
    assert ids(selection.chosen) == ["a.py::x"]
    assert [(lo.reason, lo.test_ids) for lo in selection.left_out] == [
        ("changed", ("b.py::z",)), ("tier", ("a.py::y",))
    ]  # fmt: skip
