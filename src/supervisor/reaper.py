"""Nothing outlives the run: finding and killing what a run left behind.

Three layers, each covering what the one before cannot:

1. every child runs in its own process group, killed when the child ends
   (``drive``);
2. every process a run starts carries ``MTEST_ANCESTRY`` with the run id, so
   grandchildren that escaped the group (``setsid``, daemons) are found in
   ``/proc`` at the end of the run and killed (``kill_descendants``);
3. a watchdog process, started in its own session, holds a pipe from the
   supervisor; when mtest dies — even by SIGKILL — the pipe closes and the
   watchdog kills every group it was told about and every process of the run
   (``watchdog_main``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ANCESTRY_VAR = "MTEST_ANCESTRY"
REAP_WAIT_S = 1.0
_PROC = Path("/proc")


def set_subreaper() -> None:
    """Make orphaned descendants re-parent to mtest (Linux), so they can be reaped."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        data = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    for entry in data.split(b"\0"):
        if entry.startswith(ANCESTRY_VAR.encode() + b"="):
            return needle in entry.split(b"=", 1)[1].split(b":")
    return False


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir(_PROC) if name.isdigit()]
    except OSError:
        return []


def group_members(pgid: int) -> list[int]:
    """Processes in process group ``pgid`` (Linux ``/proc``; empty elsewhere)."""
    members = []
    for pid in _pids():
        try:
            stat = (_PROC / str(pid) / "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields start after the last ')'
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid:
            members.append(pid)
    return members


def run_processes(run_id: str) -> list[int]:
    """Live processes that descend from run ``run_id`` (by ``MTEST_ANCESTRY``)."""
    me = os.getpid()
    needle = run_id.encode()
    return [pid for pid in _pids() if pid != me and _environ_has(pid, needle)]


def kill_descendants(run_id: str) -> int:
    """SIGKILL every process of the run that is still alive; reap our own. Returns the count."""
    victims = run_processes(run_id)
    for pid in victims:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + REAP_WAIT_S
    pending = list(victims)
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:  # only ours (orphans re-parented to the subreaper) can be reaped
                done, _ = os.waitpid(pid, os.WNOHANG)
            except (ChildProcessError, OSError):
                done = pid
            if done:
                pending.remove(pid)
        if pending:
            time.sleep(0.01)
    return len(victims)


class Watchdog:
    """The process that cleans up after a supervisor that died without doing so."""

    def __init__(self, run_id: str) -> None:
        package_parent = str(Path(__file__).resolve().parent.parent)
        code = (
            f"import sys; sys.path.insert(0, {package_parent!r}); "
            "from supervisor.reaper import watchdog_main; watchdog_main(sys.argv[1])"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, run_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

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

    def close(self) -> None:
        """The run ended cleanly: the watchdog leaves without killing anything."""
        self._send("bye")
        assert self._proc.stdin is not None
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def watchdog_main(run_id: str) -> None:
    """Wait for the supervisor's pipe to close; if it closed without ``bye``, kill the run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    for raw in sys.stdin:
        line = raw.strip()
        if line == "bye":
            return
        if line[:1] in "+-" and line[1:].isdigit():
            (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    # Twice: a process may have been forking while we looked.
    for _ in range(2):
        kill_descendants(run_id)
        time.sleep(0.05)
