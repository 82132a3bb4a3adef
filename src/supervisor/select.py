"""Choosing which tests run: tiers, quarantine, shard, budget — in that order.

Every function here is pure: it takes the collected tests plus what earlier
runs learned (duration estimates, failure recency, quarantine) and returns
values. No clock, no files, no processes; the pipeline supplies the inputs.

Import this module as ``supervisor.select`` (never as top-level ``select``,
which would shadow the standard library's module of that name).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from supervisor.model import Outcome, TestItem

DEFAULT_TIERS: Mapping[str, int] = MappingProxyType(
    {
        "smoke": 0,
        "contract": 1,
        "property": 1,
        "regression": 1,
        "fuzz": 1,
        "integration": 1,
        "concurrency": 2,
        "conformance": 2,
        "use_case": 2,
        "perf": 3,
        "stress": 3,
        "e2e": 3,
        "slow": 3,
    }
)
"""Marker name → tier. Tier 0 is the quick smoke set, tier 3 the slow tail."""

MAX_TIER = 3
DEFAULT_TIER = 1
"""The tier of a test that carries no marker named in the tier map."""

DEFAULT_ESTIMATE_S = 1.0
"""Assumed duration of a test with no usable estimate (never run, or a broken value)."""

MIN_TEST_COST_S = 0.001
"""No test is free: even an instant test costs this much budget, so a budget
cannot admit an unbounded number of zero-duration tests."""

PARALLEL_EFFICIENCY = 0.9
"""Fraction of each extra worker's time that does useful work when jobs > 1
(CPU, I/O and scheduling contention between concurrent children)."""

BUDGET_MARGIN = 0.10
"""Fraction of the wall-clock budget kept in reserve for estimate error."""

_TIER_PART = re.compile(r"(\d+)(?:-(\d+))?", re.ASCII)
_SHARD = re.compile(r"(\d+)/(\d+)", re.ASCII)


@dataclass(frozen=True, kw_only=True)
class FixedCosts:
    """Time every worker pays before its first test runs."""

    startup_s: float
    """Starting one pytest child."""
    collect_s: float
    """Collecting the suite inside that child."""


@dataclass(frozen=True, kw_only=True)
class LeftOut:
    """The tests one filter removed, and why."""

    reason: str
    """One of ``"changed"``, ``"--failed"``, ``"tier"``, ``"quarantine"``, ``"shard"``,
    ``"budget"``."""
    count: int
    estimate_s: float
    """Sum of the left-out tests' estimates (tests alone, no fixed costs)."""
    test_ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Selection:
    """The outcome of :func:`choose`."""

    chosen: tuple[TestItem, ...]
    """The tests to run, in collection order."""
    left_out: tuple[LeftOut, ...]
    """One entry per filter that removed something, in filter order."""
    estimate_s: float
    """Expected wall clock of ``chosen`` on the given jobs, fixed costs included."""


@dataclass(frozen=True, kw_only=True)
class Capacity:
    """How much test time a budget admits (see :func:`capacity_of`)."""

    total_s: float
    """Test-seconds summed over all workers."""
    per_test_s: float
    """The longest single test that can finish on one worker."""


def tier_of(markers: Sequence[str], tiers: Mapping[str, int]) -> int:
    """A test's tier: the highest tier among its mapped markers, else ``DEFAULT_TIER``.

    The highest wins because a marker like ``slow`` is a cost warning that
    must not be cancelled by also being ``smoke``.
    """
    mapped = [tiers[marker] for marker in markers if marker in tiers]
    return max(mapped) if mapped else DEFAULT_TIER


def _tier_spec_error(text: str, problem: str = "") -> ValueError:
    detail = f"{problem}; " if problem else ""
    return ValueError(
        f"invalid tier spec '{text}': {detail}tiers are 0 to {MAX_TIER}, written 0, 0-2 or 1,3"
    )


