"""One pytest child: how it is started, what it leaves behind, and how it is stopped.

``Worker.start`` launches the child in a new session (its own process group),
with stdin from /dev/null, its output to a capped file, two pipes (commands
in, a doorbell out) and the probe loaded. The child's files (events, output,
stacks) are opened once, when it starts, and read through those descriptors:
a test that deletes or renames ``.gates/`` cannot take them away.

A worker's state changes only through its own methods, each named after what
happened (``on_start``, ``assign``, ``begin_exit`` ...); the pool decides, the
worker records. ``Worker.step_kill`` is the one place that signals a child:
SIGUSR2 for its stacks first when the reason calls for it (see ``blame``),
then SIGTERM to its process group, a monotonic grace, then SIGKILL — one step
per loop turn, never sleeping.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from supervisor import blame, events, launcher, parse, resources
from supervisor.childfiles import ChildFiles
from supervisor.errors import MtestError
from supervisor.model import Chunk, TestResult

PROBE_PATH = Path(__file__).with_name("probe.py")
PROBE_MODULE = "_mtest_probe"
NO_PYTEST_EXIT = 97
PROTOCOL_VARS = frozenset(
    {"MTEST_LAZY", "MTEST_LISTING", "MTEST_TIMEOUT", "MTEST_EVENTS", "MTEST_CONTROL_FD",
     "MTEST_NOTIFY_FD", "MTEST_STACKS", "MTEST_PARENT_PID", "MTEST_WORKER", "MTEST_RUN_ID",
     "MTEST_COVERAGE", "MTEST_MAX_RSS", "MTEST_STDIO"}
)  # fmt: skip
"""What the probe reads from its environment: never inherited, only set by this run."""
STACKS_TURNS = 3
"""Loop turns between asking for stacks and deciding the kill (events are re-read each turn)."""
STACKS_WAIT_S = 0.3
"""...and at least this long on mtest's clock, for faulthandler to write."""

# The bootstrap unblocks the signals mtest blocks (children inherit the mask),
# makes the probe importable by name from its file (the project's interpreter
# may not have mtest installed) without importing it: pytest imports it for
# `-p`, as any plugin — importing it first would draw pytest's "already
# imported, cannot be rewritten" warning, an error under `filterwarnings =
# error`. It says clearly when pytest itself is missing, and appends the final
# `exit` event (pytest's exit status) through a descriptor opened first, so
# the event survives a test that removes the state directory. With `--cov`
# (`MTEST_COVERAGE`), coverage.py starts before pytest is imported, as under
# `coverage run -m pytest`, and saves what is left when the session is over
# (`probecov`, loaded from its file beside the probe).
# In a container (``MTEST_STDIO``) the channel is the standard streams: the
# bootstrap keeps stdin (commands) and stdout (the doorbell) on new descriptors
# for the probe, and gives the tests /dev/null and stderr (the output) instead.
BOOTSTRAP = f"""\
import signal
signal.pthread_sigmask(signal.SIG_SETMASK, [])
import importlib.util, os, sys
if os.environ.get("MTEST_STDIO"):
    os.environ["MTEST_CONTROL_FD"], os.environ["MTEST_NOTIFY_FD"] = str(os.dup(0)), str(os.dup(1))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
events_fd = os.open(os.environ["MTEST_EVENTS"], os.O_WRONLY | os.O_APPEND)
os.set_inheritable(events_fd, False)
measuring = None
if os.environ.get("MTEST_COVERAGE"):
    cov_spec = importlib.util.spec_from_file_location(
        "_mtest_probecov", os.path.join(os.path.dirname(sys.argv[1]), "probecov.py"))
    probecov = sys.modules["_mtest_probecov"] = importlib.util.module_from_spec(cov_spec)
    cov_spec.loader.exec_module(probecov)
    measuring = probecov.start()
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
# Taken before any test runs: a test may patch os.getpid or os.write and leak it.
pid, write = os.getpid(), os.write
code = int(pytest.main(sys.argv[2:]))
if measuring is not None:
    probecov.finish(measuring)
write(events_fd, b'{{"e": "exit", "code": %d, "pid": %d}}\\n' % (code, pid))
raise SystemExit(code)
"""


