"""``mtest history``: the trend of the last runs, as a table or as JSON.

``render`` is pure: history entries in, lines out. One row per run (oldest
first): when it started, its id, commit, exit code, passed / failing / other
counts, pass rate, wall time, how many tests newly fail and newly pass against
the run before it, coverage and peak RSS when some run measured them, and the
slowest test. Under the table, the ids behind the "new" columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from supervisor import history
from supervisor.config import Config
from supervisor.console import Console
from supervisor.history import Entry
from supervisor.model import Outcome

IDS_SHOWN = 5
"""Ids listed per run under the table; the rest are counted."""
SLOWEST_WIDTH = 60
"""The slowest test's id is cut to its last characters (the test's name) past this."""
_OTHER = frozenset({Outcome.SKIPPED.value, Outcome.XFAILED.value, Outcome.XPASSED.value})
_PASSING = frozenset({Outcome.PASSED.value, Outcome.FLAKY.value})


def history_view(config: Config, console: Console) -> int:
    """Print the last ``--last`` runs; exit 0, also when there is no run yet."""
    path = history.history_path(config)
    runs = history.read(path, console.warn)[-config.history_last :]
    if config.json_output:
        console.always(json.dumps([entry.to_json() for entry in runs], indent=2))
        return 0
    for line in render(runs, str(path)):
        console.always(line)
    return 0


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Entry], str]
    left: bool = True


def render(runs: Sequence[Entry], where: str) -> list[str]:
    """The table of ``runs`` (oldest first) and the ids that newly fail or pass."""
    if not runs:
        return [f"no runs in the history yet (`{where}`); every `mtest` run adds one"]
    columns = [c for c in _COLUMNS if c.header not in _OPTIONAL or _any(runs, c.header)]
    cells = [[c.header for c in columns], *([c.cell(e) for c in columns] for e in runs)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [f"history: `{where}`, the last {len(runs)} run(s), oldest first", ""]
    for row in cells:
        padded = (
            text.ljust(width) if column.left else text.rjust(width)
            for text, width, column in zip(row, widths, columns, strict=True)
        )
        lines.append("  ".join(padded).rstrip())
    details = [line for entry in runs for line in _changes(entry)]
    return [*lines, *(["", *details] if details else [])]


def _changes(entry: Entry) -> list[str]:
    out = []
    if entry.newly_failing:
        more = (entry.newly_failing_total or 0) - len(entry.newly_failing)
        out.append(f"{entry.run_id}: newly failing: {_ids(entry.newly_failing, more)}")
    if entry.newly_passing:
        out.append(f"{entry.run_id}: newly passing: {_ids(entry.newly_passing, 0)}")
    return out


def _ids(ids: Sequence[str], more: int) -> str:
    shown = ", ".join(ids[:IDS_SHOWN])
    rest = len(ids) - IDS_SHOWN + more
    return shown + (f" and {rest} more" if rest > 0 else "")


def _any(runs: Sequence[Entry], header: str) -> bool:
    if header == "cov":
        return any(e.coverage_ratio is not None for e in runs)
    return any(e.peak_rss_bytes is not None for e in runs)


def _count(entry: Entry, names: frozenset[str]) -> int:
    return sum(n for name, n in entry.counts.items() if name in names)


def _when(entry: Entry) -> str:
    return entry.started[:19].replace("T", " ") or "?"


def _commit(entry: Entry) -> str:
    if entry.git_commit is None:
        return "-"
    return entry.git_commit[:10] + ("+" if entry.git_dirty else "")


def _newly(values: tuple[str, ...] | None, total: int | None) -> str:
    if values is None:
        return "-"
    return str(len(values) if total is None else total)


def _slowest(entry: Entry) -> str:
    if entry.slowest is None:
        return "-"
    test_id, seconds = entry.slowest
    if len(test_id) > SLOWEST_WIDTH:
        test_id = "…" + test_id[-(SLOWEST_WIDTH - 1) :]
    return f"{test_id} ({seconds:.1f}s)"


def _ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    return f"{size / (1024 * 1024):.0f} MiB"


_OPTIONAL = frozenset({"cov", "peak rss"})
_COLUMNS = (
    Column("started (UTC)", _when),
    Column("run", lambda e: e.run_id or "?"),
    Column("commit", _commit),
    Column("exit", lambda e: str(e.exit_code), left=False),
    Column("passed", lambda e: str(_count(e, _PASSING)), left=False),
    Column("failing", lambda e: str(e.failing_total), left=False),
    Column("other", lambda e: str(_count(e, _OTHER)), left=False),
    Column("pass rate", lambda e: _ratio(e.pass_rate), left=False),
    Column("wall", lambda e: f"{e.wall_s:.1f}s", left=False),
    Column("new fail", lambda e: _newly(e.newly_failing, e.newly_failing_total), left=False),
    Column("new pass", lambda e: _newly(e.newly_passing, None), left=False),
    Column("cov", lambda e: _ratio(e.coverage_ratio), left=False),
    Column("peak rss", lambda e: _size(e.peak_rss_bytes), left=False),
    Column("slowest", _slowest),
)
