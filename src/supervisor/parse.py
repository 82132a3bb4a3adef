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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from supervisor import events
from supervisor.model import Collection, Fingerprint, Outcome, TestItem, TestResult, file_of
from supervisor.resources import format_size


def decode_events(data: bytes) -> tuple[list[events.Event], int]:
    """Decode complete JSONL lines; return the events and how many bytes were used.

    A trailing partial line (the child is mid-write, or died mid-write) is left
    for the next read; a line that is not a JSON object, or not an event this
    driver knows with fields of the right types, is skipped.
    """
    decoded: list[events.Event] = []
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except (ValueError, RecursionError):  # deeply nested garbage is garbage too
            continue
        event = decode_event(raw) if isinstance(raw, dict) else None
        if event is not None:
            decoded.append(event)
    return decoded, end


def decode_event(raw: Mapping[str, Any]) -> events.Event | None:
    """One event from its JSON object, or ``None`` when it is not one this driver reads."""
    try:
        kind = events.EventKind(str(raw.get("e")))
    except ValueError:
        return None
    pid = raw.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        pid = None
    try:
        return _DECODERS[kind](raw, pid)
    except (KeyError, TypeError, ValueError, IndexError):
        return None


def _str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    return "" if value is None else str(value)


def _float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _hello(raw: Mapping[str, Any], pid: int | None) -> events.Event:
    return events.Hello(
        pid=pid,
        python=_str(raw, "python"),
        executable=_str(raw, "executable"),
        pytest=_str(raw, "pytest"),
        plugins=tuple(str(p) for p in raw.get("plugins") or ()),
        rootdir=_str(raw, "rootdir"),
        inifile=_str(raw, "inifile") or None,
        timeout=_float(raw.get("timeout")),
        t=_float(raw.get("t")),
    )


def _collected(raw: Mapping[str, Any], pid: int | None) -> events.Event:
    listing = raw.get("items")
    items = None if listing is None else tuple(item_from_listing(entry) for entry in listing)
    return events.Collected(
        pid=pid, count=int(raw.get("count") or 0), items=items, t=_float(raw.get("t"))
    )


def _files(raw: Mapping[str, Any], pid: int | None) -> events.Event:
    return events.Files(
        pid=pid,
        files=tuple(str(f) for f in raw.get("files") or ()),
        conftests=tuple(str(c) for c in raw.get("conftests") or ()),
    )


def _listed(raw: Mapping[str, Any], pid: int | None) -> events.Event:
    listings = []
    for row in raw.get("files") or ():
        file, items, deps, *rest = row  # a malformed row makes the whole event unreadable
        listings.append(
            events.FileListing(
                file=str(file),
                items=tuple(item_from_listing(entry) for entry in items),
                deps=tuple(str(d) for d in deps),
                collect_s=max(0.0, _float(rest[0]) or 0.0) if rest else 0.0,
                partial=len(rest) > 1 and rest[1] is True,
            )
        )
    return events.Listed(pid=pid, files=tuple(listings))


def _end(raw: Mapping[str, Any], pid: int | None) -> events.Event:
    sections = tuple(
        (str(pair[0]), str(pair[1]))
        for pair in raw.get("sections") or ()
        if isinstance(pair, list) and len(pair) == 2
    )
    return events.End(
        pid=pid,
        test_id=str(raw["id"]),
        outcome=_str(raw, "outcome"),
        duration_s=_float(raw.get("duration")) or 0.0,
        message=_str(raw, "message"),
        when=None if raw.get("when") is None else str(raw["when"]),
        longrepr=_str(raw, "longrepr"),
        sections=sections,
        rss_bytes=_int(raw.get("rss")),
        rss_growth_bytes=_int(raw.get("rss_growth")),
        cpu_s=_float(raw.get("cpu")),
    )


