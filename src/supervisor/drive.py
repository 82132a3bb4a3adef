"""Running chunks in pytest children: the event loop, deadlines, blame and the kill.

A ``Pool`` keeps up to ``jobs`` children ("workers"). Each worker is a pytest
session with the probe loaded: it collects once, then runs the chunks the pool
sends it, one after another, until told to exit. The first worker (slot 0)
collects the whole suite and lists it; the plan then deals the chunks into
lanes (``plan.lanes``: never more than there are chunks), and each other
lane's worker starts with only its lane's files (with the listing child's
``--rootdir`` and ini file, so node ids stay the whole suite's). A worker runs
only chunks whose files it collected; it takes another lane's chunk only when
that lane's worker is not still collecting for it. A replacement for a dead
worker collects only the files of the chunk it takes.

The loop (``loop.Loop``, which ``Pool`` builds on) is single-threaded and
never sleeps: it waits on the children's "doorbell" pipes with a short
timeout, reads each child's event stream incrementally (typed events,
``parse.decode_events``), and checks deadlines. Which deadline fires,
whether a kill still stands after the stacks were asked for, and who is
blamed are ``blame``'s pure decisions; time is always mtest's own
``time.monotonic()`` when it read an event. When a child dies or is
killed, the one test in flight is blamed (``crashed`` or ``hung``) and the
tests of its chunk that never started go back to the front of the queue, to
run in a fresh child. How a child is started and stopped is ``worker``'s business.
"""

from __future__ import annotations

import dataclasses
import os
import selectors
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from supervisor import blame, containers, events, parse, plan, reaper, resources
from supervisor.control import (
    BUDGET_KILL_GRACE_S,
    DEFAULT_TIMEOUT_S,
    DriveOptions,
    ResultSink,
    Stop,
    StopControl,
)  # fmt: skip
from supervisor.errors import MtestError
from supervisor.loop import Loop
from supervisor.model import Chunk, Collection, TestItem
from supervisor.worker import Launch, State, Worker

__all__ = [
    "BUDGET_KILL_GRACE_S", "DEFAULT_TIMEOUT_S", "DriveOptions", "Pool", "ResultSink", "Stop",
    "StopControl",
]  # fmt: skip