@dataclass(frozen=True, kw_only=True)
class Launch:
    """Everything that makes one child: its interpreter, arguments and files."""

    python: str
    args: tuple[str, ...]
    """pytest arguments after mtest's own: ``--ignore``s, options, what to collect."""
    cwd: Path
    base: Path
    """The stem of this child's files: ``<base>.events.jsonl``, ``.out.txt``, ``.stacks.txt``."""
    cache_dir: Path
    """``.gates/cache``: pytest's cache (``pytest/``) and the bytecode cache (``pycache/``)."""
    env: Mapping[str, str]
    """Variables the tests see (``MTEST_WORKER``, ``MTEST_RUN_ID``, ancestry, ``MTEST_TIMEOUT``)."""
    launcher: launcher.Launcher = launcher.LOCAL
    """Where the child runs (a local process, a sandbox): ``launcher`` turns the command."""
    name: str = ""
    """A container's name (``containers.name_for``)."""


class State(enum.Enum):
    STARTING = "starting"
    COLLECTING = "collecting"
    """A lazy child collects the files it was named (``collect``), before any chunk."""
    READY = "ready"
    RUNNING = "running"
    EXITING = "exiting"
    DEAD = "dead"


_PHASES = {
    State.STARTING: blame.Phase.STARTING,
    State.COLLECTING: blame.Phase.STARTING,
    State.READY: blame.Phase.READY,
    State.RUNNING: blame.Phase.RUNNING,
    State.EXITING: blame.Phase.EXITING,
}


