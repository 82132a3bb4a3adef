"""Turning what a child left behind into results: its event stream and its exit status.

Pure functions. The event stream (written by ``probe``) is the only source of
outcomes: it is flushed per test, so it survives a child that is killed —
pytest's JUnit XML is written only when a session ends normally, which is
exactly when nothing went wrong. A test that started and never ended is blamed
on how the child died; silence is never success.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supervisor.model import Collection, Fingerprint, Outcome, TestItem, TestResult, file_of


def decode_events(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """Decode complete JSONL lines; return the events and how many bytes were used.

    A trailing partial line (the child is mid-write, or died mid-write) is left
    for the next read; a line that is not a JSON object is skipped.
    """
    events: list[dict[str, Any]] = []
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):  # deeply nested garbage is garbage too
            continue
        if isinstance(event, dict):
            events.append(event)
    return events, end


def result_from_end(event: Mapping[str, Any], *, chunk: int, worker: int, child: int) -> TestResult:
    """The result of a test whose ``end`` event the probe wrote."""
    try:
        outcome = Outcome(str(event.get("outcome")))
    except ValueError:
        outcome = Outcome.ERROR
    sections = tuple(
        (str(pair[0]), str(pair[1]))
        for pair in event.get("sections") or ()
        if isinstance(pair, list) and len(pair) == 2
    )
    return TestResult(
        test_id=str(event["id"]),
        outcome=outcome,
        duration_s=float(event.get("duration") or 0.0),
        message=str(event.get("message") or ""),
        when=None if event.get("when") is None else str(event["when"]),
        longrepr=str(event.get("longrepr") or ""),
        sections=sections,
        chunk=chunk,
        worker=worker,
        child=child,
    )


def describe_exit(returncode: int | None) -> str:
    """How a child ended: ``was killed by signal 11 (SIGSEGV)``, ``exited with code 0``."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"was killed by signal {-returncode} ({name})"
    return f"exited with code {returncode}"


@dataclass(frozen=True, kw_only=True)
class Blame:
    """What a dead child left behind, for the result of the test it took down."""

    returncode: int | None
    stacks: str
    output: str
    worker: int
    child: int


def crash_result(test_id: str, blame: Blame, *, duration_s: float, chunk: int) -> TestResult:
    """The test in flight when its child died: ``crashed``."""
    return TestResult(
        test_id=test_id,
        outcome=Outcome.CRASHED,
        duration_s=max(0.0, duration_s),
        message=crash_message(blame.returncode),
        child_output=blame.output,
        chunk=chunk,
        worker=blame.worker,
        child=blame.child,
    )


def hung_result(
    test_id: str, blame: Blame, limit_s: float, grace_s: float, *, duration_s: float, chunk: int
) -> TestResult:
    """The test in flight when mtest killed its child for the timeout: ``hung``."""
    return TestResult(
        test_id=test_id,
        outcome=Outcome.HUNG,
        duration_s=max(0.0, duration_s),
        message=hung_message(limit_s, grace_s, blame.returncode),
        stacks=blame.stacks,
        child_output=blame.output,
        chunk=chunk,
        worker=blame.worker,
        child=blame.child,
    )


def import_blame(path: str, blame: Blame, *, hung_after_s: float | None) -> TestResult:
    """A file whose import crashed or hung a child: one ``error`` for the file's node id."""
    how = (
        f"collecting it took longer than the {hung_after_s:g}s timeout"
        if hung_after_s is not None
        else f"the child {describe_exit(blame.returncode)} while importing it"
    )
    return TestResult(
        test_id=path,
        outcome=Outcome.ERROR,
        duration_s=0.0,
        message=how,
        stacks=blame.stacks,
        child_output=blame.output,
        worker=blame.worker,
        child=blame.child,
    )


def unknown_result(test_id: str, *, chunk: int, worker: int, child: int) -> TestResult:
    """A test a fresh child did not find when it collected the suite again."""
    return TestResult(
        test_id=test_id,
        outcome=Outcome.ERROR,
        duration_s=0.0,
        message="not found when a fresh child collected the suite again "
        "(is the parametrization non-deterministic?)",
        chunk=chunk,
        worker=worker,
        child=child,
    )


def collection_from(
    items: list[TestItem], problems: list[TestResult], hello: Mapping[str, Any], *,
    startup_s: float, collect_s: float,
) -> Collection:  # fmt: skip
    """The suite as the first child to finish collecting it saw it."""
    return Collection(
        items=tuple(items),
        problems=tuple(problems),
        fingerprint=Fingerprint(
            python=str(hello.get("python", "")),
            executable=str(hello.get("executable", "")),
            pytest=str(hello.get("pytest", "")),
            plugins=tuple(str(p) for p in hello.get("plugins", ())),
            rootdir=str(hello.get("rootdir", "")),
            platform=sys.platform,
        ),
        startup_s=max(0.0, startup_s),
        collect_s=max(0.0, collect_s),
    )


def last_error_line(output: str) -> str:
    """The line of a child's output that says what went wrong, for a one-line error.

    pytest's usage errors end with ``pytest: error: …`` followed by other
    lines, and internal errors with ``INTERNALERROR> SomeError: …``; prefer
    those to the last line.
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("INTERNALERROR>") and ":" in line and not line.endswith("^"):
            return line.removeprefix("INTERNALERROR>").strip()
        if "error:" in line.lower() and not line.startswith("File "):
            return line
    return lines[-1] if lines else "(no output)"


def crash_message(returncode: int | None) -> str:
    """The one-line message of a test that was in flight when its child died."""
    how = describe_exit(returncode)
    if returncode == 0:
        return f"the child {how} while this test was running (os._exit?)"
    return f"the child {how} while this test was running"


def hung_message(timeout_s: float, grace_s: float, returncode: int | None) -> str:
    tail = "ended on SIGTERM"
    if returncode == -signal.SIGKILL:
        tail = f"ignored SIGTERM; SIGKILL after {grace_s:g}s"
    elif returncode is not None and returncode >= 0:
        tail = f"exited with code {returncode} after SIGTERM"
    return f"exceeded the {timeout_s:g}s timeout and was killed ({tail})"


def item_from_listing(entry: list[Any]) -> TestItem:
    """One test of the probe's ``collected`` event: ``[node id, line, markers, timeout]``."""
    test_id, line, markers, timeout = entry
    return TestItem(
        test_id=str(test_id),
        file=file_of(str(test_id)),
        line=None if line is None else int(line),
        markers=tuple(str(m) for m in markers),
        timeout=None if timeout is None else float(timeout),
    )


def collect_problem(event: Mapping[str, Any], *, worker: int, child: int) -> TestResult:
    """A file that failed to import (``error``) or skipped itself at import (``skipped``)."""
    return TestResult(
        test_id=str(event["id"]),
        outcome=Outcome.ERROR if event.get("outcome") == "error" else Outcome.SKIPPED,
        duration_s=0.0,
        message=str(event.get("message", "")),
        longrepr=str(event.get("longrepr", "")),
        worker=worker,
        child=child,
    )
