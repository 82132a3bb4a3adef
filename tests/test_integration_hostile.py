"""The hostile fixture suite end to end: one real run, many small checks on what it left.

The run happens once per module (``-j 2 --timeout 5 --kill-grace 2``) in a copy
of ``tests/fixtures/hostile``; every test below inspects its exit code, output,
``.gates/`` and the process table right after it ended.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import FIXTURES, Completed, records, run_mtest, run_processes

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

WALL_LIMIT_S = 150.0
NOT_PASSING = {"failed", "error", "hung", "crashed"}
RECORD_FIELDS = {
    "version": int,
    "run_id": str,
    "test_id": str,
    "outcome": str,
    "duration_s": float,
    "tier": int,
    "markers": list,
    "attempt": int,
    "chunk": int,
    "quarantined": bool,
    "message": str,
    "ts": str,
}
BUNDLE_NAME = re.compile(r"[A-Za-z0-9._-]+")
MiB = 1024 * 1024

Snapshot = dict[str, tuple[int, int]]


@dataclass(frozen=True, kw_only=True)
class HostileRun:
    project: Path
    result: Completed
    expected: dict[str, str]
    lines: list[str]
    survivors: list[int]
    before: Snapshot
    after: Snapshot

    @property
    def gates(self) -> Path:
        return self.project / ".gates"

    @property
    def last_run(self) -> Path:
        return self.gates / "last-run"

    @property
    def finals(self) -> dict[str, dict[str, Any]]:
        return {r["test_id"]: r for r in records(self.gates)}


def load_expected(project: Path) -> dict[str, str]:
    """``expected.json``'s outcomes: test id → the outcome mtest must record."""
    outcomes: dict[str, str] = json.loads((project / "expected.json").read_text())["outcomes"]
    return outcomes


def snapshot(project: Path) -> Snapshot:
    """Every file outside ``.gates/`` and ``__pycache__/``: size and mtime."""
    files: Snapshot = {}
    for path in project.rglob("*"):
        rel = path.relative_to(project)
        if rel.parts[0] == ".gates" or "__pycache__" in rel.parts or path.is_dir():
            continue
        stat = path.stat()
        files[str(rel)] = (stat.st_size, stat.st_mtime_ns)
    return files


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> HostileRun:
    project = tmp_path_factory.mktemp("hostile") / "suite"
    shutil.copytree(FIXTURES / "hostile", project)
    expected = load_expected(project)
    before = snapshot(project)
    result = run_mtest(
        ["-j", "2", "--timeout", "5", "--kill-grace", "2"], project, timeout=WALL_LIMIT_S + 30
    )
    run_log = project / ".gates" / "last-run" / "run.jsonl"
    lines = run_log.read_text(encoding="utf-8").split("\n") if run_log.exists() else []
    run_ids = {json.loads(line)["run_id"] for line in lines if line.strip()}
    # Look for leftovers at once: "no process outlives mtest" allows no grace period.
    survivors = [pid for run_id in run_ids for pid in run_processes(run_id)]
    return HostileRun(
        project=project,
        result=result,
        expected=expected,
        lines=lines,
        survivors=survivors,
        before=before,
        after=snapshot(project),
    )


def test_exit_code_is_one(hostile: HostileRun) -> None:
    assert hostile.result.returncode == 1, hostile.result.stderr[-2000:]
    assert "Traceback" not in hostile.result.stderr


def test_wall_time(hostile: HostileRun) -> None:
    assert hostile.result.elapsed < WALL_LIMIT_S


def test_every_expected_test_has_exactly_its_outcome(hostile: HostileRun) -> None:
    got = {test_id: r["outcome"] for test_id, r in hostile.finals.items()}
    wrong = {t: (want, got.get(t)) for t, want in hostile.expected.items() if got.get(t) != want}
    assert wrong == {}, "test id: (expected, got)"


def test_no_unexpected_test_ids(hostile: HostileRun) -> None:
    assert set(hostile.finals) - set(hostile.expected) == set()


def test_record_lines_are_complete_json_with_every_field(hostile: HostileRun) -> None:
    assert hostile.lines[-1] == "", "run.jsonl must end with a newline"
    body = hostile.lines[:-1]
    assert body
    run_ids = set()
    first: dict[str, str] = {}
    for line in body:
        record = json.loads(line)
        assert record["version"] == 1
        for field, kind in RECORD_FIELDS.items():
            assert isinstance(record[field], kind), (field, record)
        assert record["bundle"] is None or isinstance(record["bundle"], str)
        # No --retries: one attempt per test, and one rerun alone of a failure.
        if record["attempt"] == 1:
            first[record["test_id"]] = record["outcome"]
        else:
            assert record["attempt"] == 2, record
            assert first[record["test_id"]] in ("failed", "error"), record
        run_ids.add(record["run_id"])
    assert len(run_ids) == 1


