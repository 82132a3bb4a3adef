"""One pytest child: how it is started, what it leaves behind, and how it is stopped.

``Worker.start`` launches the child in a new session (its own process group),
with stdin from /dev/null, its output to a capped file, two pipes (commands
in, a doorbell out) and the probe loaded. ``Worker.step_kill`` is the one
place that signals a child: SIGTERM to its process group, a monotonic grace,
then SIGKILL.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import parse, reaper
from supervisor.errors import MtestError
from supervisor.model import Chunk, TestResult

PROBE_PATH = Path(__file__).with_name("probe.py")
PROBE_MODULE = "_mtest_probe"
NO_PYTEST_EXIT = 97
OUTPUT_HEAD = 64 * 1024
OUTPUT_TAIL = 1024 * 1024
OUTPUT_FILE_CAP = 8 * 1024 * 1024
"""A child's own output goes to a file opened O_APPEND; past this size the pool
keeps its head and truncates it, so a flood never fills the disk."""

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
    """Variables the tests see (``MTEST_WORKER``, ``MTEST_RUN_ID``, ancestry)."""


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
    problems: list[TestResult] = field(default_factory=list)
    collecting: dict[str, float] = field(default_factory=dict)
    chunk: Chunk | None = None
    todo: deque[str] = field(default_factory=deque)
    in_flight: tuple[str, float] | None = None
    progressed: bool = False
    stop_sent: bool = False
    output_path: Path = Path("/dev/null")
    output_head: bytes = b""
    output_saved_tail: bytes = b""
    output_dropped: int = 0
    final_output: str | None = None
    kill_reason: str | None = None
    term_sent: float | None = None
    killed: bool = False

    @staticmethod
    def start(launch: Launch, *, slot: int, seq: int) -> Worker:
        """Launch a child for ``launch``; raises MtestError when it cannot start."""
        return _start(launch, slot=slot, seq=seq)

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def overdue(
        self, now: float, limit_of: Callable[[str], float], timeout_s: float, startup_limit_s: float
    ) -> str | None:
        """Why this child must be killed now, if it must: a test, an import or start-up hung.

        ``limit_of`` gives a test's limit (its ``@pytest.mark.timeout``, else the
        run's); ``timeout_s`` also bounds the import of one file.
        """
        if self.in_flight is not None:
            test_id, started = self.in_flight
            return "hung" if now - started > limit_of(test_id) else None
        if self.collecting:
            started = min(self.collecting.values())
            return "collect-hung" if now - started > timeout_s else None
        if self.hello is None and now - self.spawned > max(startup_limit_s, timeout_s):
            return "startup-hung"
        return None

    def dump_stacks(self, wait_s: float) -> None:
        """Ask the child for every thread's stack (faulthandler) and give it time to write.

        faulthandler's C handler writes even while a C loop holds the GIL. Only
        the child gets the signal, not its group: SIGUSR2 would kill a grandchild.
        """
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGUSR2)
        time.sleep(wait_s)

    def blame(self, *, with_stacks: bool) -> parse.Blame:
        """What this dead child left behind, for the result of the test it took down."""
        return parse.Blame(
            returncode=self.proc.returncode,
            stacks=read_text(self.stacks_path) if with_stacks else "",
            output=self.output_text(),
            worker=self.slot,
            child=self.seq,
        )

    def kill_strays(self) -> None:
        """A chunk is done: nothing it started may outlive it, except the worker itself."""
        for pid in reaper.group_members(self.pgid):
            if pid != self.proc.pid:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def cap_output(self) -> None:
        """Keep the output file bounded: save its head once and its latest tail, then truncate.

        The child writes with O_APPEND, so after the truncation its writes land
        at the new end; what it wrote last before a crash is in the saved tail
        or in the file.
        """
        try:
            size = self.output_path.stat().st_size
        except OSError:
            return
        if size <= OUTPUT_FILE_CAP:
            return
        with open(self.output_path, "rb") as handle:
            if not self.output_head:
                self.output_head = handle.read(OUTPUT_HEAD)
            handle.seek(size - OUTPUT_TAIL)
            self.output_saved_tail = handle.read(OUTPUT_TAIL)
        os.truncate(self.output_path, 0)
        self.output_dropped += size

    def output_text(self) -> str:
        """The child's own output: head and tail, saying how much was cut between."""
        if self.final_output is not None:
            return self.final_output
        try:
            data = self.output_path.read_bytes()
        except OSError:
            data = b""
        total = self.output_dropped + len(data)
        head = self.output_head or data[:OUTPUT_HEAD]
        rest = (self.output_saved_tail + data) if self.output_dropped else data[len(head) :]
        tail = rest[-OUTPUT_TAIL:]
        cut = total - len(head) - len(tail)
        middle = f"\n[... mtest cut {cut} bytes ...]\n".encode() if cut > 0 else b""
        return (head + middle + tail).decode(errors="replace")

    def step_kill(self, now: float, grace_s: float, *, hurry: bool) -> None:
        """The kill sequence, one step per call: SIGTERM the group, then SIGKILL after the grace."""
        if self.proc.returncode is not None:
            return
        if self.term_sent is None and not hurry:
            self.term_sent = now
            signal_group(self.pgid, signal.SIGTERM)
        elif not self.killed and (hurry or now - (self.term_sent or now) >= grace_s):
            self.killed = True
            signal_group(self.pgid, signal.SIGKILL)


