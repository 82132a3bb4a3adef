"""``run(config)``: collect → select → plan → drive → record → learn → report.

Read top to bottom, this is the data flow of one run. Each stage takes values
and returns values; the only side effects are the pool's children, the
recorder's appends and the store's writes, all owned by their modules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor import (
    artifacts,
    changes,
    collecting,
    containers,
    covdata,
    events,
    github,
    isolate,
    junit,
    learn,
    plan,
    report,
    select,
    slowest,
    timeline,
)
from supervisor.bundle import read_diagnoses
from supervisor.collecting import Found
from supervisor.config import Config, FlakyResult, Mode, usable_cpus
from supervisor.console import Console
from supervisor.drive import DriveOptions, Pool, Stop, StopControl
from supervisor.index import Index, fs_reader
from supervisor.interrupts import Guard
from supervisor.launcher import LOCAL, Launcher, container_for, outermost, sandbox_for
from supervisor.model import (
    Chunk,
    Collection,
    Fingerprint,
    Outcome,
    TestItem,
    TestRecord,
    final_records,
)
from supervisor.progress import Progress, StopRule
from supervisor.reaper import ANCESTRY_VAR, Watchdog
from supervisor.record import Context, Recorder, holder_line, utc_now
from supervisor.resources import run_peak
from supervisor.result import Announcer, Hooks, Kind, OnEvent, RunEvent, RunResult
from supervisor.resume import Layout, ResumePoint, load_resume_point, save_state
from supervisor.runsetup import Once
from supervisor.store import DURATIONS, INDEX, QUARANTINE, Store, project_container_lock

FINISH_RESERVE_S = 0.7
"""Of a --budget, what is kept for stopping children, learning and reporting."""


@dataclass(frozen=True, kw_only=True)
class Knowledge:
    """What earlier runs taught: durations and the quarantine state machine."""

    durations: learn.Durations
    quarantine: learn.Quarantine
    last_run: Mapping[str, Outcome] | None = None
    """``--failed``: each test's final outcome in the last run (``None``: none recorded)."""


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)


def run(
    config: Config, console: Console, hooks: Hooks | None = None,
    *, sinks: Sequence[OnEvent] = (), stop: StopControl | None = None,
) -> RunResult:  # fmt: skip
    """One run (one cycle of ``mtest service``): its result, with the exit code.

    ``stop``: the caller's, to learn that a signal stopped the run even when it
    came too late to change the result (``mtest service`` then ends)."""
    store = Store(config.gates_dir, console.warn)
    if config.mode is Mode.COLLECT_ONLY:
        began, clock = utc_now(), time.monotonic()
        code = list_selection(store, config, console)
        return RunResult(exit_code=code, run_id="", started=began, ended=utc_now(),
                         wall_s=time.monotonic() - clock, gates_dir=config.gates_dir)  # fmt: skip
    announcer = Announcer(hooks or Hooks(), *sinks)
    with store.locked(holder_line(config.argv, os.getpid())):
        point: ResumePoint | None = None
        if config.mode is Mode.RESUME:
            point = load_resume_point(store, config)
            config = point.config
            if not point.outstanding:
                return _finish_resumed(store, config, console, point, announcer)
        return _run_locked(store, config, console, point, announcer, stop or StopControl())


def _result(
    config: Config, store: Store, facts: report.RunFacts, finals: Mapping[str, TestRecord],
    code: int, *, began: str,
) -> RunResult:  # fmt: skip
    records = tuple(finals.values())
    slowest = max(records, key=lambda r: r.duration_s, default=None)
    return RunResult(
        exit_code=code,
        run_id=facts.run_id,
        started=began,
        ended=utc_now(),
        wall_s=facts.elapsed_s or 0.0,
        counts={o.value: n for o, n in report.counts(records).items()},
        records=records,
        outstanding=facts.outstanding,
        interrupted=facts.interrupted,
        gates_dir=config.gates_dir,
        summary_path=store.paths.summary,
        records_path=store.paths.run_log,
        tiers=tuple(sorted(config.tiers)),
        budget_s=config.budget_s,
        coverage_ratio=None if facts.coverage is None else facts.coverage.ratio,
        peak_rss_bytes=facts.peak_rss_bytes,
        containers=facts.containers,
        orphans=facts.orphans,
        slowest=None if slowest is None else (slowest.test_id, slowest.duration_s),
    )


