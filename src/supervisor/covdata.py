"""Coverage across workers (``--cov``): checked before any test runs, combined after.

mtest never imports coverage.py (it is no dependency of mtest): ``probecov``
runs in the tested environment — in every child, and as a program run with
``config.python`` for the two steps here:

- ``prepare``, before any test runs: coverage.py must import in that
  environment and accept the project's configuration, else a usage error
  (exit 4) names the interpreter and the fix. Data files of another run left
  in ``<gates>/coverage/`` are moved aside (``Store.begin_coverage``), never
  combined into this run. It returns the children's settings
  (``MTEST_COVERAGE``).
- ``combine``, once every child has ended: ``coverage combine --keep`` of this
  run's data files into the project's data file (``[run] data_file``,
  ``COVERAGE_FILE``; default ``.coverage`` in the working directory, where
  ``coverage run`` and pytest-cov leave it, so ``coverage html`` and
  ``coverage report`` find it), then the total ``coverage report`` computes
  and whether it fails under ``--cov-fail-under`` (or the project's
  ``[report] fail_under``), by coverage.py's own rule. A data file at that
  place that mtest did not write is moved aside first (``Store.set_aside``),
  never overwritten silently. A run that is not complete keeps its data
  files, so that ``--resume`` combines the earlier sessions' with its own.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.config import Config
from supervisor.errors import MtestError
from supervisor.model import FORMAT_VERSION
from supervisor.store import COVERAGE_LAST, Store
from supervisor.worker import PROTOCOL_VARS

SCRIPT = Path(__file__).with_name("probecov.py")
ENV_VAR = "MTEST_COVERAGE"
"""``probecov.ENV``: the children's settings."""
MARK = "mtest-coverage:"
"""``probecov.MARK``: the line of its answer."""
NO_COVERAGE_EXIT = 3
"""``probecov.NO_COVERAGE_EXIT``."""
CHECK_TIMEOUT_S = 120.0
COMBINE_TIMEOUT_S = 900.0
"""Generous: a loaded machine, a big project's data; past it the run has no total."""

# Loads probecov from its file (the project's interpreter may not have mtest) and runs
# its ``main``. The signals mtest blocks during a run are unblocked first.
_LOADER = """\
import signal
signal.pthread_sigmask(signal.SIG_SETMASK, [])
import importlib.util, sys
spec = importlib.util.spec_from_file_location("_mtest_probecov", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
raise SystemExit(module.main(sys.argv[2:]))
"""


@dataclass(frozen=True, kw_only=True)
class Setup:
    """How this run measures: checked in the tested environment before any test runs."""

    version: str
    """coverage.py's version there."""
    target: Path
    """Where the combined data goes: the project's data file."""
    fail_under: float | None
    """``--cov-fail-under``, else the project's ``[report] fail_under`` (``None``: none)."""
    child_env: str
    """``MTEST_COVERAGE`` for every child: the settings as JSON."""


@dataclass(frozen=True, kw_only=True)
class Total:
    """The run's coverage as ``coverage report`` computes it, or why there is none."""

    percent: float | None
    """0..100, unrounded; ``None``: no data (``problem`` says why)."""
    display: str = ""
    """As coverage.py shows it, with at least two decimals (``87.54``)."""
    branch: bool = False
    fail_under: float | None = None
    failed: bool = False
    """The run fails for its coverage (under ``fail_under``, or no data with one)."""
    data_file: Path | None = None
    version: str = ""
    parts: int = 0
    """Data files combined."""
    problem: str = ""

    @property
    def ratio(self) -> float | None:
        return None if self.percent is None else self.percent / 100.0

    @property
    def short(self) -> str:
        """``coverage 87.54%`` (the end line); ``coverage: no data``."""
        return "coverage: no data" if self.percent is None else f"coverage {self.display}%"

    @property
    def fail_line(self) -> str:
        """pytest-cov's verdict, in mtest's words (empty when the run does not fail for it)."""
        if not self.failed:
            return ""
        total = f"total {self.display}%" if self.percent is not None else self.problem
        return f"FAIL required test coverage of {self.fail_under:g}% not reached: {total}"


def prepare(config: Config, store: Store, run_id: str) -> Setup:
    """Check coverage.py in the tested environment; clear the way for this run's data.

    Raises ``MtestError`` (exit 4) when coverage.py is missing there or rejects
    the project's configuration.
    """
    settings = {"source": list(config.cov_sources) or None, "branch": config.cov_branch}
    answer, code, tail = _ask(config, "check", settings, CHECK_TIMEOUT_S)
    where = f"`{config.python}` ({config.python_origin})"
    if code == NO_COVERAGE_EXIT:
        raise MtestError(
            f"--cov needs coverage.py, and {where} cannot import it ({_error(answer, tail)})",
            hint=f"install it into that environment: `{config.python} -m pip install coverage`",
        )
    if answer is None or "error" in answer:
        raise MtestError(
            f"--cov: coverage.py in {where} rejects the project's configuration: "
            f"{_error(answer, tail)}",
            hint="fix the coverage settings ([run], [report] in .coveragerc, setup.cfg, "
            "tox.ini or pyproject.toml [tool.coverage])",
        )
    store.begin_coverage(run_id)
    configured = float(answer.get("fail_under") or 0.0)
    fail_under = config.cov_fail_under if config.cov_fail_under is not None else configured
    child = {**settings, "data_file": str(store.paths.coverage_data), "run_id": run_id}
    return Setup(
        version=str(answer.get("version", "")),
        target=Path(str(answer["data_file"])),
        fail_under=fail_under or None,
        child_env=json.dumps(child),
    )


