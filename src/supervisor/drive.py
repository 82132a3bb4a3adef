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

``Worker.step_kill`` is the one place that signals a child: SIGTERM to its
process group, a monotonic deadline of ``kill_grace_s``, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import enum
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import parse, reaper
from supervisor.errors import MtestError
from supervisor.model import (
    Chunk,
    Collection,
    Fingerprint,
    Outcome,
    TestItem,
    TestResult,
    file_of,
)

PROBE_PATH = Path(__file__).with_name("probe.py")
PROBE_MODULE = "_mtest_probe"
NO_PYTEST_EXIT = 97
POLL_S = 0.05
STACKS_WAIT_S = 0.3
"""After asking a hung child for its stacks, how long to let faulthandler write."""
EXIT_WAIT_S = 10.0
"""How long a child may take to finish its session (JUnit XML, atexit) after ``exit``."""
STARTUP_LIMIT_S = 120.0
"""A child that has not loaded the probe by then (a conftest that hangs) is killed."""
OUTPUT_HEAD = 64 * 1024
OUTPUT_TAIL = 1024 * 1024
OUTPUT_FILE_CAP = 8 * 1024 * 1024
"""A child's own output goes to a file opened O_APPEND; past this size the pool
keeps its head and truncates it, so a flood never fills the disk."""
DEFAULT_TIMEOUT_S = 60.0
BUDGET_KILL_GRACE_S = 0.3
"""At the budget's end the run must stop now: SIGKILL follows SIGTERM this soon."""

# The bootstrap makes the probe importable by name from its file (the project's
# interpreter may not have mtest installed) without importing it: pytest imports
# it for `-p`, as any plugin — importing it first would draw pytest's "already
# imported, cannot be rewritten" warning, an error under `filterwarnings = error`.
# It also says clearly when pytest itself is missing.
BOOTSTRAP = f"""\
import importlib.util, sys
try:
    import pytest
except ImportError as exc:
    sys.stderr.write(f"mtest: cannot import pytest: {{exc}}\\n")
    raise SystemExit({NO_PYTEST_EXIT})
class ProbeFinder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == {PROBE_MODULE!r}:
            return importlib.util.spec_from_file_location(name, sys.argv[1])
        return None
sys.meta_path.append(ProbeFinder)
raise SystemExit(pytest.main(sys.argv[2:]))
"""


@dataclass(frozen=True, kw_only=True)
class DriveOptions:
    python: str
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


