"""Unit tests for ``supervisor.result``: the event stream's JSON and the callbacks' guard."""

from __future__ import annotations

import json

from supervisor.model import Outcome, TestRecord
from supervisor.result import EVENTS_VERSION, Announcer, Hooks, Kind, RunEvent, RunResult

RECORD = TestRecord(run_id="r", test_id="t.py::x", outcome=Outcome.PASSED, duration_s=0.5, tier=1)
RESULT = RunResult(exit_code=1, run_id="r", started="s", ended="e", wall_s=1.23456,
                   counts={"failed": 1}, records=(RECORD,))  # fmt: skip


def test_every_event_is_one_json_object_with_the_version_and_only_its_fields() -> None:
    started = RunEvent(kind=Kind.TEST_STARTED, run_id="r", ts="t", worker=1, pid=9,
                       chunk=3, test_id="t.py::x")  # fmt: skip
    assert started.to_json() == {"version": EVENTS_VERSION, "event": "test_started", "run_id": "r",
                                 "ts": "t", "worker": 1, "pid": 9, "chunk": 3,
                                 "test_id": "t.py::x"}  # fmt: skip
    chunk = RunEvent(kind=Kind.CHUNK_STARTED, run_id="r", ts="t", worker=0, chunk=0, tests=())
    assert chunk.to_json()["tests"] == []
    finished = RunEvent(kind=Kind.TEST_FINISHED, run_id="r", ts="t", record=RECORD)
    assert finished.to_json()["record"] == RECORD.to_json()
    done = RunEvent(kind=Kind.RUN_FINISHED, run_id="r", ts="t", result=RESULT).to_json()
    assert done["result"]["wall_s"] == 1.235 and done["result"]["counts"] == {"failed": 1}
    assert "records" not in done["result"]
    json.dumps(done)  # serialisable as it is


def test_a_raising_callback_is_noted_once_and_not_called_again() -> None:
    calls: list[str] = []

    def on_record(record: TestRecord) -> None:
        calls.append("record")
        raise ValueError("boom")

    def on_event(event: RunEvent) -> None:
        calls.append("event")

    seen: list[RunEvent] = []
    announcer = Announcer(Hooks(on_record=on_record, on_event=on_event), seen.append)
    event = RunEvent(kind=Kind.RUN_STARTED, run_id="r", ts="t")
    for _ in range(3):
        announcer.record(RECORD)
        announcer.event(event)
    assert calls == ["record", "event", "event", "event"]
    assert seen == [event] * 3
    assert announcer.notes == [
        "on_record raised ValueError: boom; it was not called again in this run"
    ]


def test_a_failing_stream_does_not_stop_the_callers_own_callback() -> None:
    seen: list[RunEvent] = []

    def closed(event: RunEvent) -> None:
        raise OSError("broken pipe")

    announcer = Announcer(Hooks(on_event=seen.append), closed)
    event = RunEvent(kind=Kind.RUN_STARTED, run_id="r", ts="t")
    announcer.event(event)
    announcer.event(event)
    assert seen == [event, event]
    assert announcer.notes == [
        "the event stream raised OSError: broken pipe; it was not called again in this run"
    ]
    assert Announcer(Hooks()).wants_events is False