@dataclass(frozen=True, kw_only=True)
class Selected:
    """What this invocation runs: the chosen tests cut into chunks, and what was left out."""

    chosen: tuple[TestItem, ...]
    left_out: tuple[select.LeftOut, ...]
    chunks: tuple[Chunk, ...]
    selected: tuple[str, ...]
    """Every test id of the run (a resumed run: the original run's)."""
    estimates: dict[str, float]


def _run_locked(
    store: Store, config: Config, console: Console, point: ResumePoint | None,
    announcer: Announcer, stop: StopControl,
) -> RunResult:  # fmt: skip
    """The run, once the state lock is held. A container run first takes the container
    lock and checks the engine and the image: an error there leaves the last run's
    records as they were."""
    run_id = point.run_id if point else new_run_id()
    with Guard(stop) as guard, _engine(config, store, run_id, stop, console) as engine:
        return _run_guarded(store, config, console, point, announcer, stop, guard, engine, run_id)


def _run_guarded(
    store: Store, config: Config, console: Console, point: ResumePoint | None,
    announcer: Announcer, stop: StopControl, guard: Guard, engine: containers.Spec | None,
    run_id: str,
) -> RunResult:  # fmt: skip
    started, began = time.monotonic(), utc_now()
    diff = changes.diff_for(config) if point is None else None  # before any worker starts
    measure = covdata.prepare(config, store, run_id) if config.cov else None
    last = last_outcomes(store) if config.failed_only and point is None else None
    store.begin_run(fresh=point is None)
    if config.budget_s is not None:
        stop.deadline = started + config.budget_s - FINISH_RESERVE_S
    child_cov = measure.child_env if measure else ""
    tracker = timeline.Tracker(run_id=run_id, started=began, origin=started, workers=config.jobs)
    announcer.add(tracker)
    # The setup runs before any worker (collection too) starts; its teardown after
    # the last one ended (``once.finish``), or when the block is left on an error.
    # The watchdog starts first: if mtest is killed during the setup, what the setup
    # started dies too.
    store.paths.children.mkdir(parents=True, exist_ok=True)
    with (
        Watchdog(run_id, record=store.paths.children / "watchdog.txt") as watchdog,
        Once(config, store, run_id, stop, console) as once,
        Pool(_drive_options(config, store, run_id, coverage=child_cov, env=once.env,
                            container=engine), watchdog=watchdog) as pool,
    ):  # fmt: skip
        guard.follow(pool)  # a signal from a worker names its test
        # A resumed run lists only the files of its outstanding tests; a run of node
        # ids collects just those; any other run is lazy: its workers walk the suite
        # and import a test file only when it is new, changed, or about to run
        # (unless the project turned that off: its collection hooks need every test).
        listed = point.listed() if point else None
        lazy = (
            config.lazy_collection
            and point is None
            and not any("::" in path for path in config.paths)
        )
        stored = (store.load(INDEX, Index.from_json) or Index()) if lazy else Index()
        if lazy:
            pool.start_lazy(_eager_workers(config, stored))
        else:
            rootdir, inifile = (point.layout.rootdir, point.layout.inifile) if point else ("", None)
            pool.start(listed, rootdir=rootdir, inifile=inifile)  # it collects while we read on
        knowledge = dataclasses.replace(load_knowledge(store), last_run=last)
        recorder = Recorder(
            store=store,
            console=console,
            context=_context(config, run_id, knowledge, engine),
            announcer=announcer,
        )
        if point:
            recorder.seed(point.records)
            console.line(f"mtest: resuming run {run_id}: {len(point.outstanding)} test(s) to go")
        found = _collect_lazy(pool, stop, config, stored) if lazy else None
        collection = pool.collection if found else pool.collect(stop)
        assert collection is not None
        tracker.collected()
        recorder.learn_items(collection, config.tier_map)
        for problem in collection.problems:
            recorder.record_new(problem)
        files = changes.narrow(config, store, diff, collection, console, save=True)
        picked = _pick(config, collection, knowledge, point, costs=found.costs if found else {},
                       say=console.line, files=files)  # fmt: skip
        layout = Layout(
            rootdir=collection.fingerprint.rootdir, inifile=collection.fingerprint.inifile
        )
        save_state(store, config, run_id, picked.selected, done=recorder.finals, complete=False,
                   layout=layout)  # fmt: skip
        pool.admit = _admits(config, knowledge)
        if announcer.wants_events:
            pool.announce = announcer.event
            announcer.event(RunEvent(kind=Kind.RUN_STARTED, run_id=run_id, ts=utc_now(),
                                     tests=picked.selected))  # fmt: skip
        outstanding = _drive(pool, config, recorder, stop, picked)
        checked = _check_orphans(pool, config, store, recorder, stop, picked)
        pool.release()  # the children finish their sessions while we learn and report
        once.finish()  # the teardown, now that no test runs
        complete = not outstanding and not stop.interrupted
        coverage = (
            None if measure is None
            else covdata.combine(config, store, measure, run_id, complete=complete)
        )  # fmt: skip
        if found is not None:
            _learn_index(store, pool, config, stored, found)
            picked = _reconciled(picked, pool.vanished, pool.appeared, pool.admit)
        quarantine = learn_from(
            store, knowledge, recorder, collection, config.whole_suite, narrowed=listed is not None
        )
        facts = report.RunFacts(
            run_id=run_id,
            elapsed_s=time.monotonic() - started,
            interrupted=stop.interrupted,
            stopped_reason=_stop_reason(stop, outstanding, config),
            outstanding=len(outstanding),
            left_out=tuple((lo.reason, lo.count, lo.estimate_s) for lo in picked.left_out),
            resumed=point is not None,
            notes=_notes(pool, store, guard),
            quarantine_kinds=quarantine.kinds(),
            coverage=coverage,
            peak_rss_bytes=run_peak(pool.peak_rss_bytes, recorder.all_records()),
            containers=None if pool.fleet is None else pool.fleet.counts.as_dict(),
            orphans=checked,
        )
        finals, code = _report(store, config, recorder, picked.selected, facts, layout)
    # The children have finished their sessions now: say how long it all took, and
    # every note, also those that came after the summary was written.
    wall = dataclasses.replace(facts, elapsed_s=time.monotonic() - started)
    result = _result(config, store, wall, finals, code, began=began)
    announcer.event(RunEvent(kind=Kind.RUN_FINISHED, run_id=run_id, ts=result.ended,
                             result=result))  # fmt: skip
    _views(config, store, console, result, tracker.timeline(), recorder, quarantine,
           knowledge.durations, coverage)  # fmt: skip
    notes = (*_notes(pool, store, guard), *announcer.notes)
    _print_end(console, finals, wall, picked.left_out, code, store, tuple(dict.fromkeys(notes)))
    return result


