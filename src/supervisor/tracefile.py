"""Pure: a run's ``Timeline`` → a Chrome trace-event file (``--trace PATH``).

The Trace Event Format's "JSON Object Format": ``{"traceEvents": [...],
"displayTimeUnit": "ms", "otherData": {...}}``, which Perfetto and
``chrome://tracing`` open. One process (``pid`` 1, named after the run), one
thread per worker slot (``tid`` = slot + 1, named by ``thread_name``
metadata) and thread 0 for mtest itself, whose one slice is the collection.
Every chunk and every test is a complete event (``ph`` ``X``, ``ts`` and
``dur`` in microseconds from the run's start); a test's ``dur`` is its
``duration_s`` in ``run.jsonl``, its ``ts`` when mtest saw it start. A
worker's death (a crash, or mtest's kill) is a thread-scoped instant event
(``ph`` ``i``) at the moment mtest buried it.
"""

from __future__ import annotations

import bisect
from typing import Any

from supervisor.timeline import NO_WORKER, Timeline

PID = 1
MTEST_TID = 0


def _us(seconds: float) -> int:
    return max(0, round(seconds * 1_000_000))


def tid_of(worker: int) -> int:
    return worker + 1


def trace_json(tl: Timeline) -> dict[str, Any]:
    """The trace as one JSON object (``json.dumps`` it)."""
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": PID, "tid": MTEST_TID,
         "args": {"name": f"mtest run {tl.run_id}"}},
        {"name": "thread_name", "ph": "M", "pid": PID, "tid": MTEST_TID,
         "args": {"name": "mtest"}},
    ]  # fmt: skip
    for worker in tl.lanes():
        events.append({"name": "thread_name", "ph": "M", "pid": PID, "tid": tid_of(worker),
                       "args": {"name": f"worker {worker}"}})  # fmt: skip
        events.append({"name": "thread_sort_index", "ph": "M", "pid": PID,
                       "tid": tid_of(worker), "args": {"sort_index": tid_of(worker)}})  # fmt: skip
    if tl.collected_s is not None:
        events.append({"name": "collection", "cat": "collection", "ph": "X", "ts": 0,
                       "dur": _us(tl.collected_s), "pid": PID, "tid": MTEST_TID})  # fmt: skip
    # A chunk's slice encloses its tests' slices (pytest's durations may run past
    # the moment mtest saw the end by a poll), so that viewers nest them.
    # A chunk index can run twice on one slot (the rest of a crashed chunk): each test
    # belongs to the last of its chunk's spans that started before it.
    spans: dict[tuple[int, int], list[float]] = {}
    for c in tl.chunks:
        spans.setdefault((c.worker, c.chunk), []).append(c.start_s)
    for starts in spans.values():
        starts.sort()
    reach: dict[tuple[int, int, float], int] = {}
    for t in tl.tests:
        starts = spans.get((t.worker, t.chunk), [])
        at = bisect.bisect_right(starts, t.start_s) - 1
        if at >= 0:
            key = (t.worker, t.chunk, starts[at])
            reach[key] = max(reach.get(key, 0), _us(t.start_s) + _us(t.duration_s))
    for c in tl.chunks:
        start = _us(c.start_s)
        end = max(_us(c.end_s), reach.get((c.worker, c.chunk, c.start_s), 0), start + 1)
        events.append({
            "name": f"chunk {c.chunk}", "cat": "chunk", "ph": "X", "ts": start, "dur": end - start,
            "pid": PID, "tid": tid_of(c.worker), "args": {"chunk": c.chunk, "tests": c.tests},
        })  # fmt: skip
    for t in tl.tests:
        tid = MTEST_TID if t.worker == NO_WORKER else tid_of(t.worker)
        events.append({
            "name": t.test_id, "cat": f"test,{t.outcome or 'unfinished'}", "ph": "X",
            "ts": _us(t.start_s), "dur": _us(t.duration_s), "pid": PID, "tid": tid,
            "args": {"outcome": t.outcome or "unfinished", "attempt": t.attempt,
                     "chunk": t.chunk, "duration_s": round(t.duration_s, 6)},
        })  # fmt: skip
    for d in tl.deaths:
        events.append({
            "name": "killed" if d.killed else "crashed", "cat": "death", "ph": "i", "s": "t",
            "ts": _us(d.at_s), "pid": PID, "tid": tid_of(d.worker),
            "args": {"reason": d.reason, "test_id": d.test_id, "chunk": d.chunk},
        })  # fmt: skip
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"run_id": tl.run_id, "started": tl.started, "version": 1},
    }
