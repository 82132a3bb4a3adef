"""`.ci/compare.py`, the dogfood check: pytest and mtest must agree test by test."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "compare.py"


@pytest.fixture(scope="module")
def compare() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_compare", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="tests.test_a" name="test_ok" />
<testcase classname="tests.test_a" name="test_bad[1]"><failure message="x" /></testcase>
<testcase classname="tests.test_a" name="test_bad[1]"><error message="teardown" /></testcase>
<testcase classname="tests.test_b" name="test_skip"><skipped message="s" /></testcase>
</testsuite></testsuites>
"""


def write_runs(tmp_path: Path, outcomes: dict[str, str]) -> tuple[str, str]:
    junit = tmp_path / "pytest.xml"
    junit.write_text(JUNIT)
    run = tmp_path / "run.jsonl"
    lines = [json.dumps({"test_id": t, "outcome": o}) for t, o in outcomes.items()]
    run.write_text("\n".join(lines) + "\n")
    return str(junit), str(run)


AGREEING = {
    "tests/test_a.py::test_ok": "passed",
    "tests/test_a.py::test_bad[1]": "hung",
    "tests/test_b.py::test_skip": "skipped",
}


def test_agreeing_runs_pass_and_print_both_counts(
    compare: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert compare.main([*write_runs(tmp_path, AGREEING), "1", "1"]) == 0
    out = capsys.readouterr().out
    assert "pytest ran 3 tests (exit 1), mtest ran 3 (exit 1); 0 disagreement(s)" in out


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"tests/test_b.py::test_skip": None},
            "tests.test_b::test_skip: pytest skipped, mtest absent",
        ),
        (
            {"tests/test_c.py::test_new": "passed"},
            "tests.test_c::test_new: pytest absent, mtest passed",
        ),
        (
            {"tests/test_a.py::test_ok": "crashed"},
            "tests.test_a::test_ok: pytest passed, mtest failed",
        ),
    ],
)
def test_a_test_on_one_side_only_or_with_another_outcome_is_a_disagreement(
    compare: ModuleType,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str | None],
    problem: str,
) -> None:
    outcomes = {**AGREEING, **change}
    kept = {t: o for t, o in outcomes.items() if o is not None}
    assert compare.main([*write_runs(tmp_path, kept), "1", "1"]) == 1
    captured = capsys.readouterr()
    assert f"dogfood: {problem}" in captured.err
    assert "1 disagreement(s)" in captured.out


def test_different_exit_codes_disagree(compare: ModuleType, tmp_path: Path) -> None:
    assert compare.main([*write_runs(tmp_path, AGREEING), "1", "0"]) == 1


def test_a_missing_run_log_is_one_line_not_a_traceback(
    compare: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junit, _ = write_runs(tmp_path, AGREEING)
    missing = str(tmp_path / "gates" / "run.jsonl")
    assert compare.main([junit, missing, "0", "3"]) == 1
    assert capsys.readouterr().err == f"dogfood: mtest (exit 3) wrote no {missing}\n"
