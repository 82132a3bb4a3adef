"""Order dependence and ``--failed`` with real mtest and pytest processes."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import finals, records, run_mtest, write_suite
from test_integration_state import FAILS_ONCE

from supervisor import order

PAIR = """\
STATE = {}


def test_innocent_1():
    pass


def test_a():
    STATE["x"] = 1


def test_innocent_2():
    pass


def test_innocent_3():
    pass


def test_innocent_4():
    pass


def test_b():
    assert "x" not in STATE, "polluted"


def test_always_fails():
    assert False, "alone too"
"""
"""``test_a`` sets a module-level global that ``test_b`` asserts is unset: one file,
so one chunk on one worker, in this order."""


def _attempts(gates: Path) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for record in records(gates):
        seen.setdefault(record["test_id"], []).append(record["outcome"])
    return seen


def test_a_test_broken_by_an_earlier_one_is_order_dependent(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_pair.py": PAIR})
    result = run_mtest([], project, timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    gates = project / ".gates"
    attempts = _attempts(gates)
    assert attempts["test_pair.py::test_b"] == ["failed", "order_dependent"]
    assert attempts["test_pair.py::test_always_fails"] == ["failed", "failed"]
    assert attempts["test_pair.py::test_a"] == ["passed"]
    final = finals(gates)["test_pair.py::test_b"]
    assert final["predecessors"] == [
        "test_pair.py::test_innocent_1", "test_pair.py::test_a", "test_pair.py::test_innocent_2",
        "test_pair.py::test_innocent_3", "test_pair.py::test_innocent_4",
    ]  # fmt: skip
    assert "polluter" not in final
    assert final["message"].startswith("failed after 5 other test(s) in its worker, passed alone")
    assert "1 failed, 1 order_dependent, 5 passed" in result.stdout
    summary = (gates / "last-run" / "summary.md").read_text(encoding="utf-8")
    assert "order_dependent" in summary and "test_pair.py::test_b" in summary


def test_find_polluter_names_the_one_predecessor_that_breaks_it(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_pair.py": PAIR.replace("test_always", "x")})
    result = run_mtest(["--find-polluter"], project, timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr
    gates = project / ".gates"
    final = finals(gates)["test_pair.py::test_b"]
    assert final["outcome"] == "order_dependent"
    assert final["polluter"] == "test_pair.py::test_a"
    assert final["message"].startswith("fails after test_pair.py::test_a (passes alone)")
    bundle = (gates / "last-run" / final["bundle"]).read_text(encoding="utf-8")
    assert "polluter: test_pair.py::test_a" in bundle
    assert "AssertionError: polluted" in bundle, "the first failure's traceback is kept"
    assert "pytest test_pair.py::test_a test_pair.py::test_b" in bundle  # reproduces it
    # The searches' runs are probes: nothing else got a second record.
    assert all(len(v) == 1 for k, v in _attempts(gates).items() if k != "test_pair.py::test_b")
    # Each probe ran a subset of the predecessors in their order, then the test, in a
    # fresh child; the number of children is bounded.
    children = gates / "last-run" / "children"
    probes = [p.read_text().split() for p in sorted(children.glob("*-chunk*.ids"))][2:]
    assert probes, "the search ran"
    for ids in probes:
        assert ids[-1] == "test_pair.py::test_b"
        assert ids[:-1] == [t for t in final["predecessors"] if t in ids[:-1]]
    assert len(probes) <= order.max_runs(len(final["predecessors"]))
    assert len(list(children.glob("*.out.txt"))) == 2 + len(probes)


def test_no_isolate_failures_keeps_plain_failures(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_pair.py": PAIR})
    (project / "pyproject.toml").write_text("[tool.mtest]\nisolate_failures = false\n")
    result = run_mtest([], project, timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    attempts = _attempts(project / ".gates")
    assert attempts["test_pair.py::test_b"] == ["failed"]
    assert attempts["test_pair.py::test_always_fails"] == ["failed"]
    # The flag wins over the table.
    again = run_mtest(["--isolate-failures"], project, timeout=180)
    assert again.returncode == 1, again.stdout + again.stderr
    assert _attempts(project / ".gates")["test_pair.py::test_b"] == ["failed", "order_dependent"]


def test_with_retries_a_pass_alone_is_flaky_and_counts_as_the_first_retry(tmp_path: Path) -> None:
    once = FAILS_ONCE + "\n\ndef test_always_fails():\n    assert False, 'every attempt'\n"
    project = write_suite(tmp_path / "p", {"test_once.py": once})
    marks = tmp_path / "marks"
    marks.mkdir()
    result = run_mtest(["--retries", "2"], project, env={"MARKS": str(marks)}, timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    assert _attempts(project / ".gates") == {
        "test_once.py::test_fails_once": ["failed", "flaky"],
        "test_once.py::test_always_fails": ["failed", "failed", "failed"],
    }


MIXED = {
    "test_mixed.py": (
        "import os\n\n\n"
        "def test_ok():\n    pass\n\n\n"
        "def test_bad():\n    assert os.environ.get('FIXED'), 'broken'\n\n\n"
        "def test_err(broken_fixture):\n    pass\n\n\n"
        "def test_other_ok():\n    pass\n"
    ),
    "conftest.py": (
        "import os\nimport pytest\n\n\n"
        "@pytest.fixture\n"
        "def broken_fixture():\n    assert os.environ.get('FIXED'), 'setup breaks'\n"
    ),
}


def test_failed_reruns_the_last_failures_and_the_new_tests(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", MIXED)
    first = run_mtest(["--failed", "--no-isolate-failures"], project, timeout=180)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "--failed: no last run is recorded; running all" in first.stdout
    assert len(finals(project / ".gates")) == 4
    listed = run_mtest(["--collect-only", "--failed"], project, timeout=180)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert listed.stdout.split("\n")[1:3] == ["test_mixed.py::test_bad", "test_mixed.py::test_err"]
    (project / "test_new.py").write_text("def test_new():\n    pass\n")
    second = run_mtest(["--failed"], project, env={"FIXED": "1"}, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    assert set(finals(project / ".gates")) == {
        "test_mixed.py::test_bad", "test_mixed.py::test_err", "test_new.py::test_new",
    }  # fmt: skip
    assert "--failed: 2 test(s) that failed in the last run, 1 new" in second.stdout
    assert "left out by --failed: 2 test(s)" in second.stdout
    state = json.loads((project / ".gates" / "state.json").read_text(encoding="utf-8"))
    assert len(state["selected"]) == 3
    # The last run was green: nothing failed and nothing is new, so all run, as --lf does.
    third = run_mtest(["--failed", "-k", "ok"], project, timeout=180)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "none is new; running all" in third.stdout
    assert set(finals(project / ".gates")) == {
        "test_mixed.py::test_ok",
        "test_mixed.py::test_other_ok",
    }
