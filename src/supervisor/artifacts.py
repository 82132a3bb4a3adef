"""After a run: its timeline, its HTML report and its trace, written where they go.

``write_views`` is what ``pipeline`` calls once a run has ended: it gathers
what the pure renderers need (the bundles' tracebacks, the quarantine, the
earlier durations, the history), then writes ``last-run/timeline.jsonl`` and
``last-run/report.html`` through the store, and ``--html PATH`` /
``--trace PATH`` where the user asked. A file that cannot be written is a
warning: the run keeps its exit code.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

from supervisor import history, htmlreport, tracefile
from supervisor.bundle import read_diagnoses
from supervisor.config import Config
from supervisor.console import Console
from supervisor.errors import MtestError
from supervisor.learn import Durations, Quarantine
from supervisor.model import TestRecord
from supervisor.result import RunResult
from supervisor.store import Store, write_atomic
from supervisor.timeline import Timeline


def write_views(
    config: Config, store: Store, console: Console, *, result: RunResult, timeline: Timeline,
    attempts: Sequence[TestRecord], quarantine: Quarantine, durations: Durations,
    coverage: str | None,
) -> None:  # fmt: skip
    store.write_timeline(timeline.to_lines())
    shown = htmlreport.shown_problems(result.records)[: htmlreport.TRACEBACKS_SHOWN]
    data = htmlreport.ReportData(
        run_id=result.run_id, started=result.started, wall_s=result.wall_s,
        exit_code=result.exit_code, finals=result.records, attempts=len(attempts),
        outstanding=result.outstanding, interrupted=result.interrupted, tiers=result.tiers,
        budget_s=result.budget_s, shard=config.shard, jobs=config.jobs, coverage=coverage,
        timeline=timeline, diagnoses=read_diagnoses(store.paths.last_run, shown),
        quarantine=quarantine_rows(quarantine), samples=durations.tests,
        runs=_runs(config, result, console),
    )  # fmt: skip
    store.write_report_html(htmlreport.render(data))
    if config.html_path is not None:
        prefix = os.path.relpath(store.paths.last_run, config.html_path.parent) + "/"
        page = htmlreport.render(dataclasses.replace(data, bundle_prefix=prefix))
        _write(config.html_path, page, "--html", console)
    if config.trace_path is not None:
        text = json.dumps(tracefile.trace_json(timeline), ensure_ascii=True)
        _write(config.trace_path, text + "\n", "--trace", console)


def quarantine_rows(quarantine: Quarantine) -> list[htmlreport.QuarantineRow]:
    kinds = quarantine.kinds()
    return [
        htmlreport.QuarantineRow(
            test_id=e.test_id,
            kind=str(kinds.get(e.test_id, "")),
            state=e.state.value,
            recent=e.recent,
            since=e.since,
            last_failure=e.last_failure,
        )
        for e in quarantine.entries.values()
    ]


def _runs(config: Config, result: RunResult, console: Console) -> list[history.Entry]:
    """The history with this run at its end (it is appended after the report), when
    there is a history file; else none (no trend chart)."""
    path = history.history_path(config)
    if not path.is_file():
        return []
    try:
        runs = history.read(path, console.warn)
    except MtestError as exc:
        console.warn(exc.message)
        return []
    last = runs[-1] if runs and runs[-1].run_id != result.run_id else None
    return [*runs, history.entry_for(result, history.Context(), last)]


def _write(path: Path, text: str, flag: str, console: Console) -> None:
    try:
        write_atomic(path, text)
    except OSError as exc:
        console.warn(f"could not write {flag} `{path}`: {exc.strerror or exc}")
