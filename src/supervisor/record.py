"""Results → records: append to ``run.jsonl``, write bundles, print problems as they happen."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from supervisor import bundle, junit, report
from supervisor.console import Console
from supervisor.model import Collection, Fingerprint, Outcome, TestItem, TestRecord, TestResult
from supervisor.result import Announcer, Hooks, Kind, RunEvent
from supervisor.select import tier_of
from supervisor.store import Store
from supervisor.text import utf8_text


def utc_now() -> str:
    """An ISO-8601 UTC timestamp with milliseconds, like the spec's ``ts``."""
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@dataclass(kw_only=True)
class Context:
    """What every record of this run shares."""

    run_id: str
    tiers: Mapping[str, int]
    items: Mapping[str, TestItem]
    quarantined: frozenset[str]
    fingerprint: Fingerprint
    python: str
    pytest_args: tuple[str, ...]
    cwd: str
    runner: tuple[str, ...] = ()
    """What runs ``python`` (a container's ``docker run … IMAGE``), for the bundles'
    ``reproduce:`` line."""
    repro_ids: Mapping[str, str] = field(default_factory=dict)
    """A record's id → the node id that reproduces it, where they differ (``orphan::``)."""


@dataclass(kw_only=True)
class Recorder:
    """Turns each result into a record the moment it arrives; nothing is batched."""

    store: Store
    console: Console
    context: Context
    attempts: dict[str, int] = field(default_factory=dict)
    finals: dict[str, TestRecord] = field(default_factory=dict)
    session: list[TestRecord] = field(default_factory=list)
    """Records written by this invocation (a resumed run learns only from these)."""
    by_chunk: dict[int, list[TestRecord]] = field(default_factory=dict)
    diagnoses: dict[str, str] = field(default_factory=dict)
    """Bundle path → the end of its traceback, for this session's per-chunk JUnit."""

    previous: list[TestRecord] = field(default_factory=list)
    announcer: Announcer = field(default_factory=lambda: Announcer(Hooks()))
    """The caller's callbacks: each record once, as it is written."""

    def learn_items(self, collection: Collection, tier_map: Mapping[str, int]) -> None:
        """What the collection says about each test, for the records to carry."""
        self.context.fingerprint = collection.fingerprint
        self.context.items = {t.test_id: t for t in collection.items}
        self.context.tiers = {t.test_id: tier_of(t.markers, tier_map) for t in collection.items}

    def all_records(self) -> list[TestRecord]:
        """Every attempt of the run, including those of earlier (resumed) sessions."""
        return [*self.previous, *self.session]

    def seed(self, previous: list[TestRecord]) -> None:
        """A resumed run continues the attempt numbers and results already recorded."""
        self.previous = list(previous)
        for record in previous:
            self.attempts[record.test_id] = max(
                self.attempts.get(record.test_id, 0), record.attempt
            )
            self.finals[record.test_id] = record

    def __call__(self, result: TestResult) -> None:
        ctx = self.context
        item = ctx.items.get(result.test_id)
        attempt = self.attempts.get(result.test_id, 0) + 1
        self.attempts[result.test_id] = attempt
        # A lone surrogate in a message would make every later writer raise:
        # the record carries it as a visible escape instead.
        outcome, message, earlier_bundle = result.outcome, utf8_text(result.message), None
        previous = self.finals.get(result.test_id)
        if outcome is Outcome.PASSED and previous is not None and previous.outcome.retryable:
            # Passed on a retry. The passing attempt has nothing to diagnose:
            # the record points at the failure's bundle and says what failed.
            outcome = Outcome.FLAKY
            message = f"passed on attempt {attempt} after: {previous.message}"
            earlier_bundle = previous.bundle
        record = TestRecord(
            run_id=ctx.run_id,
            test_id=result.test_id,
            outcome=outcome,
            duration_s=result.duration_s,
            tier=ctx.tiers.get(result.test_id, 1),
            markers=item.markers if item else (),
            attempt=attempt,
            chunk=result.chunk,
            quarantined=result.test_id in ctx.quarantined,
            message=message,
            bundle=earlier_bundle,
            ts=utc_now(),
            rss_bytes=result.rss_bytes,
            rss_growth_bytes=result.rss_growth_bytes,
            cpu_s=result.cpu_s,
            predecessors=result.predecessors if outcome is Outcome.ORDER_DEPENDENT else (),
            polluter=result.polluter,
        )
        if record.bundle is None and outcome not in _NOTHING_TO_DIAGNOSE:
            name = bundle.bundle_name(result.test_id, attempt)
            path = f"failures/{name}"
            record = dataclasses.replace(record, bundle=path)
            text = bundle.bundle_text(
                result,
                record,
                fingerprint=ctx.fingerprint,
                repro=self._repro(
                    result.test_id, () if result.polluter is None else (result.polluter,)
                ),
            )
            self.store.write_bundle(name, text)
            self.diagnoses[path] = bundle.diagnosis(text)
        self.store.append(record)
        self.session.append(record)
        self.by_chunk.setdefault(record.chunk, []).append(record)
        self.finals[result.test_id] = record
        self.announcer.record(record)
        if self.announcer.wants_events:
            finished = RunEvent(kind=Kind.TEST_FINISHED, run_id=ctx.run_id, ts=record.ts,
                                test_id=record.test_id, record=record)  # fmt: skip
            self.announcer.event(finished)
        if report.is_problem(record):
            self.console.line(report.problem_line(record), outcome=outcome)
        else:
            self.console.line(f"{outcome.value.upper()} {record.test_id}", level=1)

    def flush_chunks(self) -> None:
        """Write ``last-run/junit-NNNN.xml``: each chunk's records as JUnit XML."""
        for index, records in sorted(self.by_chunk.items()):
            xml = junit.junit_xml(records, self.context.items, diagnoses=self.diagnoses)
            self.store.write_chunk_junit(index, xml)
        self.by_chunk.clear()

    def record_new(self, result: TestResult) -> None:
        """Record a collection problem unless this run already has (a resumed run
        collects again, and must not record a broken file twice)."""
        if result.test_id not in self.finals:
            self(result)

    def _repro(self, test_id: str, before: tuple[str, ...] = ()) -> str:
        ctx = self.context
        return bundle.repro_command(
            ctx.repro_ids.get(test_id, test_id), ctx.python, ctx.pytest_args, ctx.cwd,
            runner=ctx.runner, before=before,
        )  # fmt: skip


_NOTHING_TO_DIAGNOSE = frozenset(
    {Outcome.PASSED, Outcome.SKIPPED, Outcome.XFAILED, Outcome.XPASSED}
)


def holder_line(argv: tuple[str, ...], pid: int) -> str:
    """What ``.gates/lock`` says about its holder."""
    return f"mtest pid {pid} (started {utc_now()}, `{shlex.join(['mtest', *argv])}`)"
