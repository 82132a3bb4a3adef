"""Prometheus metrics of mtest: a ``Snapshot`` of what the process knows, rendered as text.

``render`` turns a ``Snapshot`` into the Prometheus text exposition format 0.0.4
(``docs/formats.md``, "Prometheus metrics"): gauges describe the last finished
run, counters what this process counted since it started. ``metrics_server``
serves the text over HTTP; ``write_textfile`` writes it for node_exporter's
textfile collector (``--metrics-file``). Everything here is pure except
``write_textfile``.

The format, as Prometheus documents it: one ``# HELP`` and one ``# TYPE`` line
per family, before its samples, and the family's samples together; a HELP text
escapes backslash and line feed; a label value escapes backslash, double quote
and line feed; a value is what Go's ``ParseFloat`` reads (``+Inf``, ``-Inf``,
``NaN``); each name and label set appears once; the text ends with a line feed.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from supervisor.errors import MtestError
from supervisor.model import Outcome
from supervisor.result import RunResult
from supervisor.version import __version__

METRICS_VERSION = 1
"""The version of mtest's metric set (names, labels, meanings): ``mtest_build_info``'s
``metrics_version`` label. A renamed or re-meant metric bumps it; a new one does not."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The ``Content-Type`` of the text exposition format 0.0.4."""
RESULTS = ("passed", "failed", "interrupted", "error")
"""The values of ``mtest_runs_total``'s ``result`` label, every one always exposed."""
_EXIT_RESULTS = {0: "passed", 1: "failed", 2: "interrupted"}
_TEXTFILE_MODE = 0o644
"""node_exporter usually runs as another user than mtest: the file must be readable."""


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """What the metrics tell at one moment: the last run and the process's counters."""

    last: RunResult | None
    """The last finished run (``None`` before the first one ends)."""
    last_success_ts: float | None
    """Unix time the last run with exit 0 ended."""
    runs_total: Mapping[str, int]
    """``result_label`` → runs since the process started."""
    cycles_skipped_total: int
    service_faults_total: int
    start_ts: float
    """Unix time the process started."""
    healthy: bool
    """``False`` when the last cycle hit an internal error."""

    @classmethod
    def fresh(cls, start_ts: float) -> Snapshot:
        """A process that started at ``start_ts`` and has run nothing yet."""
        return cls(
            last=None,
            last_success_ts=None,
            runs_total=MappingProxyType(dict.fromkeys(RESULTS, 0)),
            cycles_skipped_total=0,
            service_faults_total=0,
            start_ts=start_ts,
            healthy=True,
        )

    def after(self, result: RunResult) -> Snapshot:
        """This snapshot once ``result`` has finished: it is the last run and is counted."""
        label = result_label(result.exit_code)
        runs = dict(self.runs_total)
        runs[label] = runs.get(label, 0) + 1
        success = self.last_success_ts
        if result.exit_code == 0:
            success = unix_time(result.ended)
        return replace(
            self,
            last=result,
            last_success_ts=success,
            runs_total=MappingProxyType(runs),
            healthy=True,
        )


def result_label(exit_code: int) -> str:
    """``mtest_runs_total``'s label for a run that exited with ``exit_code``."""
    return _EXIT_RESULTS.get(exit_code, "error")


def unix_time(iso: str) -> float | None:
    """A result's ``started``/``ended`` (ISO-8601 UTC) as unix time; ``None`` if unreadable."""
    try:
        moment = dt.datetime.fromisoformat(iso)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


# --- the families --------------------------------------------------------------------

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class Family:
    """One metric family: its name, type, help text and samples (labels → value)."""

    name: str
    kind: str
    """``gauge`` or ``counter``."""
    help: str
    samples: tuple[tuple[Labels, float], ...] = field(default=())


def _gauge(name: str, text: str, value: float | None) -> Iterator[Family]:
    """A gauge without labels, left out when there is no value."""
    if value is not None:
        yield Family(name=name, kind="gauge", help=text, samples=(((), value),))


def _counter(name: str, text: str, value: int) -> Family:
    return Family(name=name, kind="counter", help=text, samples=(((), value),))


def families(snapshot: Snapshot) -> tuple[Family, ...]:
    """Every family the snapshot exposes, in the order they are rendered."""
    return (*_process_families(snapshot), *_last_run_families(snapshot))