@dataclass(kw_only=True)
class Worker:
    """One pytest child and what the pool knows about it (mutable, loop-private).

    Times are mtest's ``time.monotonic()`` when the pool read the event, never
    a timestamp the child wrote.
    """

    slot: int
    seq: int
    proc: subprocess.Popen[bytes]
    control: int
    doorbell: int
    files: ChildFiles
    spawned: float
    launcher: launcher.Launcher = launcher.LOCAL
    name: str = ""
    """Its container's name (a container launcher)."""
    own_pid: int | None = None
    """The pid the child's events carry (its own view of it; ``None``: learnt from its hello)."""
    host_pids: tuple[int, ...] = ()
    """This child's processes as mtest sees them, from ``proc`` down to pytest's (one for a
    local child; a sandbox adds bwrap's), once known: the reaper spares them all."""
    state: State = State.STARTING
    since: float = 0.0
    """When the current state began or last made progress."""
    hello: events.Hello | None = None
    hello_at: float | None = None
    collected_at: float | None = None
    collected_count: int | None = None
    problems: list[TestResult] = field(default_factory=list)
    collecting: dict[str, float] = field(default_factory=dict)
    chunk: Chunk | None = None
    scope: frozenset[str] | None = None
    """The files this child was given; ``None``: the whole suite (it can run any chunk)."""
    lazy: bool = False
    """It walked the whole suite and collects a file when named or needed (any chunk)."""
    walked: bool = False
    """A lazy child has listed the suite's files: later collection problems are files'."""
    held: set[str] = field(default_factory=set)
    """Files a lazy child has collected (the plan keeps their chunks in its lane)."""
    batch: tuple[str, ...] = ()
    """The files a lazy child was told to collect and has not listed yet."""
    dealt: int = -1
    """The deal whose share (``scope``) this lazy child was last sent."""
    todo: deque[str] = field(default_factory=deque)
    in_flight: str | None = None
    in_flight_since: float = 0.0
    progressed: bool = False
    stop_sent: bool = False
    failures: int = 0
    """Failing results this child recorded (they explain a non-zero exit status)."""
    unknown: int = 0
    session_errors: list[events.SessionError] = field(default_factory=list)
    exit_code: int | None = None
    session_over_at: float | None = None
    foreign_pid: int | None = None
    """The first other process (a forked copy) seen writing into this child's events."""
    fork_noted: bool = False
    kill: blame.Deadline | None = None
    """The deadline the child is being killed for (or ``HALT``/``CLOSING``)."""
    stacks_asked_at: float | None = None
    stacks_turns: int = 0
    term_sent: float | None = None
    killed: bool = False
    rss_bytes: int | None = None
    """Its RSS when last measured: mtest's sample, or the RSS its last event reported."""
    start_rss_bytes: int | None = None
    """Its RSS as the test in flight started (the ``start`` event)."""
    peak_rss_bytes: int | None = None
    """The most it was resident, as far as mtest saw (``VmHWM``, the events' RSS)."""
    sampled_at: float | None = None
    ran: int = 0
    """Tests this child finished (a fresh child above ``--max-rss`` is not replaced)."""
    started: list[str] = field(default_factory=list)
    """Every test this child started, in order (a failing test's predecessors)."""
    retiring: bool = False
    """It was above ``--max-rss`` after a test: it runs nothing more and is replaced."""

    @staticmethod
    def start(launch: Launch, *, slot: int, seq: int) -> Worker:
        """Launch a child for ``launch``; raises MtestError when it cannot start."""
        return _start(launch, slot=slot, seq=seq)

    @property
    def pgid(self) -> int:
        return self.proc.pid

    @property
    def probe_pid(self) -> int | None:
        """The process that runs pytest, as mtest names it (``None``: not known yet)."""
        return self.host_pids[-1] if self.host_pids else None

    @property
    def returncode(self) -> int | None:
        """How the child ended, as a local child's ``Popen.returncode`` says it."""
        return launcher.exit_status(self.launcher, self.proc.returncode)

    @property
    def signalled(self) -> bool:
        """Whether the kill sequence has sent the child's group SIGTERM or SIGKILL."""
        return self.term_sent is not None or self.killed

    @property
    def kill_reason(self) -> blame.KillReason | None:
        return None if self.kill is None else self.kill.reason

    def watch(self) -> blame.Watch:
        """This worker as the deadline rules see it."""
        oldest = min(self.collecting, key=self.collecting.__getitem__, default=None)
        return blame.Watch(
            phase=_PHASES.get(self.state, blame.Phase.READY),
            since=self.since,
            in_flight=self.in_flight,
            in_flight_since=self.in_flight_since,
            collecting=oldest,
            collecting_since=self.collecting[oldest] if oldest is not None else 0.0,
            session_over_at=self.session_over_at,
            rss_bytes=self.rss_bytes,
        )

    # -- what the child said -----------------------------------------------------

    def speaks_for(self, event: events.Event) -> bool:
        """Whether the event comes from the child itself; remembers the first other pid."""
        if self.own_pid is None and isinstance(event, events.Hello):
            self.own_pid = event.pid  # the first event in the stream is the child's own
        if event.pid is None or event.pid == self.own_pid:
            return True
        if self.foreign_pid is None:
            self.foreign_pid = event.pid
        return False

    def on_hello(self, event: events.Hello, now: float) -> None:
        self.hello, self.hello_at, self.since = event, now, now
        if not self.host_pids:
            self.host_pids = launcher.find_probe(self.launcher, self.proc.pid, self.own_pid)

    def on_collect_start(self, path: str, now: float) -> None:
        self.collecting[path] = now

    def on_collect_end(self, path: str, now: float) -> None:
        self.collecting.pop(path, None)
        self.since = now

    def on_collected(self, count: int, now: float) -> None:
        self.collected_at, self.collected_count = now, count
        if self.state is State.STARTING:
            self.state, self.since = State.READY, now

    def on_files(self, now: float) -> None:
        """A lazy child walked the suite and waits for commands."""
        self.walked = True
        self.on_collected(0, now)  # it counts what it collects (``on_listed``)

    def begin_collect(self, files: tuple[str, ...], now: float) -> None:
        self.batch = files
        self.state, self.since = State.COLLECTING, now

    def on_listed(self, files: list[str], count: int, now: float) -> None:
        self.held.update(files)
        self.collected_count = (self.collected_count or 0) + count
        self.since = now
        if self.state is State.COLLECTING:
            self.batch = ()
            self.state = State.READY

    def assign(self, chunk: Chunk, now: float) -> None:
        """A chunk was sent to this (ready) child."""
        self.chunk = chunk
        self.todo = deque(t.test_id for t in chunk.tests)
        self.progressed = False
        self.stop_sent = False
        self.state, self.since = State.RUNNING, now

    def take_chunk(self, chunk: Chunk) -> None:
        """A dedicated child: its chunk waits until it has collected."""
        self.chunk = chunk
        self.todo = deque(t.test_id for t in chunk.tests)

    def on_start(self, test_id: str, now: float, *, rss_bytes: int | None = None) -> None:
        with contextlib.suppress(ValueError):
            self.todo.remove(test_id)
        self.in_flight, self.in_flight_since = test_id, now
        self.started.append(test_id)
        self.progressed = True
        self.files.mark_stacks()
        self.start_rss_bytes = rss_bytes
        self.measured(rss_bytes)

    def on_end(self, test_id: str, now: float, *, rss_bytes: int | None = None) -> None:
        if self.in_flight == test_id:
            self.in_flight = None
        self.since = now
        self.ran += 1
        self.measured(rss_bytes)

    def on_sample(self, sample: resources.Sample | None, now: float) -> None:
        """mtest looked at the child's memory (``None``: it could not, e.g. it is gone)."""
        self.sampled_at = now
        if sample is not None:
            self.measured(sample.rss_bytes, peak=sample.peak_bytes)

    def measured(self, rss_bytes: int | None, *, peak: int | None = None) -> None:
        """The child's RSS as an event or a sample gave it (``None``: unknown, kept)."""
        if rss_bytes is None:
            return
        self.rss_bytes = rss_bytes
        self.peak_rss_bytes = max(self.peak_rss_bytes or 0, rss_bytes, peak or 0)

    def count(self, result: TestResult) -> None:
        """A result of this child was recorded; a failing one explains a non-zero exit."""
        if result.outcome.gating:
            self.failures += 1

    def on_unknown(self, test_id: str) -> None:
        with contextlib.suppress(ValueError):
            self.todo.remove(test_id)
        self.unknown += 1

    def on_done(self, now: float) -> Chunk | None:
        """The chunk ended; returns what of it never started (stopped early), if anything."""
        rest = _rest_of(self.chunk, self.todo, None) if self.chunk and self.todo else None
        self.chunk = None
        self.todo.clear()
        if self.state is State.RUNNING:
            self.state, self.since = State.READY, now
        return rest

    def release_chunk(self) -> Chunk | None:
        """The run halts: what of the chunk did not finish (the test in flight included)."""
        rest = _rest_of(self.chunk, self.todo, self.in_flight) if self.chunk else None
        self.chunk = None
        self.todo.clear()
        self.in_flight = None
        return rest

    def on_session_error(self, event: events.SessionError) -> None:
        self.session_errors.append(event)

    def on_exit(self, code: int, now: float) -> None:
        self.exit_code, self.session_over_at = code, now

    def begin_exit(self, now: float) -> None:
        """``exit`` was sent: the child finishes its session."""
        self.state, self.since = State.EXITING, now
        self.files.mark_stacks()

    def mark_dead(self) -> None:
        self.state = State.DEAD

    # -- the kill sequence -------------------------------------------------------

    def begin_kill(self, due: blame.Deadline, now: float) -> None:
        """A deadline fired: ask for stacks first when the reason calls for it, else go on.

        Only the child gets SIGUSR2, not its group: it would kill a grandchild.
        Before the probe said hello, nothing handles SIGUSR2 in the child.
        """
        self.kill = due
        if due.reason.dumps_stacks and self.hello is not None and self.probe_pid is not None:
            self.stacks_asked_at, self.stacks_turns = now, 0
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.probe_pid, signal.SIGUSR2)

    def stop_now(self, reason: blame.KillReason, now: float) -> None:
        """Kill without asking for stacks or blaming a test (halt, close)."""
        if self.kill is None or self.stacks_asked_at is not None:
            self.kill = blame.Deadline(reason=reason, at=now)
            self.stacks_asked_at = None

    @property
    def awaiting_stacks(self) -> bool:
        return self.stacks_asked_at is not None

    def stacks_settled(self, now: float) -> bool:
        """One more loop turn since the stacks were asked for: enough turns and time passed?"""
        self.stacks_turns += 1
        asked = self.stacks_asked_at if self.stacks_asked_at is not None else now
        return self.stacks_turns >= STACKS_TURNS and now - asked >= STACKS_WAIT_S

    def confirm_kill(self) -> None:
        self.stacks_asked_at = None

    def cancel_kill(self) -> None:
        """The overdue test ended meanwhile: nobody is killed."""
        self.kill, self.stacks_asked_at = None, None

    def step_kill(self, now: float, grace_s: float, *, hurry: bool) -> None:
        """One step: SIGTERM the group, then SIGKILL after the grace (never while asking)."""
        if self.returncode is not None or self.kill is None or self.awaiting_stacks:
            return
        self.term_sent, self.killed = kill_step(
            self.pgid, term_sent=self.term_sent, killed=self.killed, now=now, grace_s=grace_s,
            hurry=hurry,
        )  # fmt: skip

    def blame(self, *, with_stacks: bool) -> parse.Blame:
        """What this dead child left behind, for the result of the test it took down."""
        kill = self.kill
        exceeded = None
        if kill is not None and kill.rss_bytes is not None and kill.limit_bytes is not None:
            exceeded = (kill.rss_bytes, kill.limit_bytes)  # killed for --max-rss
        return parse.Blame(
            returncode=self.returncode,
            stacks=self.files.stacks_text() if with_stacks else "",
            output=self.files.output_text(),
            worker=self.slot,
            child=self.seq,
            signalled=self.signalled,
            rss_bytes=self.rss_bytes if exceeded is None else exceeded[0],
            start_rss_bytes=self.start_rss_bytes,
            exceeded=exceeded,
        )


