"""A child's three files, opened once and read through their descriptors.

The events stream (``NNNN.events.jsonl``), the child's own output
(``NNNN.out.txt``) and its stacks (``NNNN.stacks.txt``) are created by mtest
before the child starts and kept open until it is buried: a test that deletes
or renames ``.gates/`` removes the names, not the files, and nothing is lost.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUTPUT_HEAD = 64 * 1024
OUTPUT_TAIL = 1024 * 1024
OUTPUT_FILE_CAP = 8 * 1024 * 1024
"""A child's own output goes to a file opened O_APPEND; past this size the pool
keeps its head and truncates it, so a flood never fills the disk."""
READ_BLOCK = 1024 * 1024
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


@dataclass(kw_only=True)
class ChildFiles:
    events_path: Path
    output_path: Path
    stacks_path: Path
    events_fd: int
    output_fd: int
    stacks_fd: int
    offset: int = 0
    pending: bytes = b""
    stacks_mark: int = 0
    """Where the stacks of the test in flight begin (the file's size when it started)."""
    output_head: bytes = b""
    output_saved_tail: bytes = b""
    output_dropped: int = 0
    output_start: int = 0
    """Where the output still in the file begins: what is before it was read and dropped."""
    final_output: str | None = None

    @staticmethod
    def create(base: Path) -> ChildFiles:
        """Create (empty) and open the files of the child whose stem is ``base``."""
        paths = [base.with_suffix(s) for s in (".events.jsonl", ".out.txt", ".stacks.txt")]
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        fds = [os.open(path, flags, 0o644) for path in paths]
        return ChildFiles(
            events_path=paths[0], output_path=paths[1], stacks_path=paths[2],
            events_fd=fds[0], output_fd=fds[1], stacks_fd=fds[2],
        )  # fmt: skip

    def read_events(self) -> bytes:
        """What the child appended since the last read, with any partial line before it."""
        data = _read_from(self.events_fd, self.offset)
        self.offset += len(data)
        whole, self.pending = self.pending + data, b""
        return whole

    def keep_pending(self, data: bytes) -> None:
        """The undecoded end of what ``read_events`` returned, for the next read."""
        self.pending = data

    def mark_stacks(self) -> None:
        with contextlib.suppress(OSError):
            self.stacks_mark = os.fstat(self.stacks_fd).st_size

    def stacks_text(self) -> str:
        """The stacks written since the test in flight started."""
        try:
            size = os.fstat(self.stacks_fd).st_size
            mark = self.stacks_mark if self.stacks_mark <= size else 0
            data = os.pread(self.stacks_fd, max(0, size - mark), mark)
        except OSError:
            return ""
        return data.decode(errors="replace")

    def cap_output(self) -> None:
        """Keep the output file bounded: save its head once and its latest tail, drop the rest.

        What was read is dropped by punching a hole over it: the child's
        O_APPEND writes go on at the end meanwhile, and nothing it wrote after
        the read is lost. Where holes cannot be punched the file is truncated,
        and what the child writes between the read and the truncation is lost.
        """
        try:
            size = os.fstat(self.output_fd).st_size
            if size - self.output_start <= OUTPUT_FILE_CAP:
                return
            if not self.output_head:
                self.output_head = os.pread(self.output_fd, OUTPUT_HEAD, 0)
            tail = _read_from(self.output_fd, size - OUTPUT_TAIL)
            end = size - OUTPUT_TAIL + len(tail)
            if _punch_hole(self.output_fd, self.output_start, end - self.output_start):
                start = end
            else:
                os.ftruncate(self.output_fd, 0)
                start = 0
        except OSError:
            return
        self.output_saved_tail = tail[-OUTPUT_TAIL:]
        self.output_dropped += end - self.output_start
        self.output_start = start

    def output_text(self) -> str:
        """The child's own output: head and tail, saying how much was cut between."""
        if self.final_output is not None:
            return self.final_output
        data = _read_from(self.output_fd, self.output_start)
        total = self.output_dropped + len(data)
        head = self.output_head or data[:OUTPUT_HEAD]
        rest = (self.output_saved_tail + data) if self.output_dropped else data[len(head) :]
        tail = rest[-OUTPUT_TAIL:]
        cut = total - len(head) - len(tail)
        middle = f"\n[... mtest cut {cut} bytes ...]\n".encode() if cut > 0 else b""
        return (head + middle + tail).decode(errors="replace")

    def close(self) -> None:
        """The child is buried and its results recorded: keep its output, drop its events.

        The output is rewritten as head and tail when it was cut; the events
        file is emptied — the failure bundles hold each test's output, so it is
        stored once.
        """
        self.final_output = self.output_text()
        with contextlib.suppress(OSError):
            if self.output_dropped:
                os.ftruncate(self.output_fd, 0)
                os.pwrite(self.output_fd, self.final_output.encode(), 0)
            os.ftruncate(self.events_fd, 0)
        for fd in (self.events_fd, self.output_fd, self.stacks_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


@functools.cache
def _fallocate() -> Any:
    """libc's ``fallocate``, or ``None`` where there is none (not Linux)."""
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return function


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free ``length`` bytes of the file from ``offset``, its size kept; whether it could."""
    fallocate = _fallocate()
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    return fallocate is not None and fallocate(fd, mode, offset, length) == 0


def _read_from(fd: int, offset: int = 0) -> bytes:
    """Everything in the file behind ``fd`` from ``offset`` on (what can be read)."""
    chunks: list[bytes] = []
    while True:
        try:
            data = os.pread(fd, READ_BLOCK, offset)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
        offset += len(data)
    return b"".join(chunks)