def test_non_passing_tests_have_a_bundle_under_failures(hostile: HostileRun) -> None:
    failures = (hostile.last_run / "failures").resolve()
    for test_id, record in hostile.finals.items():
        if record["outcome"] not in NOT_PASSING:
            continue
        assert record["bundle"], test_id
        path = (hostile.last_run / record["bundle"]).resolve()
        assert path.parent == failures, (test_id, record["bundle"])
        assert path.is_file(), (test_id, record["bundle"])
        assert test_id in path.read_text(encoding="utf-8")


def test_bundle_names_are_unique_safe_and_small(hostile: HostileRun) -> None:
    bundles = [r["bundle"] for r in hostile.finals.values() if r["bundle"]]
    assert len(bundles) == len(set(bundles))
    files = list((hostile.last_run / "failures").iterdir())
    assert len(files) >= len(bundles)
    for path in files:
        assert BUNDLE_NAME.fullmatch(path.name), path.name
        assert len(path.name) <= 120 + 32, path.name
        assert path.stat().st_size <= 8 * MiB, path.name


def _bundle(hostile: HostileRun, test_id: str) -> str:
    name: str = hostile.finals[test_id]["bundle"]
    return (hostile.last_run / name).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "test_id",
    [
        "test_hangs.py::test_sleep",
        "test_hangs.py::test_ignores_sigterm",
        "test_hangs.py::test_gil_loop",
        "test_hangs.py::test_marker_timeout",
    ],
)
def test_hung_bundle_has_the_stacks(hostile: HostileRun, test_id: str) -> None:
    text = _bundle(hostile, test_id)
    assert "stack" in text.lower()
    function = test_id.rpartition("::")[2]
    assert re.search(rf"\bin {function}\b", text), f"no frame of {function} in the bundle"


@pytest.mark.parametrize(
    ("test_id", "needle"),
    [
        ("test_deaths.py::test_segfault", "SIGSEGV"),
        ("test_deaths.py::test_abort", "SIGABRT"),
        ("test_deaths.py::test_os_exit_0", "code 0"),
    ],
)
def test_crash_bundle_names_how_the_child_died(
    hostile: HostileRun, test_id: str, needle: str
) -> None:
    assert needle in _bundle(hostile, test_id)
    assert needle in hostile.finals[test_id]["message"]


def test_gates_stays_small(hostile: HostileRun) -> None:
    total = sum(p.stat().st_size for p in hostile.gates.rglob("*") if p.is_file())
    assert total < 64 * MiB


def test_terminal_output_is_not_flooded(hostile: HostileRun) -> None:
    assert len(hostile.result.stdout) + len(hostile.result.stderr) < MiB


def test_nothing_written_outside_gates(hostile: HostileRun) -> None:
    assert hostile.after == hostile.before


def test_no_process_of_the_run_survives(hostile: HostileRun) -> None:
    assert hostile.lines, "no records: cannot tell the run id"
    assert hostile.survivors == []


def test_summary_mentions_the_counts(hostile: HostileRun) -> None:
    text = (hostile.last_run / "summary.md").read_text(encoding="utf-8")
    for outcome, count in Counter(hostile.expected.values()).items():
        word = "errors" if outcome == "error" and count != 1 else outcome  # pytest's words
        assert re.search(rf"\b{count} {word}\b", text), f"{count} {word}"


def test_keyboard_interrupt_does_not_stop_the_run(hostile: HostileRun) -> None:
    assert hostile.finals["test_interrupts.py::test_keyboard_interrupt"]["outcome"] == "failed"
    assert hostile.finals["test_interrupts.py::test_after_interrupts"]["outcome"] == "passed"


def test_flood_bundle_says_how_much_output_was_cut(hostile: HostileRun) -> None:
    text = _bundle(hostile, "test_flood.py::test_flood_then_fail")
    cut = re.findall(r"(\d+) characters cut|cut (\d+) characters", text)
    said = max((int(a or b) for a, b in cut), default=0)
    assert said >= 19 * MiB, f"the bundle says {said} characters were cut of 20 MiB"
