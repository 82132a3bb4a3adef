"""pytest's options under mtest, as users type them: real mtest processes, real children.

``-x``/``--maxfail`` counted across workers, ``--collect-only`` listing the
selection, ``-k``/``-m`` at the top level, refused options, ``--flaky-result``,
and selections that collect nothing or name a test that does not exist.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import finals, records, run_mtest, write_suite
from test_integration_cli import assert_one_error_line

pytestmark = pytest.mark.integration

SLOW = "import time\n\n\n" + "".join(
    f"def test_slow_{i:02d}():\n    time.sleep(1)\n\n\n" for i in range(6)
)
"""Tests that take a while, so that a stop after a failure leaves some of them not run."""

STOPPING = {
    "test_a.py": "def test_fails_a():\n    assert False, 'first'\n\n\n" + SLOW,
    "test_b.py": "def test_fails_b():\n    assert False, 'second'\n\n\n" + SLOW,
}
TOTAL = 14


def state(project: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project / ".gates" / "state.json").read_text())
    return data


# -- -x and --maxfail ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "most", "reason"),
    [
        (["-x"], 1, "-x"),
        (["-j", "2", "-x"], 2, "-x"),
        (["-j", "2", "--", "--maxfail=2"], 2, "--maxfail=2"),
    ],
    ids=["x", "x-two-workers", "maxfail-after-dashes"],
)
@pytest.mark.timeout(120)
def test_x_and_maxfail_stop_the_run_and_leave_the_rest_outstanding(
    tmp_path: Path, args: list[str], most: int, reason: str
) -> None:
    project = write_suite(tmp_path / "p", STOPPING)
    result = run_mtest(args, project, timeout=100)
    assert result.returncode == 1, result.stdout + result.stderr
    got = finals(project / ".gates")
    failed = [t for t, r in got.items() if r["outcome"] == "failed"]
    # Counted across workers: the other worker's test in flight may fail as well.
    assert 1 <= len(failed) <= most, failed
    assert all(r["attempt"] == 1 for r in records(project / ".gates"))
    saved = state(project)
    outstanding = set(saved["outstanding"])
    assert outstanding, "a stop after the first failures must leave tests not run"
    assert outstanding.isdisjoint(got)
    assert len(got) + len(outstanding) == TOTAL
    assert f"not run: {len(outstanding)} test(s) ({reason})" in result.stdout
    # The rest runs with --resume, which keeps -x: each resume goes on to the next
    # failure, the way --stepwise would, until nothing is left.
    for _ in range(3):
        again = run_mtest(["--resume"], project, timeout=100)
        assert again.returncode == 1, again.stdout + again.stderr
        if state(project)["complete"]:
            break
    everything = finals(project / ".gates")
    assert len(everything) == TOTAL
    assert {t for t, r in everything.items() if r["outcome"] == "failed"} == {
        "test_a.py::test_fails_a", "test_b.py::test_fails_b",
    }  # fmt: skip
    assert all(r["attempt"] == 1 for r in records(project / ".gates")), "no test ran twice"


@pytest.mark.timeout(120)
def test_files_that_fail_to_import_count_towards_maxfail(tmp_path: Path) -> None:
    project = write_suite(
        tmp_path / "p",
        {"test_broken.py": "import no_such_module_here\n", "test_slow.py": SLOW},
    )
    result = run_mtest(["-x"], project, timeout=100)
    assert result.returncode == 1, result.stdout + result.stderr
    got = finals(project / ".gates")
    assert got["test_broken.py"]["outcome"] == "error"
    assert len(state(project)["outstanding"]) == 6, "nothing starts once -x has its failure"


# -- --collect-only ---------------------------------------------------------------------

TIERED = {
    "test_t.py": (
        "import pytest\n\n\n"
        "@pytest.mark.smoke\ndef test_smoke():\n    pass\n\n\n"
        "def test_plain():\n    pass\n\n\n"
        "def test_other():\n    assert False\n"
    )
}


@pytest.mark.parametrize(
    "args",
    [["--collect-only", "--tier", "0"], ["--co", "--tier", "0"],
     ["--tier", "0", "--", "--collect-only"]],
)  # fmt: skip
def test_collect_only_lists_the_selection_and_keeps_the_last_run(
    tmp_path: Path, args: list[str]
) -> None:
    project = write_suite(tmp_path / "p", TIERED)
    first = run_mtest([], project)
    assert first.returncode == 1, first.stdout + first.stderr
    log = project / ".gates" / "last-run" / "run.jsonl"
    before = log.read_bytes()
    listed = run_mtest(args, project)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    ids = [line for line in listed.stdout.splitlines() if "::" in line]
    assert ids == ["test_t.py::test_smoke"], listed.stdout
    assert "left out by tier: 2 test(s)" in listed.stdout
    assert log.read_bytes() == before, "--collect-only must not touch the last run"


def test_collect_only_lists_every_test_and_exits_5_when_none(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", TIERED)
    everything = run_mtest(["--co", "-q"], project)
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout.split() == [
        "test_t.py::test_smoke", "test_t.py::test_plain", "test_t.py::test_other",
    ]  # fmt: skip
    none = run_mtest(["--co", "-k", "nothing_matches"], project)
    assert none.returncode == 5, none.stdout + none.stderr
    assert not (project / ".gates" / "last-run").exists()


# -- -k and -m at the top level ---------------------------------------------------------

FAILS_ONCE = (
    "from pathlib import Path\n\n\n"
    "def test_once():\n"
    "    marker = Path(__file__).with_name('ran-once')\n"
    "    if not marker.exists():\n"
    "        marker.write_text('x')\n"
    "        assert False, 'first attempt'\n\n\n"
    "def test_other():\n    pass\n"
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-k", "plain or other"], {"test_t.py::test_plain", "test_t.py::test_other"}),
        (["-m", "smoke"], {"test_t.py::test_smoke"}),
        (["-m", "not smoke", "-k", "plain"], {"test_t.py::test_plain"}),
        (["--", "-k", "smoke"], {"test_t.py::test_smoke"}),
    ],
)
def test_k_and_m_select_as_in_pytest(tmp_path: Path, args: list[str], expected: set[str]) -> None:
    project = write_suite(tmp_path / "p", TIERED)
    result = run_mtest(args, project)
    assert set(finals(project / ".gates")) == expected, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("extra", "code"), [([], 0), (["--flaky-result", "fail"], 1), (["--flaky-result", "pass"], 0)]
)
def test_flaky_result_decides_whether_flaky_fails_the_run(
    tmp_path: Path, extra: list[str], code: int
) -> None:
    """A retry runs in a fresh child given the test's node id and the -k: it still runs."""
    project = write_suite(tmp_path / "p", {"test_f.py": FAILS_ONCE})
    result = run_mtest(["-k", "once", "--retries", "1", *extra], project)
    assert result.returncode == code, result.stdout + result.stderr
    assert {t: r["outcome"] for t, r in finals(project / ".gates").items()} == {
        "test_f.py::test_once": "flaky"
    }


