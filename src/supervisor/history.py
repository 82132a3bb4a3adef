"""The run history: one JSON line per run, appended after every run and cycle.

``append(config, result)`` is what a one-shot run (``api.execute``) and the
service call once a run has ended. The decisions are pure: ``entry_for`` turns
a ``RunResult`` and its ``Context`` (git, mtest's version) into an ``Entry``,
comparing it with the previous one (newly failing / newly passing tests);
``compaction`` decides whether the file is past its limits and what a
compaction keeps. ``store.open_shared_log`` does the file's I/O.

Lines that cannot be read (not JSON, not an object, another version, a missing
field) are skipped by every reader, counted in one warning, and moved to
``<file>.corrupt`` by the next append, which compacts the file for that:
never lost, never read twice. The format is in ``docs/formats.md``
("``history.jsonl``").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from supervisor import gitinfo, store
from supervisor.config import Config, Mode
from supervisor.console import Console
from supervisor.errors import MtestError
from supervisor.jsonshape import as_object, int_field, list_field, str_field, strs_field
from supervisor.model import Outcome
from supervisor.record import utc_now
from supervisor.result import RunResult
from supervisor.version import __version__

HISTORY_VERSION = 1
"""The ``"version"`` of every history line (as in every JSON file of ``.gates/``)."""
LIST_CAP = 100
"""Test ids a line lists per kind (failing, newly failing); the totals are exact."""
SLACK_DIVISOR = 20
"""A file is compacted once it holds 1/20 more runs, or runs 1/20 older, than it keeps,
so that a full history is rewritten once every ``keep/20`` runs, not on every append
(below 20 runs kept there is no slack: ``--history-keep 3`` keeps exactly 3)."""
_PASSING = frozenset({Outcome.PASSED.value, Outcome.FLAKY.value})
_FAILING = frozenset(outcome.value for outcome in Outcome if outcome.gating)

Warn = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class Context:
    """What a run's line says besides its result: where and with what it ran."""

    git_commit: str | None = None
    git_dirty: bool | None = None
    mtest_version: str = __version__
    resumed: bool = False


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One line of the history: one run."""

    run_id: str
    started: str
    ended: str
    """ISO-8601 UTC; retention by age reads it."""
    wall_s: float
    exit_code: int
    counts: Mapping[str, int] = field(default_factory=dict)
    outstanding: int = 0
    interrupted: bool = False
    resumed: bool = False
    pass_rate: float | None = None
    """(passed + flaky) / (those + failing), ``None`` when no test passed or failed."""
    coverage_ratio: float | None = None
    peak_rss_bytes: int | None = None
    slowest: tuple[str, float] | None = None
    failing: tuple[str, ...] = ()
    """Ids of the tests that ended failed, error, hung or crashed (sorted, capped)."""
    failing_total: int = 0
    newly_failing: tuple[str, ...] | None = None
    """Failing now, not failing in the previous line; ``None``: nothing to compare
    with (no previous line, or its ``failing`` list was capped)."""
    newly_failing_total: int | None = None
    newly_passing: tuple[str, ...] | None = None
    """Failing in the previous line, passed (or flaky) now; ``None`` as above."""
    git_commit: str | None = None
    git_dirty: bool | None = None
    mtest_version: str = ""
    tiers: tuple[int, ...] = ()
    budget_s: float | None = None

    @property
    def failing_complete(self) -> bool:
        return len(self.failing) == self.failing_total

    def to_json(self) -> dict[str, Any]:
        return {
            "version": HISTORY_VERSION,
            "run_id": self.run_id,
            "started": self.started,
            "ended": self.ended,
            "wall_s": self.wall_s,
            "exit_code": self.exit_code,
            "counts": dict(self.counts),
            "outstanding": self.outstanding,
            "interrupted": self.interrupted,
            "resumed": self.resumed,
            "pass_rate": self.pass_rate,
            "coverage_ratio": self.coverage_ratio,
            "peak_rss_bytes": self.peak_rss_bytes,
            "slowest": None
            if self.slowest is None
            else {"test_id": self.slowest[0], "duration_s": self.slowest[1]},
            "failing": list(self.failing),
            "failing_total": self.failing_total,
            "newly_failing": _opt_list(self.newly_failing),
            "newly_failing_total": self.newly_failing_total,
            "newly_passing": _opt_list(self.newly_passing),
            "git_commit": self.git_commit,
            "git_dirty": self.git_dirty,
            "mtest_version": self.mtest_version,
            "selection": {"tiers": list(self.tiers), "budget_s": self.budget_s},
        }

    @classmethod
    def from_json(cls, data: object) -> Entry:
        """An entry, or ``ValueError`` naming what is wrong with the line."""
        raw = as_object(data, _WHAT)
        version = raw.get("version")
        if type(version) is not int or version != HISTORY_VERSION:
            raise ValueError(f"history line: version {version!r}, expected {HISTORY_VERSION}")
        ended = _text(raw, "ended")
        ended_epoch(ended)  # retention needs it
        selection = as_object(raw.get("selection", {}), f"{_WHAT} `selection`")
        return cls(
            run_id=_text(raw, "run_id"),
            started=_text(raw, "started"),
            ended=ended,
            wall_s=_number(raw, "wall_s"),
            exit_code=_integer(raw, "exit_code"),
            counts=_counts(raw.get("counts")),
            outstanding=_count(raw, "outstanding"),
            interrupted=_flag(raw, "interrupted"),
            resumed=_flag(raw, "resumed"),
            pass_rate=_optional(_number, raw, "pass_rate"),
            coverage_ratio=_optional(_number, raw, "coverage_ratio"),
            peak_rss_bytes=_optional(_count, raw, "peak_rss_bytes"),
            slowest=_slowest(raw.get("slowest")),
            failing=_ids(raw, "failing"),
            failing_total=_count(raw, "failing_total"),
            newly_failing=_optional(_ids, raw, "newly_failing"),
            newly_failing_total=_optional(_count, raw, "newly_failing_total"),
            newly_passing=_optional(_ids, raw, "newly_passing"),
            git_commit=_optional(_text, raw, "git_commit"),
            git_dirty=_optional(_flag, raw, "git_dirty"),
            mtest_version=_text(raw, "mtest_version"),
            tiers=tuple(_count({"tier": t}, "tier") for t in list_field(selection, "tiers", _WHAT)),
            budget_s=_optional(_number, selection, "budget_s"),
        )


# -- pure: a run's line -------------------------------------------------------------


def entry_for(result: RunResult, context: Context, previous: Entry | None) -> Entry:
    """The line for ``result``, compared with the run before it (``previous``)."""
    failing = sorted({r.test_id for r in result.records if r.outcome.gating})
    passing = {r.test_id for r in result.records if r.outcome.value in _PASSING}
    counts = {name: n for name, n in sorted(result.counts.items()) if n}
    passes = sum(n for name, n in counts.items() if name in _PASSING)
    fails = sum(n for name, n in counts.items() if name in _FAILING)
    newly_failing: list[str] | None = None
    newly_passing: list[str] | None = None
    if previous is not None and previous.failing_complete:
        before = frozenset(previous.failing)
        newly_failing = [t for t in failing if t not in before]
        newly_passing = [t for t in previous.failing if t in passing]
    return Entry(
        run_id=result.run_id,
        started=result.started,
        ended=result.ended,
        wall_s=round(result.wall_s, 3),
        exit_code=result.exit_code,
        counts=counts,
        outstanding=result.outstanding,
        interrupted=result.interrupted,
        resumed=context.resumed,
        pass_rate=round(passes / (passes + fails), 4) if passes + fails else None,
        coverage_ratio=result.coverage_ratio,
        peak_rss_bytes=result.peak_rss_bytes,
        slowest=_rounded(result.slowest),
        failing=tuple(failing[:LIST_CAP]),
        failing_total=len(failing),
        newly_failing=None if newly_failing is None else tuple(newly_failing[:LIST_CAP]),
        newly_failing_total=None if newly_failing is None else len(newly_failing),
        newly_passing=None if newly_passing is None else tuple(newly_passing),
        git_commit=context.git_commit,
        git_dirty=context.git_dirty,
        mtest_version=context.mtest_version,
        tiers=result.tiers,
        budget_s=result.budget_s,
    )


def encode(entry: Entry) -> bytes:
    """The line, without its newline (ASCII: any test id survives any terminal or tool)."""
    return json.dumps(entry.to_json(), ensure_ascii=True, separators=(",", ":")).encode()


# -- pure: reading and compacting the file ----------------------------------------------


@dataclass(frozen=True)
class Line:
    raw: bytes
    """The line as it is in the file, without its newline."""
    entry: Entry | None
    """``None``: the line cannot be read (it is corrupt)."""


def parse_lines(data: bytes) -> list[Line]:
    """Every non-blank line of a history file, readable or not, in file order.

    A last line without its newline (a write cut short) is a line like the others:
    kept if it reads, corrupt if it does not.
    """
    lines: list[Line] = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            entry: Entry | None = Entry.from_json(json.loads(raw))
        except (ValueError, TypeError, RecursionError):
            entry = None
        lines.append(Line(raw, entry))
    return lines


def entries(lines: Sequence[Line]) -> list[Entry]:
    return [line.entry for line in lines if line.entry is not None]


def corrupt_count(lines: Sequence[Line]) -> int:
    return sum(1 for line in lines if line.entry is None)


@dataclass(frozen=True, kw_only=True)
class Compaction:
    kept: tuple[bytes, ...]
    moved: tuple[bytes, ...]
    """Corrupt lines, for ``<file>.corrupt``."""
    dropped: int
    """Runs past the limits (by count or age)."""


def compaction(
    lines: Sequence[Line], *, keep_runs: int, keep_s: float, now: float
) -> Compaction | None:
    """What the file becomes, or ``None`` while it is within its limits (plus slack)
    and holds no corrupt line. A compaction keeps the newest ``keep_runs`` runs that
    ended within ``keep_s`` of ``now``, in file order; an entry dated in the future
    (a clock set back) is not too old."""
    good = [line for line in lines if line.entry is not None]
    moved = tuple(line.raw for line in lines if line.entry is None)
    ages = [_age(line, now) for line in good]
    over_count = len(good) > keep_runs + keep_runs // SLACK_DIVISOR
    over_age = max(ages, default=0.0) > keep_s + keep_s / SLACK_DIVISOR
    if not moved and not over_count and not over_age:
        return None
    kept = [line for line, age in zip(good, ages, strict=True) if age <= keep_s][-keep_runs:]
    return Compaction(
        kept=tuple(line.raw for line in kept), moved=moved, dropped=len(good) - len(kept)
    )


def ended_epoch(ended: str) -> float:
    """``ended`` in seconds since the epoch (``ValueError`` when it is no ISO time)."""
    moment = dt.datetime.fromisoformat(ended)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _age(line: Line, now: float) -> float:
    assert line.entry is not None
    return now - ended_epoch(line.entry.ended)


# -- the file -----------------------------------------------------------------------


def history_path(config: Config) -> Path:
    """``--history FILE``, else ``<gates>/history.jsonl``."""
    return config.history_file or store.Paths(config.gates_dir).history


def append(config: Config, result: RunResult, *, warn: Warn | None = None) -> None:
    """Add ``result``'s line to the history, and compact the file when it is due.

    Raises ``MtestError`` (one line) when the line cannot be written; a compaction
    that fails leaves the appended file as it is and is a warning.
    """
    path = history_path(config)
    say = warn or Console.for_stream(sys.stderr).warn
    context = context_for(config)
    try:
        ended_epoch(result.ended)
    except ValueError:  # a result that never ran (a caller's own): dated now
        result = dataclasses.replace(result, ended=utc_now())
    try:
        with store.open_shared_log(path) as log:
            lines = parse_lines(log.read())
            good = entries(lines)
            entry = entry_for(result, context, good[-1] if good else None)
            raw = encode(entry)
            log.append(raw + b"\n")
            plan = compaction([*lines, Line(raw, entry)], keep_runs=config.history_keep_runs,
                              keep_s=config.history_keep_s, now=time.time())  # fmt: skip
            if plan is None:
                return
            _compact(log, plan, say)
    except OSError as exc:
        raise MtestError(
            f"cannot write the history `{path}`: {exc.strerror or exc}",
            hint="pass a writable file with --history FILE",
        ) from None


def _compact(log: store.SharedLog, plan: Compaction, say: Warn) -> None:
    """Rewrite the file as ``plan`` says; a failure leaves it as it is, with a warning."""
    try:
        side = log.replace(plan.kept, plan.moved)
    except OSError as exc:
        say(f"could not compact the history `{log.path}`: {exc.strerror or exc}")
        return
    if side is not None:
        say(f"`{log.path}`: skipped {len(plan.moved)} corrupt line(s); moved them to `{side}`")


def read(path: Path, warn: Warn) -> list[Entry]:
    """The readable runs of the history file, oldest first (none when it is missing).

    Corrupt lines are skipped with one warning; ``OSError`` (a directory in the
    way, no permission) becomes ``MtestError``.
    """
    try:
        data = store.read_shared_log(path)
    except OSError as exc:
        raise MtestError(
            f"cannot read the history `{path}`: {exc.strerror or exc}",
            hint="name a readable history file with --history FILE",
        ) from None
    lines = parse_lines(data)
    bad = corrupt_count(lines)
    if bad:
        side = path.with_name(path.name + store.CORRUPT_SUFFIX)
        warn(f"`{path}`: skipped {bad} corrupt line(s); the next run moves them to `{side}`")
    return entries(lines)


# -- context: git and mtest ------------------------------------------------------------------


def context_for(config: Config) -> Context:
    commit, dirty = gitinfo.git_state(config.rootdir)
    return Context(git_commit=commit, git_dirty=dirty, resumed=config.mode is Mode.RESUME)


# -- small shape checks ---------------------------------------------------------------------


def _opt_list(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


_WHAT = "history line"
_T = TypeVar("_T")


def _rounded(slowest: tuple[str, float] | None) -> tuple[str, float] | None:
    return None if slowest is None else (slowest[0], round(slowest[1], 3))


def _optional(
    read: Callable[[Mapping[str, Any], str], _T], raw: Mapping[str, Any], key: str
) -> _T | None:
    return None if raw.get(key) is None else read(raw, key)


def _text(raw: Mapping[str, Any], key: str) -> str:
    return str_field(raw, key, _WHAT)


def _count(raw: Mapping[str, Any], key: str) -> int:
    return int_field(raw, key, _WHAT)


def _ids(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    return strs_field(raw, key, _WHAT)


def _number(raw: Mapping[str, Any], key: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{_WHAT}: `{key}` must be a number, got {value!r}")
    return float(value)


def _integer(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key)
    if type(value) is not int:
        raise ValueError(f"{_WHAT}: `{key}` must be an integer, got {value!r}")
    return value


def _flag(raw: Mapping[str, Any], key: str) -> bool:
    value = raw.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"{_WHAT}: `{key}` must be true or false, got {value!r}")
    return value


def _counts(value: object) -> dict[str, int]:
    counts = as_object(value, f"{_WHAT} `counts`")
    return {str(k): int_field(counts, k, f"{_WHAT} `counts`") for k in counts}


def _slowest(value: object) -> tuple[str, float] | None:
    if value is None:
        return None
    raw = as_object(value, f"{_WHAT} `slowest`")
    return _text(raw, "test_id"), _number(raw, "duration_s")
