"""``mtest --self-check``: run the canned hostile scenarios through the real pipeline.

The scenarios in ``selfcheck_fixtures/`` — pass, fail, hang, hang ignoring
SIGTERM, a C loop holding the GIL, segfault, ``os._exit(0)``, an escaped
grandchild — are copied to a temporary directory and run by the same code
path as ``mtest`` itself; each outcome is compared with ``expected.json`` and
every grandchild must be gone afterwards. Prints ``PASS`` or what differed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

from supervisor import pipeline
from supervisor.config import Config
from supervisor.console import Console
from supervisor.model import final_records
from supervisor.store import Store

TIMEOUT_S = "2"
GRACE_S = "1"
PIDS_VAR = "MTEST_SELFCHECK_PIDS"


def fixtures_dir() -> Path:
    """The scenarios: packaged with mtest, or beside ``src/`` in a source checkout."""
    packaged = resources.files("supervisor") / "selfcheck_fixtures"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "selfcheck_fixtures"


def run(config: Config, console: Console) -> int:
    from supervisor.cli import make_config

    started = time.monotonic()
    source = fixtures_dir()
    expected = json.loads((source / "expected.json").read_text(encoding="utf-8"))["outcomes"]
    with tempfile.TemporaryDirectory(prefix="mtest-selfcheck-") as tmp:
        work = Path(tmp) / "suite"
        shutil.copytree(source, work, ignore=shutil.ignore_patterns("__pycache__", ".gates"))
        pids = Path(tmp) / "grandchildren.txt"
        argv = ["--timeout", TIMEOUT_S, "--kill-grace", GRACE_S, "-j", "2", "-q",
                "--gates-dir", str(work / ".gates")]  # fmt: skip
        check = dataclasses.replace(
            make_config(argv, work), python=config.python, python_origin=config.python_origin
        )
        quiet = Console(console.stream, verbosity=-10, tty=False, color=False)
        previous = os.environ.get(PIDS_VAR)
        os.environ[PIDS_VAR] = str(pids)
        try:
            code = pipeline.run(check, quiet)
        finally:
            if previous is None:
                os.environ.pop(PIDS_VAR, None)
            else:
                os.environ[PIDS_VAR] = previous
        problems = _compare(check, expected, code) + _survivors(pids)
    elapsed = time.monotonic() - started
    if problems:
        for problem in problems:
            console.always(f"FAIL: {problem}")
        console.always(f"self-check failed ({len(problems)} problem(s), {elapsed:.1f}s)")
        return 1
    console.always(f"PASS ({len(expected)} scenarios in {elapsed:.1f}s)")
    return 0


def _compare(config: Config, expected: dict[str, str], code: int) -> list[str]:
    store = Store(config.gates_dir, lambda message: None)
    finals = final_records(store.read_records())
    problems = []
    for test_id, outcome in expected.items():
        record = finals.get(test_id)
        got = record.outcome.value if record else "no record"
        if got != outcome:
            detail = f" ({record.message})" if record and record.message else ""
            problems.append(f"{test_id}: expected {outcome}, got {got}{detail}")
        elif record and outcome != "passed" and not record.bundle:
            problems.append(f"{test_id}: {outcome} but no failure bundle was written")
    problems += [f"{t}: unexpected test ({r.outcome.value})" for t, r in finals.items()
                 if t not in expected]  # fmt: skip
    if code != 1:
        problems.append(f"exit code {code}, expected 1 (some scenarios fail on purpose)")
    return problems


def _survivors(pids: Path) -> list[str]:
    try:
        listed = [int(line) for line in pids.read_text().split()]
    except (OSError, ValueError):
        return ["the grandchild scenario left no pid to check"]
    return [f"grandchild pid {pid} outlived the run" for pid in listed if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rfind(")") + 2 :].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