class State(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    RUNNING = "running"
    EXITING = "exiting"
    DEAD = "dead"


@dataclass(kw_only=True)
class Worker:
    """One pytest child and what the pool knows about it (mutable, loop-private)."""

    slot: int
    seq: int
    proc: subprocess.Popen[bytes]
    control: int
    doorbell: int
    events_path: Path
    stacks_path: Path
    spawned: float
    state: State = State.STARTING
    offset: int = 0
    pending: bytes = b""
    hello: dict[str, Any] | None = None
    hello_at: float | None = None
    collected_at: float | None = None
    items: dict[str, TestItem] | None = None
    problems: list[TestResult] = field(default_factory=list)
    collecting: dict[str, float] = field(default_factory=dict)
    chunk: Chunk | None = None
    todo: deque[str] = field(default_factory=deque)
    in_flight: tuple[str, float] | None = None
    progressed: bool = False
    output_path: Path = Path("/dev/null")
    output_head: bytes = b""
    output_cut: int = 0
    final_output: str | None = None
    kill_reason: str | None = None
    term_sent: float | None = None
    killed: bool = False

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def cap_output(self) -> None:
        """Keep the output file bounded: save its head once, then truncate it."""
        try:
            size = self.output_path.stat().st_size
        except OSError:
            return
        if size <= OUTPUT_FILE_CAP:
            return
        if not self.output_head:
            with open(self.output_path, "rb") as handle:
                self.output_head = handle.read(OUTPUT_HEAD)
            size -= len(self.output_head)
        # The child writes with O_APPEND, so after this its writes land at the new end.
        os.truncate(self.output_path, 0)
        self.output_cut += size

    def output_text(self) -> str:
        """The child's own output: head and tail, saying how much was cut between."""
        if self.final_output is not None:
            return self.final_output
        try:
            data = self.output_path.read_bytes()
        except OSError:
            data = b""
        head, cut = self.output_head, self.output_cut
        if not head and len(data) > OUTPUT_HEAD + OUTPUT_TAIL:
            head, data = data[:OUTPUT_HEAD], data[OUTPUT_HEAD:]
        if len(data) > OUTPUT_TAIL:
            cut += len(data) - OUTPUT_TAIL
            data = data[-OUTPUT_TAIL:]
        middle = f"\n[... mtest cut {cut} bytes ...]\n".encode() if cut else b""
        return (head + middle + data).decode(errors="replace")

    def step_kill(self, now: float, grace_s: float, *, hurry: bool) -> None:
        """The kill sequence, one step per call: SIGTERM the group, then SIGKILL after the grace."""
        if self.proc.returncode is not None:
            return
        if self.term_sent is None and not hurry:
            self.term_sent = now
            _signal_group(self.pgid, signal.SIGTERM)
        elif not self.killed and (hurry or now - (self.term_sent or now) >= grace_s):
            self.killed = True
            _signal_group(self.pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


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
        self.collection: Collection | None = None
        self.timeout_s = options.timeout_s or DEFAULT_TIMEOUT_S
        self.sink: ResultSink = lambda result: None
        self.queue: deque[Chunk] = deque()
        self.dedicated = False
        self.watchdog: reaper.Watchdog | None = None
        options.work_dir.mkdir(parents=True, exist_ok=True)

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> Pool:
        reaper.set_subreaper()
        self.watchdog = reaper.Watchdog(self.options.run_id)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def collect(self, sink: ResultSink, stop: StopControl) -> Collection:
        """Start the workers; return the first complete listing of the suite.

        Files whose import crashes or hangs a child are blamed (``error``), sent
        to ``sink``, and ``--ignore``d by the children started after.
        """
        self.sink = sink
        for slot in range(self.options.jobs):
            self._spawn(slot)
        while self.collection is None:
            if stop.current(time.monotonic()) is Stop.HALT:
                self._halt(stop)
                why = "interrupted" if stop.interrupted else "the --budget ran out"
                raise MtestError(f"{why} before the tests were listed", code=2)
            self._turn(stop)
            if self.collection is None and not self._live():
                for slot in range(self.options.jobs):
                    self._spawn(slot)
        for problem in self.collection.problems:
            sink(problem)
        return self.collection

    def run(
        self,
        chunks: Sequence[Chunk],
        sink: ResultSink,
        stop: StopControl,
        *,
        dedicated: bool = False,
    ) -> list[str]:
        """Run the chunks; return the ids that never started (outstanding).

        ``dedicated``: each chunk runs alone in a fresh child that collects only
        the chunk's tests and exits after it (``--retries``).
        """
        self.sink = sink
        self.dedicated = dedicated
        self.queue = deque(chunks)
        while True:
            now = time.monotonic()
            mode = stop.current(now)
            if mode is Stop.HALT:
                self._halt(stop)
                break
            if mode is None:
                self._dispatch(stop)
            busy = [w for w in self._live() if w.chunk is not None]
            launchable = mode is None and any(stop.fits(c, now) for c in self.queue)
            if not busy and not launchable:
                break
            self._turn(stop)
        outstanding = [t.test_id for chunk in self.queue for t in chunk.tests]
        self.queue.clear()
        return outstanding

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
                if now >= deadline and worker.kill_reason is None:
                    worker.kill_reason = "exit"
                if worker.kill_reason is not None:
                    worker.step_kill(now, self.options.kill_grace_s, hurry=False)
            self._turn(StopControl())
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
        targets = opts.paths if chunk is None else tuple(t.test_id for t in chunk.tests)
        self.seq += 1
        seq = self.seq
        base = opts.work_dir / f"{seq:04d}"
        control_read, control_write = os.pipe()
        bell_read, bell_write = os.pipe()
        os.set_blocking(bell_read, False)
        events_path = base.with_suffix(".events.jsonl")
        stacks_path = base.with_suffix(".stacks.txt")
        events_path.write_bytes(b"")
        output_path = base.with_suffix(".out.txt")
        env = dict(os.environ)
        env.update(
            MTEST_EVENTS=str(events_path),
            MTEST_CONTROL_FD=str(control_read),
            MTEST_NOTIFY_FD=str(bell_write),
            MTEST_STACKS=str(stacks_path),
            MTEST_PARENT_PID=str(os.getpid()),
            MTEST_WORKER=str(slot),
            MTEST_RUN_ID=opts.run_id,
            PYTHONDONTWRITEBYTECODE="1",
        )
        env[reaper.ANCESTRY_VAR] = opts.ancestry
        argv = [
            opts.python, "-c", BOOTSTRAP, str(PROBE_PATH),
            "-p", PROBE_MODULE,
            "-o", f"cache_dir={opts.cache_dir}",
            "-q", "--no-summary", "--no-header",
            *(f"--ignore={path}" for path in self.ignored),
            *opts.pytest_args,
            *targets,
        ]  # fmt: skip
        try:
            # A file, not a pipe: no wake-up per progress dot, and no grandchild
            # holding a pipe open can block anything.
            with open(output_path, "ab") as output:
                proc = subprocess.Popen(
                    argv,
                    cwd=opts.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(control_read, bell_write),
                )
        except OSError as exc:
            raise MtestError(
                f"cannot start `{opts.python}`: {exc.strerror}",
                hint="pass an existing interpreter with --python",
                code=4,
            ) from exc
        finally:
            os.close(control_read)
            os.close(bell_write)
        worker = Worker(
            slot=slot, seq=seq, proc=proc, control=control_write, doorbell=bell_read,
            events_path=events_path, stacks_path=stacks_path, spawned=time.monotonic(),
            output_path=output_path,
        )  # fmt: skip
        self.selector.register(bell_read, selectors.EVENT_READ, worker)
        if self.watchdog is not None:
            self.watchdog.watch(proc.pid)
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
                self._spawn(slot, self._take(fitting[0]) if self.dedicated else None)
            elif worker.state is State.READY and not self.dedicated:
                self._assign(worker, self._take(fitting[0]))
        for worker in self._live():
            if worker.state is State.READY and (self.dedicated or not self.queue):
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
            worker.problems.append(_collect_problem(event, worker))
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
        elif kind == "end":
            worker.in_flight = None
            chunk = worker.chunk.index if worker.chunk else 0
            self.sink(
                parse.result_from_end(event, chunk=chunk, worker=worker.slot, child=worker.seq)
            )
        elif kind == "done":
            worker.chunk = None
            worker.todo.clear()
            if worker.state is State.RUNNING:
                worker.state = State.READY
            _kill_strays(worker)

    def _on_collected(self, worker: Worker, event: dict[str, Any]) -> None:
        worker.collected_at = time.monotonic()
        items = [_item_from_listing(entry) for entry in event.get("items", ())]
        worker.items = {item.test_id: item for item in items}
        if worker.state is State.STARTING:
            worker.state = State.READY
            if worker.chunk is not None:  # a dedicated child: its chunk is waiting
                self._assign(worker, worker.chunk)
        if self.collection is not None:
            return
        hello = worker.hello or {}
        hello_at = worker.hello_at or worker.spawned
        self.collection = Collection(
            items=tuple(items),
            problems=tuple(p for p in worker.problems if p.test_id not in self.blamed_files),
            ini_timeout_s=hello.get("timeout"),
            fingerprint=Fingerprint(
                python=str(hello.get("python", "")),
                executable=str(hello.get("executable", "")),
                pytest=str(hello.get("pytest", "")),
                plugins=tuple(str(p) for p in hello.get("plugins", ())),
                rootdir=str(hello.get("rootdir", "")),
                platform=sys.platform,
            ),
            startup_s=max(0.0, hello_at - worker.spawned),
            collect_s=max(0.0, worker.collected_at - hello_at),
        )

    def _on_unknown(self, worker: Worker, ids: list[str]) -> None:
        for test_id in ids:
            with contextlib.suppress(ValueError):
                worker.todo.remove(test_id)
            self.sink(
                TestResult(
                    test_id=test_id,
                    outcome=Outcome.ERROR,
                    duration_s=0.0,
                    message="not found when a fresh child collected the suite again "
                    "(is the parametrization non-deterministic?)",
                    chunk=worker.chunk.index if worker.chunk else 0,
                    worker=worker.slot,
                    child=worker.seq,
                )
            )

    # -- deadlines and death ---------------------------------------------------

    def _check_deadlines(self, worker: Worker, now: float, stop: StopControl) -> None:
        if worker.kill_reason is not None:
            worker.step_kill(now, self.options.kill_grace_s, hurry=stop.hurry)
            return
        if worker.in_flight is not None:
            test_id, started = worker.in_flight
            if now - started > self._limit(worker, test_id):
                self._begin_kill(worker, "hung", stacks=True)
        elif worker.collecting:
            started = min(worker.collecting.values())
            if now - started > self.timeout_s:
                self._begin_kill(worker, "collect-hung", stacks=True)
        elif worker.hello is None and now - worker.spawned > max(STARTUP_LIMIT_S, self.timeout_s):
            self._begin_kill(worker, "startup-hung", stacks=False)

    def _limit(self, worker: Worker, test_id: str) -> float:
        item = (worker.items or {}).get(test_id)
        if item is not None and item.timeout is not None:
            return item.timeout
        return self.timeout_s

    def _begin_kill(self, worker: Worker, reason: str, *, stacks: bool) -> None:
        worker.kill_reason = reason
        if stacks:
            # faulthandler's C handler writes every thread's stack even while
            # a C loop holds the GIL; only the child gets it, not its group.
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.proc.pid, signal.SIGUSR2)
            time.sleep(STACKS_WAIT_S)
        worker.step_kill(time.monotonic(), self.options.kill_grace_s, hurry=False)

    def _bury(self, worker: Worker) -> None:
        """The child has exited: read what it left, kill its group, blame, requeue."""
        self._read_events(worker)
        _signal_group(worker.pgid, signal.SIGKILL)
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
        if worker.items is None and worker.chunk is None:
            self._blame_collection(worker)
        else:
            self._blame_run(worker)

    def _blame_run(self, worker: Worker) -> None:
        code = worker.proc.returncode
        chunk = worker.chunk
        in_flight = worker.in_flight
        if in_flight is None and chunk is not None and worker.todo and not worker.progressed:
            # Died before starting anything: blame the next test so that the run
            # always moves forward (a test that kills its child at import time).
            in_flight = (worker.todo.popleft(), worker.spawned)
        if in_flight is not None:
            test_id, started = in_flight
            hung = worker.kill_reason == "hung"
            message = (
                parse.hung_message(self._limit(worker, test_id), self.options.kill_grace_s, code)
                if hung
                else parse.crash_message(code)
            )
            self.sink(
                TestResult(
                    test_id=test_id,
                    outcome=Outcome.HUNG if hung else Outcome.CRASHED,
                    duration_s=max(0.0, time.monotonic() - started),
                    message=message,
                    stacks=_read_text(worker.stacks_path) if hung else "",
                    child_output=worker.output_text(),
                    chunk=chunk.index if chunk else 0,
                    worker=worker.slot,
                    child=worker.seq,
                )
            )
        if chunk is not None and worker.todo:
            self.queue.appendleft(_rest_of(chunk, worker.todo, None))

    def _blame_collection(self, worker: Worker) -> None:
        code = worker.proc.returncode
        if worker.collecting:
            path = min(worker.collecting, key=worker.collecting.__getitem__)
            if path not in self.blamed_files:
                self.blamed_files.add(path)
                self.ignored.append(path)
                hung = worker.kill_reason == "collect-hung"
                how = (
                    f"collecting it took longer than the {self.timeout_s:g}s timeout"
                    if hung
                    else f"the child {parse.describe_exit(code)} while importing it"
                )
                self.sink(
                    TestResult(
                        test_id=path,
                        outcome=Outcome.ERROR,
                        duration_s=0.0,
                        message=how,
                        stacks=_read_text(worker.stacks_path) if hung else "",
                        child_output=worker.output_text(),
                        worker=worker.slot,
                        child=worker.seq,
                    )
                )
            return
        if self.collection is not None:
            return
        output = worker.output_text().strip()
        last = output.splitlines()[-1] if output else "(no output)"
        if code == NO_PYTEST_EXIT:
            raise MtestError(
                f"`{self.options.python}` cannot import pytest",
                hint=f"install pytest into that environment ({last})",
                code=4,
            )
        raise MtestError(
            f"pytest {parse.describe_exit(code)} before listing the tests: {last}",
            hint=f"run `{self.options.python} -m pytest --collect-only` to see why",
            code=4 if code == 4 else 1,
        )


def _rest_of(chunk: Chunk, todo: deque[str], in_flight: tuple[str, float] | None) -> Chunk:
    wanted = set(todo)
    if in_flight is not None:
        wanted.add(in_flight[0])
    tests = tuple(t for t in chunk.tests if t.test_id in wanted)
    return Chunk(index=chunk.index, tests=tests, estimate_s=chunk.estimate_s)


def _kill_strays(worker: Worker) -> None:
    """A chunk is done: nothing it started may outlive it, except the worker itself."""
    for pid in reaper.group_members(worker.pgid):
        if pid != worker.proc.pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _item_from_listing(entry: list[Any]) -> TestItem:
    test_id, line, markers, timeout = entry
    return TestItem(
        test_id=str(test_id),
        file=file_of(str(test_id)),
        line=None if line is None else int(line),
        markers=tuple(str(m) for m in markers),
        timeout=None if timeout is None else float(timeout),
    )


def _collect_problem(event: dict[str, Any], worker: Worker) -> TestResult:
    return TestResult(
        test_id=str(event["id"]),
        outcome=Outcome.ERROR if event.get("outcome") == "error" else Outcome.SKIPPED,
        duration_s=0.0,
        message=str(event.get("message", "")),
        longrepr=str(event.get("longrepr", "")),
        worker=worker.slot,
        child=worker.seq,
    )
