"""``run(config)``: collect → select → plan → drive → record → learn → report.

Read top to bottom, this is the data flow of one run. Each stage takes values
and returns values; the only side effects are the pool's children, the
recorder's appends and the store's writes, all owned by their modules.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from supervisor import github, junit, learn, plan, report, select
from supervisor.bundle import read_diagnoses
from supervisor.config import Config, Mode
from supervisor.console import Console
from supervisor.drive import DriveOptions, Pool, Stop, StopControl
from supervisor.model import Chunk, Collection, Fingerprint, TestItem, TestRecord, TestResult
from supervisor.reaper import ANCESTRY_VAR
from supervisor.record import Context, Recorder, holder_line, utc_now
from supervisor.resume import ResumePoint, load_resume_point, save_state
from supervisor.store import Store

FINISH_RESERVE_S = 0.7
"""Of a --budget, what is kept for stopping children, learning and reporting."""
DURATIONS = "durations.json"
QUARANTINE = "quarantine.json"


@dataclass(frozen=True, kw_only=True)
class Knowledge:
    """What earlier runs taught: durations and the quarantine state machine."""

    durations: learn.Durations
    quarantine: learn.Quarantine


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)


def run(config: Config, console: Console) -> int:
    store = Store(config.gates_dir, console.warn)
    with store.locked(holder_line(config.argv, os.getpid())):
        point: ResumePoint | None = None
        if config.mode is Mode.RESUME:
            point = load_resume_point(store, config)
            config = point.config
        return _run_locked(store, config, console, point)


def _run_locked(store: Store, config: Config, console: Console, point: ResumePoint | None) -> int:
    started = time.monotonic()
    run_id = point.run_id if point else new_run_id()
    store.begin_run(fresh=point is None)
    budget_end = None if config.budget_s is None else started + config.budget_s - FINISH_RESERVE_S
    stop = StopControl(deadline=budget_end)
    with _interrupts(stop), Pool(_drive_options(config, store, run_id)) as pool:
        pool.start()  # the children start and collect while we read what earlier runs learned
        knowledge = load_knowledge(store)
        recorder = Recorder(
            store=store, console=console, context=_context(config, run_id, knowledge)
        )
        if point:
            recorder.seed(point.records)
            console.line(f"mtest: resuming run {run_id}: {len(point.outstanding)} test(s) to go")
        collection = pool.collect(stop)
        recorder.learn_items(collection, config.tier_map)
        for problem in collection.problems:
            recorder.record_new(problem)
        estimates = learn.estimates(knowledge.durations, collection.items)
        chosen, left_out = _select(config, collection, knowledge, estimates, point)
        chunks = plan.make_chunks(
            chosen,
            jobs=config.jobs,
            estimates=estimates,
            first=_priority(config, knowledge, chosen),
        )
        selected = point.selected if point else tuple(t.test_id for t in chosen)
        save_state(store, config, run_id, selected, done=recorder.finals, complete=False)
        progress = _Progress(
            console=console, recorder=recorder, stop=stop, fail_fast=config.fail_fast,
            chosen=chosen, estimates=estimates, jobs=config.jobs,
        )  # fmt: skip
        progress.running = pool.running
        outstanding = pool.run(chunks, progress, stop, tick=progress.show)
        if config.retries and stop.mode is not Stop.HALT:
            _retry(pool, config, recorder, stop, first_chunk=len(chunks))
        progress.finish()
        pool.release()  # the children finish their sessions while we learn and report
        learn_from(store, knowledge, recorder, collection)
        facts = report.RunFacts(
            run_id=run_id,
            elapsed_s=time.monotonic() - started,
            interrupted=stop.interrupted,
            stopped_reason=_stop_reason(stop, outstanding),
            outstanding=len(outstanding),
            left_out=tuple((lo.reason, lo.count, lo.estimate_s) for lo in left_out),
            resumed=point is not None,
        )
        finals, code = _report(store, config, recorder, selected, facts)
    # The children have finished their sessions now: say how long it all took.
    wall = dataclasses.replace(facts, elapsed_s=time.monotonic() - started)
    _print_end(console, finals, wall, left_out, code, store)
    return code


def _report(
    store: Store, config: Config, recorder: Recorder, selected: tuple[str, ...],
    facts: report.RunFacts,
) -> tuple[dict[str, TestRecord], int]:  # fmt: skip
    """Write everything that describes the run; return its results and exit code."""
    # Every record of this run counts: the selected tests, and the files that
    # failed to import or crashed or hung a child while it imported them.
    finals = dict(recorder.finals)
    code = report.exit_code(finals, interrupted=facts.interrupted, selected=len(selected))
    summary = report.summary_markdown(finals, facts, code, recorder.session)
    store.write_summary(summary)
    recorder.flush_chunks()
    items = recorder.context.items
    # The traceback lives only in the bundles; the CI reports read it back from there.
    diagnoses = read_diagnoses(store.paths.last_run, recorder.all_records())
    if config.junit_xml is not None:
        junit.write_junit(config.junit_xml, recorder.all_records(), items, diagnoses)
    github.publish(recorder.console.always, finals, items, summary, diagnoses=diagnoses)
    done = not facts.outstanding and not facts.interrupted
    save_state(store, config, facts.run_id, selected, done=recorder.finals, complete=done,
               exit_code=code)  # fmt: skip
    return finals, code


def load_knowledge(store: Store) -> Knowledge:
    durations = store.load(DURATIONS, learn.Durations.from_json) or learn.Durations()
    quarantine = store.load(QUARANTINE, learn.Quarantine.from_json) or learn.Quarantine()
    return Knowledge(durations=durations, quarantine=quarantine)


def learn_from(store: Store, knowledge: Knowledge, recorder: Recorder, coll: Collection) -> None:
    """Fold this invocation's records into durations and quarantine (each record once)."""
    if not recorder.session:
        return
    durations = learn.update_durations(
        knowledge.durations, recorder.session, startup_s=coll.startup_s, collect_s=coll.collect_s
    )
    store.write_json(DURATIONS, durations.to_json())
    finals = {r.test_id: recorder.finals[r.test_id] for r in recorder.session}
    quarantine = learn.update_quarantine(
        knowledge.quarantine, finals, now=utc_now(), run_id=recorder.context.run_id
    )
    store.write_json(QUARANTINE, quarantine.to_json())


