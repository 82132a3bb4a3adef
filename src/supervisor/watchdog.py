"""The watchdog: the process that cleans up after a supervisor that died without doing so.

``reaper.Watchdog`` starts it (in its own session) and talks to it over a
pipe: ``+PGID``/``-PGID`` for each child's group, ``hold``/``release`` around
a Ctrl-Z, ``bye`` at a clean end. Twice a second it scans the supervisor's
descendants and remembers them (pid and start time), and continues the
supervisor if something stopped it (``SIGSTOP`` cannot be caught, but a
stopped process can be continued by another).

When the pipe closes without ``bye`` — mtest died, even by SIGKILL — the
supervisor's descendants have been re-parented to init and its tree is gone.
The watchdog kills every group it was told about, every process it saw below
the supervisor that still lives (same pid and start time, so a reused pid is
spared) with everything below it, and every process whose ``MTEST_ANCESTRY``
names the run. Containers of the run (a container launcher told it the engine) are
removed by their ``mtest.run`` label. What it watched and killed goes to its
record file.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import select
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from supervisor import containers, reaper
from supervisor.reaper import ProcInfo

WATCH_INTERVAL_S = 0.5
"""How often the watchdog scans the supervisor's tree and checks it is not stopped."""


def remember(
    seen: Mapping[int, int], table: Mapping[int, ProcInfo], *, root: int, me: int
) -> dict[int, int]:
    """The watchdog's memory after one scan: ``pid → start`` of every process below ``root``.

    Processes seen before stay remembered while they live (same pid and start
    time): when the root dies its children move to init, and the watchdog
    must still know them.
    """
    alive = {pid: start for pid, start in seen.items() if _same(table, pid, start)}
    for pid in reaper.subtree(reaper.children_of(table), root) - {root, me}:
        if not table[pid].dead:
            alive[pid] = table[pid].start
    return alive


def leftovers(seen: Mapping[int, int], table: Mapping[int, ProcInfo], *, me: int) -> frozenset[int]:
    """What the watchdog kills after the supervisor died: what it saw, and their descendants."""
    children = reaper.children_of(table)
    victims: set[int] = set()
    for pid, start in seen.items():
        if _same(table, pid, start):
            victims |= reaper.subtree(children, pid)
    return frozenset(pid for pid in victims if pid != me and not table[pid].dead)


class End(enum.Enum):
    BYE = "bye"
    """The run ended cleanly: leave without killing anything."""
    EOF = "eof"
    """The pipe closed without ``bye``: the supervisor died."""


@dataclass(kw_only=True)
class _Watch:
    supervisor: int
    record: Path | None
    groups: set[int]
    seen: dict[int, int]
    held: bool = False
    pending: bytes = b""
    engine: containers.Engine | None = None
    """The run's container engine: its containers labelled with the run are removed."""

    def command(self, line: str) -> bool:
        """Apply one line from the supervisor; ``True`` when it said ``bye``."""
        if line == "bye":
            return True
        if line in ("hold", "release"):
            self.held = line == "hold"
        elif line.startswith("engine "):
            with contextlib.suppress(ValueError, TypeError):
                self.engine = containers.Engine(**json.loads(line[len("engine ") :]))
        elif line[:1] in "+-" and line[1:].isdigit():
            (self.groups.add if line[0] == "+" else self.groups.discard)(int(line[1:]))
        return False

    def pump(self, timeout: float) -> End | None:
        """Apply what the supervisor sent within ``timeout`` seconds."""
        readable, _, _ = select.select([sys.stdin.fileno()], [], [], timeout)
        if not readable:
            return None
        data = os.read(sys.stdin.fileno(), 65536)
        if not data:
            return End.EOF
        *lines, self.pending = (self.pending + data).split(b"\n")
        return End.BYE if any(self.command(line.decode().strip()) for line in lines) else None

    def scan(self) -> End | None:
        """Continue a stopped supervisor (unless it stopped itself); remember its tree."""
        table = reaper.process_table()
        info = table.get(self.supervisor)
        if info is not None and info.state == "T" and not self.held:
            # A Ctrl-Z writes ``hold`` before mtest stops itself: it is in the pipe now.
            end = self.pump(0)
            if end is not None:
                return end
            if not self.held:
                with contextlib.suppress(OSError):
                    os.kill(self.supervisor, signal.SIGCONT)
        seen = remember(self.seen, table, root=self.supervisor, me=os.getpid())
        if seen.keys() != self.seen.keys():
            self.write("".join(f"{pid}\n" for pid in sorted(seen)))
        self.seen = seen
        return None

    def write(self, text: str, *, append: bool = False) -> None:
        if self.record is None:
            return
        with contextlib.suppress(OSError):
            if append:
                with open(self.record, "a", encoding="utf-8") as handle:
                    handle.write(text)
            else:
                tmp = self.record.with_name(self.record.name + ".tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, self.record)


_UNMOVED = {"SIGKILL", "SIGSTOP", "SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH", "SIGPIPE",
            "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE"}  # fmt: skip
"""Signals the watchdog leaves alone: cannot be ignored, harmless, or real faults."""


def main(run_id: str, supervisor: int, record: str) -> None:
    """Watch the supervisor; if its pipe closes without ``bye``, kill everything of the run."""
    # A test may signal any process it can find: the watchdog ignores all it can.
    names = {int(sig): sig.name for sig in signal.Signals}
    for sig in signal.valid_signals():
        if names.get(int(sig)) not in _UNMOVED:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_IGN)
    # mtest blocks the signals a test could send it; nothing it starts keeps that mask.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    watch = _Watch(
        supervisor=supervisor, record=Path(record) if record else None, groups=set(), seen={}
    )
    end = None
    while end is None:
        end = watch.pump(WATCH_INTERVAL_S) or watch.scan()
    if end is End.EOF:
        _clean_up(watch, run_id)


def _clean_up(watch: _Watch, run_id: str) -> None:
    for pgid in watch.groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)
    me = os.getpid()
    killed, _ = reaper.kill_rounds(lambda table: leftovers(watch.seen, table, me=me))
    marks = (run_id, reaper.setup_mark(run_id))  # the setup's service dies with the run too
    killed += [pid for _ in range(2) for mark in marks for pid in reaper.sweep(mark)]
    watch.write("".join(f"killed {pid}\n" for pid in killed), append=True)
    if watch.engine is not None:
        removed, failed = containers.remove_run(watch.engine, run_id)
        watch.write(
            "".join(f"removed container {c}\n" for c in removed)
            + "".join(f"could not remove container {c}\n" for c in failed),
            append=True,
        )


def _same(table: Mapping[int, ProcInfo], pid: int, start: int) -> bool:
    info = table.get(pid)
    return info is not None and info.start == start and not info.dead