def _process_families(snapshot: Snapshot) -> Iterator[Family]:
    yield Family(
        name="mtest_build_info",
        kind="gauge",
        help="Always 1; the labels name mtest's version, its metric set's and the Python's.",
        samples=((_build_labels(), 1),),
    )
    yield Family(name="mtest_up", kind="gauge", samples=(((), 1),),
                 help="Always 1 while the mtest process exposes its metrics.")  # fmt: skip
    yield Family(
        name="mtest_healthy",
        kind="gauge",
        help="1 while the service loop is healthy, 0 when the last cycle hit an internal error.",
        samples=(((), int(snapshot.healthy)),),
    )
    yield from _gauge("mtest_start_time_seconds", "Unix time the mtest process started.",
                      snapshot.start_ts)  # fmt: skip
    labels = (*RESULTS, *sorted(set(snapshot.runs_total) - set(RESULTS)))
    yield Family(
        name="mtest_runs_total",
        kind="counter",
        help="Runs finished since the process started, by result "
        "(passed: exit 0, failed: exit 1, interrupted: exit 2, error: any other exit).",
        samples=tuple(((("result", r),), snapshot.runs_total.get(r, 0)) for r in labels),
    )
    yield _counter("mtest_cycles_skipped_total",
                   "Cycles skipped because the previous one was still running.",
                   snapshot.cycles_skipped_total)  # fmt: skip
    yield _counter("mtest_service_faults_total",
                   "Internal errors of the service loop since the process started.",
                   snapshot.service_faults_total)  # fmt: skip
    yield from _gauge("mtest_last_success_timestamp_seconds",
                      "Unix time the last run that exited 0 ended.",
                      snapshot.last_success_ts)  # fmt: skip


def _build_labels() -> Labels:
    return (
        ("version", __version__),
        ("metrics_version", str(METRICS_VERSION)),
        ("python", platform.python_version()),
    )


def _last_run_families(snapshot: Snapshot) -> Iterator[Family]:
    last = snapshot.last
    if last is None:
        return
    known = [o.value for o in Outcome]
    outcomes = (*known, *sorted(set(last.counts) - set(known)))
    yield Family(
        name="mtest_last_run_tests",
        kind="gauge",
        help="Tests of the last run by outcome (the final outcome of each test).",
        samples=tuple(((("outcome", o),), last.counts.get(o, 0)) for o in outcomes),
    )
    yield from _gauge("mtest_last_run_not_run_tests",
                      "Selected tests the last run did not run (a stop, --budget, an interrupt).",
                      last.outstanding)  # fmt: skip
    yield from _gauge("mtest_last_run_duration_seconds", "Wall time of the last run.",
                      last.wall_s)  # fmt: skip
    yield from _gauge("mtest_last_run_exit_code", "Exit code of the last run.", last.exit_code)
    yield from _gauge("mtest_last_run_timestamp_seconds", "Unix time the last run ended.",
                      unix_time(last.ended))  # fmt: skip
    yield from _gauge("mtest_last_run_coverage_ratio",
                      "Coverage of the last run, 0 to 1 (only when it measured coverage).",
                      last.coverage_ratio)  # fmt: skip
    yield from _gauge("mtest_last_run_peak_rss_bytes",
                      "Largest resident set size of any worker of the last run.",
                      last.peak_rss_bytes)  # fmt: skip
    if last.containers is not None:
        yield Family(
            name="mtest_last_run_containers",
            kind="gauge",
            help="Containers of the last run (--container): started, start_failures, "
            "timeouts (killed after the grace), cleanup_failures.",
            samples=tuple(((("event", k),), v) for k, v in sorted(last.containers.items())),
        )
    if last.orphans is not None:
        yield Family(
            name="mtest_last_run_orphans",
            kind="gauge",
            help="Orphan modules the last run import-checked (--include-orphans), by outcome.",
            samples=tuple(((("outcome", k),), v) for k, v in sorted(last.orphans.items())),
        )
    if last.slowest is not None:
        test_id, seconds = last.slowest
        yield Family(
            name="mtest_last_run_slowest_test_seconds",
            kind="gauge",
            help="Duration of the slowest test of the last run; the label names it.",
            samples=(((("test_id", test_id),), seconds),),
        )


# --- the text ------------------------------------------------------------------------


def render(snapshot: Snapshot) -> str:
    """The snapshot in the Prometheus text exposition format 0.0.4."""
    return render_families(families(snapshot))


def render_families(groups: tuple[Family, ...]) -> str:
    lines: list[str] = []
    for family in groups:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            lines.append(f"{family.name}{format_labels(labels)} {format_value(value)}")
    return "\n".join(lines) + "\n"


def escape_help(text: str) -> str:
    """A HELP docstring: backslash and line feed escaped."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(text: str) -> str:
    """A label value: backslash, double quote and line feed escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels) + "}"


def format_value(value: float) -> str:
    """A sample value as Go's ``ParseFloat`` reads it: integers exactly, ``+Inf``/``NaN``."""
    if isinstance(value, int):  # bool too: ``True`` is 1
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


# --- the textfile --------------------------------------------------------------------


def write_textfile(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (``--metrics-file``, node_exporter's textfile).

    A temp file in the same directory (named so that the collector's ``*.prom``
    never matches it) is written, fsynced, made readable by all and renamed over
    ``path``: a scrape sees the old exposition or the new one, never half.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    done = False
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), _TEXTFILE_MODE)
        os.replace(tmp, path)
        done = True
    except OSError as exc:
        raise _unwritable(path, exc) from None
    finally:
        if not done:
            Path(tmp).unlink(missing_ok=True)


def _unwritable(path: Path, exc: OSError) -> MtestError:
    return MtestError(
        f"cannot write --metrics-file `{path}`: {exc.strerror or exc}",
        hint="name a file in a directory mtest may write, "
        "such as node_exporter's textfile directory",
    )