_Decoder = Callable[[Mapping[str, Any], "int | None"], events.Event]
_DECODERS: dict[events.EventKind, _Decoder] = {
    events.EventKind.HELLO: _hello,
    events.EventKind.COLLECT_START: lambda r, p: events.CollectStart(pid=p, file=str(r["file"])),
    events.EventKind.COLLECT_END: lambda r, p: events.CollectEnd(pid=p, file=str(r["file"])),
    events.EventKind.COLLECT_PROBLEM: lambda r, p: events.CollectProblem(
        pid=p,
        test_id=str(r["id"]),
        error=r.get("outcome") == "error",
        message=_str(r, "message"),
        longrepr=_str(r, "longrepr"),
    ),
    events.EventKind.COLLECTED: _collected,
    events.EventKind.FILES: _files,
    events.EventKind.LISTED: _listed,
    events.EventKind.UNKNOWN: lambda r, p: events.Unknown(
        pid=p, ids=tuple(str(i) for i in r.get("ids") or ()), partial=r.get("partial") is True
    ),
    events.EventKind.START: lambda r, p: events.Start(
        pid=p, test_id=str(r["id"]), rss_bytes=_int(r.get("rss"))
    ),
    events.EventKind.END: _end,
    events.EventKind.DONE: lambda r, p: events.Done(
        pid=p, chunk=int(r.get("chunk") or 0), over_rss=r.get("over_rss") is True
    ),
    events.EventKind.THREADS: lambda r, p: events.Threads(
        pid=p, test_id=_str(r, "id"), names=tuple(str(n) for n in r.get("names") or ())
    ),
    events.EventKind.SESSION_ERROR: lambda r, p: events.SessionError(
        pid=p, where=_str(r, "where"), message=_str(r, "message"), longrepr=_str(r, "longrepr")
    ),
    events.EventKind.EXIT: lambda r, p: events.Exit(pid=p, code=int(r["code"])),
}