def _rest_of(chunk: Chunk, todo: deque[str], in_flight: str | None) -> Chunk:
    wanted = set(todo)
    if in_flight is not None:
        wanted.add(in_flight)
    tests = tuple(t for t in chunk.tests if t.test_id in wanted)
    return Chunk(index=chunk.index, tests=tests, estimate_s=chunk.estimate_s)


def _start(launch: Launch, *, slot: int, seq: int) -> Worker:
    launch.base.parent.mkdir(parents=True, exist_ok=True)
    files = ChildFiles.create(launch.base)
    control_read, control_write = os.pipe()
    bell_read, bell_write = os.pipe()
    os.set_blocking(bell_read, False)
    env = launcher.child_env(
        launch.launcher, _child_env(launch, files, control_fd=control_read, notify_fd=bell_write)
    )
    own = [
        launch.python, "-c", BOOTSTRAP, str(PROBE_PATH),
        "-p", PROBE_MODULE,
        "-o", f"cache_dir={launch.cache_dir / 'pytest'}",
        "-q", "--no-summary", "--no-header",
        *launch.args,
    ]  # fmt: skip
    argv = launcher.command(launch.launcher, own, cwd=launch.cwd, name=launch.name, env=env)
    stdio = launch.launcher.stdio
    try:
        # A file, not a pipe: no wake-up per progress dot, and no grandchild
        # holding a pipe open can block anything.
        with open(files.output_path, "ab") as output, launcher.spawning(launch.launcher):
            proc = subprocess.Popen(
                argv,
                cwd=launch.cwd,
                env=env,
                stdin=control_read if stdio else subprocess.DEVNULL,
                stdout=bell_write if stdio else output,
                stderr=output if stdio else subprocess.STDOUT,
                start_new_session=True,
                pass_fds=() if stdio else (control_read, bell_write),
            )
    except OSError as exc:
        os.close(control_write)
        os.close(bell_read)
        files.close()
        raise MtestError(
            f"cannot start `{argv[0] if stdio else launch.python}`: {exc.strerror}",
            hint="pass an existing interpreter with --python or [tool.mtest] python",
            code=4,
        ) from exc
    finally:
        os.close(control_read)
        os.close(bell_write)
    now = time.monotonic()
    pids = launcher.pids_at_start(launch.launcher, proc.pid)
    return Worker(
        slot=slot, seq=seq, proc=proc, control=control_write, doorbell=bell_read,
        files=files, spawned=now, since=now, launcher=launch.launcher, name=launch.name,
        own_pid=pids[-1] if pids and launch.launcher.samples else None, host_pids=pids,
    )  # fmt: skip