def _eager_workers(config: Config, stored: Index) -> int:
    """Workers to start before the plan is known: one, unless the index says a
    whole-suite run will keep several busy (a narrow run, or a first run, starts more
    only once the plan or the files to collect say so)."""
    narrow = (
        config.tiers != frozenset(range(select.MAX_TIER + 1)) or config.shard is not None
        or config.budget_s is not None or not config.whole_suite or config.failed_only
    )  # fmt: skip
    return 1 if narrow else max(1, min(config.jobs, len(stored.files)))


def _collect_lazy(pool: Pool, stop: StopControl, config: Config, stored: Index) -> Found:
    """Walk the suite, look its files up in the index, and collect only the stale ones
    (spread over the workers on a first run); ``pool.collection`` is the suite then."""
    walk = pool.list_files(stop)
    hello = pool.layout or events.Hello(pid=None)
    root = Path(hello.rootdir or config.cwd)
    reader = fs_reader(root)
    found = collecting.look_up(
        stored, hello, walk, args=config.pytest_args, environ=os.environ, reader=reader
    )
    sizes = {file: _size(root / file) for file in found.stale}
    workers = collecting.workers_for(found.stale, jobs=config.jobs, cold=not stored.files)
    pool.collect_lazy(stop, collecting.spread(found.stale, sizes, workers), found.known)
    pool.import_costs.update(found.costs)
    if stored.files and found.env_changed:
        pool.notes.append(
            "the test index was made for another environment "
            f"({', '.join(found.env_changed)} changed): every test file was collected again"
        )
    return found


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _learn_index(store: Store, pool: Pool, config: Config, stored: Index, found: Found) -> None:
    """Write what this run's collections said into the index (``collecting.updated``)."""
    hello = pool.layout or events.Hello(pid=None)
    walk = pool.walk.files if pool.walk is not None else ()
    new = collecting.updated(
        stored, found, pool.listings, pool.file_problems.values(),
        reader=fs_reader(Path(hello.rootdir or config.cwd)), blamed=pool.blamed_files,
        existing=walk if config.whole_suite else None,
    )  # fmt: skip
    store.write_json(INDEX, new.to_json())
    if pool.vanished:
        pool.notes.append(
            f"{len(pool.vanished)} test(s) the index listed were gone when their file was "
            f"collected (first: {pool.vanished[0]}); the index is updated"
        )
    if pool.appeared:
        pool.notes.append(
            f"{len(pool.appeared)} test(s) the index had not listed appeared when their file "
            f"was collected (first: {pool.appeared[0].test_id}); the index is updated"
        )


