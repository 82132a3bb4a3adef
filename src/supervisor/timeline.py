"""The run's timeline: which worker ran which chunk and which test, when.

``Tracker`` is an always-on subscriber to the run's ``RunEvent`` stream (the
pool's ``chunk_started``, ``test_started``, ``worker_died`` and the recorder's
``test_finished``). It reads mtest's own ``time.monotonic()`` the moment each
event reaches it — the events' ``ts`` strings are wall time with milliseconds,
which a clock step would bend — and keeps seconds from the run's start. It
keeps only what the report and the trace need, in flat lists (a 100k-test run
is a few megabytes): ``Tracker.timeline()`` gives the frozen ``Timeline``.

The moments are when mtest *saw* each thing (the loop polls every
``control.POLL_S``); a test's own ``duration_s`` is the one pytest measured,
and is kept beside them. A chunk has no end event: it ends at the last event
of its worker before the worker's next chunk (or death, or the run's end),
so a worker's idle time is the gaps between its chunks.

``to_lines``/``from_lines`` are ``last-run/timeline.jsonl`` (``docs/formats.md``):
a header object, then one JSON array per chunk, test and death.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii

from supervisor.result import Kind, RunEvent

TIMELINE_VERSION = 1
CHUNK_FIELDS = ("worker", "chunk", "start_s", "end_s", "tests")
TEST_FIELDS = ("worker", "chunk", "start_s", "end_s", "outcome", "attempt", "duration_s", "test_id")
DEATH_FIELDS = ("worker", "chunk", "at_s", "test_id", "reason")
NO_WORKER = -1
"""The worker of a record no worker ran (a file that failed to import at collection)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ChunkSpan:
    worker: int
    chunk: int
    start_s: float
    end_s: float
    tests: int


@dataclass(frozen=True, kw_only=True, slots=True)
class TestSpan:
    __test__ = False

    worker: int
    chunk: int
    start_s: float
    end_s: float
    """When mtest saw it start and end (seconds from the run's start)."""
    outcome: str
    attempt: int
    duration_s: float
    """As in ``run.jsonl``: what pytest measured (a hung or crashed test: mtest)."""
    test_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Death:
    """A worker that did not end as asked: a crash, or a kill (``reason`` says which)."""

    worker: int
    chunk: int
    at_s: float
    test_id: str | None
    reason: str

    @property
    def killed(self) -> bool:
        return "mtest killed it" in self.reason


