"""Unit and property tests for ``supervisor.plan``: plain values, no mocks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import plan
from supervisor.model import Chunk, TestItem
from supervisor.plan import (
    CHUNKS_PER_JOB,
    MIN_CHUNK_S,
    balance,
    choose,
    lanes,
    make_chunks,
    shares,
)
from supervisor.select import DEFAULT_ESTIMATE_S


def item(test_id: str) -> TestItem:
    return TestItem(test_id=test_id, file=test_id.split("::", 1)[0])


def suite(files: Mapping[str, int]) -> list[TestItem]:
    """``files`` maps a file name to how many tests it has."""
    return [item(f"{name}::test_{i:03d}") for name, count in files.items() for i in range(count)]


def ids(chunk: Chunk) -> list[str]:
    return [t.test_id for t in chunk.tests]


def files_of(chunk: Chunk) -> list[str]:
    return list(dict.fromkeys(t.file for t in chunk.tests))


def makespan(assignment: Sequence[Sequence[Chunk]]) -> float:
    return max(sum(c.estimate_s for c in worker) for worker in assignment)


def test_no_tests_no_chunks() -> None:
    assert make_chunks([], jobs=4, estimates={}) == ()


def test_a_small_suite_is_one_chunk() -> None:
    tests = suite({"a.py": 3, "b.py": 2})
    estimates = {t.test_id: 0.01 for t in tests}
    (chunk,) = make_chunks(tests, jobs=4, estimates=estimates, start_index=7)
    assert chunk.index == 7
    assert chunk.tests == tuple(tests)
    assert chunk.estimate_s == pytest.approx(0.05)


def test_unknown_tests_count_the_default_estimate() -> None:
    chunks = make_chunks(suite({"a.py": 2}), jobs=1, estimates={})
    assert sum(c.estimate_s for c in chunks) == 2 * DEFAULT_ESTIMATE_S


def test_small_files_are_packed_in_order_up_to_the_target() -> None:
    # 2 * CHUNKS_PER_JOB files of 0.4 s on 1 job: the target is 0.8 s, so two per chunk.
    files = 2 * CHUNKS_PER_JOB
    tests = suite({f"f{i:02d}.py": 2 for i in range(files)})
    estimates = {t.test_id: 0.2 for t in tests}
    assert 0.4 * files / CHUNKS_PER_JOB >= MIN_CHUNK_S
    chunks = make_chunks(tests, jobs=1, estimates=estimates)
    assert [files_of(c) for c in chunks] == [
        [f"f{i:02d}.py", f"f{i + 1:02d}.py"] for i in range(0, files, 2)
    ]
    assert all(ids(c) == sorted(ids(c)) for c in chunks)


def test_a_big_file_is_split_into_consecutive_slices() -> None:
    # one file on 2 jobs → 2 * CHUNKS_PER_JOB slices of 5 one-second tests each.
    slices = 2 * CHUNKS_PER_JOB
    tests = suite({"big.py": 5 * slices})
    estimates = {t.test_id: 1.0 for t in tests}
    chunks = make_chunks(tests, jobs=2, estimates=estimates)
    assert len(chunks) == slices
    assert all(c.estimate_s == 5.0 for c in chunks)
    assert [t for c in chunks for t in c.tests] == tests  # equal sizes: order kept
    assert [c.index for c in chunks] == list(range(slices))


def test_a_file_just_over_the_target_stays_whole() -> None:
    # small.py is a little over one target but under 1.5: cutting it would set
    # its module fixtures up twice for no better balance.
    rest = 32
    target = (rest + 6) / CHUNKS_PER_JOB
    assert target < 6 < 1.5 * target, "the scenario needs small.py just over one target"
    tests = suite({"small.py": 6, "rest.py": rest})
    estimates = {t.test_id: 1.0 for t in tests}
    chunks = make_chunks(tests, jobs=1, estimates=estimates)
    assert [ids(c) for c in chunks if "small.py" in files_of(c)] == [
        [f"small.py::test_{i:03d}" for i in range(6)]
    ]


def test_chunks_come_longest_first_numbered_from_start_index() -> None:
    tests = suite({"a.py": 1, "b.py": 1, "c.py": 1})
    estimates = {"a.py::test_000": 3.0, "b.py::test_000": 9.0, "c.py::test_000": 5.0}
    chunks = make_chunks(tests, jobs=2, estimates=estimates, start_index=10)
    assert [files_of(c) for c in chunks] == [["b.py"], ["c.py"], ["a.py"]]
    assert [c.index for c in chunks] == [10, 11, 12]
    assert [c.estimate_s for c in chunks] == [9.0, 5.0, 3.0]


def test_one_worker_keeps_pytests_collection_order() -> None:
    tests = suite({"a.py": 1, "b.py": 1, "c.py": 1})
    estimates = {"a.py::test_000": 3.0, "b.py::test_000": 9.0, "c.py::test_000": 5.0}
    chunks = make_chunks(tests, jobs=1, estimates=estimates)
    assert [t for c in chunks for t in c.tests] == tests


def test_interleaved_input_keeps_each_file_together() -> None:
    a0, a1, b0 = item("a.py::x"), item("a.py::y"), item("b.py::z")
    estimates = {"a.py::x": 0.01, "a.py::y": 0.01, "b.py::z": 0.01}
    (chunk,) = make_chunks([a0, b0, a1], jobs=1, estimates=estimates)
    assert chunk.tests == (a0, a1, b0)


def test_a_test_given_twice_is_planned_once() -> None:
    tests = suite({"a.py": 3})
    # 3 s at the default estimate against a 2 s target: split, each test once.
    chunks = make_chunks(tests + tests[:2], jobs=2, estimates={})
    assert sorted(t.test_id for c in chunks for t in c.tests) == [t.test_id for t in tests]


def test_zero_jobs_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid jobs 0"):
        make_chunks(suite({"a.py": 1}), jobs=0, estimates={})
    with pytest.raises(ValueError, match="invalid jobs 0"):
        balance([], 0)


def test_balance_hands_each_chunk_to_the_worker_free_first() -> None:
    chunks = [Chunk(index=i, tests=(), estimate_s=s) for i, s in enumerate([5.0, 4.0, 3.0, 3.0])]
    assignment = balance(chunks, 2)
    assert [[c.index for c in worker] for worker in assignment] == [[0, 3], [1, 2]]
    assert makespan(assignment) == 8.0


def test_balance_with_more_workers_than_chunks() -> None:
    chunks = [Chunk(index=0, tests=(), estimate_s=1.0)]
    assert balance(chunks, 3) == [[chunks[0]], [], []]


def test_a_realistic_suite_balances_within_4_3_of_the_lower_bound() -> None:
    sizes = {f"tests/test_{i:02d}.py": 3 + (i * 7) % 11 for i in range(30)}
    tests = suite(sizes)
    estimates = {t.test_id: 0.1 + (n * 13 % 17) / 10 for n, t in enumerate(tests)}
    for jobs in (1, 2, 4, 8):
        chunks = make_chunks(tests, jobs=jobs, estimates=estimates)
        total = sum(c.estimate_s for c in chunks)
        bound = max(total / jobs, max(c.estimate_s for c in chunks))
        assert makespan(balance(chunks, jobs)) <= 4 / 3 * bound


FILES = st.sampled_from([f"f{i}.py" for i in range(6)])


@st.composite
def planned(draw: st.DrawFn) -> tuple[list[TestItem], dict[str, float], int]:
    names = draw(st.lists(st.tuples(FILES, st.integers(0, 40)), max_size=60))
    tests = [item(f"{file}::t{n}") for file, n in names]
    durations = draw(
        st.lists(
            st.one_of(st.none(), st.floats(0.0, 30.0)), min_size=len(tests), max_size=len(tests)
        )
    )
    estimates = {t.test_id: d for t, d in zip(tests, durations, strict=True) if d is not None}
    return tests, estimates, draw(st.integers(1, 8))


@settings(max_examples=150, deadline=None)
@given(case=planned(), start=st.integers(0, 5))
def test_every_test_is_in_exactly_one_chunk(
    case: tuple[list[TestItem], dict[str, float], int], start: int
) -> None:
    tests, estimates, jobs = case
    chunks = make_chunks(tests, jobs=jobs, estimates=estimates, start_index=start)
    unique_tests = list(dict.fromkeys(tests))
    planned_tests = [t for c in chunks for t in c.tests]
    assert sorted(planned_tests, key=lambda t: t.test_id) == sorted(
        unique_tests, key=lambda t: t.test_id
    )
    assert all(c.tests for c in chunks)
    assert [c.index for c in chunks] == list(range(start, start + len(chunks)))
    sizes = [c.estimate_s for c in chunks]
    if jobs > 1:
        # Longest first, except that the slices of one split file keep the file's
        # order among the places they hold (a worker runs them in queue order).
        places: dict[str, list[int]] = {}
        for n, chunk in enumerate(chunks):
            if len(files_of(chunk)) == 1:
                places.setdefault(files_of(chunk)[0], []).append(n)
        longest = list(sizes)
        for positions in places.values():
            ranked = sorted((sizes[p] for p in positions), reverse=True)
            for n, size in zip(positions, ranked, strict=True):
                longest[n] = size
        assert longest == sorted(sizes, reverse=True)
    else:  # one worker: files run in pytest's order (of first appearance)
        assert list(dict.fromkeys(t.file for t in planned_tests)) == list(
            dict.fromkeys(t.file for t in unique_tests)
        )
    position = {t.test_id: i for i, t in enumerate(unique_tests)}
    for chunk in chunks:
        # A file's tests within a chunk are contiguous and in collection order.
        files = [t.file for t in chunk.tests]
        assert files == sorted(files, key=files.index)
        order = [position[t.test_id] for t in chunk.tests]
        for file in set(files):
            mine = [p for p, f in zip(order, files, strict=True) if f == file]
            assert mine == sorted(mine)


@settings(max_examples=150, deadline=None)
@given(case=planned())
def test_dispatch_is_within_the_list_scheduling_bound(
    case: tuple[list[TestItem], dict[str, float], int],
) -> None:
    tests, estimates, jobs = case
    chunks = make_chunks(tests, jobs=jobs, estimates=estimates)
    assignment = balance(chunks, jobs)
    assert sorted(c.index for worker in assignment for c in worker) == [c.index for c in chunks]
    if chunks:
        total = sum(c.estimate_s for c in chunks)
        largest = max(c.estimate_s for c in chunks)
        assert makespan(assignment) <= total / jobs + largest + 1e-9


def test_chunks_holding_a_first_test_are_dispatched_first() -> None:
    # Under a budget the smoke tests and recent failures must not wait behind
    # bigger chunks: an estimate that was too low should cost the rest.
    tests = suite({"big.py": 40, "small.py": 2, "mid.py": 20})
    estimates = {t.test_id: 0.1 for t in tests}
    plain = make_chunks(tests, jobs=2, estimates=estimates)
    assert files_of(plain[-1]) == ["small.py"], "without priorities the small chunk is last"
    chunks = make_chunks(
        tests, jobs=2, estimates=estimates, first=frozenset({"small.py::test_001"})
    )
    assert "small.py" in files_of(chunks[0])
    rest = [c.estimate_s for c in chunks[1:]]
    assert rest == sorted(rest, reverse=True), "the others stay longest first"
    assert sorted(t.test_id for c in chunks for t in c.tests) == sorted(ids_of(tests))


def ids_of(tests: Sequence[TestItem]) -> list[str]:
    return [t.test_id for t in tests]


def _chunk(index: int, seconds: float, *files: str) -> Chunk:
    tests = tuple(TestItem(test_id=f"{f}::t{index}", file=f) for f in files)
    return Chunk(index=index, tests=tests, estimate_s=seconds)


def test_lanes_never_outnumber_the_chunks() -> None:
    chunks = [_chunk(0, 3.0, "a.py"), _chunk(1, 1.0, "b.py")]
    assert [[c.index for c in lane] for lane in lanes(chunks, 4)] == [[0], [1]]
    assert [[c.index for c in lane] for lane in lanes(chunks[:1], 2)] == [[0]]
    assert lanes([], 3) == []


def test_lanes_deal_longest_first_to_the_least_loaded() -> None:
    chunks = [_chunk(0, 5.0, "a.py"), _chunk(1, 3.0, "b.py"), _chunk(2, 2.0, "c.py"),
              _chunk(3, 1.0, "d.py")]  # fmt: skip
    dealt = lanes(chunks, 2)
    assert [[c.index for c in lane] for lane in dealt] == [[0, 3], [1, 2]]


def test_lanes_of_chunks_without_estimates_are_never_empty() -> None:
    chunks = [_chunk(i, 0.0, f"f{i}.py") for i in range(3)]
    assert [len(lane) for lane in lanes(chunks, 3)] == [1, 1, 1]


@given(st.lists(st.floats(min_value=0, max_value=100), max_size=30), st.integers(1, 8))
@settings(max_examples=60, deadline=None)
def test_lanes_hold_every_chunk_once(seconds: list[float], jobs: int) -> None:
    chunks = [_chunk(i, s, f"f{i}.py") for i, s in enumerate(seconds)]
    dealt = lanes(chunks, jobs)
    assert len(dealt) == min(jobs, len(chunks))  # distinct files: one unit per chunk
    assert all(dealt)
    assert sorted(c.index for lane in dealt for c in lane) == list(range(len(chunks)))


def test_lanes_keep_the_slices_of_a_file_together_unless_it_is_too_big() -> None:
    a = [_chunk(i, 1.0, "a.py") for i in range(2)]
    b = [_chunk(2 + i, 1.0, "b.py") for i in range(2)]
    dealt = lanes([a[0], b[0], a[1], b[1]], 2)
    assert [plan.files_of(lane) for lane in dealt] == [("a.py",), ("b.py",)]
    big = [_chunk(i, 1.0, "big.py") for i in range(4)]
    dealt = lanes([*big, _chunk(4, 1.0, "small.py")], 2)
    assert sorted(len(lane) for lane in dealt) == [2, 3]  # the big file is cut


def test_files_of_lists_each_file_once_in_order() -> None:
    chunks = [_chunk(0, 1.0, "b.py", "a.py"), _chunk(1, 1.0, "a.py", "c.py")]
    assert plan.files_of(chunks) == ("b.py", "a.py", "c.py")


def test_a_worker_runs_only_chunks_of_files_it_collected() -> None:
    chunk = _chunk(0, 1.0, "a.py", "b.py")
    assert plan.runnable(chunk, None)
    assert plan.runnable(chunk, {"a.py", "b.py", "c.py"})
    assert not plan.runnable(chunk, {"a.py"})


def test_choose_prefers_the_own_lane_and_spares_a_lane_still_collecting() -> None:
    queue = [_chunk(0, 1.0, "a.py"), _chunk(1, 1.0, "b.py"), _chunk(2, 1.0, "c.py")]
    owner = {0: 1, 1: 0, 2: 2}

    def whole(chunks: list[Chunk], awaited: set[int]) -> int | None:
        return plan.choose(chunks, slot=0, scope=None, owner=owner, awaited=awaited)

    def lane(chunks: list[Chunk], awaited: set[int]) -> int | None:
        return plan.choose(chunks, slot=2, scope={"c.py"}, owner=owner, awaited=awaited)

    assert whole(queue, set()) == 1  # its own lane first
    rest = [queue[0], queue[2]]
    assert whole(rest, set()) == 0  # then any it can run
    assert whole(rest, {1}) == 1  # not lane 1's: that worker is collecting for it
    assert whole(rest, {1, 2}) is None
    assert lane(rest, {2}) == 1  # its own, even while it starts
    assert lane(rest[:1], set()) is None  # a.py was never collected


def test_lanes_keep_a_file_with_the_worker_that_collected_it() -> None:
    chunks = [_chunk(0, 5.0, "a.py"), _chunk(1, 3.0, "b.py"), _chunk(2, 2.0, "c.py"),
              _chunk(3, 1.0, "d.py")]  # fmt: skip
    # Slot 1 collected a.py (the biggest): a.py stays in lane 1, the rest balance around it.
    dealt = lanes(chunks, 2, held={"a.py": 1})
    assert [[c.index for c in lane] for lane in dealt] == [[1, 2], [0, 3]]


def test_held_files_yield_to_balance_when_one_worker_collected_everything() -> None:
    chunks = [_chunk(i, 1.0, f"f{i}.py") for i in range(4)]
    dealt = lanes(chunks, 2, held={f"f{i}.py": 0 for i in range(4)})
    assert [len(lane) for lane in dealt] == [2, 2], "lane 0 takes only its fair share"
    assert {c.index for c in dealt[0]} <= {0, 1, 2, 3}


def test_lanes_with_held_files_keep_their_slot_numbers() -> None:
    chunks = [_chunk(0, 1.0, "a.py")]
    dealt = lanes(chunks, 2, held={"a.py": 1})
    # One chunk: one lane (slot 0) — a lane past the chunk count is never made.
    assert [[c.index for c in lane] for lane in dealt] == [[0]]
    # A file bigger than a fair share is split; its holder keeps the first slice.
    two = [_chunk(0, 1.0, "a.py"), _chunk(1, 1.0, "a.py")]
    dealt = lanes(two, 2, held={"a.py": 1})
    assert [[c.index for c in lane] for lane in dealt] == [[1], [0]]


def test_shares_name_each_lanes_tests_of_the_files_split_over_lanes() -> None:
    dealt = [[_chunk(0, 1.0, "big.py"), _chunk(1, 1.0, "a.py")], [_chunk(2, 1.0, "big.py")]]
    assert shares(dealt) == {0: ("big.py::t0",), 1: ("big.py::t2",)}
    assert shares([[_chunk(0, 1.0, "a.py")], [_chunk(1, 1.0, "b.py")]]) == {}


def test_a_steal_that_costs_more_imports_than_it_runs_is_not_taken() -> None:
    queue = [_chunk(0, 0.5, "big.py"), _chunk(1, 3.0, "big.py")]
    owner = {0: 0, 1: 0}
    costs = {"big.py": 2.0}
    # Slot 1 has not imported big.py: a 0.5 s slice is not worth 2 s of import.
    assert choose(queue[:1], slot=1, scope=None, owner=owner, awaited=(), costs=costs) is None
    assert choose(queue, slot=1, scope=None, owner=owner, awaited=(), costs=costs) == 1
    held = choose(queue[:1], slot=1, scope=None, owner=owner, awaited=(), held={"big.py"},
                  costs=costs)  # fmt: skip
    assert held == 0, "a file it holds costs nothing more"


def test_a_file_is_split_over_lanes_only_when_its_slices_outweigh_its_import() -> None:
    chunks = [_chunk(0, 1.0, "big.py"), _chunk(1, 0.2, "big.py"), _chunk(2, 0.2, "big.py")]
    split = lanes(chunks, 2, costs={"big.py": 0.1})
    assert len(split) == 2, "slices of 0.2 s are worth a 0.1 s import each"
    whole = lanes(chunks, 2, costs={"big.py": 0.5})
    assert [[c.index for c in lane] for lane in whole] == [[0, 1, 2]], "not worth 0.5 s"


@settings(max_examples=60, deadline=None)
@given(
    first=st.floats(min_value=0.01, max_value=5.0),
    rest=st.lists(st.floats(min_value=0.01, max_value=5.0), min_size=3, max_size=40),
    jobs=st.integers(min_value=1, max_value=4),
)
def test_slices_of_a_file_stay_in_file_order_in_the_queue_and_each_lane(
    first: float, rest: list[float], jobs: int
) -> None:
    """A worker runs its chunks in queue order: a file cut into slices must not run a
    later slice before an earlier one in the same process (module state would differ
    from pytest's), however the estimates make the slices' sizes differ."""
    tests = suite({"test_big.py": 1 + len(rest), "test_small.py": 3})
    estimates = {t.test_id: s for t, s in zip(tests, [first, *rest], strict=False)}
    chunks = make_chunks(tests, jobs=jobs, estimates=estimates)
    order = {t.test_id: n for n, t in enumerate(tests)}

    def big_firsts(sequence: Sequence[Chunk]) -> list[int]:
        return [order[c.tests[0].test_id] for c in sequence if files_of(c) == ["test_big.py"]]

    assert big_firsts(chunks) == sorted(big_firsts(chunks))
    for lane in lanes(chunks, jobs):
        assert big_firsts(lane) == sorted(big_firsts(lane))


def test_a_slow_later_slice_no_longer_runs_before_the_first() -> None:
    """The case found on six's test_six.py: one test of a later slice was slow, so its
    slice was longest and ran first; test_lazy in the first slice then saw its import."""
    tests = suite({"test_six.py": 30})
    estimates = {t.test_id: 0.01 for t in tests} | {tests[20].test_id: 1.0}
    chunks = make_chunks(tests, jobs=2, estimates=estimates)
    assert len(chunks) > 1
    assert chunks[0].tests[0].test_id == tests[0].test_id