def _start(launch: Launch, *, slot: int, seq: int) -> Worker:
    control_read, control_write = os.pipe()
    bell_read, bell_write = os.pipe()
    os.set_blocking(bell_read, False)
    events_path = launch.base.with_suffix(".events.jsonl")
    events_path.write_bytes(b"")
    output_path = launch.base.with_suffix(".out.txt")
    env = dict(os.environ)
    env.update(launch.env)
    if not env.get("PYTHONDONTWRITEBYTECODE") and not env.get("PYTHONPYCACHEPREFIX"):
        # Bytecode (and pytest's rewritten test modules) is cached under .gates/,
        # not in the project's __pycache__ directories: nothing is written outside
        # .gates/, and later runs start as fast as plain pytest. An environment
        # that says not to write bytecode, or where to, is left as it is.
        env["PYTHONPYCACHEPREFIX"] = str(launch.cache_dir / "pycache")
    env.update(
        MTEST_EVENTS=str(events_path),
        MTEST_CONTROL_FD=str(control_read),
        MTEST_NOTIFY_FD=str(bell_write),
        MTEST_STACKS=str(launch.base.with_suffix(".stacks.txt")),
        MTEST_PARENT_PID=str(os.getpid()),
    )
    argv = [
        launch.python, "-c", BOOTSTRAP, str(PROBE_PATH),
        "-p", PROBE_MODULE,
        "-o", f"cache_dir={launch.cache_dir / 'pytest'}",
        "-q", "--no-summary", "--no-header",
        *launch.args,
    ]  # fmt: skip
    try:
        # A file, not a pipe: no wake-up per progress dot, and no grandchild
        # holding a pipe open can block anything.
        with open(output_path, "ab") as output:
            proc = subprocess.Popen(
                argv,
                cwd=launch.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(control_read, bell_write),
            )
    except OSError as exc:
        os.close(control_write)
        os.close(bell_read)
        raise MtestError(
            f"cannot start `{launch.python}`: {exc.strerror}",
            hint="pass an existing interpreter with --python or [tool.mtest] python",
            code=4,
        ) from exc
    finally:
        os.close(control_read)
        os.close(bell_write)
    return Worker(
        slot=slot, seq=seq, proc=proc, control=control_write, doorbell=bell_read,
        events_path=events_path, stacks_path=launch.base.with_suffix(".stacks.txt"),
        spawned=time.monotonic(), output_path=output_path,
    )  # fmt: skip


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
