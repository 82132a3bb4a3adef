"""What a run gives back to its caller, and what it tells while it goes on.

``RunResult`` is the value of one run (one cycle of ``mtest service``): the CLI
turns it into an exit code, the history and the metrics are written from it,
and ``supervisor.run`` returns it. ``RunEvent`` are the typed events a caller
can follow (``on_event``; ``--events`` writes them as JSON lines), ``Hooks``
carries the callbacks. Pure values: nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.model import TestRecord

EVENTS_VERSION = 1
"""The version of the event stream's schema (``docs/formats.md``, "Run events")."""


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """One run, as its caller sees it once it has finished."""

    exit_code: int
    run_id: str
    started: str
    """ISO-8601 UTC, like a record's ``ts``."""
    ended: str
    wall_s: float
    counts: Mapping[str, int] = field(default_factory=dict)
    """Outcome (``passed``, ``failed``, …) → how many tests ended with it."""
    records: tuple[TestRecord, ...] = ()
    """The final record of every test of the run (a retried test's last attempt)."""
    outstanding: int = 0
    """Selected tests not run (a stop, ``--budget``, an interrupt)."""
    interrupted: bool = False
    gates_dir: Path | None = None
    summary_path: Path | None = None
    records_path: Path | None = None
    tiers: tuple[int, ...] = ()
    budget_s: float | None = None
    coverage_ratio: float | None = None
    """Covered lines (and branches) / all, 0..1, when the run measured coverage."""
    peak_rss_bytes: int | None = None
    containers: Mapping[str, int] | None = None
    """``--container``: containers started, start failures, timeouts, cleanup failures."""
    """The largest resident set of any worker, when the children reported it."""
    orphans: Mapping[str, int] | None = None
    """``--include-orphans``: outcome → how many orphan import checks ended with it."""
    slowest: tuple[str, float] | None = None
    """The test that took longest and its seconds."""

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


class Kind(enum.Enum):
    RUN_STARTED = "run_started"
    CHUNK_STARTED = "chunk_started"
    TEST_STARTED = "test_started"
    TEST_FINISHED = "test_finished"
    WORKER_DIED = "worker_died"
    RUN_FINISHED = "run_finished"


@dataclass(frozen=True, kw_only=True)
class RunEvent:
    """One thing that happened in a run: ``kind`` says which fields are set."""

    kind: Kind
    run_id: str
    ts: str
    worker: int | None = None
    """The slot (``MTEST_WORKER``) of the worker concerned."""
    pid: int | None = None
    chunk: int | None = None
    test_id: str | None = None
    tests: tuple[str, ...] = ()
    """``run_started``: the selected ids; ``chunk_started``: the chunk's ids."""
    record: TestRecord | None = None
    reason: str = ""
    """``worker_died``: how the worker ended (``exit 0``, ``SIGSEGV``, …)."""
    result: RunResult | None = None

    def to_json(self) -> dict[str, Any]:
        """The event as one line of ``--events`` (``docs/formats.md``)."""
        out: dict[str, Any] = {"version": EVENTS_VERSION, "event": self.kind.value,
                               "run_id": self.run_id, "ts": self.ts}  # fmt: skip
        if self.worker is not None:
            out["worker"] = self.worker
        if self.pid is not None:
            out["pid"] = self.pid
        if self.chunk is not None:
            out["chunk"] = self.chunk
        if self.test_id is not None:
            out["test_id"] = self.test_id
        if self.kind in (Kind.RUN_STARTED, Kind.CHUNK_STARTED):
            out["tests"] = list(self.tests)
        if self.record is not None:
            out["record"] = self.record.to_json()
        if self.reason:
            out["reason"] = self.reason
        if self.result is not None:
            out["result"] = result_json(self.result)
        return out


def result_json(result: RunResult) -> dict[str, Any]:
    """The summary of a result (no records): ``run_finished``'s ``result``."""
    return {
        "exit_code": result.exit_code,
        "run_id": result.run_id,
        "started": result.started,
        "ended": result.ended,
        "wall_s": round(result.wall_s, 3),
        "counts": dict(result.counts),
        "outstanding": result.outstanding,
        "interrupted": result.interrupted,
        "coverage_ratio": result.coverage_ratio,
        "peak_rss_bytes": result.peak_rss_bytes,
        "containers": None if result.containers is None else dict(result.containers),
        "orphans": None if result.orphans is None else dict(result.orphans),
    }


OnRecord = Callable[[TestRecord], None]
OnEvent = Callable[[RunEvent], None]


@dataclass(frozen=True, kw_only=True)
class Hooks:
    """The caller's callbacks. Either may be ``None``; one that raises is reported
    (a note) and not called again in that run; the run goes on."""

    on_record: OnRecord | None = None
    on_event: OnEvent | None = None


class Announcer:
    """Calls the caller's callbacks for one run; a callback that raises is reported
    in ``notes`` and dropped, so the run itself never sees the exception."""

    def __init__(self, hooks: Hooks, *sinks: OnEvent) -> None:
        self.on_record = hooks.on_record
        self.sinks: list[OnEvent | None] = [hooks.on_event, *sinks]
        self.notes: list[str] = []

    def add(self, sink: OnEvent) -> None:
        """One more of mtest's own subscribers (after the caller's)."""
        self.sinks.append(sink)

    @property
    def wants_events(self) -> bool:
        return any(sink is not None for sink in self.sinks)

    def record(self, record: TestRecord) -> None:
        if self.on_record is None:
            return
        try:
            self.on_record(record)
        except Exception as exc:  # the caller's code: anything
            self.notes.append(_dropped("on_record", exc))
            self.on_record = None

    def event(self, event: RunEvent) -> None:
        for position, sink in enumerate(self.sinks):
            if sink is None:
                continue
            try:
                sink(event)
            except Exception as exc:  # the caller's code (or a closed stream): anything
                name = "on_event" if position == 0 else "the event stream"
                self.notes.append(_dropped(name, exc))
                self.sinks[position] = None


def _dropped(name: str, exc: Exception) -> str:
    return f"{name} raised {type(exc).__name__}: {exc}; it was not called again in this run"