def _select(
    config: Config, collection: Collection, knowledge: Knowledge,
    estimates: dict[str, float], point: ResumePoint | None,
) -> tuple[tuple[TestItem, ...], tuple[select.LeftOut, ...]]:  # fmt: skip
    items = collection.items
    if point is not None:
        wanted = set(point.outstanding)
        return tuple(t for t in items if t.test_id in wanted), ()
    startup, collect = learn.fixed_costs(knowledge.durations)
    selection = select.choose(
        items,
        tiers=config.tiers,
        tier_map=config.tier_map,
        quarantined=knowledge.quarantine.quarantined_ids(),
        skip_quarantined=config.skip_quarantined,
        shard=config.shard,
        budget_s=None if config.budget_s is None else max(0.0, config.budget_s - FINISH_RESERVE_S),
        jobs=config.jobs,
        estimates=estimates,
        known=frozenset(knowledge.durations.tests),
        recency=learn.failure_recency(knowledge.durations),
        costs=select.FixedCosts(startup_s=startup, collect_s=collect),
    )
    return selection.chosen, selection.left_out


def _priority(config: Config, knowledge: Knowledge, chosen: tuple[TestItem, ...]) -> frozenset[str]:
    """Under a budget, the tests that must run first: tier 0 and recent failures."""
    if config.budget_s is None:
        return frozenset()
    failing = learn.failure_recency(knowledge.durations)
    return frozenset(
        t.test_id
        for t in chosen
        if failing.get(t.test_id, 0.0) > 0 or select.tier_of(t.markers, config.tier_map) == 0
    )


def _retry(
    pool: Pool, config: Config, recorder: Recorder, stop: StopControl, *, first_chunk: int
) -> None:
    """Re-run each failed, hung or crashed test alone in a fresh child, up to ``retries`` times."""
    for _ in range(config.retries):
        again = [
            TestItem(test_id=r.test_id, file=r.test_id.split("::", 1)[0])
            for r in recorder.session
            if recorder.finals[r.test_id] is r and r.outcome.retryable
            and "::" in r.test_id
        ]  # fmt: skip
        if not again or stop.current(time.monotonic()) is Stop.HALT:
            return
        chunks = [Chunk(index=first_chunk + i, tests=(t,)) for i, t in enumerate(again)]
        first_chunk += len(chunks)
        pool.run(chunks, recorder, stop, dedicated=True)