@dataclass(frozen=True, kw_only=True)
class Timeline:
    run_id: str = ""
    started: str = ""
    """The run's start, ISO-8601 UTC (the offsets count from it)."""
    workers: int = 0
    """Worker slots (``-j``)."""
    collected_s: float | None = None
    """When the suite's tests were known (collection as its own slice: 0 to this)."""
    ended_s: float = 0.0
    chunks: tuple[ChunkSpan, ...] = ()
    tests: tuple[TestSpan, ...] = ()
    deaths: tuple[Death, ...] = ()

    def lanes(self) -> list[int]:
        """The worker slots that ran something (and every slot below ``workers``)."""
        used = {c.worker for c in self.chunks} | {t.worker for t in self.tests}
        return sorted((used | set(range(self.workers))) - {NO_WORKER})

    def to_lines(self) -> Iterable[str]:
        """``timeline.jsonl``: the header, then a compact array per span."""
        header = {
            "version": TIMELINE_VERSION, "run_id": self.run_id, "started": self.started,
            "clock": "monotonic", "workers": self.workers,
            "collected_s": _r(self.collected_s), "ended_s": _r(self.ended_s),
            "fields": {"chunk": CHUNK_FIELDS, "test": TEST_FIELDS, "death": DEATH_FIELDS},
        }  # fmt: skip
        yield json.dumps(header, ensure_ascii=True)
        # Formatted by hand: a 100k-test run's lines in a fraction of json.dumps' time.
        text = encode_basestring_ascii
        for c in self.chunks:
            yield f'["chunk",{c.worker},{c.chunk},{c.start_s:.6f},{c.end_s:.6f},{c.tests}]'
        for t in self.tests:
            yield (
                f'["test",{t.worker},{t.chunk},{t.start_s:.6f},{t.end_s:.6f},"{t.outcome}",'
                f"{t.attempt},{t.duration_s:.6f},{text(t.test_id)}]"
            )
        for d in self.deaths:
            who = "null" if d.test_id is None else text(d.test_id)
            yield f'["death",{d.worker},{d.chunk},{d.at_s:.6f},{who},{text(d.reason)}]'

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> Timeline:
        """Raises ``ValueError`` on anything that is not a timeline of this version."""
        it = iter(lines)
        try:
            header = json.loads(next(it))
            if not isinstance(header, dict) or header.get("version") != TIMELINE_VERSION:
                raise ValueError(f"timeline: expected version {TIMELINE_VERSION}")
            chunks: list[ChunkSpan] = []
            tests: list[TestSpan] = []
            deaths: list[Death] = []
            for line in it:
                if not line.strip():
                    continue
                kind, *row = json.loads(line)
                if kind == "chunk":
                    chunks.append(ChunkSpan(**dict(zip(CHUNK_FIELDS, row, strict=True))))
                elif kind == "test":
                    tests.append(TestSpan(**dict(zip(TEST_FIELDS, row, strict=True))))
                elif kind == "death":
                    deaths.append(Death(**dict(zip(DEATH_FIELDS, row, strict=True))))
            return cls(
                run_id=str(header["run_id"]), started=str(header["started"]),
                workers=int(header["workers"]),
                collected_s=None if header.get("collected_s") is None
                else float(header["collected_s"]),
                ended_s=float(header["ended_s"]),
                chunks=tuple(chunks), tests=tuple(tests), deaths=tuple(deaths),
            )  # fmt: skip
        except (StopIteration, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a timeline: {exc}") from None


def _r(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 6)


@dataclass
class _Open:
    chunk: int
    start_s: float
    tests: int


@dataclass
class Tracker:
    """The sink: ``tracker(event)`` for each ``RunEvent``; ``timeline()`` at the end."""

    run_id: str
    started: str
    origin: float
    """``time.monotonic()`` at the run's start."""
    workers: int
    clock: Callable[[], float] = time.monotonic
    collected_s: float | None = None
    _chunks: list[ChunkSpan] = field(default_factory=list)
    _tests: list[TestSpan] = field(default_factory=list)
    _deaths: list[Death] = field(default_factory=list)
    _open: dict[int, _Open] = field(default_factory=dict)
    _last: dict[int, float] = field(default_factory=dict)
    """Worker → when it last finished a test."""
    _running: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    """Test id → (worker, chunk, started) while it runs."""
    _ended: float | None = None

    def __call__(self, event: RunEvent) -> None:
        now = self.clock() - self.origin
        kind, worker = event.kind, event.worker if event.worker is not None else NO_WORKER
        if kind is Kind.TEST_STARTED and event.test_id is not None:
            self._running[event.test_id] = (worker, event.chunk or 0, now)
        elif kind is Kind.TEST_FINISHED and event.record is not None:
            self._finished(event, now)
        elif kind is Kind.CHUNK_STARTED:
            self._close(worker, now)
            self._open[worker] = _Open(chunk=event.chunk or 0, start_s=now, tests=len(event.tests))
        elif kind is Kind.WORKER_DIED:
            self._deaths.append(Death(worker=worker, chunk=event.chunk or 0, at_s=now,
                                      test_id=event.test_id, reason=event.reason))  # fmt: skip
            self._last[worker] = now
            self._close(worker, now)
        elif kind is Kind.RUN_FINISHED:
            self._ended = now

    def collected(self) -> None:
        """The suite is known now: collection is the slice from the run's start to here."""
        self.collected_s = self.clock() - self.origin

    def _finished(self, event: RunEvent, now: float) -> None:
        record = event.record
        assert record is not None
        worker, chunk, start = self._running.pop(record.test_id, (NO_WORKER, record.chunk, now))
        self._tests.append(TestSpan(
            worker=worker, chunk=chunk, start_s=start, end_s=now, outcome=record.outcome.value,
            attempt=record.attempt, duration_s=record.duration_s, test_id=record.test_id,
        ))  # fmt: skip
        if worker != NO_WORKER:
            self._last[worker] = now

    def _close(self, worker: int, now: float) -> None:
        opened = self._open.pop(worker, None)
        if opened is None:
            return
        last = self._last.get(worker)
        busy = any(running[0] == worker for running in self._running.values())
        end = last if last is not None and last >= opened.start_s and not busy else now
        self._chunks.append(ChunkSpan(worker=worker, chunk=opened.chunk, start_s=opened.start_s,
                                      end_s=end, tests=opened.tests))  # fmt: skip

    def timeline(self) -> Timeline:
        now = self.clock() - self.origin if self._ended is None else self._ended
        for worker in list(self._open):
            self._close(worker, now)
        for test_id, (worker, chunk, start) in self._running.items():
            # Started, never recorded (an interrupt): a span with no outcome of its own.
            self._tests.append(TestSpan(worker=worker, chunk=chunk, start_s=start, end_s=now,
                                        outcome="", attempt=0, duration_s=now - start,
                                        test_id=test_id))  # fmt: skip
        self._running.clear()
        return Timeline(
            run_id=self.run_id, started=self.started, workers=self.workers,
            collected_s=self.collected_s, ended_s=now,
            chunks=tuple(sorted(self._chunks, key=lambda c: (c.worker, c.start_s))),
            tests=tuple(self._tests), deaths=tuple(self._deaths),
        )  # fmt: skip
