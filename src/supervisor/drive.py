"""Running chunks in pytest children: the event loop, deadlines, blame and the kill.

A ``Pool`` keeps up to ``jobs`` children ("workers"). Each worker is a pytest
session with the probe loaded: it collects the suite once, reports the
listing, then runs the chunks the pool sends it, one after another, until told
to exit. All workers start at once and collect in parallel, so collection
costs one collection's wall time, not one per chunk.

The loop is single-threaded: it waits on the children's output pipes and
"doorbell" pipes with a short timeout, reads each child's event stream
incrementally, and checks deadlines. When a child dies or is killed, the one
test in flight is blamed (``crashed`` or ``hung``) and the tests of its chunk
that never started go back to the front of the queue, to run in a fresh child.
How a child is started and stopped is ``worker``'s business.
"""

from __future__ import annotations

import contextlib
import enum
import os
import selectors
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor import parse, reaper
from supervisor.errors import MtestError
from supervisor.model import Chunk, Collection, TestResult
from supervisor.worker import NO_PYTEST_EXIT, Launch, State, Worker, signal_group

POLL_S = 0.05
STACKS_WAIT_S = 0.3
"""After asking a hung child for its stacks, how long to let faulthandler write."""
EXIT_WAIT_S = 10.0
"""How long a child may take to finish its session (fixtures, atexit) after ``exit``."""
STARTUP_LIMIT_S = 120.0
"""A child that has not loaded the probe by then (a conftest that hangs) is killed."""
DEFAULT_TIMEOUT_S = 60.0
MAX_EARLY_DEATHS = 3
"""Children in a row that die before listing the tests (not in an import) end the run."""
BUDGET_KILL_GRACE_S = 0.3
"""At the budget's end the run must stop now: SIGKILL follows SIGTERM this soon."""


@dataclass(frozen=True, kw_only=True)
class DriveOptions:
    python: str
    python_origin: str
    """Where ``python`` came from, for messages (``--python``, PATH, ...)."""
    pytest_args: tuple[str, ...]
    """pytest options, given to every child after mtest's own."""
    paths: tuple[str, ...]
    """What to collect; a dedicated child gets its chunk's node ids instead."""
    cwd: Path
    jobs: int
    timeout_s: float | None
    """Per-test limit from mtest's flag or config; ``None``: pytest's ini, else 60 s."""
    kill_grace_s: float
    run_id: str
    ancestry: str
    work_dir: Path
    """Where each child's events, ids, stacks and output go (``last-run/children``)."""
    junit_dir: Path
    cache_dir: Path


class Stop(enum.Enum):
    DRAIN = "drain"
    """Launch nothing new; running chunks finish (``--fail-fast``)."""
    HALT = "halt"
    """Stop running children now (interrupt, budget deadline)."""
    AFTER_TEST = "after-test"
    """Tests in flight finish, nothing else starts (not even the rest of a running
    chunk); what did not start stays outstanding (``-x``, ``--maxfail``)."""


@dataclass(kw_only=True)
class StopControl:
    """What the pipeline asks of a running pool; read by the loop every turn."""

    mode: Stop | None = None
    hurry: bool = False
    """A second interrupt: SIGKILL at once instead of waiting the grace."""
    deadline: float | None = None
    """A ``time.monotonic()`` at which to halt (the budget)."""
    interrupted: bool = False
    """SIGINT/SIGTERM arrived: the run exits 2 and ``--resume`` continues it."""

    def grace(self, kill_grace_s: float) -> float:
        """The SIGTERM→SIGKILL grace for a halt: short when the budget's end forces it."""
        if self.deadline is not None and not self.interrupted:
            return min(kill_grace_s, BUDGET_KILL_GRACE_S)
        return kill_grace_s

    def fits(self, chunk: Chunk, now: float) -> bool:
        """Whether ``chunk`` is expected to finish before the deadline (always, without one)."""
        return self.deadline is None or now + chunk.estimate_s <= self.deadline

    def current(self, now: float) -> Stop | None:
        if self.deadline is not None and now >= self.deadline:
            return Stop.HALT
        return self.mode


ResultSink = Callable[[TestResult], None]


