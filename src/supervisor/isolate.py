"""Order dependence, driven: rerun the run's failures alone, then bisect their predecessors.

What the runs mean is ``order``'s (pure); this module only runs them, in the
pool's dedicated children (one fresh child per chunk, collecting only the
chunk's node ids — the machinery ``--retries`` uses) and hands the results to
the recorder:

1. ``Watch`` sits between the pool and the run's sink during the main pass and
   keeps each ``failed``/``error`` result, with the tests its worker ran before
   it (the loop attaches them, ``Result.predecessors``).
2. ``isolate`` reruns each of those that is still the test's result alone. A
   test that fails alone again gets that attempt recorded as it ended; one that
   passes alone is recorded ``order_dependent`` (one more attempt, carrying the
   first failure's traceback in its bundle and its predecessors in its record).
3. With ``--find-polluter``, before that record is written, every
   order-dependent test's search (``order.Search``) runs in rounds: each round
   runs one query per unfinished search, all in parallel (``subset + test`` in a
   fresh child, in the original order); the budget or an interrupt ends the
   searches where they are.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from supervisor import order
from supervisor.control import ResultSink, Stop, StopControl
from supervisor.drive import Pool
from supervisor.model import Chunk, Outcome, TestItem, TestResult, file_of
from supervisor.record import Recorder


@dataclass
class Watch:
    """The main pass's sink: keeps the results ``order.isolates``, hands on every result."""

    inner: ResultSink
    failed: dict[str, TestResult] = field(default_factory=dict)

    def __call__(self, result: TestResult) -> None:
        if order.isolates(result.outcome, result.when) and "::" in result.test_id:
            self.failed[result.test_id] = result
        self.inner(result)


def isolate(
    pool: Pool, recorder: Recorder, stop: StopControl, watch: Watch,
    *, first_chunk: int, find_polluter: bool, retries: bool = False,
) -> int:  # fmt: skip
    """Rerun alone each failure ``watch`` kept that is still its test's result; record
    what each rerun means. Returns the next free chunk index."""
    still = [
        test_id
        for test_id, result in watch.failed.items()
        if recorder.finals.get(test_id) is not None
        and recorder.finals[test_id].outcome is result.outcome
    ]
    ids, left = order.chosen(still)
    if left:
        pool.notes.append(
            f"{left} more failing test(s) were not rerun alone to check their order "
            f"(at most {order.ISOLATE_LIMIT} per run)"
        )
    if not ids or stop.current(time.monotonic()) is Stop.HALT:
        return first_chunk
    chunks = [_chunk(first_chunk + i, (), test_id) for i, test_id in enumerate(ids)]
    alone = _run(pool, stop, chunks, passthrough=recorder)
    first_chunk += len(chunks)
    passed: dict[str, TestResult] = {}
    for test_id in ids:
        result = alone.get(test_id)
        if result is None:
            continue  # never ran (the budget, an interrupt): it stays as it failed
        if result.outcome.gating:
            recorder(result)  # it fails alone too
        else:
            passed[test_id] = result
    searches: dict[str, order.Search] = {}
    if find_polluter and passed:
        befores = {t: watch.failed[t].predecessors for t in passed}
        searches, first_chunk = hunt(pool, stop, befores, first_chunk=first_chunk)
    for test_id, result in passed.items():
        search = searches.get(test_id)
        found = None if search is None else search.found
        if order.after_alone(result.outcome, retries=retries, found=found) is Outcome.FLAKY:
            recorder(result)  # the recorder makes a pass after a failure flaky
        else:
            recorder(_order_dependent(watch.failed[test_id], result, search))
    return first_chunk


def hunt(
    pool: Pool, stop: StopControl, befores: Mapping[str, tuple[str, ...]], *, first_chunk: int
) -> tuple[dict[str, order.Search], int]:
    """Run every test's polluter search to its end (or until the run stops); return the
    searches and the next free chunk index."""
    searches = {test_id: order.start(preds) for test_id, preds in befores.items()}
    while True:
        asking = {t: s.query for t, s in searches.items() if s.query is not None}
        if not asking:
            break
        if stop.current(time.monotonic()) is Stop.HALT:
            searches = {t: order.stopped(s) for t, s in searches.items()}
            break
        chunks = [_chunk(first_chunk + i, q, t) for i, (t, q) in enumerate(asking.items())]
        first_chunk += len(chunks)
        ended = _run(pool, stop, chunks)
        for test_id in asking:
            got = ended.get(test_id)
            search = searches[test_id]
            searches[test_id] = (
                order.stopped(search) if got is None else order.answer(search, got.outcome.gating)
            )
    return searches, first_chunk


def _run(
    pool: Pool, stop: StopControl, chunks: list[Chunk], *, passthrough: ResultSink | None = None
) -> dict[str, TestResult]:
    """Run the chunks in fresh children; return each chunk's last test's result.

    The other tests' results (a search's subset of predecessors) are only probes:
    they are dropped, unless ``passthrough`` is given (then they are recorded —
    a session error of a rerun's child must not vanish)."""
    wanted = {chunk.index: chunk.tests[-1].test_id for chunk in chunks}
    ended: dict[str, TestResult] = {}

    def sink(result: TestResult) -> None:
        if wanted.get(result.chunk) == result.test_id and result.test_id not in ended:
            ended[result.test_id] = result
        elif passthrough is not None:
            passthrough(result)

    announce = pool.announce
    if passthrough is None:  # a search's probes are not the run's tests: no events for them
        pool.announce = None
    try:
        pool.run(chunks, sink, stop, dedicated=True)
    finally:
        pool.announce = announce
    return ended


def _chunk(index: int, before: tuple[str, ...], test_id: str) -> Chunk:
    tests = (*before, test_id)
    return Chunk(index=index, tests=tuple(TestItem(test_id=t, file=file_of(t)) for t in tests))


def _order_dependent(
    first: TestResult, alone: TestResult, search: order.Search | None
) -> TestResult:
    """The record-to-be of a test that failed in its chunk and passed alone: the first
    failure's diagnosis, the rerun's timing, what the order tells."""
    said = order.verdict_text(search, len(first.predecessors))
    message = f"{said}: {first.message}" if first.message else said
    return dataclasses.replace(
        first,
        outcome=Outcome.ORDER_DEPENDENT,
        message=message,
        duration_s=alone.duration_s,
        chunk=alone.chunk,
        worker=alone.worker,
        child=alone.child,
        rss_bytes=alone.rss_bytes,
        rss_growth_bytes=alone.rss_growth_bytes,
        cpu_s=alone.cpu_s,
        polluter=None if search is None else search.polluter,
    )
