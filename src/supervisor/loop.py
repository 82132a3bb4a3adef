"""The event loop under a pool: reading the children's events, deadlines, burial.

``Loop`` holds what the loop knows; ``drive.Pool`` builds on it with the
lifecycle (start, collect, run, release, close) and the dispatch of chunks.
One turn waits on the doorbells with a short timeout (it never sleeps), reads
every child's new events (typed, ``parse.decode_events``; a forked copy's are
dropped), checks the deadline each child is under (``blame.overdue``) and
steps its kill sequence, and buries the children that exited: the test still
in flight at the kill is blamed (``blame.culprit``), the tests of its chunk
that never started go back to the front of the queue, and a session that
failed on its own becomes one ``error`` record (``blame.session_failure``).
Every time is mtest's own ``time.monotonic()`` when it read the event.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable

from supervisor import blame, containers, events, order, parse, reaper, resources
from supervisor.control import (
    DEFAULT_TIMEOUT_S,
    EXIT_WAIT_S,
    LINGER_S,
    MAX_EARLY_DEATHS,
    POLL_S,
    SESSION_ID,
    STARTUP_LIMIT_S,
    DriveOptions,
    ResultSink,
    Stop,
    StopControl,
)  # fmt: skip
from supervisor.errors import MtestError
from supervisor.model import Chunk, Collection, Outcome, TestItem, TestResult, file_of
from supervisor.record import utc_now
from supervisor.result import Kind, RunEvent
from supervisor.worker import NO_PYTEST_EXIT, State, Worker, signal_group

APPEARED_CHUNKS = 900_000
"""Chunks of tests that appeared in indexed files are numbered from here."""


class Loop:
    """What the event loop knows about the children, and one turn of it."""

    def __init__(self, options: DriveOptions, *, watchdog: reaper.Watchdog | None = None) -> None:
        self.options = options
        self.workers: list[Worker | None] = [None] * options.jobs
        self.selector = selectors.DefaultSelector()
        self.seq = 0
        self.ignored: list[str] = []
        self.blamed_files: set[str] = set()
        self.blamed: list[TestResult] = []
        """Import blames found while collecting, until the listing is complete."""
        self.collection: Collection | None = None
        self.limits: dict[str, float] = {}
        """Tests with their own ``@pytest.mark.timeout``."""
        self.deaths = blame.Deaths(limit=MAX_EARLY_DEATHS)
        self.timeout_s = options.timeout_s or DEFAULT_TIMEOUT_S
        self.timeout_known = options.timeout_s is not None
        self.sink: ResultSink = lambda result: None
        self.queue: deque[Chunk] = deque()
        self.dedicated = False
        self.width = options.jobs
        """How many slots the plan uses (``plan.lanes``); slots past it stay empty."""
        self.owner: dict[int, int] = {}
        """Chunk index → the slot whose lane it was dealt to."""
        self.lanes: dict[int, tuple[str, ...]] = {}
        """Slot → the files its first worker collects, for lanes not started yet."""
        self.listed: tuple[str, ...] | None = None
        """The files the listing child collects; ``None``: the whole suite."""
        self.layout: events.Hello | None = None
        """The listing child's hello: its rootdir and ini file, for children given files."""
        self.stop = StopControl()
        """The run's stop control: an interrupt while children shut down still counts."""
        self.watchdog: reaper.Watchdog | None = watchdog
        """The run's watchdog: the caller's (started before the setup), else the pool's own."""
        self.own_watchdog: reaper.Watchdog | None = None
        self.notes: list[str] = []
        """What the run must tell the user that is not a test outcome (one line each)."""
        self.state_dir_gone = False
        # Lazy mode (``Pool.start_lazy``): every worker walks the suite and collects a
        # file only when it is named (``collect``) or a chunk of it comes.
        self.lazy = False
        self.walk: events.Files | None = None
        """The first lazy worker's list of the suite's test files."""
        self.walk_problems: list[TestResult] = []
        """What failed while that worker walked the suite (a conftest that did not import)."""
        self.walk_costs = (0.0, 0.0)
        """That worker's start-up seconds (spawn to hello) and walk seconds (to the list)."""
        self.listings: dict[str, events.FileListing] = {}
        """Every file a lazy worker collected in this run, as it listed it."""
        self.file_problems: dict[str, TestResult] = {}
        """Files a lazy worker failed to import or that skipped at import (first report)."""
        self.to_collect: deque[tuple[str, ...]] = deque()
        """Batches of files waiting for a lazy worker to collect them (``Pool.collect_lazy``)."""
        self.spread = 1
        """How many slots may hold a lazy worker while files are being collected."""
        self.indexed: frozenset[str] = frozenset()
        """Files whose tests came from the index, not from a collection in this run."""
        self.vanished: list[str] = []
        """Tests the index listed that their file, collected now, no longer has."""
        self.known_ids: dict[str, frozenset[str]] = {}
        """The tests the index listed for each of ``indexed``."""
        self.appeared: list[TestItem] = []
        """Tests a file the index knew has now, that the index did not list."""
        self.import_costs: dict[str, float] = {}
        """Seconds to import each indexed file (a worker that has not weighs a steal)."""
        self.dealt = 0
        """How many times chunks were dealt into lanes (a worker's share is per deal)."""
        self.shares: dict[int, tuple[str, ...]] = {}
        """Slot → the tests of its lane in files the deal split over several lanes."""
        self.admit: Callable[[TestItem], bool] = lambda item: False
        """Whether such a test is one the run would have chosen (it then runs too)."""
        self.announce: Callable[[RunEvent], None] | None = None
        """The caller's event callbacks (``supervisor.run``'s ``on_event``, ``--events``)."""
        self.buried_peak: int | None = None
        """The largest RSS of the workers buried so far (``peak_rss_bytes``)."""
        self.recycled: list[int | None] = []
        """The RSS of each worker replaced between tests for ``--max-rss``."""
        spec = options.launcher.container
        self.fleet = None if spec is None else containers.Fleet(spec.engine, options.run_id)
        """A container launcher's containers: removals, the sweep, the counts."""
        options.work_dir.mkdir(parents=True, exist_ok=True)

    @property
    def peak_rss_bytes(self) -> int | None:
        """The largest RSS any worker of this pool had, as far as mtest saw."""
        peaks = [w.peak_rss_bytes for w in self.workers if w is not None]
        return max((p for p in (self.buried_peak, *peaks) if p is not None), default=None)

    def _live(self) -> list[Worker]:
        return [w for w in self.workers if w is not None and w.state is not State.DEAD]

    def _assign(self, worker: Worker, chunk: Chunk) -> None:
        self._ensure_work_dir()
        ids_path = self.options.work_dir / f"{worker.seq:04d}-chunk{chunk.index:04d}.ids"
        # A file name that is not UTF-8 gives node ids with surrogates: they go back as bytes.
        ids = "".join(f"{t.test_id}\n" for t in chunk.tests)
        ids_path.write_text(ids, encoding="utf-8", errors="surrogateescape")
        if worker.lazy and worker.dealt != self.dealt:
            worker.dealt = self.dealt
            share = self.shares.get(worker.slot)
            if share:  # its share of the files the plan split over lanes
                path = self.options.work_dir / f"{worker.seq:04d}-scope{self.dealt:03d}.ids"
                path.write_text("".join(f"{i}\n" for i in share), encoding="utf-8",
                                errors="surrogateescape")  # fmt: skip
                self._send(worker, f"scope {path}\n")
        worker.assign(chunk, time.monotonic())
        self._send(worker, f"run {chunk.index} {ids_path}\n")
        if self.announce is not None:
            tests = tuple(t.test_id for t in chunk.tests)
            self._tell(Kind.CHUNK_STARTED, worker, chunk=chunk.index, tests=tests)

    def _tell(
        self, kind: Kind, worker: Worker, *, chunk: int, test_id: str | None = None,
        tests: tuple[str, ...] = (), reason: str = "",
    ) -> None:  # fmt: skip
        """One event for the caller, about this worker."""
        if self.announce is not None:
            self.announce(RunEvent(
                kind=kind, run_id=self.options.run_id, ts=utc_now(), worker=worker.slot,
                pid=worker.pgid, chunk=chunk, test_id=test_id, tests=tests, reason=reason,
            ))  # fmt: skip

    def _ensure_work_dir(self) -> None:
        """A test may have removed ``.gates/``: say so once, and make the work dir again."""
        if not self.options.work_dir.is_dir():
            if not self.state_dir_gone:
                self.state_dir_gone = True
                self.notes.append("the state directory was removed during the run")
            self.options.work_dir.mkdir(parents=True, exist_ok=True)

    def _send(self, worker: Worker, line: str) -> None:
        # A child that is gone is handled when it is reaped.
        with contextlib.suppress(OSError):
            os.write(worker.control, os.fsencode(line))

    def _send_collect(self, worker: Worker, files: tuple[str, ...]) -> None:
        """Tell a lazy worker to collect these files (it lists them when done)."""
        self._ensure_work_dir()
        path = self.options.work_dir / f"{worker.seq:04d}-collect{len(worker.held):05d}.files"
        path.write_text(
            "".join(f"{f}\n" for f in files), encoding="utf-8", errors="surrogateescape"
        )
        worker.begin_collect(files, time.monotonic())
        self._send(worker, f"collect {path}\n")

    def _send_exit(self, worker: Worker) -> None:
        self._send(worker, "exit\n")
        worker.begin_exit(time.monotonic())

    def _kill_orphans(self, ended: Worker | None = None) -> None:
        """What the run's children left behind dies now: forked copies, daemons, orphans.

        ``ended``: the worker whose chunk just ended (its descendants die too);
        the other workers that are busy keep theirs.
        """
        live = self._live()
        keep = [pid for w in live for pid in (w.proc.pid, *w.host_pids)]
        if self.watchdog is not None:
            keep.append(self.watchdog.pid)
        # A child whose processes are not known yet (a sandbox before its hello) keeps all.
        busy = [
            w.proc.pid for w in live
            if (w is not ended and w.state is not State.READY) or w.probe_pid is None
        ]  # fmt: skip
        reaper.kill_orphans(keep, busy=busy)

    # -- one turn of the loop ------------------------------------------------

    def _turn(self, stop: StopControl) -> None:
        for key, _ in self.selector.select(POLL_S):
            self._drain_fd(key.fd)
        if self.fleet is not None:
            self.fleet.poll()
        now = time.monotonic()
        for worker in self._live():
            self._read_events(worker)
            worker.files.cap_output()
            self._watch_memory(worker, now)
            self._check_deadlines(worker, now, stop)
            if worker.proc.poll() is not None:
                self._bury(worker)

    def _drain_fd(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._unregister(fd)

    def _unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(fd)

    def _read_events(self, worker: Worker) -> None:
        data = worker.files.read_events()
        if not data:
            return
        decoded, used = parse.decode_events(data)
        worker.files.keep_pending(data[used:])
        for event in decoded:
            if worker.speaks_for(event):
                self._on_event(worker, event, time.monotonic())
            elif worker.foreign_pid == event.pid and not worker.fork_noted:
                worker.fork_noted = True
                self.notes.append(
                    f"another process (pid {event.pid}, a forked copy?) wrote events into child "
                    f"{worker.seq:04d}'s stream{_during(worker.in_flight)}; they were ignored"
                )

    def _on_event(self, worker: Worker, event: events.Event, now: float) -> None:
        match event:
            case events.Hello():
                worker.on_hello(event, now)
                if not self.timeout_known and event.timeout is not None:
                    self.timeout_s, self.timeout_known = event.timeout, True
            case events.CollectStart(file=path):
                worker.on_collect_start(path, now)
            case events.CollectEnd(file=path):
                worker.on_collect_end(path, now)
            case events.CollectProblem():
                problem = parse.collect_problem(event, worker=worker.slot, child=worker.seq)
                worker.problems.append(problem)
                if worker.lazy and worker.walked:
                    self._file_problem(worker, problem)
            case events.Collected():
                self._on_collected(worker, event, now)
            case events.Files():
                self._on_files(worker, event, now)
            case events.Listed():
                self._on_listed(worker, event, now)
            case events.Unknown(ids=ids, partial=partial):
                for test_id in ids:
                    worker.on_unknown(test_id)
                    if worker.lazy and self._accounted(test_id, partial=partial):
                        continue
                    self._record(worker, parse.unknown_result(
                        test_id, chunk=_index(worker), worker=worker.slot, child=worker.seq
                    ))  # fmt: skip
            case events.Start(test_id=test_id):
                worker.on_start(test_id, now, rss_bytes=event.rss_bytes)
                self.deaths = self.deaths.after_progress()
                self._tell(Kind.TEST_STARTED, worker, chunk=_index(worker), test_id=test_id)
            case events.End() if event.test_id == worker.in_flight:  # else: a duplicate
                result = parse.result_from_end(
                    event, chunk=_index(worker), worker=worker.slot, child=worker.seq
                )
                if order.isolates(result.outcome, result.when):  # what ran before it, for order.py
                    result = dataclasses.replace(
                        result, predecessors=order.predecessors(worker.started, event.test_id)
                    )
                worker.on_end(event.test_id, now, rss_bytes=event.rss_bytes)
                self._record(worker, result)
            case events.Done():
                rest = worker.on_done(now)
                if rest is not None:  # stopped after a test: the rest waits
                    self.queue.appendleft(rest)
                self._kill_orphans(ended=worker)
                if event.over_rss:  # the probe ended its chunk for --max-rss
                    self._retire(worker)
            case events.Threads(test_id=test_id, names=names):
                self.notes.append(
                    f"{test_id} left non-daemon thread(s) running ({', '.join(names)}); "
                    f"its worker is stopped {LINGER_S:g}s after its session ends"
                )
            case events.SessionError():
                worker.on_session_error(event)
            case events.Exit(code=code):
                worker.on_exit(code, now)

    def _file_problem(self, worker: Worker, problem: TestResult) -> None:
        """A file a lazy worker collected failed to import (or skipped): once per file;
        recorded now when the run is under way, else part of the collection."""
        if problem.test_id in self.file_problems or problem.test_id in self.blamed_files:
            return
        self.file_problems[problem.test_id] = problem
        if self.collection is not None:
            self._record(worker, problem)

    def _accounted(self, test_id: str, *, partial: bool) -> bool:
        """A test a lazy worker did not find: its file's error stands for it, or the
        index listed a test its file no longer has (noted, no record). ``partial``: the
        worker made only part of the file: nothing can be concluded (an error record)."""
        file = file_of(test_id)
        if file in self.file_problems or file in self.blamed_files:
            return True
        if file in self.indexed and not partial:
            self.vanished.append(test_id)
            return True
        return False

    def _on_files(self, worker: Worker, event: events.Files, now: float) -> None:
        worker.on_files(now)
        if self.walk is None:
            self.walk, self.layout = event, worker.hello
            self.walk_problems = list(worker.problems)
            hello_at = worker.hello_at if worker.hello_at is not None else worker.spawned
            self.walk_costs = (max(0.0, hello_at - worker.spawned), max(0.0, now - hello_at))
        self._start_waiting_chunk(worker, now)

    def _on_listed(self, worker: Worker, event: events.Listed, now: float) -> None:
        for listing in event.files:
            if listing.partial:  # a share of the file, not its listing
                continue
            self.listings[listing.file] = listing
            self.limits.update((t.test_id, t.timeout) for t in listing.items if t.timeout)
            if listing.file in self.known_ids and self.collection is not None:
                self._reconcile(listing)
        count = sum(len(listing.items) for listing in event.files)
        worker.on_listed([listing.file for listing in event.files], count, now)

    def _reconcile(self, listing: events.FileListing) -> None:
        """Tests an indexed file has now that the index did not list: the run takes
        those it would have chosen, in a chunk of their own."""
        known = self.known_ids[listing.file]
        new = [t for t in listing.items if t.test_id not in known]
        self.known_ids[listing.file] = known | {t.test_id for t in new}
        self.appeared.extend(new)
        admitted = tuple(t for t in new if self.admit(t))
        if admitted:
            index = APPEARED_CHUNKS + len(self.appeared)
            self.queue.append(Chunk(index=index, tests=admitted, estimate_s=0.0))

    def _start_waiting_chunk(self, worker: Worker, now: float) -> None:
        """A child started for one chunk (a replacement, a retry) is ready: run it."""
        if worker.chunk is None or worker.state is not State.READY:
            return
        if self.stop.current(now) is Stop.AFTER_TEST:
            chunk = worker.release_chunk()
            if chunk is not None:
                self.queue.appendleft(chunk)
            self._send_exit(worker)
        else:
            self._assign(worker, worker.chunk)

    def _record(self, worker: Worker, result: TestResult) -> None:
        worker.count(result)
        self.sink(result)

    def _on_collected(self, worker: Worker, event: events.Collected, now: float) -> None:
        worker.on_collected(event.count, now)
        self._start_waiting_chunk(worker, now)  # a dedicated child's chunk waited for this
        if self.collection is not None or event.items is None:
            return  # only slot 0's children send the whole listing (see _spawn)
        self.limits = {t.test_id: t.timeout for t in event.items if t.timeout is not None}
        self.layout = worker.hello
        hello_at = worker.hello_at if worker.hello_at is not None else worker.spawned
        startup_s, collect_s = parse.start_costs(
            spawned=worker.spawned, hello_at=hello_at, now=now, hello=worker.hello, collected=event
        )
        self.collection = parse.collection_from(
            event.items,
            [*self.blamed, *(p for p in worker.problems if p.test_id not in self.blamed_files)],
            worker.hello,
            startup_s=startup_s,
            collect_s=collect_s,
        )

    # -- memory ----------------------------------------------------------------

    def _watch_memory(self, worker: Worker, now: float) -> None:
        """Sample the child's memory (at most every ``SAMPLE_S``); replace an idle child
        that is above ``--max-rss`` (one running a test is ``blame.overdue``'s)."""
        if worker.sampled_at is None or now - worker.sampled_at >= resources.SAMPLE_S:
            pid = worker.probe_pid if worker.launcher.samples else None
            worker.on_sample(None if pid is None else resources.sample(pid), now)
        limit = self.options.max_rss_bytes
        if (
            worker.state is State.READY and worker.chunk is None and not worker.retiring
            and resources.recycles(rss_bytes=worker.rss_bytes, limit_bytes=limit, ran=worker.ran)
        ):  # fmt: skip
            self._retire(worker)

    def _retire(self, worker: Worker) -> None:
        """Above ``--max-rss`` after a test: the child ends its session and runs nothing
        more; what it had not run is in the queue, for a fresh child."""
        if worker.retiring or worker.state is not State.READY:
            return
        worker.retiring = True
        if self.queue:  # else it would leave now anyway: nothing was moved
            self.recycled.append(worker.rss_bytes)
        self._send_exit(worker)

    # -- deadlines and death ---------------------------------------------------

    def _limits(self) -> blame.Limits:
        return blame.Limits(
            timeout_s=self.timeout_s, startup_s=STARTUP_LIMIT_S, linger_s=LINGER_S,
            exit_s=EXIT_WAIT_S, per_test=self.limits, max_rss_bytes=self.options.max_rss_bytes,
        )  # fmt: skip

    def _check_deadlines(self, worker: Worker, now: float, stop: StopControl) -> None:
        """The kill sequence, one step per turn: stacks, re-check, SIGTERM, SIGKILL."""
        limits = self._limits()
        if worker.kill is None:
            due = blame.overdue(worker.watch(), limits, now)
            if due is None:
                return
            worker.begin_kill(due, now)
        elif worker.awaiting_stacks:
            if not worker.stacks_settled(now):
                return
            if not blame.still_due(worker.kill, worker.watch(), limits, now):
                self._note_escape(worker.kill)
                worker.cancel_kill()
                return
            worker.confirm_kill()
        forced = worker.kill_reason in (blame.KillReason.HALT, blame.KillReason.CLOSING)
        grace = stop.grace(self.options.kill_grace_s) if forced else self.options.kill_grace_s
        worker.step_kill(now, grace, hurry=stop.hurry)

    def _note_escape(self, kill: blame.Deadline | None) -> None:
        if kill is not None and kill.reason is blame.KillReason.HUNG:
            self.notes.append(
                f"{kill.subject} ran past its {kill.limit_s:g}s timeout and ended only when "
                "mtest asked for its stacks; the tests after it ran on"
            )

    def _bury(self, worker: Worker) -> None:
        """The child has exited: read what it left, kill its group, blame, requeue."""
        self._read_events(worker)
        signal_group(worker.pgid, signal.SIGKILL)
        if worker.peak_rss_bytes is not None:
            self.buried_peak = max(self.buried_peak or 0, worker.peak_rss_bytes)
        if self.watchdog is not None:
            self.watchdog.forget(worker.pgid)
        self._unregister(worker.doorbell)
        for fd in (worker.control, worker.doorbell):
            with contextlib.suppress(OSError):
                os.close(fd)
        collecting = worker.state is State.COLLECTING or (
            worker.lazy and worker.in_flight is None and bool(worker.collecting)
        )
        if self.fleet is not None:
            self._bury_container(worker, self.fleet)
        self._tell_death(worker)
        worker.mark_dead()
        try:
            if worker.kill_reason not in (blame.KillReason.HALT, blame.KillReason.CLOSING):
                if worker.walked and collecting:
                    self._blame_lazy(worker)
                elif worker.collected_at is None and worker.chunk is None:
                    self._blame_collection(worker)
                else:
                    accounted = self._blame_run(worker)
                    self._check_session(worker, blamed=accounted)
        finally:
            worker.files.close()
        self._ensure_work_dir()

    def _bury_container(self, worker: Worker, fleet: containers.Fleet) -> None:
        """A container whose CLI was killed (it did not stop within the grace) or that did
        not start is removed now (``--rm`` sees only to the others) and counted."""
        failed_start = worker.hello is None and worker.proc.returncode in containers.START_FAILURES
        if worker.killed:
            fleet.timeouts += 1
        if failed_start:
            fleet.start_failures += 1
        if worker.killed or failed_start:
            fleet.remove_later(worker.name)

    def _tell_death(self, worker: Worker) -> None:
        """``worker_died`` for a child that did not end as asked (a signal, a kill, a
        test or chunk left in flight), before it is blamed."""
        code = worker.returncode
        asked = worker.kill_reason in (blame.KillReason.HALT, blame.KillReason.CLOSING)
        unfinished = worker.in_flight is not None or worker.chunk is not None
        if self.announce is None or asked or (code is not None and code >= 0 and not unfinished):
            return
        reason = parse.describe_exit(code)
        if worker.kill_reason is not None:
            reason += f" (mtest killed it: {worker.kill_reason.value})"
        self._tell(Kind.WORKER_DIED, worker, chunk=_index(worker), test_id=worker.in_flight,
                   reason=reason)  # fmt: skip

    def _blame_run(self, worker: Worker) -> bool:
        """Record the test the death is blamed on, requeue the rest.

        Returns whether the death is accounted for (a test blamed, or an early
        death that is retried) rather than left to the session's verdict.
        """
        chunk = worker.chunk
        who = blame.culprit(worker.kill, worker.in_flight)
        early = who.how is blame.Blamed.NOBODY and chunk is not None and not worker.progressed
        if early:
            # Died before starting any test: no test is to blame. The chunk goes
            # back to the queue, and children that keep doing this end the run.
            self._early_death(worker)
        rest = worker.release_chunk()
        if who.how in (blame.Blamed.HUNG, blame.Blamed.CRASHED) and who.test_id is not None:
            rest = _without(rest, who.test_id)
            hung = who.how is blame.Blamed.HUNG
            duration = time.monotonic() - worker.in_flight_since
            info = worker.blame(with_stacks=hung)
            self._record(worker, parse.hung_result(
                who.test_id, info, self._limits().of(who.test_id), self.options.kill_grace_s,
                duration_s=duration, chunk=_index_of(chunk),
            ) if hung else parse.crash_result(
                who.test_id, info, duration_s=duration, chunk=_index_of(chunk),
            ))  # fmt: skip
        if rest is not None and rest.tests:
            self.queue.appendleft(rest)
        return early or who.how in (blame.Blamed.HUNG, blame.Blamed.CRASHED)

    def _check_session(self, worker: Worker, *, blamed: bool) -> None:
        """A session that failed on its own is one ``error`` record for that child."""
        explained = (
            worker.failures > 0 or worker.unknown > 0 or worker.collected_count == 0
            or any(p.outcome is Outcome.ERROR for p in worker.problems)
        )  # fmt: skip
        why = blame.session_failure(
            errors=worker.session_errors, exit_code=worker.exit_code,
            returncode=worker.returncode, kill=worker.kill_reason, explained=explained,
            blamed=blamed, rss_bytes=worker.rss_bytes,
        )  # fmt: skip
        if why is None:
            return
        hung_at_exit = worker.kill_reason is blame.KillReason.EXIT_HUNG
        out = f"{self.options.work_dir.name}/{worker.seq:04d}.out.txt"
        longrepr = "\n\n".join(e.longrepr for e in worker.session_errors if e.longrepr)
        self.sink(TestResult(
            test_id=SESSION_ID.format(seq=worker.seq), outcome=Outcome.ERROR, duration_s=0.0,
            message=f"{why} (the child's output is in its bundle and {out})",
            longrepr=longrepr, child_output=worker.files.output_text(),
            stacks=worker.files.stacks_text() if hung_at_exit else "",
            worker=worker.slot, child=worker.seq,
        ))  # fmt: skip

    def _blame_lazy(self, worker: Worker) -> None:
        """A lazy worker died collecting files it was named, or a chunk's files: the file
        it was importing is blamed (and ignored from now on); the rest waits for another."""
        path = min(worker.collecting, key=worker.collecting.__getitem__, default=None)
        batch = tuple(f for f in worker.batch if f != path and f not in worker.held)
        chunk = worker.release_chunk()
        if path is None or path in self.blamed_files:
            self._early_death(worker)
        else:
            self.blamed_files.add(path)
            self.ignored.append(path)
            hung = worker.kill_reason is blame.KillReason.COLLECT_HUNG
            info = worker.blame(with_stacks=hung)
            self._record(
                worker,
                parse.import_blame(path, info, hung_after_s=self.timeout_s if hung else None),
            )
        if batch:
            self.to_collect.appendleft(batch)
        if chunk is not None:
            rest = tuple(t for t in chunk.tests if t.file != path)
            if rest:
                self.queue.appendleft(
                    Chunk(index=chunk.index, tests=rest, estimate_s=chunk.estimate_s)
                )

    def _blame_collection(self, worker: Worker) -> None:
        path = min(worker.collecting, key=worker.collecting.__getitem__, default=None)
        if path is not None and path not in self.blamed_files:
            self.blamed_files.add(path)
            self.ignored.append(path)
            hung = worker.kill_reason is blame.KillReason.COLLECT_HUNG
            info = worker.blame(with_stacks=hung)
            self.sink(parse.import_blame(path, info, hung_after_s=self.timeout_s if hung else None))
            return
        self._early_death(worker)

    def _early_death(self, worker: Worker) -> None:
        """A child died before it ran a test (and not in an import): retry, up to a point."""
        self.deaths = self.deaths.after_death()
        code = worker.exit_code if worker.exit_code is not None else worker.returncode
        listing = self.collection is None and blame.gives_up_listing(code)
        if not listing and not self.deaths.exhausted:
            return  # the next child tries again
        if (
            self.fleet is not None
            and worker.hello is None
            and (worker.proc.returncode in containers.START_FAILURES)
        ):
            raise containers.start_error(
                self.fleet.engine, worker.proc.returncode, worker.files.output_text(),
                python=self.options.python,
            )  # fmt: skip
        last = parse.last_error_line(worker.files.output_text())
        if code == NO_PYTEST_EXIT:
            raise MtestError(
                f"`{self.options.python}` ({self.options.python_origin}) cannot import pytest",
                hint=f"install pytest into that environment ({last})",
                code=4,
            )
        if listing:
            raise MtestError(f"pytest {parse.describe_exit(code)}: {last}", code=code or 4)
        when = (
            "before listing the tests"
            if self.collection is None
            else f"{self.deaths.in_a_row} times in a row before running a test"
        )
        ended = parse.death(code, signalled=worker.signalled, rss_bytes=worker.rss_bytes)
        raise MtestError(
            f"pytest {ended} {when}: {last}",
            hint=f"run `{self.options.python} -m pytest --collect-only` to see why",
            code=4 if code == 4 else 1,
        )


def _index(worker: Worker) -> int:
    return _index_of(worker.chunk)


def _index_of(chunk: Chunk | None) -> int:
    return chunk.index if chunk is not None else 0


def _without(chunk: Chunk | None, test_id: str) -> Chunk | None:
    if chunk is None:
        return None
    tests = tuple(t for t in chunk.tests if t.test_id != test_id)
    return Chunk(index=chunk.index, tests=tests, estimate_s=chunk.estimate_s)


def _during(test_id: str | None) -> str:
    return f" while {test_id} ran" if test_id is not None else ""
