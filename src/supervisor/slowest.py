"""The slowest tests: ``mtest slowest [N]`` on the last run, and ``--durations N`` at a run's end.

``slowest`` and ``durations_lines`` are pure (records in, rows or lines out);
``slowest_view`` reads the last run's ``run.jsonl`` through the store. A
test's time is its final record's ``duration_s`` (setup, call and teardown
together: mtest does not split them). Skipped tests and records that are not
tests (a file that failed to import) are left out, as pytest leaves them out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from supervisor.config import Config
from supervisor.console import Console
from supervisor.errors import MtestError
from supervisor.model import Outcome, TestRecord, final_records
from supervisor.store import Store
from supervisor.text import one_line

DEFAULT_N = 20
HIDDEN_BELOW_S = 0.005
"""As pytest: shorter durations are hidden from ``--durations`` unless ``-vv``."""


@dataclass(frozen=True, kw_only=True)
class Row:
    test_id: str
    duration_s: float
    outcome: str
    attempt: int


def slowest(finals: Iterable[TestRecord], n: int) -> list[Row]:
    """The ``n`` slowest tests (``0``: all), slowest first, ties by id."""
    rows = [
        Row(test_id=r.test_id, duration_s=r.duration_s, outcome=r.outcome.value, attempt=r.attempt)
        for r in finals
        if r.outcome is not Outcome.SKIPPED and "::" in r.test_id
    ]
    rows.sort(key=lambda r: (-r.duration_s, r.test_id))
    return rows if n == 0 else rows[:n]


def durations_lines(finals: Iterable[TestRecord], n: int, *, verbosity: int) -> list[str]:
    """pytest's ``slowest N durations`` block: ``0.52s passed   tests/t.py::test_x``."""
    rows = slowest(finals, n)
    title = "slowest durations" if n == 0 else f"slowest {n} durations"
    lines = [f" {title} ".center(78, "=")]
    shown = rows if verbosity >= 2 else [r for r in rows if r.duration_s >= HIDDEN_BELOW_S]
    lines += [f"{r.duration_s:.2f}s {r.outcome:<8} {one_line(r.test_id)}" for r in shown]
    hidden = len(rows) - len(shown)
    if hidden:
        lines += [
            "",
            f"({hidden} durations < {HIDDEN_BELOW_S:g}s hidden.  Use -vv to show these durations.)",
        ]
    return lines


def render(rows: Sequence[Row], *, total: int) -> list[str]:
    if not rows:
        return ["no timed tests in the last run"]
    width = max(len(f"{r.duration_s:.2f}") for r in rows) + 1
    out = [f"the {len(rows)} slowest of {total} test(s) of the last run:"]
    out += [f"{f'{r.duration_s:.2f}s':>{width}} {r.outcome:<8} {one_line(r.test_id)}" for r in rows]
    return out


def slowest_view(config: Config, console: Console) -> int:
    """``mtest slowest [N] [--json]``: exit 0; 4 when there is no last run."""
    store = Store(config.gates_dir, console.warn)
    if not store.paths.run_log.is_file():
        raise MtestError(
            f"no run to read in `{config.gates_dir}`", hint="run `mtest` first", code=4
        )
    finals = final_records(store.read_records())
    rows = slowest(finals.values(), config.slowest_n)
    if config.json_output:
        payload = [
            {"test_id": r.test_id, "duration_s": round(r.duration_s, 6), "outcome": r.outcome,
             "attempt": r.attempt}
            for r in rows
        ]  # fmt: skip
        console.always(json.dumps(payload, indent=2))
        return 0
    for line in render(rows, total=len(finals)):
        console.always(line)
    return 0