def _admits(config: Config, knowledge: Knowledge) -> Callable[[TestItem], bool]:
    """For a test found in a file the index had listed without it: would this run
    have chosen it? Only a run that picks by tier and quarantine alone can tell."""
    if config.shard is not None or config.budget_s is not None or config.changed is not None:
        return lambda item: False
    quarantined = knowledge.quarantine.quarantined_ids() if config.skip_quarantined else set()

    def admit(item: TestItem) -> bool:
        tier = select.tier_of(item.markers, config.tier_map)
        return tier in config.tiers and item.test_id not in quarantined

    return admit


def _reconciled(
    picked: Selected, vanished: list[str], appeared: list[TestItem],
    admit: Callable[[TestItem], bool],
) -> Selected:  # fmt: skip
    """The run's tests as they turned out: without those that did not exist, with those
    the index had missed and the run took."""
    if not vanished and not appeared:
        return picked
    gone = frozenset(vanished)
    added = tuple(t for t in appeared if admit(t))
    return dataclasses.replace(
        picked,
        chosen=(*(t for t in picked.chosen if t.test_id not in gone), *added),
        selected=(*(t for t in picked.selected if t not in gone), *(t.test_id for t in added)),
    )


def _finish_resumed(
    store: Store, config: Config, console: Console, point: ResumePoint, announcer: Announcer
) -> RunResult:
    """``--resume`` when every selected test has a record: report the run, start nothing.

    The run stopped after its last record but before it was marked complete (a
    crash, a kill): no child, no watchdog, no collection is needed to finish it.
    """
    started, began = time.monotonic(), utc_now()
    measure = covdata.prepare(config, store, point.run_id) if config.cov else None
    store.begin_run(fresh=False)
    coverage = (
        None if measure is None
        else covdata.combine(config, store, measure, point.run_id, complete=True)
    )  # fmt: skip
    knowledge = load_knowledge(store)
    recorder = Recorder(
        store=store,
        console=console,
        context=_context(config, point.run_id, knowledge),
        announcer=announcer,
    )
    recorder.seed(point.records)
    console.line(f"mtest: resuming run {point.run_id}: nothing left to run")
    facts = report.RunFacts(
        run_id=point.run_id,
        elapsed_s=time.monotonic() - started,
        interrupted=False,
        stopped_reason="",
        outstanding=0,
        left_out=(),
        resumed=True,
        notes=tuple(store.notes),
        quarantine_kinds=knowledge.quarantine.kinds(),
        coverage=coverage,
        peak_rss_bytes=run_peak(None, recorder.all_records()),
    )
    finals, code = _report(store, config, recorder, point.selected, facts, point.layout)
    result = _result(config, store, facts, finals, code, began=began)
    announcer.event(RunEvent(kind=Kind.RUN_FINISHED, run_id=point.run_id, ts=result.ended,
                             result=result))  # fmt: skip
    nothing_ran = timeline.Timeline(run_id=point.run_id, started=began, workers=config.jobs)
    _views(config, store, console, result, nothing_ran, recorder, knowledge.quarantine,
           knowledge.durations, coverage)  # fmt: skip
    notes = (*store.notes, *announcer.notes)
    _print_end(console, finals, facts, (), code, store, tuple(dict.fromkeys(notes)))
    return result


