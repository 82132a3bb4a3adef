"""Planning: the chosen tests, cut into chunks that persistent workers pull.

Pure: estimates in, :class:`~supervisor.model.Chunk` values out. The rules:

* Tests of one file stay together and in collection order, because they
  share module fixtures; a file is only cut into consecutive slices when it
  alone is bigger than the target chunk size.
* The target size aims at ``CHUNKS_PER_JOB`` chunks per worker — enough to
  even out estimate error by dynamic dispatch, few enough that per-chunk
  overhead stays small — and never below ``MIN_CHUNK_S``. With one worker the
  chunks still matter: ``--fail-fast`` and the budget act between chunks.
* Chunks come back longest-first: pulled in that order by idle workers, this
  is the LPT rule, which keeps the slowest worker close to the average.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence

from supervisor.model import Chunk, TestItem
from supervisor.select import estimate_of, unique

MIN_CHUNK_S = 0.25
"""Smallest target chunk. Workers are persistent (a chunk costs one round trip
and a fixture teardown, not a pytest start-up), so chunks can be small; below
this the round trips would start to show on suites of sub-millisecond tests."""

CHUNKS_PER_JOB = 8
"""How many chunks each worker should get, so late stragglers even out."""


def _seconds(tests: Sequence[TestItem], estimates: Mapping[str, float]) -> float:
    return sum(estimate_of(item.test_id, estimates) for item in tests)


def _by_file(tests: Sequence[TestItem]) -> list[tuple[TestItem, ...]]:
    """Tests grouped by file, files in order of first appearance, tests in input order."""
    groups: dict[str, list[TestItem]] = {}
    for item in tests:
        groups.setdefault(item.file, []).append(item)
    return [tuple(group) for group in groups.values()]


def _split_file(
    tests: tuple[TestItem, ...], target: float, estimates: Mapping[str, float]
) -> list[tuple[TestItem, ...]]:
    """Cut one file into consecutive slices of about ``target`` seconds each.

    The file gets ``round(total / target)`` equal shares; each test goes to the
    share its midpoint falls in, so slices stay contiguous and in order. A file
    under 1.5 targets stays whole: cutting it would not balance better but
    would set up its module fixtures twice.
    """
    total = _seconds(tests, estimates)
    pieces = min(len(tests), int(total / target + 0.5))
    if pieces <= 1:
        return [tests]
    share = total / pieces
    slices: list[list[TestItem]] = [[] for _ in range(pieces)]
    before = 0.0
    for item in tests:
        estimate = estimate_of(item.test_id, estimates)
        slot = min(pieces - 1, int((before + estimate / 2) / share))
        slices[slot].append(item)
        before += estimate
    return [tuple(piece) for piece in slices if piece]


def _pack(
    files: list[tuple[TestItem, ...]], target: float, estimates: Mapping[str, float]
) -> list[tuple[TestItem, ...]]:
    """Small files packed in order until the next would pass ``target``; big files split."""
    groups: list[tuple[TestItem, ...]] = []
    current: list[TestItem] = []
    current_s = 0.0
    for tests in files:
        file_s = _seconds(tests, estimates)
        if current and (file_s > target or current_s + file_s > target):
            groups.append(tuple(current))  # keep files in order: flush before moving on
            current, current_s = [], 0.0
        if file_s > target:
            groups.extend(_split_file(tests, target, estimates))
            continue
        current.extend(tests)
        current_s += file_s
    if current:
        groups.append(tuple(current))
    return groups


def _slices_in_file_order(
    sized: list[tuple[tuple[TestItem, ...], float]], groups: list[tuple[TestItem, ...]]
) -> list[tuple[tuple[TestItem, ...], float]]:
    """The same places in the queue, but the slices of one split file in the file's order.

    A worker runs the chunks it takes in queue order; longest first would run a
    later slice of a file before an earlier one in the same process, and a test
    that counts on what ran before it in its file (module state) would fail
    where pytest passes. Slices of one file are about the same size, so the
    longest-first order barely changes.
    """
    part = {id(group): n for n, group in enumerate(groups)}
    places: dict[str, list[int]] = {}
    for position, (group, _) in enumerate(sized):
        files = {t.file for t in group}
        if len(files) == 1:
            places.setdefault(files.pop(), []).append(position)
    out = list(sized)
    for positions in places.values():
        if len(positions) > 1:
            ordered = sorted((sized[p] for p in positions), key=lambda pair: part[id(pair[0])])
            for position, pair in zip(positions, ordered, strict=True):
                out[position] = pair
    return out


def make_chunks(
    items: Sequence[TestItem],
    *,
    jobs: int,
    estimates: Mapping[str, float],
    start_index: int = 0,
    first: frozenset[str] = frozenset(),
) -> tuple[Chunk, ...]:
    """Chunks for ``jobs`` workers, longest first, numbered from ``start_index``.

    Every distinct test is in exactly one chunk; no chunk is empty. Equal
    estimates keep their planning order (the sort is stable), so the plan is
    deterministic. Chunks holding any test of ``first`` come first; then, with
    several jobs, longest first, and with one job in collection order.
    """
    if jobs < 1:
        raise ValueError(f"invalid jobs {jobs}: expected 1 or more")
    tests = unique(items)
    total = _seconds(tests, estimates)
    target = max(MIN_CHUNK_S, total / (jobs * CHUNKS_PER_JOB))
    groups = _pack(_by_file(tests), target, estimates)
    sized = [(group, _seconds(group, estimates)) for group in groups]

    # Chunks holding a test of ``first`` (under a budget: smoke tests and recent
    # failures) go before the rest, so that an estimate that was too low costs
    # the least valuable tests. Within each group: longest first when workers
    # share the queue (LPT); one worker keeps pytest's collection order.
    def order(pair: tuple[tuple[TestItem, ...], float]) -> tuple[bool, float]:
        return not any(t.test_id in first for t in pair[0]), (-pair[1] if jobs > 1 else 0.0)

    sized.sort(key=order)
    sized = _slices_in_file_order(sized, groups)
    return tuple(
        Chunk(index=start_index + position, tests=group, estimate_s=seconds)
        for position, (group, seconds) in enumerate(sized)
    )


def balance(chunks: Sequence[Chunk], jobs: int) -> list[list[Chunk]]:
    """Simulate dynamic dispatch: each chunk, in order, goes to the worker free first.

    Returns the chunks each worker runs (ties go to the lower worker index).
    It models the driver's pull queue so that plans can be checked for balance
    without running anything.
    """
    if jobs < 1:
        raise ValueError(f"invalid jobs {jobs}: expected 1 or more")
    assigned: list[list[Chunk]] = [[] for _ in range(jobs)]
    free_at = [(0.0, worker) for worker in range(jobs)]
    for chunk in chunks:
        load, worker = heapq.heappop(free_at)
        assigned[worker].append(chunk)
        heapq.heappush(free_at, (load + chunk.estimate_s, worker))
    return assigned


def lanes(
    chunks: Sequence[Chunk], jobs: int, *, held: Mapping[str, int] | None = None,
    costs: Mapping[str, float] | None = None,
) -> list[list[Chunk]]:  # fmt: skip
    """The chunks dealt to the workers the plan can use, each lane in queue order.

    At most ``min(jobs, len(chunks))`` lanes, none empty (with ``held``: lane ``n`` is
    slot ``n``'s, and may be empty when another lane holds what it would run). A lane's worker
    collects only its lane's files (``files_of``), so the slices of one file
    stay in one lane unless the file alone is more than a fair share of the
    work. ``held``: files a worker has collected already (file → its slot); a
    unit of such a file goes to that worker's lane first, while the lane is
    under its fair share. The other units go, longest first, to the lane with
    the least work so far (then the fewest chunks, then the lowest index): the
    LPT rule. ``costs``: each file's import seconds; a file is split over lanes only
    when its later chunks are, on average, at least that long (each lane that gets
    a slice imports the file again).
    """
    if jobs < 1:
        raise ValueError(f"invalid jobs {jobs}: expected 1 or more")
    count = min(jobs, len(chunks))
    fair = sum(c.estimate_s for c in chunks) / count if count else 0.0
    by_file: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        by_file.setdefault(chunk.tests[0].file if chunk.tests else "", []).append(chunk)
    units: list[list[Chunk]] = []
    for file, unit in by_file.items():
        too_big = len(unit) > 1 and sum(c.estimate_s for c in unit) > fair
        later = [c.estimate_s for c in unit[1:]]
        worth = not later or sum(later) / len(later) >= (costs or {}).get(file, 0.0)
        units.extend([[c] for c in unit] if too_big and worth else [unit])
    units.sort(key=lambda unit: -sum(c.estimate_s for c in unit))
    dealt: list[list[Chunk]] = [[] for _ in range(count)]
    load = [0.0] * count
    rest: list[list[Chunk]] = []
    for unit in units:
        seconds = sum(c.estimate_s for c in unit)
        slot = (held or {}).get(unit[0].tests[0].file if unit[0].tests else "", -1)
        if 0 <= slot < count and (not dealt[slot] or load[slot] + seconds <= fair * 1.05):
            dealt[slot].extend(unit)
            load[slot] += seconds
        else:
            rest.append(unit)
    loads = [(load[lane], len(dealt[lane]), lane) for lane in range(count)]
    heapq.heapify(loads)
    for unit in rest:
        total, held_count, lane = heapq.heappop(loads)
        dealt[lane].extend(unit)
        heapq.heappush(
            loads, (total + sum(c.estimate_s for c in unit), held_count + len(unit), lane)
        )
    position = {chunk.index: n for n, chunk in enumerate(chunks)}
    ordered = [sorted(lane, key=lambda c: position[c.index]) for lane in dealt]
    if held:  # lanes are slots: keep their places, drop only empty ones at the end
        while ordered and not ordered[-1]:
            ordered.pop()
        return ordered
    return [lane for lane in ordered if lane]


def shares(dealt: Sequence[Sequence[Chunk]]) -> dict[int, tuple[str, ...]]:
    """Per lane, its tests of the files the deal split over several lanes: what that
    lane's worker makes of such a file (the rest of the file is other lanes' work)."""
    lanes_of: dict[str, set[int]] = {}
    for slot, lane in enumerate(dealt):
        for chunk in lane:
            for test in chunk.tests:
                lanes_of.setdefault(test.file, set()).add(slot)
    split = {file for file, slots in lanes_of.items() if len(slots) > 1}
    result = {
        slot: tuple(t.test_id for chunk in lane for t in chunk.tests if t.file in split)
        for slot, lane in enumerate(dealt)
    }
    return {slot: ids for slot, ids in result.items() if ids}


def files_of(chunks: Sequence[Chunk]) -> tuple[str, ...]:
    """The files holding the chunks' tests, each once, in order of first appearance."""
    return tuple(dict.fromkeys(t.file for chunk in chunks for t in chunk.tests))


