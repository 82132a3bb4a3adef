"""Issue 10: runs start only the children they need, and those collect only what they run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import finals, records, run_mtest, write_suite

pytestmark = pytest.mark.integration

PASSING = {"test_ok.py": "def test_one():\n    pass\n\n\ndef test_two():\n    pass\n"}


def _children(gates: Path) -> list[str]:
    return sorted(p.name for p in (gates / "last-run" / "children").iterdir())


def test_resume_with_nothing_left_finishes_the_run_without_a_child(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", PASSING)
    gates = project / ".gates"
    first = run_mtest([], project)
    assert first.returncode == 0, first.stderr
    # The run ended after its last record but before it was marked complete (a kill).
    state_path = gates / "state.json"
    state = json.loads(state_path.read_text())
    state.update(complete=False, outstanding=[], exit_code=None)
    state_path.write_text(json.dumps(state))
    for child_file in (gates / "last-run" / "children").iterdir():
        child_file.unlink()
    before = records(gates)

    resumed = run_mtest(["--resume"], project)

    assert resumed.returncode == 0, resumed.stderr
    assert _children(gates) == []  # no pytest child, no watchdog record
    assert "nothing left to run" in resumed.stderr + resumed.stdout
    assert records(gates) == before
    assert {k: v["outcome"] for k, v in finals(gates).items()} == {
        "test_ok.py::test_one": "passed",
        "test_ok.py::test_two": "passed",
    }
    after = json.loads(state_path.read_text())
    assert after["complete"] is True and after["exit_code"] == 0