def _views(
    config: Config, store: Store, console: Console, result: RunResult, drawn: timeline.Timeline,
    recorder: Recorder, quarantine: learn.Quarantine, durations: learn.Durations,
    coverage: covdata.Total | None,
) -> None:  # fmt: skip
    """The run's timeline, HTML report and trace (``artifacts``), and ``--durations``.

    They only describe the run: a bug in drawing them is a warning, never the run's
    end (its records, summary and exit code are already written)."""
    try:
        artifacts.write_views(
            config, store, console, result=result, timeline=drawn,
            attempts=recorder.all_records(), quarantine=quarantine, durations=durations,
            coverage=None if coverage is None else coverage.display or None,
        )  # fmt: skip
    except Exception as exc:  # see the docstring
        console.warn(
            f"could not write the report or the trace ({type(exc).__name__}: {exc}); "
            "the run's records and summary are complete — please report this bug"
        )
    if config.durations is not None:
        lines = slowest.durations_lines(result.records, config.durations,
                                        verbosity=console.verbosity)  # fmt: skip
        for line in lines:
            console.line(line, level=-1)


def warn_jobs(config: Config, console: Console) -> None:
    """Once per command line: ``-j`` above the cores this process may use."""
    cores = usable_cpus()
    if config.jobs > cores:
        console.warn(
            f"-j {config.jobs} is more than the {cores} usable core(s): "
            "the workers will take turns on them"
        )


def _pick(
    config: Config, collection: Collection, knowledge: Knowledge, point: ResumePoint | None,
    *, costs: Mapping[str, float], say: Callable[[str], None],
    files: frozenset[str] | None = None,
) -> Selected:  # fmt: skip
    """Select the tests and cut them into chunks (``costs``: files still to import;
    ``only``: the test files ``--changed`` keeps).

    Selection weighs the tests' own estimates (the budget counts collection as a
    fixed cost); the plan also sees each file's import, on its first chosen test."""
    estimates = learn.estimates(knowledge.durations, collection.items)
    chosen, left_out = select_tests(config, collection, knowledge, estimates, point, files, say=say)
    chunks = plan.make_chunks(
        chosen, jobs=config.jobs, first=_priority(config, knowledge, chosen),
        estimates=collecting.with_import_costs(estimates, chosen, costs),
    )  # fmt: skip
    selected = point.selected if point else tuple(t.test_id for t in chosen)
    return Selected(
        chosen=chosen, left_out=left_out, chunks=tuple(chunks), selected=selected,
        estimates=estimates,
    )  # fmt: skip


def _drive(
    pool: Pool, config: Config, recorder: Recorder, stop: StopControl, picked: Selected
) -> list[str]:
    """Run the chunks, then the retries; return the ids that never started."""
    rule = StopRule(
        fail_fast=config.fail_fast, maxfail=config.maxfail,
        flaky_fails=config.flaky_result is FlakyResult.FAIL,
    )  # fmt: skip
    progress = Progress(
        console=recorder.console, recorder=recorder, stop=stop, rule=rule,
        chosen=picked.chosen, estimates=picked.estimates, jobs=config.jobs,
    )  # fmt: skip
    # Files that failed to import in this invocation count, as for pytest's --maxfail
    # (a resumed run counts afresh: it continues after the stop).
    progress.count_failures(sum(rule.gates(r) for r in recorder.session))
    progress.running = pool.running
    watch = isolate.Watch(progress)
    outstanding = pool.run(picked.chunks, watch, stop, tick=progress.show)
    # -x/--maxfail stop everything, reruns too; --fail-fast only stops new tests.
    if stop.mode in (Stop.HALT, Stop.AFTER_TEST):
        progress.finish()
        return outstanding
    first_chunk = len(picked.chunks)
    if config.isolate_failures:  # first: retries are for what fails alone too
        first_chunk = isolate.isolate(
            pool, recorder, stop, watch, first_chunk=first_chunk,
            find_polluter=config.find_polluter, retries=config.retries > 0,
        )  # fmt: skip
    if config.retries:
        _retry(pool, config, recorder, stop, first_chunk=first_chunk)
    progress.finish()
    return outstanding


