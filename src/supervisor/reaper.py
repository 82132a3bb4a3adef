"""Nothing outlives the run: finding and killing what a run left behind.

Four layers, each covering what the one before cannot:

1. every child runs in its own process group, killed when the child ends
   (``drive``);
2. mtest is a child subreaper (Linux): a process whose parent dies is
   re-parented to mtest, whatever its environment, session or group. At the
   end of each chunk and at close, ``kill_orphans`` walks the process tree
   below mtest (``/proc/<pid>/stat``) and kills every process that is not a
   live worker (or the watchdog), and every descendant of a worker whose
   chunk is over;
3. every process a run starts carries ``MTEST_ANCESTRY`` with the run id, so
   a process that left the tree altogether (started through a daemon such as
   ``systemd-run``) but kept its environment is still found
   (``kill_descendants``);
4. a watchdog process (``watchdog``), started in its own session, holds a
   pipe from the supervisor and remembers the supervisor's descendants; when
   mtest dies, even by SIGKILL, it kills what it remembers and sweeps the
   ancestry. It also continues the supervisor when something stopped it.

The decisions (which pids die) are pure functions over a process table; the
rest reads ``/proc`` and sends signals. Without ``/proc`` (macOS) the table is
empty, and only the process groups, the watchdog's group kills and the
children's own parent watch remain (docs/design.md says what that leaves).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ANCESTRY_VAR = "MTEST_ANCESTRY"
SETUP_SUFFIX = "+setup"
"""The ancestry mark of a run's setup and teardown is ``<run id>+setup`` (``setup_mark``)."""
REAP_WAIT_S = 0.5
"""After SIGKILL, how long to wait for our own victims to become reapable."""
KILL_ROUNDS = 3
"""A process may fork while we kill: scan again, up to this many times."""
_PROC = Path("/proc")


@dataclass(frozen=True, kw_only=True)
class ProcInfo:
    """One line of ``/proc/<pid>/stat``, the fields the reaper needs."""

    pid: int
    ppid: int
    pgid: int
    session: int
    state: str
    """``R``, ``S``, ``T`` (stopped), ``Z`` (zombie), ..."""
    start: int
    """Start time in clock ticks since boot: with the pid, it names one process."""
    reaped_faults: int = 0
    """The page faults of the children it has reaped (``cminflt``): it grows each
    time the process reaps a child, since every process that ran faulted."""

    @property
    def dead(self) -> bool:
        return self.state in ("Z", "X")


def parse_stat(pid: int, text: str) -> ProcInfo | None:
    """``/proc/<pid>/stat`` → ``ProcInfo``; ``None`` if it is not well formed."""
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return ProcInfo(
            pid=pid,
            ppid=int(fields[1]),
            pgid=int(fields[2]),
            session=int(fields[3]),
            state=fields[0],
            start=int(fields[19]),
            reaped_faults=int(fields[8]),
        )
    except (IndexError, ValueError):
        return None


def read_proc(pid: int) -> ProcInfo | None:
    try:
        return parse_stat(pid, (_PROC / str(pid) / "stat").read_text())
    except OSError:
        return None


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir(_PROC) if name.isdigit()]
    except OSError:
        return []


def process_table() -> dict[int, ProcInfo]:
    """Every process this one can see (empty without ``/proc``, e.g. on macOS)."""
    table = {}
    for pid in _pids():
        info = read_proc(pid)
        if info is not None:
            table[pid] = info
    return table


# -- pure decisions ------------------------------------------------------------


