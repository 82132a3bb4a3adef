"""Unit tests for ``supervisor.childfiles``: a child's files, read through held descriptors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from supervisor import childfiles
from supervisor.childfiles import ChildFiles


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def test_events_are_read_incrementally_with_the_partial_line_kept(tmp_path: Path) -> None:
    files = ChildFiles.create(tmp_path / "0001")
    append(files.events_path, b'{"e": "done"}\n{"e": "st')
    first = files.read_events()
    assert first == b'{"e": "done"}\n{"e": "st'
    files.keep_pending(first[len(b'{"e": "done"}\n') :])
    append(files.events_path, b'art"}\n')
    assert files.read_events() == b'{"e": "start"}\n'
    files.close()


def test_the_files_survive_the_removal_of_their_directory(tmp_path: Path) -> None:
    work = tmp_path / "children"
    work.mkdir()
    files = ChildFiles.create(work / "0001")
    writers = [
        os.open(p, os.O_WRONLY | os.O_APPEND) for p in (files.events_path, files.output_path)
    ]
    for child in work.iterdir():
        child.unlink()
    work.rmdir()
    os.write(writers[0], b'{"e": "exit", "code": 0}\n')
    os.write(writers[1], b"the child's last words\n")
    assert files.read_events() == b'{"e": "exit", "code": 0}\n'
    assert files.output_text() == "the child's last words\n"
    for fd in writers:
        os.close(fd)
    files.close()  # no directory to write to: nothing raises


def test_stacks_are_those_written_since_the_test_in_flight_started(tmp_path: Path) -> None:
    files = ChildFiles.create(tmp_path / "0001")
    append(files.stacks_path, b"stacks of an earlier test\n")
    files.mark_stacks()
    append(files.stacks_path, b"Thread 0x1 (most recent call first):\n")
    assert files.stacks_text() == "Thread 0x1 (most recent call first):\n"
    files.close()


def test_a_flood_keeps_the_head_and_the_tail_and_says_how_much_was_cut(tmp_path: Path) -> None:
    files = ChildFiles.create(tmp_path / "0001")
    head, tail = b"H" * childfiles.OUTPUT_HEAD, b"T" * childfiles.OUTPUT_TAIL
    middle = b"m" * childfiles.OUTPUT_FILE_CAP
    append(files.output_path, head + middle + tail)
    files.cap_output()
    assert files.output_path.stat().st_blocks * 512 < childfiles.OUTPUT_HEAD  # the disk freed
    text = files.output_text()
    assert text.startswith("H" * 100) and text.endswith("T" * 100)
    assert f"[... mtest cut {len(middle)} bytes ...]" in text
    files.close()
    assert files.output_path.read_text().endswith("T" * 100)  # rewritten as head and tail
    assert files.events_path.stat().st_size == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="punches holes with fallocate")
def test_what_the_child_writes_while_the_flood_is_capped_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child writes on between mtest's read of the tail and the dropping of the file."""
    files = ChildFiles.create(tmp_path / "0001")
    flood = b"f" * (childfiles.OUTPUT_FILE_CAP + childfiles.OUTPUT_TAIL)
    append(files.output_path, flood)
    read_from = childfiles._read_from

    def read_then_child_writes(fd: int, offset: int = 0) -> bytes:
        data = read_from(fd, offset)
        append(files.output_path, b"LAST WORDS\n")
        return data

    monkeypatch.setattr(childfiles, "_read_from", read_then_child_writes)
    files.cap_output()
    monkeypatch.undo()
    text = files.output_text()
    assert text.endswith("f" * 100 + "LAST WORDS\n")
    cut = len(flood) - childfiles.OUTPUT_HEAD - (childfiles.OUTPUT_TAIL - len("LAST WORDS\n"))
    assert f"[... mtest cut {cut} bytes ...]" in text
    files.close()