def _check_orphans(
    pool: Pool, config: Config, store: Store, recorder: Recorder, stop: StopControl,
    picked: Selected,
) -> dict[str, int] | None:  # fmt: skip
    """``--include-orphans``: after the tests and their retries, each orphan's import check
    (``orphancheck``); ``None`` without the flag, and in shards other than the first
    (merged shards would have each check once per shard)."""
    if not config.include_orphans or (config.shard is not None and config.shard[0] != 1):
        return None
    from supervisor import orphancheck

    used = max((r.chunk for r in recorder.session), default=-1)
    first = max(len(picked.chunks), used + 1)
    return orphancheck.run(pool, config, store, recorder, stop, first_chunk=first)


def list_selection(store: Store, config: Config, console: Console) -> int:
    """``--collect-only``: collect and select as a run would; print the chosen ids.

    Nothing under ``.gates/`` is written (the children's files go to a temporary
    directory), so the last run's records stay. Exit 0, 5 when nothing is
    selected, 1 when a file failed to import.
    """
    stop, run_id = StopControl(), new_run_id()
    diff = changes.diff_for(config)
    with (
        tempfile.TemporaryDirectory(prefix="mtest-collect-") as tmp,
        Guard(stop),
        _engine(config, store, run_id, stop, console) as engine,
    ):
        options = _drive_options(config, store, run_id, work_dir=Path(tmp), container=engine)
        with Pool(dataclasses.replace(options, jobs=1)) as pool:
            pool.start()
            knowledge = load_knowledge(store)
            collection = pool.collect(stop)
    if config.failed_only:
        knowledge = dataclasses.replace(knowledge, last_run=last_outcomes(store))
    estimates = learn.estimates(knowledge.durations, collection.items)
    files = changes.narrow(config, store, diff, collection, console, save=False)
    chosen, left_out = select_tests(
        config, collection, knowledge, estimates, None, files, say=console.line
    )
    for item in chosen:
        console.always(item.test_id)
    for problem in collection.problems:
        console.line(f"{problem.outcome.value.upper()} {problem.test_id} - {problem.message}")
    for lo in left_out:
        console.line(f"left out by {lo.reason}: {lo.count} test(s), ~{lo.estimate_s:.1f}s")
    console.line(f"mtest: {len(chosen)} of {len(collection.items)} collected test(s) selected")
    if any(p.outcome.gating for p in collection.problems):
        return report.EXIT_FAILED
    return report.EXIT_OK if chosen else report.EXIT_NO_TESTS


def _report(
    store: Store, config: Config, recorder: Recorder, selected: tuple[str, ...],
    facts: report.RunFacts, layout: Layout,
) -> tuple[dict[str, TestRecord], int]:  # fmt: skip
    """Write everything that describes the run; return its results and exit code."""
    # Every record of this run counts: the selected tests, and the files that
    # failed to import or crashed or hung a child while it imported them.
    finals = dict(recorder.finals)
    code = report.exit_code(
        finals, interrupted=facts.interrupted, selected=len(selected),
        flaky_fails=config.flaky_result is FlakyResult.FAIL,
        coverage_failed=facts.coverage is not None and facts.coverage.failed,
    )  # fmt: skip
    summary = report.summary_markdown(finals, facts, code, recorder.session)
    store.write_summary(summary)
    recorder.flush_chunks()
    items = recorder.context.items
    # The traceback lives only in the bundles; the CI reports read it back from there.
    diagnoses = read_diagnoses(store.paths.last_run, recorder.all_records())
    if config.junit_xml is not None:
        junit.write_junit(
            config.junit_xml, recorder.all_records(), items, diagnoses,
            properties=_junit_properties(facts),
        )  # fmt: skip
    github.publish(recorder.console.command, finals, items, summary, diagnoses=diagnoses)
    done = not facts.outstanding and not facts.interrupted
    save_state(store, config, facts.run_id, selected, done=recorder.finals, complete=done,
               exit_code=code, layout=layout)  # fmt: skip
    return finals, code