def children_of(table: Mapping[int, ProcInfo]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    return children


def subtree(children: Mapping[int, Iterable[int]], root: int) -> set[int]:
    """``root`` and every process below it."""
    found = {root}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def doomed(
    table: Mapping[int, ProcInfo],
    *,
    me: int,
    keep: Collection[int],
    busy: Collection[int] = (),
) -> frozenset[int]:
    """The live processes below ``me`` that must die.

    - every child of ``me`` not in ``keep`` (an orphan re-parented to the
      subreaper, whatever its session or environment), with its descendants,
      unless it is in the session of a ``busy`` worker (a daemon that a test
      in flight started and may still use);
    - every descendant of a pid in ``keep`` that is not ``busy`` (a worker
      whose chunk is over), but not that pid itself.

    A busy worker and everything below it are spared, and no pid in ``keep``
    dies (a worker launched under bwrap keeps bwrap's processes and pytest's).
    """
    children = children_of(table)
    victims: set[int] = set()
    for pid in children.get(me, ()):
        if pid in keep:
            if pid not in busy:
                victims |= subtree(children, pid) - {pid}
        elif table[pid].session not in busy:
            victims |= subtree(children, pid)
    return frozenset(
        pid for pid in victims if pid != me and pid not in keep and not table[pid].dead
    )


def stale(table: Mapping[int, ProcInfo], *, me: int, keep: Collection[int]) -> frozenset[int]:
    """Dead children of ``me`` (zombies) that are not in ``keep``: orphans to reap."""
    return frozenset(
        info.pid
        for info in table.values()
        if info.ppid == me and info.dead and info.pid not in keep
    )


# -- killing -------------------------------------------------------------------


def set_subreaper(enabled: bool = True) -> None:
    """Make orphaned descendants re-parent to mtest (Linux), so they can be reaped.

    ``enabled=False`` while the once-per-run setup runs: the service it leaves
    running must not become mtest's child, or the pool would kill it as an orphan."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, int(enabled), 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def kill_orphans(keep: Collection[int], *, busy: Collection[int] = ()) -> int:
    """SIGKILL what the run left below mtest (see ``doomed``), reap our own; return the count.

    ``keep``: mtest's children that must live (live workers, the watchdog).
    ``busy``: the workers among them with a chunk in flight, whose descendants
    are spared. Call it with ``busy`` empty at close, and at the end of a chunk
    with the other workers' that are still running. Every child mtest waits for
    itself (a ``Popen``) must be in ``keep``: dead children not in it are reaped.
    """
    me = os.getpid()
    killed, table = kill_rounds(lambda table: doomed(table, me=me, keep=keep, busy=busy))
    _reap([*killed, *stale(table, me=me, keep=keep)])
    return len(killed)


def kill_rounds(
    choose: Callable[[dict[int, ProcInfo]], frozenset[int]],
) -> tuple[list[int], dict[int, ProcInfo]]:
    """SIGKILL what ``choose`` picks from a fresh table, until a scan finds nothing.

    Returns the pids killed and the last table read.
    """
    killed: list[int] = []
    table = process_table()
    for _ in range(KILL_ROUNDS):
        victims = choose(table)
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        killed.extend(victims)
        table = process_table()
    return killed, table


def _reap(pids: Iterable[int]) -> None:
    """Wait (briefly) for those of ``pids`` that are our children; others are not ours to reap."""
    pending = set(pids)
    deadline = time.monotonic() + REAP_WAIT_S
    while pending:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except OSError:  # not our child (a worker's), or reaped already
                done = pid
            if done:
                pending.discard(pid)
        if not pending or time.monotonic() >= deadline:
            return
        time.sleep(0.005)


def group_members(pgid: int) -> list[int]:
    """Processes in process group ``pgid`` (Linux ``/proc``; empty elsewhere)."""
    return [info.pid for info in process_table().values() if info.pgid == pgid]


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        data = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    for entry in data.split(b"\0"):
        if entry.startswith(ANCESTRY_VAR.encode() + b"="):
            return needle in entry.split(b"=", 1)[1].split(b":")
    return False


def run_processes(run_id: str) -> list[int]:
    """Live processes that descend from run ``run_id`` (by ``MTEST_ANCESTRY``)."""
    me = os.getpid()
    needle = run_id.encode()
    return [pid for pid in _pids() if pid != me and _environ_has(pid, needle)]


def kill_descendants(run_id: str) -> int:
    """SIGKILL every process of the run that is still alive; reap our own. Returns the count."""
    victims = sweep(run_id)
    _reap(victims)
    return len(victims)


def setup_mark(run_id: str) -> str:
    """What the once-per-run setup's processes carry in ``MTEST_ANCESTRY`` instead of the
    run id: the pool's sweeps (``run_id``) spare the service they started; the setup's
    own end and the watchdog sweep this mark."""
    return run_id + SETUP_SUFFIX


def sweep(run_id: str) -> list[int]:
    victims = run_processes(run_id)
    for pid in victims:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return victims


# -- the watchdog --------------------------------------------------------------


class Watchdog:
    """The supervisor's end of the watchdog (``watchdog.main`` is the other).

    ``record``: a file where the watchdog keeps the pids it watches (one per
    line, rewritten when they change) and, after a death, what it killed.
    """

    def __init__(self, run_id: str, *, record: Path | None = None) -> None:
        package_parent = str(Path(__file__).resolve().parent.parent)
        code = (
            f"import sys; sys.path.insert(0, {package_parent!r}); "
            "from supervisor.watchdog import main; "
            "main(sys.argv[1], int(sys.argv[2]), sys.argv[3])"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, run_id, str(os.getpid()), str(record or "")],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._closed = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, line: str) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(line.encode() + b"\n")
            self._proc.stdin.flush()
        except OSError:
            pass

    def watch(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    def engine(self, fields: Mapping[str, object]) -> None:
        """The container engine of the run (``containers.Engine``'s fields): if mtest dies,
        the watchdog removes the run's containers by label."""
        self._send("engine " + json.dumps(dict(fields)))

    def hold(self) -> None:
        """mtest is about to stop itself (Ctrl-Z): do not continue it."""
        self._send("hold")

    def release(self) -> None:
        self._send("release")

    def __enter__(self) -> Watchdog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """The run ended cleanly: the watchdog leaves without killing anything (once)."""
        if self._proc.returncode is not None or self._closed:
            return
        self._closed = True
        self._send("bye")
        assert self._proc.stdin is not None
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