def combine(config: Config, store: Store, setup: Setup, run_id: str, *, complete: bool) -> Total:
    """Combine this run's data files into the project's data file; the total.

    ``complete``: no test is left to run, so the data files are removed once
    combined; otherwise they stay for ``--resume``.
    """
    parts = store.coverage_parts(run_id)
    failed = setup.fail_under is not None
    if not parts:
        why = "no test saved coverage data"
        store.note(f"coverage: {why}")
        return Total(percent=None, fail_under=setup.fail_under, failed=failed, problem=why)
    if not store.set_aside(setup.target, owned=_owned(store, setup.target)):
        why = f"`{setup.target}` is in the way (not written by mtest, and could not be moved)"
        return Total(percent=None, fail_under=setup.fail_under, failed=failed, problem=why)
    settings = {
        "target": str(setup.target),
        "parts": [str(p) for p in parts],
        "fail_under": setup.fail_under,
    }
    answer, _, tail = _ask(config, "combine", settings, COMBINE_TIMEOUT_S)
    for warning in (answer or {}).get("warnings", []):
        store.note(f"coverage.py: {warning}")
    if answer is None or "error" in answer:
        why = f"coverage.py could not combine or report: {_error(answer, tail)}"
        store.note(f"coverage: {why}")
        return Total(percent=None, fail_under=setup.fail_under, failed=failed, problem=why)
    total = Total(
        percent=float(answer["percent"]),
        display=str(answer["display"]),
        branch=bool(answer["branch"]),
        fail_under=answer.get("fail_under"),
        failed=bool(answer["failed"]),
        data_file=setup.target,
        version=str(answer.get("version", setup.version)),
        parts=len(parts),
    )
    store.write_json(COVERAGE_LAST, _last_json(total, run_id, setup.target))
    if complete:
        store.drop_coverage_parts(run_id)
    return total


def _owned(store: Store, target: Path) -> bool:
    """Whether ``target`` is the data file mtest left there last (same size and mtime)."""
    last = store.read_json(COVERAGE_LAST)
    try:
        stat = target.stat()
    except OSError:
        return True  # nothing there to keep
    return bool(
        last
        and last.get("data_file") == str(target)
        and last.get("size") == stat.st_size
        and last.get("mtime_ns") == stat.st_mtime_ns
    )


def _last_json(total: Total, run_id: str, target: Path) -> dict[str, Any]:
    """``<gates>/coverage/last.json`` (``docs/formats.md``)."""
    try:
        stat = target.stat()
        size, mtime_ns = stat.st_size, stat.st_mtime_ns
    except OSError:
        size, mtime_ns = None, None
    return {
        "version": FORMAT_VERSION,
        "run_id": run_id,
        "percent": total.percent,
        "display": total.display,
        "branch": total.branch,
        "fail_under": total.fail_under,
        "failed": total.failed,
        "parts": total.parts,
        "coverage_version": total.version,
        "data_file": str(target),
        "size": size,
        "mtime_ns": mtime_ns,
    }


def _ask(
    config: Config, command: str, settings: dict[str, Any], timeout: float
) -> tuple[dict[str, Any] | None, int | None, str]:
    """Run ``probecov`` with the project's interpreter: its answer, exit status, last output."""
    env = {k: v for k, v in os.environ.items() if k not in PROTOCOL_VARS}
    argv = [config.python, "-c", _LOADER, str(SCRIPT), command, json.dumps(settings)]
    try:
        done = subprocess.run(
            argv, cwd=config.cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
            timeout=timeout, check=False, start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        return None, None, f"cannot run `{config.python}`: {exc.strerror or exc}"
    except subprocess.TimeoutExpired:
        return None, None, f"`{command}` did not finish in {timeout:.0f}s"
    out = done.stdout.decode(errors="replace")
    tail = _last_line(done.stderr.decode(errors="replace")) or _last_line(out)
    for line in out.splitlines():
        if line.startswith(MARK):
            try:
                answer = json.loads(line[len(MARK) :])
            except ValueError:
                break
            if isinstance(answer, dict):
                return answer, done.returncode, tail
    return None, done.returncode, tail or f"exit status {done.returncode}"


def _error(answer: dict[str, Any] | None, tail: str) -> str:
    return str(answer["error"]) if answer and "error" in answer else tail


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