def parse_tiers(text: str) -> frozenset[int]:
    """Parse ``--tier``: comma-separated tiers or inclusive ranges (``0``, ``0-2``, ``1,3``)."""
    chosen: set[int] = set()
    for part in text.split(","):
        match = _TIER_PART.fullmatch(part.strip())
        if match is None:
            raise _tier_spec_error(text)
        low = int(match.group(1))
        high = low if match.group(2) is None else int(match.group(2))
        if high > MAX_TIER:
            raise _tier_spec_error(text)
        if low > high:
            raise _tier_spec_error(text, f"range {low}-{high} runs backwards")
        chosen.update(range(low, high + 1))
    return frozenset(chosen)


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``--shard K/N`` into ``(K, N)``: 1-based, ``1 <= K <= N``."""
    match = _SHARD.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid shard '{text}': expected K/N such as 1/4")
    k, n = int(match.group(1)), int(match.group(2))
    if not 1 <= k <= n:
        raise ValueError(f"invalid shard '{text}': expected K/N with 1 <= K <= N, such as 1/4")
    return k, n


def unique(items: Iterable[TestItem]) -> tuple[TestItem, ...]:
    """The items with repeated test ids dropped; the first occurrence keeps its place."""
    seen: set[str] = set()
    kept: list[TestItem] = []
    for item in items:
        if item.test_id not in seen:
            seen.add(item.test_id)
            kept.append(item)
    return tuple(kept)


def estimate_of(test_id: str, estimates: Mapping[str, float]) -> float:
    """A test's expected duration; ``DEFAULT_ESTIMATE_S`` when unknown, negative or not finite."""
    value = estimates.get(test_id)
    if value is None or not math.isfinite(value) or value < 0:
        return DEFAULT_ESTIMATE_S
    return value


def cost_of(test_id: str, estimates: Mapping[str, float]) -> float:
    """What a test charges against a budget: its estimate, at least ``MIN_TEST_COST_S``."""
    return max(estimate_of(test_id, estimates), MIN_TEST_COST_S)


def parallel_efficiency(jobs: int) -> float:
    """Useful fraction of worker time: 1.0 alone, ``PARALLEL_EFFICIENCY`` when sharing."""
    if jobs < 1:
        raise ValueError(f"invalid jobs {jobs}: expected 1 or more")
    return 1.0 if jobs == 1 else PARALLEL_EFFICIENCY


def capacity_of(*, budget_s: float, jobs: int, costs: FixedCosts) -> Capacity:
    """The test time a wall-clock budget admits.

    The margin is wall-clock time held back on every worker (not worker-seconds
    in total), so the estimated end of the run stays ``BUDGET_MARGIN`` short of
    the budget whatever ``jobs`` is. Each worker then pays the fixed costs once,
    and contention shrinks the rest by the parallel efficiency.
    """
    per_worker = budget_s * (1.0 - BUDGET_MARGIN) - costs.startup_s - costs.collect_s
    per_worker = max(per_worker, 0.0)
    return Capacity(
        total_s=per_worker * jobs * parallel_efficiency(jobs),
        per_test_s=per_worker,
    )


def wall_estimate(
    items: Sequence[TestItem], *, jobs: int, estimates: Mapping[str, float], costs: FixedCosts
) -> float:
    """Expected wall clock of running ``items`` on ``jobs`` workers; 0.0 when there are none.

    The tests take their summed cost spread over the workers (slowed by
    contention), or their longest single test, whichever is more.
    """
    if not items:
        return 0.0
    spent = [cost_of(item.test_id, estimates) for item in items]
    spread = sum(spent) / (jobs * parallel_efficiency(jobs))
    return costs.startup_s + costs.collect_s + max(spread, max(spent))