def result_from_end(event: events.End, *, chunk: int, worker: int, child: int) -> TestResult:
    """The result of a test whose ``end`` event the probe wrote."""
    try:
        outcome = Outcome(event.outcome)
    except ValueError:
        outcome = Outcome.ERROR
    return TestResult(
        test_id=event.test_id,
        outcome=outcome,
        duration_s=event.duration_s,
        message=event.message,
        when=event.when,
        longrepr=event.longrepr,
        sections=event.sections,
        chunk=chunk,
        worker=worker,
        child=child,
        rss_bytes=event.rss_bytes,
        rss_growth_bytes=event.rss_growth_bytes,
        cpu_s=event.cpu_s,
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
    signalled: bool = False
    """mtest's kill sequence had signalled the child (SIGTERM or SIGKILL to its group)."""
    rss_bytes: int | None = None
    """The worker's RSS when last measured (mtest's sample, else its last event)."""
    start_rss_bytes: int | None = None
    """Its RSS as the test in flight started."""
    exceeded: tuple[int, int] | None = None
    """(RSS, ``--max-rss``) when mtest killed the worker for going above the limit."""


def crash_result(test_id: str, blame: Blame, *, duration_s: float, chunk: int) -> TestResult:
    """The test in flight when its child died: ``crashed``."""
    return TestResult(
        test_id=test_id,
        outcome=Outcome.CRASHED,
        duration_s=max(0.0, duration_s),
        message=crash_message(blame),
        child_output=blame.output,
        chunk=chunk,
        worker=blame.worker,
        child=blame.child,
        rss_bytes=blame.rss_bytes,
        rss_growth_bytes=_growth(blame),
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
        rss_bytes=blame.rss_bytes,
        rss_growth_bytes=_growth(blame),
    )


def _growth(blame: Blame) -> int | None:
    """How much the worker grew during the test that took it down, when both are known."""
    if blame.rss_bytes is None or blame.start_rss_bytes is None:
        return None
    return blame.rss_bytes - blame.start_rss_bytes


def import_blame(path: str, blame: Blame, *, hung_after_s: float | None) -> TestResult:
    """A file whose import crashed or hung a child: one ``error`` for the file's node id."""
    ended = death(blame.returncode, signalled=blame.signalled, rss_bytes=blame.rss_bytes)
    how = (
        f"collecting it took longer than the {hung_after_s:g}s timeout"
        if hung_after_s is not None
        else f"the child {ended} while importing it"
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
    items: Sequence[TestItem], problems: list[TestResult], hello: events.Hello | None, *,
    startup_s: float, collect_s: float,
) -> Collection:  # fmt: skip
    """The suite as the first child to finish collecting it saw it."""
    return Collection(
        items=tuple(items),
        problems=tuple(problems),
        fingerprint=fingerprint_of(hello or events.Hello(pid=None)),
        startup_s=max(0.0, startup_s),
        collect_s=max(0.0, collect_s),
    )


def fingerprint_of(hello: events.Hello) -> Fingerprint:
    """The environment a child reported in its ``hello``."""
    return Fingerprint(
        python=hello.python,
        executable=hello.executable,
        pytest=hello.pytest,
        plugins=hello.plugins,
        rootdir=hello.rootdir,
        platform=sys.platform,
        inifile=hello.inifile,
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


def crash_message(blame: Blame) -> str:
    """The one-line message of a test that was in flight when its child died.

    The one place that words it: the signal or exit code; ``exceeded --max-rss``
    when mtest killed the worker for its memory; "out of memory?" for a SIGKILL
    mtest did not send (``death``); ``os._exit?`` for an exit with code 0.
    """
    if blame.exceeded is not None:
        rss, limit = blame.exceeded
        return (
            f"exceeded --max-rss (RSS {format_size(rss)} > {format_size(limit)}); "
            "mtest killed its worker"
        )
    how = death(blame.returncode, signalled=blame.signalled, rss_bytes=blame.rss_bytes)
    if blame.returncode == 0:
        return f"the child {how} while this test was running (os._exit?)"
    return f"the child {how} while this test was running"


def death(returncode: int | None, *, signalled: bool = False, rss_bytes: int | None = None) -> str:
    """How a child ended, for a message (``describe_exit``), except a SIGKILL that mtest
    did not send (``signalled``: its kill sequence had signalled the child): the
    kernel's OOM killer sends exactly that, so the message asks, with the worker's
    memory when last measured."""
    if returncode != -signal.SIGKILL or signalled:
        return describe_exit(returncode)
    memory = (
        "its memory was not measured"
        if rss_bytes is None
        else f"its RSS was {format_size(rss_bytes)} when last measured"
    )
    return f"was killed by SIGKILL — out of memory? (mtest sent no signal; {memory})"


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


def collect_problem(event: events.CollectProblem, *, worker: int, child: int) -> TestResult:
    """A file that failed to import (``error``) or skipped itself at import (``skipped``)."""
    return TestResult(
        test_id=event.test_id,
        outcome=Outcome.ERROR if event.error else Outcome.SKIPPED,
        duration_s=0.0,
        message=event.message,
        longrepr=event.longrepr,
        worker=worker,
        child=child,
    )


def start_costs(
    *, spawned: float, hello_at: float, now: float, hello: events.Hello | None,
    collected: events.Collected,
) -> tuple[float, float]:  # fmt: skip
    """A child's start-up and collection seconds, for the budget to learn.

    Their sum is measured on mtest's clock (spawn to the listing read). Both
    events are often read in one turn, so the split between them comes from
    the child's own timestamps, bounded by that sum: never a deadline, only
    how the cost is divided.
    """
    total = max(0.0, now - spawned)
    collect = max(0.0, now - hello_at)
    if hello is not None and hello.t is not None and collected.t is not None:
        collect = max(0.0, collected.t - hello.t)
    collect = min(collect, total)
    return total - collect, collect