def _child_env(
    launch: Launch, files: ChildFiles, *, control_fd: int, notify_fd: int
) -> dict[str, str]:
    # An mtest run inside a test of another mtest run (mtest's own suite does this)
    # must not hand its children the outer run's protocol settings.
    env = {k: v for k, v in os.environ.items() if k not in PROTOCOL_VARS}
    env.update(launch.env)
    if not env.get("PYTHONDONTWRITEBYTECODE") and not env.get("PYTHONPYCACHEPREFIX"):
        # Bytecode (and pytest's rewritten test modules) is cached under .gates/,
        # not in the project's __pycache__ directories: nothing is written outside
        # .gates/, and later runs start as fast as plain pytest. An environment
        # that says not to write bytecode, or where to, is left as it is.
        env["PYTHONPYCACHEPREFIX"] = str(launch.cache_dir / "pycache")
    env.update(
        MTEST_EVENTS=str(files.events_path),
        MTEST_CONTROL_FD=str(control_fd),
        MTEST_NOTIFY_FD=str(notify_fd),
        MTEST_STACKS=str(files.stacks_path),
        MTEST_PARENT_PID=str(os.getpid()),
    )
    return env


def kill_step(
    pgid: int, *, term_sent: float | None, killed: bool, now: float, grace_s: float, hurry: bool
) -> tuple[float | None, bool]:
    """One step of the kill sequence for process group ``pgid``, never sleeping:
    SIGTERM (unless ``hurry``), then SIGKILL once ``grace_s`` has passed since it (at
    once when ``hurry``). Returns the new ``(term_sent, killed)``; a worker
    (``Worker.step_kill``) and the once-per-run setup (``runsetup``) both step it."""
    if term_sent is None and not hurry:
        signal_group(pgid, signal.SIGTERM)
        return now, killed
    if not killed and (hurry or now - (term_sent or now) >= grace_s):
        signal_group(pgid, signal.SIGKILL)
        return term_sent, True
    return term_sent, killed


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