class Pool(Loop):
    """Up to ``jobs`` pytest children collecting once and running chunks on demand."""

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> Pool:
        reaper.set_subreaper()
        if self.watchdog is None:  # else the caller's, started before the setup
            self.watchdog = self.own_watchdog = reaper.Watchdog(
                self.options.run_id, record=self.options.work_dir / "watchdog.txt"
            )
        if self.fleet is not None:  # mtest killed: the watchdog removes the containers
            self.watchdog.engine(dataclasses.asdict(self.fleet.engine))
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(
        self, listed: Sequence[str] | None = None, *, rootdir: str = "", inifile: str | None = None
    ) -> None:
        """Start the worker that lists the suite (slot 0); the others start once the plan
        says what they will run, and collect only that.

        ``listed``: only these files (rootdir-relative) are listed, under ``rootdir``
        and ``inifile`` (a resumed run collects only what is outstanding).
        """
        self.sink = self.blamed.append
        if rootdir:
            self.layout = events.Hello(pid=None, rootdir=rootdir, inifile=inifile)
        self.listed = None if listed is None else tuple(listed)
        if self.workers[0] is None:
            self._spawn(0, files=self.listed, listing=True)

    def start_lazy(self, workers: int = 1) -> None:
        """Lazy mode: start ``workers`` children that walk the suite and list its test
        files without importing them; each collects a file when it is named or needed."""
        self.sink = self.blamed.append
        self.lazy = True
        for slot in range(max(1, min(workers, self.options.jobs))):
            if self.workers[slot] is None:
                self._spawn(slot)

    def list_files(self, stop: StopControl) -> events.Files:
        """Wait for the first lazy worker's list of the suite's test files."""
        self.stop = stop
        while self.walk is None:
            self._halt_if_stopped(stop, "before the test files were listed")
            self._turn(stop)
            primary = self.workers[0]
            if self.walk is None and (primary is None or primary.state is State.DEAD):
                self._spawn(0)
        return self.walk

    def collect_lazy(
        self, stop: StopControl, batches: Sequence[tuple[str, ...]],
        known: Mapping[str, tuple[TestItem, ...]],
    ) -> Collection:  # fmt: skip
        """Have lazy workers collect ``batches`` (one worker each, started as needed) and
        return the suite: each listed file's tests from ``known`` or from its collection.

        A file whose import crashed or hung its worker is blamed and left out; the
        rest of that worker's batch goes to a fresh one.
        """
        assert self.walk is not None
        self.stop = stop
        started = time.monotonic()
        self.to_collect = deque(b for b in batches if b)
        self.spread = max(1, min(self.options.jobs, len(self.to_collect)))
        while self.to_collect or any(w.state is State.COLLECTING for w in self._live()):
            self._halt_if_stopped(stop, "before the tests were listed")
            for slot in range(self.spread):
                worker = self.workers[slot]
                if not self.to_collect:
                    break
                if worker is None or worker.state is State.DEAD:
                    self._spawn(slot)
                elif worker.state is State.READY:
                    self._send_collect(worker, self.to_collect.popleft())
            self._turn(stop)
        items = [
            item
            for file in self.walk.files
            if file not in self.blamed_files
            for item in known.get(file, self.listings[file].items if file in self.listings else ())
        ]
        self.indexed = frozenset(f for f in self.walk.files if f in known)
        self.known_ids = {f: frozenset(t.test_id for t in known[f]) for f in self.indexed}
        problems = [
            *self.walk_problems, *self.blamed,
            *(p for f, p in self.file_problems.items() if f not in self.blamed_files),
        ]  # fmt: skip
        self.limits.update((t.test_id, t.timeout) for t in items if t.timeout is not None)
        self.import_costs.update((f, x.collect_s) for f, x in self.listings.items() if x.collect_s)
        startup_s, walk_s = self.walk_costs
        self.collection = parse.collection_from(
            items, problems, self.layout, startup_s=startup_s,
            collect_s=walk_s + time.monotonic() - started,
        )  # fmt: skip
        return self.collection

    def _halt_if_stopped(self, stop: StopControl, when: str) -> None:
        if stop.current(time.monotonic()) is Stop.HALT:
            self._halt(stop)
            why = "interrupted" if stop.interrupted else "the --budget ran out"
            raise MtestError(f"{why} {when}", code=2)

    def collect(self, stop: StopControl) -> Collection:
        """Wait for the first complete listing of the suite (starting the workers if needed).

        Its ``problems`` hold the files that failed to import or skipped at
        import, and the files whose import crashed or hung a child (those are
        ``--ignore``d by the children started after). Nothing is recorded here:
        the caller records the problems once it knows the environment.
        """
        self.stop = stop
        if not self._live():
            self.start()
        while self.collection is None:
            self._halt_if_stopped(stop, "before the tests were listed")
            self._turn(stop)
            primary = self.workers[0]
            if self.collection is None and (primary is None or primary.state is State.DEAD):
                self._spawn(0, files=self.listed, listing=True)  # slot 0's child lists
        return self.collection

    def run(
        self,
        chunks: Sequence[Chunk],
        sink: ResultSink,
        stop: StopControl,
        *,
        dedicated: bool = False,
        tick: Callable[[], None] = lambda: None,
    ) -> list[str]:
        """Run the chunks; return the ids that never started (outstanding).

        ``dedicated``: each chunk runs alone in a fresh child that collects only
        the chunk's tests and exits after it (``--retries``).
        """
        self.sink = sink
        self.stop = stop
        self.dedicated = dedicated
        self.queue = deque(chunks)
        self._deal(chunks)
        while True:
            now = time.monotonic()
            mode = stop.current(now)
            if mode is Stop.HALT:
                self._halt(stop)
                break
            # --fail-fast stops new tests, not the retries of tests that already ran.
            launching = mode is None or (dedicated and mode is Stop.DRAIN)
            if launching:
                self._dispatch(stop)
            elif mode is Stop.AFTER_TEST:
                self._stop_after_test()
            busy = [w for w in self._live() if w.chunk is not None]
            launchable = launching and any(stop.fits(c, now) for c in self.queue)
            if not busy and not launchable:
                break
            self._turn(stop)
            tick()
        outstanding = [t.test_id for chunk in self.queue for t in chunk.tests]
        self.queue.clear()
        return outstanding

    def running(self) -> list[str]:
        """The tests in flight right now, one per busy child."""
        return [w.in_flight for w in self._live() if w.in_flight is not None]

    def in_flight_by_pid(self) -> dict[int, str | None]:
        """Each live worker's pid and the test it is running (``None``: between tests)."""
        return {w.proc.pid: w.in_flight for w in self._live()}

    def release(self) -> None:
        """Let every child finish its session and wait for it (each state has a deadline).

        A session that fails on its own (``pytest_sessionfinish``, a session
        teardown, a plugin's exit status) is recorded before this returns.
        """
        now = time.monotonic()
        for worker in self._live():
            if worker.state in (State.STARTING, State.RUNNING):
                # It ran nothing yet, or an error is ending the run mid-chunk.
                worker.stop_now(blame.KillReason.CLOSING, now)
            elif worker.state is State.READY:
                self._send_exit(worker)
        self._wait_all()
        if self.fleet is not None:
            self.fleet.finish()
        note = resources.recycle_note(self.recycled, self.options.max_rss_bytes)
        if note is not None and note not in self.notes:
            self.notes.append(note)

    def close(self) -> None:
        """Let children finish their sessions, kill what is left, reap, clean up."""
        self.release()
        reaper.kill_descendants(self.options.run_id)
        self._kill_orphans()
        if self.own_watchdog is not None:
            self.own_watchdog.close()
            self.own_watchdog = None
        self.watchdog = None
        self.selector.close()

    def _wait_all(self) -> None:
        while self._live():
            if self.stop.interrupted:
                now = time.monotonic()
                for worker in self._live():
                    worker.stop_now(blame.KillReason.CLOSING, now)
            self._turn(self.stop)

    # -- spawning and dispatch ---------------------------------------------

    def _deal(self, chunks: Sequence[Chunk]) -> None:
        """Deal the chunks into lanes, one per worker the plan can use (never more than
        chunks); a lane whose slot has no worker yet starts one with the lane's files."""
        held = {f: w.slot for w in self._live() if w.lazy for f in w.held}
        dealt = plan.lanes(
            chunks, self.options.jobs, held=held if self.lazy else None, costs=self.import_costs
        )
        self.width = max(len(dealt), 1)
        self.owner = {chunk.index: slot for slot, lane in enumerate(dealt) for chunk in lane}
        self.dealt += 1
        self.shares = plan.shares(dealt) if self.lazy else {}
        empty = [slot for slot, w in enumerate(self.workers) if w is None or w.state is State.DEAD]
        self.lanes = {
            slot: plan.files_of(lane)
            for slot, lane in enumerate(dealt)
            if not self.dedicated and slot in empty
        }

    def _spawn(
        self, slot: int, chunk: Chunk | None = None, files: Sequence[str] | None = None,
        *, listing: bool = False,
    ) -> Worker:  # fmt: skip
        """Start a child in ``slot``: the whole suite (no chunk, no files), a lane's
        ``files``, or one ``chunk`` (its node ids when dedicated, else its files).
        ``listing``: the child lists what it collected (the run's collection)."""
        opts = self.options
        self._ensure_work_dir()
        self.seq += 1
        lazy = self.lazy and not self.dedicated
        targets, scope = (opts.paths, None) if lazy else self._targets(chunk, files)
        whole = scope is None
        env = {
            **opts.env,  # the setup's variables; mtest's own below win (runsetup refuses them)
            # One child lists every test with its markers; the others
            # only say they are ready (the listing is costly on big suites).
            "MTEST_LISTING": "full" if listing else "count",
            "MTEST_WORKER": str(slot),
            "MTEST_RUN_ID": opts.run_id,
            reaper.ANCESTRY_VAR: opts.ancestry,
        }
        if lazy:
            env["MTEST_LAZY"] = "1"
        if self.timeout_known:
            env["MTEST_TIMEOUT"] = f"{self.timeout_s:g}"
        if opts.coverage:
            env["MTEST_COVERAGE"] = opts.coverage
        if opts.max_rss_bytes is not None:
            env["MTEST_MAX_RSS"] = str(opts.max_rss_bytes)
        worker = Worker.start(
            Launch(
                python=opts.python,
                args=(
                    *(() if whole else self._layout_args()),
                    *(f"--ignore={path}" for path in self.ignored),
                    *opts.pytest_args,
                    *targets,
                ),
                cwd=opts.cwd,
                base=opts.work_dir / f"{self.seq:04d}",
                cache_dir=opts.cache_dir,
                env=env,
                launcher=opts.launcher,
                name=containers.name_for(opts.run_id, self.seq) if self.fleet else "",
            ),
            slot=slot,
            seq=self.seq,
        )
        if self.fleet is not None:
            self.fleet.started += 1
        self.selector.register(worker.doorbell, selectors.EVENT_READ, worker)
        if self.watchdog is not None:
            self.watchdog.watch(worker.pgid)
        if chunk is not None:
            worker.take_chunk(chunk)
        worker.scope = scope
        worker.lazy = lazy
        self.workers[slot] = worker
        return worker

    def _targets(
        self, chunk: Chunk | None, files: Sequence[str] | None
    ) -> tuple[Sequence[str], frozenset[str] | None]:
        """What a child is given to collect, and the files it will have collected
        (``None``: the whole suite)."""
        if chunk is not None:
            scope = plan.files_of([chunk])
            if self.dedicated:  # --retries: only the chunk's tests
                return tuple(self._located(t.test_id) for t in chunk.tests), frozenset(scope)
            files = scope
        if files is None:
            return self.options.paths, None
        return tuple(self._located(f) for f in files), frozenset(files)

    def _located(self, node_id: str) -> str:
        """A node id (relative to the rootdir) as an argument that names it from any
        working directory: under the listing child's rootdir."""
        rootdir = self.layout.rootdir if self.layout is not None else ""
        return os.path.join(rootdir, node_id) if rootdir else node_id

    def _layout_args(self) -> tuple[str, ...]:
        """What keeps a child given explicit files on the listing child's rootdir and ini
        file, so that its node ids are the whole suite's."""
        hello = self.layout
        if hello is None or not hello.rootdir:
            return ()
        ini = () if hello.inifile is None else ("-c", hello.inifile)
        return (f"--rootdir={hello.rootdir}", *ini)

    def _dispatch(self, stop: StopControl) -> None:
        """Give idle workers the next chunk that fits and that they collected; start
        workers where the plan's slots are empty."""
        for slot in range(self.width):
            worker = self.workers[slot]
            now = time.monotonic()
            fitting = [i for i, chunk in enumerate(self.queue) if stop.fits(chunk, now)]
            if not fitting:
                break
            if worker is None or worker.state is State.DEAD:
                self._fill(slot, fitting)
            elif worker.state is State.READY and not self.dedicated:
                index = self._choose(worker, fitting)
                if index is not None:
                    self._assign(worker, self._take(index))
        for worker in self._live():
            if worker.state is State.READY and (
                self.dedicated or not any(plan.runnable(c, worker.scope) for c in self.queue)
            ):
                self._send_exit(worker)

    def _fill(self, slot: int, fitting: list[int]) -> None:
        """An empty slot: its lane's first worker, or a replacement that collects only
        the files of the chunk it takes (a dedicated child: only the chunk's ids)."""
        lane = self.lanes.pop(slot, None)
        if lane is not None:
            self._spawn(slot, files=lane)
            return
        starting = sum(1 for w in self._live() if w.state is State.STARTING)
        if blame.replaces(dedicated=self.dedicated, waiting=len(fitting), starting=starting):
            self._spawn(slot, self._take(fitting[0]))

    def _choose(self, worker: Worker, fitting: list[int]) -> int | None:
        """The queue position of the chunk ``worker`` runs next (``plan.choose``).

        A lane is awaited while its worker starts, and while it is idle: it takes its
        own chunk in this same dispatch, so another must not take it first.
        """
        waiting = (State.STARTING, State.COLLECTING, State.READY)
        others = (w.slot for w in self._live() if w is not worker and w.state in waiting)
        awaited = {*self.lanes, *others}
        position = plan.choose(
            [self.queue[i] for i in fitting], slot=worker.slot, scope=worker.scope,
            owner=self.owner, awaited=awaited, held=worker.held, costs=self.import_costs,
        )  # fmt: skip
        return None if position is None else fitting[position]

    def _stop_after_test(self) -> None:
        """Ask every busy child to end its chunk after the test in flight (once each)."""
        for worker in self._live():
            if worker.state is State.RUNNING and not worker.stop_sent:
                worker.stop_sent = True
                self._send(worker, "stop\n")
            if worker.state is State.READY:
                self._send_exit(worker)

    def _take(self, index: int) -> Chunk:
        chunk = self.queue[index]
        del self.queue[index]
        return chunk

    def _halt(self, stop: StopControl) -> None:
        """Stop every child now; tests in flight get no record (they stay outstanding)."""
        now = time.monotonic()
        for worker in self._live():
            worker.stop_now(blame.KillReason.HALT, now)
            rest = worker.release_chunk()
            if rest is not None:
                self.queue.appendleft(rest)
        while self._live():
            self._turn(stop)
