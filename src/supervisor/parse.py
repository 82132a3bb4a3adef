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
from collections.abc import Mapping
from typing import Any

from supervisor.model import Outcome, TestResult


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
        except ValueError:
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