def test_flaky_result_in_the_table(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_f.py": FAILS_ONCE})
    (project / "pyproject.toml").write_text('[tool.mtest]\nflaky_result = "fail"\n')
    result = run_mtest(["--retries", "1"], project)
    assert result.returncode == 1, result.stdout + result.stderr


# -- refused options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [(["--", "--pdb"], "--pdb"), (["-n", "2"], "-n"), (["--", "--lf"], "--lf")],
)
def test_an_option_mtest_cannot_honour_is_refused_before_any_test_runs(
    tmp_path: Path, args: list[str], option: str
) -> None:
    project = write_suite(tmp_path / "p", TIERED)
    result = run_mtest(args, project)
    assert result.returncode == 4, result.stdout + result.stderr
    assert_one_error_line(result.stderr, f"`{option}`", "hint:")
    assert not (project / ".gates").exists()


# -- selections that collect nothing ---------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "target", ["test_t.py::test_nope", "test_t.py::TestMissing::test_x", "missing_file.py"]
)
def test_a_test_that_does_not_exist_ends_the_run_with_pytests_usage_error(
    tmp_path: Path, target: str
) -> None:
    project = write_suite(tmp_path / "p", TIERED)
    result = run_mtest([target], project, timeout=80)
    assert result.returncode == 4, result.stdout + result.stderr
    line = assert_one_error_line(result.stderr, "not found")
    assert target.split("::")[0] in line


@pytest.mark.parametrize(
    "args",
    [["-k", "nothing_matches"], ["-m", "no_such_marker"],
     ["--", "--deselect", "test_t.py::test_smoke", "--deselect", "test_t.py::test_plain",
      "--deselect", "test_t.py::test_other"]],
    ids=["k", "m", "deselect-all"],
)  # fmt: skip
def test_a_selection_of_nothing_exits_5(tmp_path: Path, args: list[str]) -> None:
    project = write_suite(tmp_path / "p", TIERED)
    result = run_mtest(args, project)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "no tests ran" in result.stdout
    assert "Traceback" not in result.stderr


# -- subtests --------------------------------------------------------------------------

SUBTESTS = (
    "import unittest\n\n\n"
    "class T(unittest.TestCase):\n"
    "    def test_one_subtest_fails(self):\n"
    "        for i in range(3):\n"
    "            with self.subTest(i=i):\n"
    "                self.assertNotEqual(i, 1)\n\n"
    "    def test_every_subtest_passes(self):\n"
    "        for i in range(3):\n"
    "            with self.subTest(i=i):\n"
    "                self.assertLess(i, 3)\n"
)


def test_a_failed_unittest_subtest_fails_its_test(tmp_path: Path) -> None:
    # pytest 9 reports the failed subTest apart and the test's own call as passed;
    # plain pytest exits 1 for it, and so does mtest.
    project = write_suite(tmp_path / "p", {"test_sub.py": SUBTESTS})
    result = run_mtest([], project)
    outcome = {
        k: (v["outcome"], v.get("message", "")) for k, v in finals(project / ".gates").items()
    }
    assert result.returncode == 1, result.stdout + result.stderr
    assert outcome["test_sub.py::T::test_every_subtest_passes"] == ("passed", "")
    verdict, message = outcome["test_sub.py::T::test_one_subtest_fails"]
    assert verdict == "failed"
    assert "1 == 1" in message