def stable_bucket(test_id: str, n: int) -> int:
    """A 0-based bucket for a test id that every machine and Python agrees on.

    sha256 rather than ``hash()``: the latter is salted per process.
    """
    digest = hashlib.sha256(test_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % n


def shard_of(
    items: Sequence[TestItem],
    k: int,
    n: int,
    estimates: Mapping[str, float],
    known: frozenset[str],
) -> tuple[TestItem, ...]:
    """The tests of shard ``k`` of ``n`` (1-based), in input order.

    Every shard of one run computes the same partition from the same inputs:
    tests with no history (not in ``known``) go to the bucket their id hashes
    to, so a new test never moves the others; tests with history then go
    longest-first to the least-loaded shard (ties: lowest shard index; equal
    estimates: sorted by id), which balances the learned time on top.
    """
    if not 1 <= k <= n:
        raise ValueError(f"invalid shard {k}/{n}: expected 1 <= K <= N")
    tests = unique(items)
    loads = [0.0] * n
    owner: dict[str, int] = {}
    for item in tests:
        if item.test_id not in known:
            owner[item.test_id] = stable_bucket(item.test_id, n)
            loads[owner[item.test_id]] += estimate_of(item.test_id, estimates)
    with_history = sorted(
        (item.test_id for item in tests if item.test_id in known),
        key=lambda test_id: (-estimate_of(test_id, estimates), test_id),
    )
    for test_id in with_history:
        lightest = min(range(n), key=lambda shard: (loads[shard], shard))
        owner[test_id] = lightest
        loads[lightest] += estimate_of(test_id, estimates)
    return tuple(item for item in tests if owner[item.test_id] == k - 1)


def _priority(
    position: int,
    test_id: str,
    *,
    estimates: Mapping[str, float],
    recency: Mapping[str, float],
    tier_of_item: Mapping[str, int],
) -> tuple[int, int, float, float, int]:
    """Sort key for the knapsack: smaller goes first.

    Tier 0 first; then recently failing tests (most recent first), since a
    regression is what a short run most needs to catch; then the most tests per
    second (every other test is worth 1.0, so cheaper first); then collection order.
    """
    tier_rank = 0 if tier_of_item.get(test_id, DEFAULT_TIER) == 0 else 1
    recent = recency.get(test_id, 0.0)
    recent_rank = 0 if recent > 0 else 1
    value_per_s = 1.0 / cost_of(test_id, estimates)
    return (tier_rank, recent_rank, -max(recent, 0.0), -value_per_s, position)


def fit_budget(
    items: Sequence[TestItem],
    *,
    budget_s: float,
    jobs: int,
    estimates: Mapping[str, float],
    recency: Mapping[str, float],
    tier_of_item: Mapping[str, int],
    costs: FixedCosts,
) -> tuple[tuple[TestItem, ...], tuple[str, ...]]:
    """Greedy knapsack: the tests that fit ``budget_s``, and the ids left out.

    Tests are taken in :func:`_priority` order while their cost fits the
    remaining capacity (:func:`capacity_of`); one that does not fit is skipped
    and smaller ones after it are still tried. A test longer than one worker's
    share can never fit. Both results keep collection order.
    """
    tests = unique(items)
    capacity = capacity_of(budget_s=budget_s, jobs=jobs, costs=costs)
    ranked = sorted(
        range(len(tests)),
        key=lambda i: _priority(
            i,
            tests[i].test_id,
            estimates=estimates,
            recency=recency,
            tier_of_item=tier_of_item,
        ),
    )
    remaining = capacity.total_s
    taken: set[int] = set()
    for i in ranked:
        cost = cost_of(tests[i].test_id, estimates)
        if cost <= remaining and cost <= capacity.per_test_s:
            taken.add(i)
            remaining -= cost
    chosen = tuple(item for i, item in enumerate(tests) if i in taken)
    left = tuple(item.test_id for i, item in enumerate(tests) if i not in taken)
    return chosen, left


def _left_out(
    reason: str,
    before: Sequence[TestItem],
    after: Sequence[TestItem],
    estimates: Mapping[str, float],
) -> list[LeftOut]:
    """The entry for one filter: what is in ``before`` but not ``after`` (empty list if nothing)."""
    kept = {item.test_id for item in after}
    gone = tuple(item.test_id for item in before if item.test_id not in kept)
    if not gone:
        return []
    total = sum(estimate_of(test_id, estimates) for test_id in gone)
    return [LeftOut(reason=reason, count=len(gone), estimate_s=total, test_ids=gone)]


def choose(
    items: Sequence[TestItem],
    *,
    tiers: frozenset[int],
    tier_map: Mapping[str, int],
    quarantined: frozenset[str],
    skip_quarantined: bool,
    shard: tuple[int, int] | None,
    budget_s: float | None,
    jobs: int,
    estimates: Mapping[str, float],
    recency: Mapping[str, float],
    costs: FixedCosts,
    known: frozenset[str] | None = None,
    only: frozenset[str] | None = None,
    files: frozenset[str] | None = None,
) -> Selection:
    """Apply the filters in order — changed files (``files``: ``--changed``'s test files;
    ``None``: every file), ``only`` (``--failed``'s test ids), tier, quarantine, shard,
    budget — to the collection.

    Quarantine removes tests only with ``skip_quarantined`` (otherwise they run
    and just do not gate). Sharding comes before the budget so that every shard
    splits the same set and each shard then fits its own budget. A test has
    history for sharding when it is in ``known`` (default: when ``estimates``
    has an entry for it); the others are placed by a stable hash.
    """
    parallel_efficiency(jobs)  # reject jobs < 1 even when nothing gets chosen
    collected = unique(items)
    tests = collected if files is None else tuple(t for t in collected if t.file in files)
    left = _left_out("changed", collected, tests, estimates)
    if only is not None:
        kept = tuple(item for item in tests if item.test_id in only)
        left += _left_out("--failed", tests, kept, estimates)
        tests = kept
    tier_by_id = {item.test_id: tier_of(item.markers, tier_map) for item in tests}
    in_tier = tuple(item for item in tests if tier_by_id[item.test_id] in tiers)
    left += _left_out("tier", tests, in_tier, estimates)
    runnable = in_tier
    if skip_quarantined:
        runnable = tuple(item for item in in_tier if item.test_id not in quarantined)
        left += _left_out("quarantine", in_tier, runnable, estimates)
    in_shard = runnable
    if shard is not None:
        in_shard = shard_of(
            runnable, shard[0], shard[1], estimates,
            frozenset(estimates) if known is None else known,
        )  # fmt: skip
        left += _left_out("shard", runnable, in_shard, estimates)
    chosen = in_shard
    if budget_s is not None:
        chosen, _ = fit_budget(
            in_shard,
            budget_s=budget_s,
            jobs=jobs,
            estimates=estimates,
            recency=recency,
            tier_of_item=tier_by_id,
            costs=costs,
        )
        left += _left_out("budget", in_shard, chosen, estimates)
    estimate = wall_estimate(chosen, jobs=jobs, estimates=estimates, costs=costs)
    return Selection(chosen=chosen, left_out=tuple(left), estimate_s=estimate)


RERUN = frozenset(
    {Outcome.FAILED, Outcome.ERROR, Outcome.CRASHED, Outcome.HUNG, Outcome.ORDER_DEPENDENT}
)
"""The final outcomes ``--failed`` runs again (``flaky`` passed in the end: it does not)."""


@dataclass(frozen=True, kw_only=True)
class Rerun:
    """What ``--failed`` keeps of the collection, and what it tells the user."""

    keep: frozenset[str] | None
    """The test ids to run (``None``: all of them)."""
    note: str
    """One line: what was kept, or why everything runs."""


def rerun_failed(
    items: Sequence[TestItem], last: Mapping[str, Outcome] | None, known: frozenset[str]
) -> Rerun:
    """``--failed``: the tests whose final outcome in the last run is in ``RERUN``, plus
    the tests that are new since (collected now, unknown to ``durations.json``: ``known``).

    ``last``: each test id's final outcome in the last run (``None``: no last run
    recorded). A file that failed to import last time (its record's id is the
    path) brings all its tests. As pytest's ``--lf`` does, a run with nothing to
    go on — no last run, or nothing failed and nothing is new — runs everything
    and says so.
    """
    if last is None:
        return Rerun(keep=None, note="--failed: no last run is recorded; running all")
    failing = {test_id for test_id, outcome in last.items() if outcome in RERUN}
    broken_files = {test_id for test_id in failing if "::" not in test_id}
    kept: list[TestItem] = []
    again = new = 0
    for item in items:
        if item.test_id in failing or item.file in broken_files:
            again += 1
        elif item.test_id not in known:
            new += 1
        else:
            continue
        kept.append(item)
    if not kept:
        return Rerun(
            keep=None, note="--failed: no test failed in the last run and none is new; running all"
        )
    collected = {item.test_id for item in items}
    # A session's own error (``<session>::child-0003``) names no test to run again.
    gone = sum(1 for t in failing if "::" in t and not t.startswith("<") and t not in collected)
    vanished = f"; {gone} no longer collected" if gone else ""
    return Rerun(
        keep=frozenset(item.test_id for item in kept),
        note=f"--failed: {again} test(s) that failed in the last run, {new} new{vanished}",
    )