def runnable(chunk: Chunk, scope: Collection[str] | None) -> bool:
    """Whether a worker that collected ``scope`` (``None``: the whole suite) can run ``chunk``."""
    return scope is None or all(t.file in scope for t in chunk.tests)


def choose(
    queue: Sequence[Chunk], *, slot: int, scope: Collection[str] | None,
    owner: Mapping[int, int], awaited: Collection[int],
    held: Collection[str] = (), costs: Mapping[str, float] | None = None,
) -> int | None:  # fmt: skip
    """The position in ``queue`` of the chunk an idle worker of ``slot`` runs next.

    The first chunk of its own lane (``owner``: chunk index → slot); else the
    first it can run whose lane's worker is not ``awaited`` (still starting, so
    collecting for it: taking its chunk would waste that) and that is worth
    taking: ``costs`` are the seconds to import each file not ``held`` by this
    worker yet, and a chunk shorter than the imports it would need stays with its
    lane (importing a big file twice to run a slice of it is slower than waiting);
    else none.
    """
    usable = [n for n, chunk in enumerate(queue) if runnable(chunk, scope)]
    own = [n for n in usable if owner.get(queue[n].index) == slot]
    free = [
        n for n in usable
        if owner.get(queue[n].index) not in awaited and _worth(queue[n], held, costs or {})
    ]  # fmt: skip
    return next(iter(own or free), None)


def _worth(chunk: Chunk, held: Collection[str], costs: Mapping[str, float]) -> bool:
    imports = sum(costs.get(file, 0.0) for file in files_of([chunk]) if file not in held)
    return chunk.estimate_s >= imports
