"""``mtest --self-check``: run the canned hostile scenarios through the real pipeline.

The scenarios in ``selfcheck_fixtures/`` — pass, fail, hang, hang ignoring
SIGTERM, a C loop holding the GIL, segfault, ``os._exit(0)``, an escaped
grandchild, a forked copy that runs on into pytest, a leaked clock patch, a
SIGTERM sent to mtest — are copied to a temporary directory and run by the
same code path as ``mtest`` itself. ``expected.json`` names each scenario and
the outcome of each of its tests; :func:`judge` (pure) compares the run's
records with it: every test has exactly its outcome and exactly one record,
a non-passing test has a failure bundle, and every process a scenario left
behind (its pid in ``$MTEST_SELFCHECK_PIDS``) is gone. One line per scenario
says what happened; the last line is ``PASS`` or what failed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from supervisor import pipeline
from supervisor.args import make_config
from supervisor.config import Config
from supervisor.console import Console
from supervisor.model import Outcome, TestRecord, final_records
from supervisor.store import Store

TIMEOUT_S = "2"
"""Per-test limit of the scenarios: every test that should pass takes well under
a tenth of it even on a busy machine, and each hang costs it once."""
GRACE_S = "1"
JOBS = "3"
"""More workers than a small machine's cores: the four hangs mostly sleep, so
they wait out their timeouts side by side."""
PIDS_VAR = "MTEST_SELFCHECK_PIDS"
"""File the scenarios append ``<pid> <scenario>`` lines to, for processes that
must be gone once the run has ended."""
EXPECTED_EXIT = 1
"""Some scenarios fail on purpose."""
INTERRUPTED_HINT = "the run was interrupted: did a test's signal to mtest end it?"


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One behaviour mtest must survive: its tests and the outcome each must get."""

    name: str
    about: str
    outcomes: Mapping[str, Outcome]
    leaves_pid: bool = False
    """The scenario writes a process's pid to ``$MTEST_SELFCHECK_PIDS``."""
    note: str = ""
    """Text the run's notes (``summary.md``) must hold: mtest saw what the scenario did."""


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What one scenario did: each test's outcome, and what differed from expected."""

    scenario: Scenario
    got: tuple[tuple[str, str], ...]
    """``(test id, outcome or "no record")`` per expected test, in expected order."""
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def fixtures_dir() -> Path:
    """The scenarios: packaged with mtest, or beside ``src/`` in a source checkout."""
    packaged = resources.files("supervisor") / "selfcheck_fixtures"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / "selfcheck_fixtures"


def load_scenarios(data: object) -> tuple[Scenario, ...]:
    """``expected.json``'s scenarios; ``ValueError`` naming what is malformed."""
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ValueError("expected.json: expected an object with version 1")
    raw = data.get("scenarios")
    if not isinstance(raw, list) or not raw:
        raise ValueError("expected.json: `scenarios` must be a non-empty list")
    scenarios = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("outcomes"), dict):
            raise ValueError(f"expected.json: scenario {entry!r} has no `outcomes` object")
        if not isinstance(entry.get("name"), str):
            raise ValueError(f"expected.json: scenario {entry!r} has no `name`")
        scenarios.append(
            Scenario(
                name=entry["name"],
                about=str(entry.get("about", "")),
                outcomes={str(t): Outcome(o) for t, o in entry["outcomes"].items()},
                leaves_pid=bool(entry.get("leaves_pid", False)),
                note=str(entry.get("note", "")),
            )
        )
    return tuple(scenarios)


def parse_pids(text: str) -> dict[str, list[int]]:
    """``<pid> <scenario>`` lines → pids per scenario; malformed lines are skipped."""
    pids: dict[str, list[int]] = {}
    for line in text.splitlines():
        pid, _, name = line.strip().partition(" ")
        if pid.isdigit() and name:
            pids.setdefault(name, []).append(int(pid))
    return pids


def judge(
    scenarios: Sequence[Scenario],
    records: Sequence[TestRecord],
    *,
    pids: Mapping[str, Sequence[int]],
    alive: frozenset[int],
    summary: str,
) -> tuple[tuple[Verdict, ...], tuple[str, ...]]:
    """Each scenario's verdict, and the problems that belong to no scenario.

    ``pids`` are the processes each scenario left behind, ``alive`` those of
    them still running after the run ended; ``summary`` is the run's
    ``summary.md``, where the notes a scenario expects must appear.
    """
    finals = final_records(list(records))
    counts = Counter(record.test_id for record in records)
    verdicts = []
    for scenario in scenarios:
        got, problems = [], []
        for test_id, want in scenario.outcomes.items():
            record = finals.get(test_id)
            got.append((test_id, record.outcome.value if record else "no record"))
            problems += _test_problems(test_id, want, record, counts[test_id])
        left = pids.get(scenario.name, ())
        if scenario.leaves_pid and not left:
            problems.append("left no pid to check (did its test run?)")
        problems += [f"pid {pid} outlived the run" for pid in left if pid in alive]
        if scenario.note and scenario.note not in summary:
            problems.append(f"no note saying {scenario.note!r} in summary.md")
        verdicts.append(Verdict(scenario=scenario, got=tuple(got), problems=tuple(problems)))
    known = {test_id for scenario in scenarios for test_id in scenario.outcomes}
    strays = tuple(
        f"{test_id}: unexpected test ({record.outcome.value})"
        for test_id, record in finals.items()
        if test_id not in known
    )
    return tuple(verdicts), strays


