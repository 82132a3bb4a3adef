"""``timeline.Tracker`` (events → spans), ``timeline.jsonl``'s round trip, and the trace."""

from __future__ import annotations

import json

import pytest

from supervisor.model import Outcome, TestRecord
from supervisor.result import Kind, RunEvent
from supervisor.timeline import NO_WORKER, Timeline, Tracker
from supervisor.tracefile import trace_json


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _event(kind: Kind, **fields: object) -> RunEvent:
    return RunEvent(kind=kind, run_id="r", ts="", **fields)  # type: ignore[arg-type]


def _finished(test_id: str, outcome: Outcome, seconds: float, chunk: int = 0) -> RunEvent:
    record = TestRecord(run_id="r", test_id=test_id, outcome=outcome, duration_s=seconds, tier=1,
                        chunk=chunk)  # fmt: skip
    return _event(Kind.TEST_FINISHED, test_id=test_id, record=record)


def _run() -> Timeline:
    """Two workers: worker 0 runs chunk 0 (a pass, then a crash), then chunk 2;
    worker 1 runs chunk 1 and idles; a file failed to import at collection."""
    clock = Clock()
    tracker = Tracker(run_id="r", started="2026-01-01T00:00:00.000Z", origin=100.0, workers=2,
                      clock=clock)  # fmt: skip

    def at(t: float, event: RunEvent) -> None:
        clock.now = 100.0 + t
        tracker(event)

    at(0.2, _finished("bad.py", Outcome.ERROR, 0.0))
    clock.now = 100.3
    tracker.collected()
    at(0.4, _event(Kind.CHUNK_STARTED, worker=0, chunk=0, tests=("a::x", "a::y", "a::z")))
    at(0.45, _event(Kind.CHUNK_STARTED, worker=1, chunk=1, tests=("b::x",)))
    at(0.5, _event(Kind.TEST_STARTED, worker=0, chunk=0, test_id="a::x"))
    at(0.6, _event(Kind.TEST_STARTED, worker=1, chunk=1, test_id="b::x"))
    at(0.7, _finished("a::x", Outcome.PASSED, 0.19))
    at(0.71, _event(Kind.TEST_STARTED, worker=0, chunk=0, test_id="a::y"))
    at(0.9, _finished("b::x", Outcome.PASSED, 0.3, chunk=1))
    at(1.0, _event(Kind.WORKER_DIED, worker=0, chunk=0, test_id="a::y", reason="SIGSEGV"))
    at(1.01, _finished("a::y", Outcome.CRASHED, 0.3))
    at(1.2, _event(Kind.CHUNK_STARTED, worker=0, chunk=0, tests=("a::z",)))
    at(1.3, _event(Kind.TEST_STARTED, worker=0, chunk=0, test_id="a::z"))
    at(1.4, _finished("a::z", Outcome.PASSED, 0.09))
    at(2.0, _event(Kind.RUN_FINISHED))
    return tracker.timeline()


def test_tracker_builds_lanes_chunks_tests_and_deaths() -> None:
    tl = _run()
    assert tl.collected_s == pytest.approx(0.3)
    assert tl.ended_s == pytest.approx(2.0)
    assert tl.lanes() == [0, 1]
    spans = [(c.worker, c.chunk, round(c.start_s, 2), round(c.end_s, 2)) for c in tl.chunks]
    # The crash ends worker 0's first chunk; its rest runs again later; worker 1's chunk
    # ends with its last test, and the rest of the run is its idle time.
    assert spans == [(0, 0, 0.4, 1.0), (0, 0, 1.2, 1.4), (1, 1, 0.45, 0.9)]
    by_id = {t.test_id: t for t in tl.tests}
    assert (by_id["a::y"].worker, by_id["a::y"].outcome) == (0, "crashed")
    assert by_id["a::x"].start_s == pytest.approx(0.5) and by_id["a::x"].duration_s == 0.19
    assert by_id["bad.py"].worker == NO_WORKER
    assert [(d.worker, d.test_id, d.reason) for d in tl.deaths] == [(0, "a::y", "SIGSEGV")]
    assert not tl.deaths[0].killed


def test_a_test_still_running_at_the_end_has_no_outcome() -> None:
    clock = Clock()
    tracker = Tracker(run_id="r", started="", origin=100.0, workers=1, clock=clock)
    tracker(_event(Kind.CHUNK_STARTED, worker=0, chunk=0, tests=("a::x",)))
    tracker(_event(Kind.TEST_STARTED, worker=0, chunk=0, test_id="a::x"))
    clock.now = 103.0
    tl = tracker.timeline()
    assert [(t.test_id, t.outcome, t.end_s) for t in tl.tests] == [("a::x", "", 3.0)]
    assert tl.chunks[0].end_s == 3.0


def test_timeline_lines_round_trip() -> None:
    tl = _run()
    lines = list(tl.to_lines())
    header = json.loads(lines[0])
    assert header["version"] == 1 and header["clock"] == "monotonic"
    assert all(isinstance(json.loads(line), list) for line in lines[1:])
    again = Timeline.from_lines(lines)
    assert list(again.to_lines()) == lines
    assert [t.test_id for t in again.tests] == [t.test_id for t in tl.tests]
    assert again.tests[1].start_s == pytest.approx(tl.tests[1].start_s)
    assert len(again.chunks) == 3 and again.deaths[0].reason == "SIGSEGV"


@pytest.mark.parametrize("text", ["", "{}", '{"version": 2}', '{"version": 1}', "[1"])
def test_a_damaged_timeline_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        Timeline.from_lines([text])


def test_trace_has_a_thread_per_worker_and_slices_in_microseconds() -> None:
    trace = trace_json(_run())
    json.dumps(trace)  # serialisable as it is
    events = trace["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert names == {0: "mtest", 1: "worker 0", 2: "worker 1"}
    tests = {e["name"]: e for e in events if e["ph"] == "X" and e["cat"].startswith("test,")}
    assert tests["a::x"]["ts"] == 500_000 and tests["a::x"]["dur"] == 190_000
    assert tests["bad.py"]["tid"] == 0  # no worker ran it: on mtest's own thread
    collection = [e for e in events if e.get("cat") == "collection"]
    assert collection == [{"name": "collection", "cat": "collection", "ph": "X", "ts": 0,
                           "dur": 300_000, "pid": 1, "tid": 0}]  # fmt: skip
    [death] = [e for e in events if e["ph"] == "i"]
    assert (death["name"], death["tid"], death["ts"], death["s"]) == ("crashed", 1, 1_000_000, "t")
    chunks = [e for e in events if e.get("cat") == "chunk"]
    assert len(chunks) == 3 and all(e["dur"] > 0 for e in chunks)
    # Chunk 0 ran twice on worker 0 (its rest after the crash): each slice encloses
    # its own tests, and the first does not reach into the second.
    first, again = sorted((e for e in chunks if e["tid"] == 1), key=lambda e: e["ts"])
    assert first["ts"] + first["dur"] == 1_010_000  # a::y: 0.71 s + 0.3 s
    assert first["ts"] + first["dur"] < again["ts"]
    assert again["ts"] + again["dur"] == 1_400_000