def _context(config: Config, run_id: str, knowledge: Knowledge) -> Context:
    return Context(
        run_id=run_id,
        tiers={},
        items={},
        quarantined=knowledge.quarantine.quarantined_ids(),
        fingerprint=Fingerprint(),
        python=config.python,
        pytest_args=config.pytest_args,
        cwd=str(config.cwd),
    )


def _drive_options(config: Config, store: Store, run_id: str) -> DriveOptions:
    inherited = os.environ.get(ANCESTRY_VAR, "")
    return DriveOptions(
        python=config.python,
        python_origin=config.python_origin,
        pytest_args=config.pytest_args,
        paths=config.paths,
        cwd=config.cwd,
        jobs=config.jobs,
        timeout_s=config.timeout_s,
        kill_grace_s=config.kill_grace_s,
        run_id=run_id,
        ancestry=f"{inherited}:{run_id}" if inherited else run_id,
        work_dir=store.paths.children,
        junit_dir=store.paths.last_run,
        cache_dir=store.paths.cache,
    )


@contextmanager
def _interrupts(stop: StopControl) -> Iterator[None]:
    """First SIGINT/SIGTERM: halt (children get SIGTERM, grace, SIGKILL). Second: SIGKILL now."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.interrupted:
            stop.hurry = True
        stop.interrupted = True
        stop.mode = Stop.HALT

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _stop_reason(stop: StopControl, outstanding: list[str]) -> str:
    if stop.interrupted:
        return "interrupted"
    if outstanding and stop.mode is Stop.DRAIN:
        return "--fail-fast"
    if outstanding:
        return "the --budget ran out"
    return ""


class _Progress:
    """The pool's sink: records each result, applies --fail-fast, keeps the status line.

    The ETA scales the remaining estimate by the pace observed so far, so it
    corrects itself on a first run (unseen tests have a default estimate) and
    on a loaded machine.
    """

    def __init__(
        self, *, console: Console, recorder: Recorder, stop: StopControl, fail_fast: bool,
        chosen: tuple[TestItem, ...], estimates: dict[str, float], jobs: int,
    ) -> None:  # fmt: skip
        self.console = console
        self.recorder = recorder
        self.stop = stop
        self.fail_fast = fail_fast
        self.total = len(chosen)
        self.estimates = estimates
        self.remaining_s = sum(estimates.get(t.test_id, 0.0) for t in chosen)
        self.done_s = 0.0
        self.jobs = jobs
        self.started = time.monotonic()
        self.done: set[str] = set()
        self.failures = 0
        self.running: Callable[[], list[str]] = list

    def __call__(self, result: TestResult) -> None:
        self.recorder(result)
        if result.test_id not in self.done:
            self.done.add(result.test_id)
            estimate = self.estimates.get(result.test_id, 0.0)
            self.remaining_s -= estimate
            self.done_s += estimate
        final = self.recorder.finals[result.test_id]
        if final.outcome.gating and not final.quarantined:
            self.failures += 1
            if self.fail_fast and self.stop.mode is None:
                self.stop.mode = Stop.DRAIN
        self.show()

    def show(self) -> None:
        if not self.console.status_due():
            return
        elapsed = time.monotonic() - self.started
        pace = 1.0
        if self.done_s > 0:
            pace = min(20.0, max(0.2, elapsed / (self.done_s / self.jobs)))
        eta = max(0.0, self.remaining_s / self.jobs * pace)
        running = self.running()
        now = ""
        if running:
            more = f" +{len(running) - 1}" if len(running) > 1 else ""
            now = f", running {running[0]}{more}"
        self.console.status(
            f"[{len(self.done)}/{self.total}] {self.failures} failing, {elapsed:.0f}s elapsed, "
            f"~{eta:.0f}s to go{now}"
        )

    def finish(self) -> None:
        self.console.end_status()


def _print_end(
    console: Console, finals: dict[str, TestRecord], facts: report.RunFacts,
    left_out: tuple[select.LeftOut, ...], code: int, store: Store,
) -> None:  # fmt: skip
    for lo in left_out:
        console.line(f"left out by {lo.reason}: {lo.count} test(s), ~{lo.estimate_s:.1f}s")
    if facts.outstanding:
        console.line(
            f"not run: {facts.outstanding} test(s) ({facts.stopped_reason}); "
            "`mtest --resume` runs them"
        )
    line = report.summary_line(finals, facts)
    console.line(f"mtest: {line} (exit {code}; details in {store.paths.summary})", level=-1)