class Pool:
    """Up to ``jobs`` pytest children collecting once and running chunks on demand."""

    def __init__(self, options: DriveOptions) -> None:
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
        self.early_deaths = 0
        self.timeout_s = options.timeout_s or DEFAULT_TIMEOUT_S
        self.sink: ResultSink = lambda result: None
        self.queue: deque[Chunk] = deque()
        self.dedicated = False
        self.stop = StopControl()
        """The run's stop control: an interrupt while children shut down still counts."""
        self.watchdog: reaper.Watchdog | None = None
        options.work_dir.mkdir(parents=True, exist_ok=True)

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> Pool:
        reaper.set_subreaper()
        self.watchdog = reaper.Watchdog(self.options.run_id)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start every worker; each begins collecting the suite at once."""
        self.sink = self.blamed.append
        for slot in range(self.options.jobs):
            self._spawn(slot)

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
            if stop.current(time.monotonic()) is Stop.HALT:
                self._halt(stop)
                why = "interrupted" if stop.interrupted else "the --budget ran out"
                raise MtestError(f"{why} before the tests were listed", code=2)
            self._turn(stop)
            primary = self.workers[0]
            if self.collection is None and (primary is None or primary.state is State.DEAD):
                self._spawn(0)  # slot 0's child is the one that lists the suite
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
        return [w.in_flight[0] for w in self._live() if w.in_flight is not None]

    def release(self) -> None:
        """Tell every idle child to finish its session; ``close`` waits for them."""
        for worker in self._live():
            if worker.state is State.READY:
                self._send_exit(worker)

    def close(self) -> None:
        """Let idle children finish their sessions, kill what is left, reap, clean up."""
        for worker in self._live():
            if worker.state is not State.EXITING:
                self._send_exit(worker)
        deadline = time.monotonic() + EXIT_WAIT_S
        while self._live():
            now = time.monotonic()
            for worker in self._live():
                if (now >= deadline or self.stop.interrupted) and worker.kill_reason is None:
                    worker.kill_reason = "exit"
                if worker.kill_reason is not None:
                    grace = self.stop.grace(self.options.kill_grace_s)
                    worker.step_kill(now, grace, hurry=self.stop.hurry)
            self._turn(self.stop)
        reaper.kill_descendants(self.options.run_id)
        if self.watchdog is not None:
            self.watchdog.close()
            self.watchdog = None
        self.selector.close()

    # -- spawning and dispatch ---------------------------------------------

    def _live(self) -> list[Worker]:
        return [w for w in self.workers if w is not None and w.state is not State.DEAD]

    def _spawn(self, slot: int, chunk: Chunk | None = None) -> Worker:
        opts = self.options
        self.seq += 1
        worker = Worker.start(
            Launch(
                python=opts.python,
                args=(
                    *(f"--ignore={path}" for path in self.ignored),
                    *opts.pytest_args,
                    *(opts.paths if chunk is None else (t.test_id for t in chunk.tests)),
                ),
                cwd=opts.cwd,
                base=opts.work_dir / f"{self.seq:04d}",
                cache_dir=opts.cache_dir,
                env={
                    # One child lists every test with its markers; the others
                    # only say they are ready (the listing is costly on big suites).
                    "MTEST_LISTING": "full" if slot == 0 and chunk is None else "count",
                    "MTEST_WORKER": str(slot),
                    "MTEST_RUN_ID": opts.run_id,
                    reaper.ANCESTRY_VAR: opts.ancestry,
                },
            ),
            slot=slot,
            seq=self.seq,
        )
        self.selector.register(worker.doorbell, selectors.EVENT_READ, worker)
        if self.watchdog is not None:
            self.watchdog.watch(worker.pgid)
        if chunk is not None:
            worker.chunk = chunk
            worker.todo = deque(t.test_id for t in chunk.tests)
        self.workers[slot] = worker
        return worker

    def _dispatch(self, stop: StopControl) -> None:
        """Give idle workers the next chunk that fits; start workers where slots are empty."""
        for slot, worker in enumerate(self.workers):
            now = time.monotonic()
            fitting = [i for i, chunk in enumerate(self.queue) if stop.fits(chunk, now)]
            if not fitting:
                break
            if worker is None or worker.state is State.DEAD:
                # A child that is still collecting will take a chunk soon: start
                # another only for chunks beyond what those will take.
                starting = sum(1 for w in self._live() if w.state is State.STARTING)
                if self.dedicated or len(fitting) > starting:
                    self._spawn(slot, self._take(fitting[0]) if self.dedicated else None)
            elif worker.state is State.READY and not self.dedicated:
                self._assign(worker, self._take(fitting[0]))
        for worker in self._live():
            if worker.state is State.READY and (self.dedicated or not self.queue):
                self._send_exit(worker)

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

    def _assign(self, worker: Worker, chunk: Chunk) -> None:
        ids_path = self.options.work_dir / f"{worker.seq:04d}-chunk{chunk.index:04d}.ids"
        ids_path.write_text("".join(f"{t.test_id}\n" for t in chunk.tests), encoding="utf-8")
        worker.chunk = chunk
        worker.todo = deque(t.test_id for t in chunk.tests)
        worker.progressed = False
        worker.state = State.RUNNING
        self._send(worker, f"run {chunk.index} {ids_path}\n")

    def _send(self, worker: Worker, line: str) -> None:
        # A child that is gone is handled when it is reaped.
        with contextlib.suppress(OSError):
            os.write(worker.control, line.encode())

    def _send_exit(self, worker: Worker) -> None:
        self._send(worker, "exit\n")
        worker.state = State.EXITING

    def _halt(self, stop: StopControl) -> None:
        """Stop every child now; tests in flight get no record (they stay outstanding)."""
        for worker in self._live():
            worker.kill_reason = "halt"
            if worker.chunk is not None:
                self.queue.appendleft(_rest_of(worker.chunk, worker.todo, worker.in_flight))
                worker.chunk = None
                worker.in_flight = None
        grace = stop.grace(self.options.kill_grace_s)
        while self._live():
            now = time.monotonic()
            for worker in self._live():
                worker.step_kill(now, grace, hurry=stop.hurry)
            self._turn(stop)

    # -- one turn of the loop ------------------------------------------------

    def _turn(self, stop: StopControl) -> None:
        for key, _ in self.selector.select(POLL_S):
            worker = key.data
            assert isinstance(worker, Worker)
            self._drain_fd(worker, key.fd)
        now = time.monotonic()
        for worker in self._live():
            self._read_events(worker)
            worker.cap_output()
            self._check_deadlines(worker, now, stop)
            if worker.proc.poll() is not None:
                self._bury(worker)

    def _drain_fd(self, worker: Worker, fd: int) -> None:
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
        try:
            with open(worker.events_path, "rb") as handle:
                handle.seek(worker.offset)
                data = handle.read()
        except OSError:
            return
        if not data:
            return
        events, used = parse.decode_events(worker.pending + data)
        worker.offset += len(data)
        worker.pending = (worker.pending + data)[used:]
        for event in events:
            self._on_event(worker, event)

    def _on_event(self, worker: Worker, event: dict[str, Any]) -> None:
        kind = event.get("e")
        if kind == "hello":
            worker.hello = event
            worker.hello_at = time.monotonic()
            if self.options.timeout_s is None and isinstance(event.get("timeout"), int | float):
                self.timeout_s = float(event["timeout"])
        elif kind == "cstart":
            worker.collecting[str(event["file"])] = time.monotonic()
        elif kind == "cend":
            worker.collecting.pop(str(event["file"]), None)
        elif kind == "collect_problem":
            worker.problems.append(
                parse.collect_problem(event, worker=worker.slot, child=worker.seq)
            )
        elif kind == "collected":
            self._on_collected(worker, event)
        elif kind == "unknown":
            self._on_unknown(worker, [str(i) for i in event.get("ids", ())])
        elif kind == "start":
            test_id = str(event["id"])
            with contextlib.suppress(ValueError):
                worker.todo.remove(test_id)
            worker.in_flight = (test_id, float(event.get("t", time.monotonic())))
            worker.progressed = True
            self.early_deaths = 0  # a test started: children are not dying on their own
        elif kind == "end":
            worker.in_flight = None
            chunk = worker.chunk.index if worker.chunk else 0
            self.sink(
                parse.result_from_end(event, chunk=chunk, worker=worker.slot, child=worker.seq)
            )
        elif kind == "done":
            if worker.chunk is not None and worker.todo:  # stopped early: the rest waits
                self.queue.appendleft(_rest_of(worker.chunk, worker.todo, None))
            worker.chunk = None
            worker.todo.clear()
            if worker.state is State.RUNNING:
                worker.state = State.READY
            worker.kill_strays()

    def _on_collected(self, worker: Worker, event: dict[str, Any]) -> None:
        worker.collected_at = time.monotonic()
        if worker.state is State.STARTING:
            worker.state = State.READY
            if worker.chunk is not None:  # a dedicated child: its chunk is waiting
                if self.stop.current(time.monotonic()) is Stop.AFTER_TEST:
                    self.queue.appendleft(worker.chunk)
                    worker.chunk = None
                    worker.todo.clear()
                    self._send_exit(worker)
                else:
                    self._assign(worker, worker.chunk)
        if self.collection is not None or "items" not in event:
            return  # only slot 0's children send the whole listing (see _spawn)
        items = [parse.item_from_listing(entry) for entry in event["items"]]
        self.limits = {t.test_id: t.timeout for t in items if t.timeout is not None}
        # The events carry the child's CLOCK_MONOTONIC, the clock of time.monotonic()
        # here: reading them one turn late must not move time from one to the other.
        hello = worker.hello or {}
        hello_at = float(hello.get("t", worker.hello_at or worker.spawned))
        collected_at = float(event.get("t", worker.collected_at))
        self.collection = parse.collection_from(
            items,
            [*self.blamed, *(p for p in worker.problems if p.test_id not in self.blamed_files)],
            hello,
            startup_s=hello_at - worker.spawned,
            collect_s=collected_at - hello_at,
        )

    def _on_unknown(self, worker: Worker, ids: list[str]) -> None:
        chunk = worker.chunk.index if worker.chunk else 0
        for test_id in ids:
            with contextlib.suppress(ValueError):
                worker.todo.remove(test_id)
            self.sink(
                parse.unknown_result(test_id, chunk=chunk, worker=worker.slot, child=worker.seq)
            )

    # -- deadlines and death ---------------------------------------------------

    def _limit(self, test_id: str) -> float:
        return self.limits.get(test_id, self.timeout_s)

    def _check_deadlines(self, worker: Worker, now: float, stop: StopControl) -> None:
        if worker.kill_reason is None:
            reason = worker.overdue(now, self._limit, self.timeout_s, STARTUP_LIMIT_S)
            if reason is None:
                return
            worker.kill_reason = reason
            if reason != "startup-hung":
                worker.dump_stacks(STACKS_WAIT_S)
        worker.step_kill(now, self.options.kill_grace_s, hurry=stop.hurry)

    def _bury(self, worker: Worker) -> None:
        """The child has exited: read what it left, kill its group, blame, requeue."""
        self._read_events(worker)
        signal_group(worker.pgid, signal.SIGKILL)
        if self.watchdog is not None:
            self.watchdog.forget(worker.pgid)
        self._unregister(worker.doorbell)
        for fd in (worker.control, worker.doorbell):
            with contextlib.suppress(OSError):
                os.close(fd)
        worker.state = State.DEAD
        worker.final_output = worker.output_text()
        worker.output_path.write_text(worker.final_output, encoding="utf-8")
        if worker.kill_reason in ("halt", "exit"):
            return
        if worker.collected_at is None and worker.chunk is None:
            self._blame_collection(worker)
        else:
            self._blame_run(worker)

    def _blame_run(self, worker: Worker) -> None:
        chunk = worker.chunk
        in_flight = worker.in_flight
        if in_flight is None and chunk is not None and not worker.progressed:
            # Died before starting any test: no test is to blame. The chunk goes
            # back to the queue, and children that keep doing this end the run.
            self._early_death(worker)
        if in_flight is not None:
            test_id, started = in_flight
            hung = worker.kill_reason == "hung"
            blame = worker.blame(with_stacks=hung)
            limit = self._limit(test_id)
            self.sink(
                parse.hung_result(
                    test_id, blame, limit, self.options.kill_grace_s,
                    duration_s=time.monotonic() - started, chunk=chunk.index if chunk else 0,
                )
                if hung
                else parse.crash_result(
                    test_id, blame, duration_s=time.monotonic() - started,
                    chunk=chunk.index if chunk else 0,
                )
            )  # fmt: skip
        if chunk is not None and worker.todo:
            self.queue.appendleft(_rest_of(chunk, worker.todo, None))

    def _blame_collection(self, worker: Worker) -> None:
        if worker.collecting:
            path = min(worker.collecting, key=worker.collecting.__getitem__)
            if path not in self.blamed_files:
                self.blamed_files.add(path)
                self.ignored.append(path)
                hung = worker.kill_reason == "collect-hung"
                blame = worker.blame(with_stacks=hung)
                self.sink(
                    parse.import_blame(path, blame, hung_after_s=self.timeout_s if hung else None)
                )
            return
        self._early_death(worker)

    def _early_death(self, worker: Worker) -> None:
        """A child died before it ran a test (and not in an import): retry, up to a point."""
        self.early_deaths += 1
        if self.collection is not None and self.early_deaths < MAX_EARLY_DEATHS:
            return  # the next child tries again
        code = worker.proc.returncode
        last = parse.last_error_line(worker.output_text())
        if code == NO_PYTEST_EXIT:
            raise MtestError(
                f"`{self.options.python}` ({self.options.python_origin}) cannot import pytest",
                hint=f"install pytest into that environment ({last})",
                code=4,
            )
        when = (
            "before listing the tests"
            if self.collection is None
            else (f"{self.early_deaths} times in a row before running a test")
        )
        raise MtestError(
            f"pytest {parse.describe_exit(code)} {when}: {last}",
            hint=f"run `{self.options.python} -m pytest --collect-only` to see why",
            code=4 if code == 4 else 1,
        )


def _rest_of(chunk: Chunk, todo: deque[str], in_flight: tuple[str, float] | None) -> Chunk:
    wanted = set(todo)
    if in_flight is not None:
        wanted.add(in_flight[0])
    tests = tuple(t for t in chunk.tests if t.test_id in wanted)
    return Chunk(index=chunk.index, tests=tests, estimate_s=chunk.estimate_s)