def last_outcomes(store: Store) -> dict[str, Outcome] | None:
    """Each test's final outcome in the last run's ``run.jsonl`` (``None``: no record)."""
    finals = final_records(store.read_records())
    return {test_id: r.outcome for test_id, r in finals.items()} if finals else None


def load_knowledge(store: Store) -> Knowledge:
    durations = store.load(DURATIONS, learn.Durations.from_json) or learn.Durations()
    quarantine = store.load(QUARANTINE, learn.Quarantine.from_json) or learn.Quarantine()
    return Knowledge(durations=durations, quarantine=quarantine)


def learn_from(
    store: Store, knowledge: Knowledge, recorder: Recorder, coll: Collection, whole_suite: bool,
    *, narrowed: bool = False,
) -> learn.Quarantine:  # fmt: skip
    """Fold this invocation's records into durations and quarantine (each record once).

    Only a run that collected the whole suite tells which tests no longer exist
    (a run of one file, or with ``-k``, does not collect the others).
    ``narrowed``: mtest listed only some files (a resumed run): neither which
    tests exist nor the suite's collection time can be learned from it.
    """
    if not recorder.session:
        return knowledge.quarantine
    whole_suite = whole_suite and not narrowed
    collected = frozenset(t.test_id for t in coll.items) if whole_suite else None
    durations = learn.update_durations(
        knowledge.durations, recorder.session, startup_s=coll.startup_s,
        collect_s=None if narrowed else coll.collect_s, collected=collected,
    )  # fmt: skip
    store.write_json(DURATIONS, durations.to_json())
    forgotten = learn.retention_note(knowledge.durations, durations)
    if forgotten is not None:
        store.notes.append(forgotten)
    finals = {r.test_id: recorder.finals[r.test_id] for r in recorder.session}
    quarantine = learn.update_quarantine(
        knowledge.quarantine, finals, now=utc_now(), run_id=recorder.context.run_id,
        collected=collected,
    )  # fmt: skip
    store.write_json(QUARANTINE, quarantine.to_json())
    return quarantine


def select_tests(
    config: Config, collection: Collection, knowledge: Knowledge,
    estimates: dict[str, float], point: ResumePoint | None,
    files: frozenset[str] | None = None, *, say: Callable[[str], None] = lambda line: None,
) -> tuple[tuple[TestItem, ...], tuple[select.LeftOut, ...]]:  # fmt: skip
    items = collection.items
    if point is not None:
        wanted = set(point.outstanding)
        return tuple(t for t in items if t.test_id in wanted), ()
    only = None
    if config.failed_only:
        rerun = select.rerun_failed(items, knowledge.last_run, frozenset(knowledge.durations.tests))
        only = rerun.keep
        say(f"mtest: {rerun.note}")
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
        only=only,
        files=files,
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
    """Re-run each failed, hung or crashed test alone in a fresh child, up to ``retries`` times
    (a rerun alone for order dependence counts as the first)."""
    for _ in range(config.retries):
        again = [
            TestItem(test_id=r.test_id, file=r.test_id.split("::", 1)[0])
            for r in recorder.session
            if recorder.finals[r.test_id] is r and r.outcome.retryable
            and "::" in r.test_id and recorder.attempts[r.test_id] <= config.retries
        ]  # fmt: skip
        if not again or stop.current(time.monotonic()) is Stop.HALT:
            return
        chunks = [Chunk(index=first_chunk + i, tests=(t,)) for i, t in enumerate(again)]
        first_chunk += len(chunks)
        pool.run(chunks, recorder, stop, dedicated=True)


def _context(
    config: Config, run_id: str, knowledge: Knowledge, engine: containers.Spec | None = None
) -> Context:
    runner = () if engine is None else containers.repro_args(
        engine, mounts=outermost([config.rootdir, config.cwd]), cwd=config.cwd
    )  # fmt: skip
    return Context(
        runner=runner,
        run_id=run_id,
        tiers={},
        items={},
        quarantined=knowledge.quarantine.quarantined_ids(),
        fingerprint=Fingerprint(),
        python=config.python,
        pytest_args=config.pytest_args,
        cwd=str(config.cwd),
    )