def _test_problems(test_id: str, want: Outcome, record: TestRecord | None, count: int) -> list[str]:
    if record is None:
        return [f"{test_id}: expected {want.value}, got no record"]
    problems = []
    if record.outcome is not want:
        detail = f" ({record.message})" if record.message else ""
        problems.append(f"{test_id}: expected {want.value}, got {record.outcome.value}{detail}")
    elif want is not Outcome.PASSED and not record.bundle:
        problems.append(f"{test_id}: {want.value} but no failure bundle was written")
    if count != 1:
        problems.append(f"{test_id}: {count} records, expected exactly one")
    return problems


def render(verdicts: Sequence[Verdict]) -> list[str]:
    """One line per scenario (its tests' outcomes), then what differed, indented."""
    width = max(len(v.scenario.name) for v in verdicts)
    lines = []
    for verdict in verdicts:
        outcomes = ", ".join(f"{t.partition('::')[2] or t} {o}" for t, o in verdict.got)
        lines.append(f"  {'ok' if verdict.ok else 'FAIL':4}  {verdict.scenario.name:<{width}}  "
                     f"{outcomes}")  # fmt: skip
        lines += [f"        {problem}" for problem in verdict.problems]
    return lines


def run(config: Config, console: Console) -> int:
    started = time.monotonic()
    source = fixtures_dir()
    scenarios = load_scenarios(json.loads((source / "expected.json").read_text(encoding="utf-8")))
    with tempfile.TemporaryDirectory(prefix="mtest-selfcheck-") as tmp:
        work = Path(tmp) / "suite"
        shutil.copytree(source, work, ignore=shutil.ignore_patterns("__pycache__", ".gates"))
        console.always(f"mtest self-check: {len(scenarios)} scenarios in {work}")
        pids_file = Path(tmp) / "pids.txt"
        check = _check_config(config, work)
        code = _run_quietly(check, console, pids_file)
        store = Store(check.gates_dir, lambda message: None)
        records, summary = store.read_records(), store.read_summary() or ""
        pids = parse_pids(pids_file.read_text() if pids_file.exists() else "")
        alive = frozenset(pid for listed in pids.values() for pid in listed if _alive(pid))
        verdicts, strays = judge(scenarios, records, pids=pids, alive=alive, summary=summary)
    problems = list(strays)
    if code != EXPECTED_EXIT:
        why = INTERRUPTED_HINT if code == 2 else "some scenarios fail on purpose"
        problems.append(f"exit code {code}, expected {EXPECTED_EXIT} ({why})")
    for line in render(verdicts):
        console.always(line)
    for problem in problems:
        console.always(f"FAIL: {problem}")
    elapsed = time.monotonic() - started
    failed = [v.scenario.name for v in verdicts if not v.ok]
    if failed or problems:
        what = f"{len(failed)} of {len(verdicts)} scenarios failed" if failed else "the run"
        console.always(f"self-check failed: {what} ({elapsed:.1f}s)")
        return 1
    console.always(f"PASS ({len(verdicts)} scenarios in {elapsed:.1f}s)")
    return 0


def _check_config(config: Config, work: Path) -> Config:
    # Each scenario's test gets exactly one record: no rerun alone of the failing one.
    argv = ["--timeout", TIMEOUT_S, "--kill-grace", GRACE_S, "-j", JOBS, "-q",
            "--gates-dir", str(work / ".gates"), "--no-isolate-failures"]  # fmt: skip
    return dataclasses.replace(
        make_config(argv, work), python=config.python, python_origin=config.python_origin
    )


def _run_quietly(check: Config, console: Console, pids_file: Path) -> int:
    """The pipeline on the scenarios, with the scenarios' pid file in the environment."""
    quiet = Console(console.stream, verbosity=-10, tty=False, color=False)
    previous = os.environ.get(PIDS_VAR)
    os.environ[PIDS_VAR] = str(pids_file)
    try:
        return pipeline.run(check, quiet).exit_code
    finally:
        if previous is None:
            os.environ.pop(PIDS_VAR, None)
        else:
            os.environ[PIDS_VAR] = previous


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