@contextlib.contextmanager
def _engine(
    config: Config, store: Store, run_id: str, stop: StopControl, console: Console
) -> Iterator[containers.Spec | None]:
    """``--container``: the run holds the container lock, the engine answers and has the
    image (loaded from ``--image-tar`` if need be), before the setup and any worker."""
    if config.container is None:
        yield None
        return
    engine = containers.resolve(config.container_runtime, config.docker_host, os.environ)
    lock = config.container_lock or project_container_lock(config.rootdir)
    with containers.EngineLock(lock, waiting=console.line, stopped=lambda: stop.interrupted):
        containers.check(engine)
        if containers.ensure_image(engine, config.container, config.image_tar):
            console.line(f"mtest: loaded image {config.container} from {config.image_tar}")
        yield containers.Spec(
            engine=engine, image=config.container, run_id=run_id, args=config.container_args,
            labels=containers.labels_for(
                run_id, pid=os.getpid(), host=containers.this_host(),
                start=containers.process_start(os.getpid()),
            ),
        )  # fmt: skip


def _drive_options(
    config: Config, store: Store, run_id: str, *, work_dir: Path | None = None,
    coverage: str = "", env: Mapping[str, str] | None = None,
    container: containers.Spec | None = None,
) -> DriveOptions:  # fmt: skip
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
        work_dir=store.paths.children if work_dir is None else work_dir,
        junit_dir=store.paths.last_run if work_dir is None else work_dir,
        cache_dir=store.paths.cache,
        coverage=coverage,
        max_rss_bytes=config.max_rss_bytes,
        launcher=_launcher(config, store, work_dir, container),
        env=dict(env or {}),
    )


def _launcher(
    config: Config, store: Store, work_dir: Path | None, container: containers.Spec | None
) -> Launcher:
    own = [config.gates_dir, store.paths.cache, *([] if work_dir is None else [work_dir])]
    if container is not None:
        return container_for(container, own=own, project=[config.rootdir, config.cwd])
    if not config.sandbox:
        return LOCAL
    return sandbox_for(
        own=[config.gates_dir, store.paths.cache, *([] if work_dir is None else [work_dir])],
        writable=config.sandbox_writable, project=[config.rootdir, config.cwd],
        python=config.python, env=os.environ,
    )  # fmt: skip


def _stop_reason(stop: StopControl, outstanding: list[str], config: Config) -> str:
    if stop.interrupted:
        return "interrupted"
    if outstanding and stop.mode is Stop.AFTER_TEST:
        return "-x" if config.maxfail == 1 else f"--maxfail={config.maxfail}"
    if outstanding and stop.mode is Stop.DRAIN:
        return "--fail-fast"
    if outstanding:
        return "the --budget ran out"
    return ""


def _print_end(
    console: Console, finals: dict[str, TestRecord], facts: report.RunFacts,
    left_out: tuple[select.LeftOut, ...], code: int, store: Store, notes: tuple[str, ...],
) -> None:  # fmt: skip
    for lo in left_out:
        console.line(f"left out by {lo.reason}: {lo.count} test(s), ~{lo.estimate_s:.1f}s")
    if facts.outstanding:
        console.line(
            f"not run: {facts.outstanding} test(s) ({facts.stopped_reason}); "
            "`mtest --resume` runs them"
        )
    for note in notes:
        console.line(f"note: {note}")
    if facts.coverage is not None and facts.coverage.failed:
        console.line(facts.coverage.fail_line, level=-1)
    line = report.summary_line(finals, facts)
    console.line(f"mtest: {line} (exit {code}; details in {store.paths.summary})", level=-1)


def _junit_properties(facts: report.RunFacts) -> dict[str, str]:
    """The testsuite's properties: ``coverage`` (percent, as the summary shows it)."""
    total = facts.coverage
    return {} if total is None or total.percent is None else {"coverage": total.display}


def _notes(pool: Pool, store: Store, guard: Guard) -> tuple[str, ...]:
    """What the run must tell besides outcomes, each once: the pool's, the signals', the store's."""
    return tuple(dict.fromkeys((*pool.notes, *guard.notes, *store.notes)))
