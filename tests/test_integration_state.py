"""``.gates/`` across runs: the lock, damaged state files, ``--report`` and verbosity."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import (
    error_lines,
    finals,
    finish,
    records,
    run_mtest,
    start_mtest,
    wait_for_file,
    write_suite,
)

pytestmark = pytest.mark.integration

PASSING = {"test_ok.py": "def test_one():\n    pass\n\n\ndef test_two():\n    pass\n"}
FAILING = {
    **PASSING,
    "test_bad.py": "def test_broken():\n    assert 1 == 2, 'deliberate'\n",
}
HOLDER = {
    "test_hold.py": (
        "import os, time\n"
        "from pathlib import Path\n\n\n"
        "def test_holds_until_released():\n"
        "    Path(os.environ['STARTED']).write_text(str(os.getpid()))\n"
        "    deadline = time.monotonic() + 300  # a hang guard: the test releases it\n"
        "    while not Path(os.environ['RELEASE']).exists():\n"
        "        assert time.monotonic() < deadline, 'never released'\n"
        "        time.sleep(0.05)\n"
    )
}
STATE_FILES = ("durations.json", "quarantine.json", "state.json")
DAMAGE = {
    "garbage": "this is {not json\n",
    "empty": "",
    "truncated": '{"version": 1, "tests": {"test_ok.py::test_one": [{"dur',
    "wrong-version": '{"version": 99, "tests": {}}\n',
    "not-an-object": "[1, 2, 3]\n",
}


@pytest.mark.timeout(400)
def test_second_mtest_on_a_locked_gates_dir_exits_4_naming_the_holder(tmp_path: Path) -> None:
    """The first run holds the lock until the second one has ended."""
    project = write_suite(tmp_path / "p", HOLDER)
    started, release = tmp_path / "started", tmp_path / "release"
    t0 = time.monotonic()
    env = {"STARTED": str(started), "RELEASE": str(release)}
    first = start_mtest(["--timeout", "600"], project, env=env)
    try:
        wait_for_file(started, first, timeout=120)
        second = run_mtest([], project, timeout=120)
    finally:
        release.touch()
        done = finish(first, t0, timeout=120)
    assert second.returncode == 4
    lines = error_lines(second.stderr)
    assert len(lines) == 1 and lines[0].startswith("mtest: error:"), second.stderr
    assert f"pid {first.pid}" in lines[0], lines[0]
    assert done.returncode == 0, done.stderr
    assert (
        finals(project / ".gates")["test_hold.py::test_holds_until_released"]["outcome"] == "passed"
    )


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_state_files_warn_once_each_and_the_run_goes_on(
    tmp_path: Path, damage: str
) -> None:
    project = write_suite(tmp_path / "p", PASSING)
    gates = project / ".gates"
    gates.mkdir()
    for name in STATE_FILES:
        (gates / name).write_text(DAMAGE[damage])
    result = run_mtest([], project)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    assert all(line.startswith("mtest: warning:") for line in lines), result.stderr
    for name in ("durations.json", "quarantine.json"):
        assert sum(name in line for line in lines) == 1, (name, result.stderr)
    # A fresh run does not need state.json, so it may stay silent about it.
    assert sum("state.json" in line for line in lines) <= 1
    for name in STATE_FILES:
        assert json.loads((gates / name).read_text())["version"] == 1, name


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "wrong-version"])
def test_damaged_state_json_means_nothing_to_resume(tmp_path: Path, damage: str) -> None:
    project = write_suite(tmp_path / "p", PASSING)
    gates = project / ".gates"
    gates.mkdir()
    (gates / "state.json").write_text(DAMAGE[damage])
    result = run_mtest(["--resume"], project)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = error_lines(result.stderr)
    warnings = [line for line in lines if line.startswith("mtest: warning:")]
    assert len(warnings) == 1 and "state.json" in warnings[0], result.stderr
    assert next(line for line in lines if line not in warnings).startswith("mtest: error:")


@pytest.fixture
def failed_run(tmp_path: Path) -> Path:
    project = write_suite(tmp_path / "p", FAILING)
    # One record per test: the last line is a pass, not a rerun of the failure alone.
    result = run_mtest(["--no-isolate-failures"], project)
    assert result.returncode == 1, result.stderr
    return project


def test_report_prints_the_summary_and_the_runs_exit_code(failed_run: Path) -> None:
    summary = (failed_run / ".gates" / "last-run" / "summary.md").read_text(encoding="utf-8")
    result = run_mtest(["--report"], failed_run)
    assert result.returncode == 1, result.stderr
    assert summary.strip() in result.stdout
    assert "test_bad.py::test_broken" in result.stdout


@pytest.mark.parametrize("lose_state", [False, True], ids=["with-state", "without-state"])
def test_report_survives_a_truncated_last_record(failed_run: Path, lose_state: bool) -> None:
    gates = failed_run / ".gates"
    run_log = gates / "last-run" / "run.jsonl"
    lines = run_log.read_text(encoding="utf-8").splitlines(keepends=True)
    last = json.loads(lines[-1])
    assert last["outcome"] == "passed", "the cut line must not be the failure"
    run_log.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    if lose_state:
        (gates / "state.json").unlink()
    result = run_mtest(["--report"], failed_run)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "test_bad.py::test_broken" in result.stdout


def test_quiet_prints_less_and_verbose_lists_passing_tests(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", FAILING)
    outputs = {flag: run_mtest([flag] if flag else [], project) for flag in ("-q", "", "-v")}
    assert {r.returncode for r in outputs.values()} == {1}
    quiet, default, verbose = (outputs[f].stdout for f in ("-q", "", "-v"))
    assert len(quiet) < len(default) < len(verbose), (quiet, default, verbose)
    for test_id in ("test_ok.py::test_one", "test_ok.py::test_two"):
        assert test_id not in default
        assert sum(test_id in line for line in verbose.splitlines()) == 1, verbose
    assert "test_bad.py::test_broken" in default


FAILS_ONCE = (
    "import os\n"
    "from pathlib import Path\n\n\n"
    "def test_fails_once():\n"
    "    flag = Path(os.environ['MARKS'], 'failed')\n"
    "    if not flag.exists():\n"
    "        flag.write_text('1')\n"
    "        assert False, 'first attempt'\n"
)
"""A test that fails the first time it runs (``MARKS`` names a scratch directory)."""


def test_retries_turn_one_off_failures_and_crashes_into_flaky(tmp_path: Path) -> None:
    once = FAILS_ONCE + (
        "\n\n"
        "def test_crashes_once():\n"
        "    flag = Path(os.environ['MARKS'], 'crashed')\n"
        "    if not flag.exists():\n"
        "        flag.write_text('1')\n"
        "        os._exit(1)\n\n\n"
        "def test_always_fails():\n"
        "    assert False, 'every attempt'\n"
    )
    project = write_suite(tmp_path / "p", {"test_once.py": once})
    marks = tmp_path / "marks"
    marks.mkdir()
    result = run_mtest(["--retries", "2"], project, env={"MARKS": str(marks)})
    assert result.returncode == 1, result.stdout + result.stderr
    attempts: dict[str, list[tuple[int, str]]] = {}
    for record in records(project / ".gates"):
        attempts.setdefault(record["test_id"], []).append((record["attempt"], record["outcome"]))
    assert attempts == {
        "test_once.py::test_fails_once": [(1, "failed"), (2, "flaky")],
        "test_once.py::test_crashes_once": [(1, "crashed"), (2, "flaky")],
        "test_once.py::test_always_fails": [(1, "failed"), (2, "failed"), (3, "failed")],
    }


BROKEN_IMPORTS = {
    "test_ok.py": "def test_fine():\n    pass\n",
    "test_dies_on_import.py": "import os\nos._exit(3)\n",
    "test_hangs_on_import.py": "import time\ntime.sleep(600)\n",
}


@pytest.mark.timeout(300)
def test_files_that_kill_or_hang_their_child_at_import_gate_the_run(tmp_path: Path) -> None:
    # The timeout also bounds the innocent file's import and the wait for its
    # test to start: far above what they need, even on a loaded machine.
    project = write_suite(tmp_path / "p", BROKEN_IMPORTS)
    result = run_mtest(["--timeout", "10", "--kill-grace", "1"], project, timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr
    results = finals(project / ".gates")
    assert {t: r["outcome"] for t, r in results.items()} == {
        "test_ok.py::test_fine": "passed",
        "test_dies_on_import.py": "error",
        "test_hangs_on_import.py": "error",
    }
    assert "exited with code 3 while importing it" in results["test_dies_on_import.py"]["message"]
    assert "took longer than the 10s timeout" in results["test_hangs_on_import.py"]["message"]
    summary = (project / ".gates" / "last-run" / "summary.md").read_text()
    assert "test_dies_on_import.py" in summary and "test_hangs_on_import.py" in summary
    bundle = project / ".gates" / "last-run" / results["test_hangs_on_import.py"]["bundle"]
    text = bundle.read_text()
    assert re.search(r"^pytest: +\d", text, re.MULTILINE), "the environment is filled in"
    assert 'test_hangs_on_import.py", line 2 in <module>' in text, "the stacks show the import"


def test_a_flaky_record_points_at_the_failing_attempts_bundle(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_once.py": FAILS_ONCE})
    marks = tmp_path / "marks"
    marks.mkdir()
    result = run_mtest(["--retries", "1"], project, env={"MARKS": str(marks)})
    assert result.returncode == 0, result.stdout + result.stderr
    first, second = records(project / ".gates")
    assert (first["outcome"], second["outcome"]) == ("failed", "flaky")
    assert second["bundle"] == first["bundle"] is not None
    assert second["message"] == "passed on attempt 2 after: AssertionError: first attempt"
    bundle = (project / ".gates" / "last-run" / first["bundle"]).read_text()
    assert "assert False, 'first attempt'" in bundle


def test_fail_fast_stops_new_tests_but_still_retries_the_failure(tmp_path: Path) -> None:
    suite = {
        "test_a.py": FAILS_ONCE,
        # Enough estimated work after the failure that it lands in later chunks.
        **{f"test_later_{n}.py": "def test_later():\n    pass\n" for n in range(60)},
    }
    project = write_suite(tmp_path / "p", suite)
    marks = tmp_path / "marks"
    marks.mkdir()
    result = run_mtest(["--fail-fast", "--retries", "1"], project, env={"MARKS": str(marks)})
    outcomes = {r["test_id"]: r["outcome"] for r in records(project / ".gates")}
    assert outcomes["test_a.py::test_fails_once"] == "flaky", result.stdout
    assert len(outcomes) < 61, "tests after the first failure's chunk were not launched"
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_fail_fast_on_the_command_line_beats_the_config(tmp_path: Path) -> None:
    suite = {"test_a.py": "def test_fails():\n    assert False\n"}
    suite |= {f"test_later_{n}.py": "def test_later():\n    pass\n" for n in range(60)}
    project = write_suite(tmp_path / "p", suite)
    (project / "pytest.ini").unlink()
    (project / "pyproject.toml").write_text("[tool.mtest]\nfail_fast = true\n")
    stopped = run_mtest([], project)
    assert stopped.returncode == 1
    assert len(records(project / ".gates")) < 61
    full = run_mtest(["--no-fail-fast"], project)
    assert full.returncode == 1
    assert len(finals(project / ".gates")) == 61  # the failure also has its rerun alone


def test_timeout_ini_counts_without_pytest_timeout(tmp_path: Path) -> None:
    project = write_suite(
        tmp_path / "p", {"test_s.py": "import time\n\n\ndef test_slow():\n    time.sleep(30)\n"}
    )
    # pytest-timeout is blocked, so `timeout` is an ini key pytest does not know.
    (project / "pytest.ini").write_text("[pytest]\naddopts = -p no:timeout\ntimeout = 1\n")
    result = run_mtest(["--kill-grace", "1"], project)
    assert result.returncode == 1, result.stdout + result.stderr
    (record,) = records(project / ".gates")
    assert record["outcome"] == "hung"
    assert "the 1s timeout" in record["message"]


def test_a_crash_bundle_keeps_the_last_words_of_a_flood(tmp_path: Path) -> None:
    flood = (
        "import os\n\n\n"
        "def test_floods_then_dies():\n"
        "    block = b'z' * (1 << 20)\n"
        "    for _ in range(40):\n"
        "        os.write(1, block)\n"
        "    os.write(1, b'\\nLAST WORDS BEFORE DYING\\n')\n"
        "    os._exit(1)\n"
    )
    project = write_suite(tmp_path / "p", {"test_f.py": flood})
    result = run_mtest(["--", "-s"], project)
    assert result.returncode == 1, result.stdout + result.stderr
    (record,) = records(project / ".gates")
    assert record["outcome"] == "crashed"
    bundle = (project / ".gates" / "last-run" / record["bundle"]).read_text()
    assert "LAST WORDS BEFORE DYING" in bundle
    cut = re.search(r"mtest cut (\d+) bytes", bundle)
    assert cut is not None and int(cut.group(1)) > 35 * (1 << 20)
    assert len(bundle) < 8 * (1 << 20)


KILLS_ITS_CHILD_BETWEEN_CHUNKS = {
    "conftest.py": (
        "import builtins\nimport os\n\n"
        "_open = builtins.open\n\n\n"
        "def _dying_open(file, *args, **kwargs):\n"
        "    if str(file).endswith('.ids'):\n"
        "        os._exit(1)  # dies after taking a chunk, before running any test\n"
        "    return _open(file, *args, **kwargs)\n\n\n"
        "builtins.open = _dying_open\n"
    ),
    "test_x.py": "def test_never_started():\n    pass\n",
}


@pytest.mark.timeout(300)
def test_children_that_keep_dying_before_any_test_end_the_run(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", KILLS_ITS_CHILD_BETWEEN_CHUNKS)
    result = run_mtest([], project, timeout=240)  # a hang guard: children start slowly under load
    assert result.returncode == 1, result.stdout + result.stderr
    (error,) = error_lines(result.stderr)
    assert "3 times in a row before running a test" in error
    children = list((project / ".gates" / "last-run" / "children").glob("*.events.jsonl"))
    assert len(children) <= 4, "a bounded number of children, not one per retry forever"
    blamed = [r["test_id"] for r in records(project / ".gates")]
    assert all(t.startswith("<session>::") for t in blamed), (
        "no test is blamed for a death it did not cause (a child's session may be)"
    )


def test_start_up_and_collection_costs_are_learned_separately(tmp_path: Path) -> None:
    files = {f"test_{n}.py": "def test_a():\n    pass\n" for n in range(20)}
    project = write_suite(tmp_path / "p", files)
    assert run_mtest(["-q"], project).returncode == 0
    durations = json.loads((project / ".gates" / "durations.json").read_text())
    # Starting Python and importing pytest takes well over 50 ms; collecting 20
    # files takes some milliseconds: neither may swallow the other.
    assert durations["startup_s"] > 0.05
    assert durations["collect_s"] > 0.002
    assert len(durations["runs"]) == 1, "one entry per run, not per record"


ATTACKER = {
    "test_attack.py": (
        "import os, shutil\n"
        "from pathlib import Path\n\n\n"
        "def test_a_before():\n"
        "    pass\n\n\n"
        "def test_b_attacks_the_state_directory():\n"
        "    if os.environ['ATTACK'] == 'delete':\n"
        "        shutil.rmtree('.gates')\n"
        "    else:\n"
        "        Path('.gates').rename('.gates-moved')\n\n\n"
        "def test_c_after():\n"
        "    assert False, 'a failure after the attack'\n"
    )
}


@pytest.mark.parametrize("attack", ["delete", "rename"])
def test_a_test_that_removes_the_gates_directory_loses_no_record(
    tmp_path: Path, attack: str
) -> None:
    project = write_suite(tmp_path / "p", ATTACKER)
    done = run_mtest(["-j", "1"], project, env={"ATTACK": attack}, timeout=120)
    assert done.returncode == 1, done.stderr
    gates = project / ".gates"
    results = {test_id.split("::")[-1]: r["outcome"] for test_id, r in finals(gates).items()}
    assert results == {
        "test_a_before": "passed",
        "test_b_attacks_the_state_directory": "passed",
        "test_c_after": "failed",
    }
    bundle = finals(gates)["test_attack.py::test_c_after"]["bundle"]
    assert "a failure after the attack" in (gates / "last-run" / bundle).read_text()
    assert (gates / "last-run" / "summary.md").is_file()
    assert json.loads((gates / "quarantine.json").read_text())["version"] == 1
    assert "removed" in done.stdout + done.stderr, "the run says what happened"


FLIPS_AND_BREAKS = {
    "test_q.py": (
        "import os\n\n\n"
        "def test_flips():\n"
        "    assert os.environ['FLIPS'] == 'pass', 'flips on purpose'\n\n\n"
        "def test_regressed():\n"
        "    assert False, 'broken since the first run'\n"
    )
}


def test_a_regression_keeps_failing_the_run_while_a_flipping_test_is_quarantined(
    tmp_path: Path,
) -> None:
    """The issue's rule over six real runs: F P F P F flips, F F F F F F is broken."""
    project = write_suite(tmp_path / "p", FLIPS_AND_BREAKS)
    gates = project / ".gates"
    states = []
    for flips in ["fail", "pass", "fail", "pass", "fail", "fail"]:
        done = run_mtest(["-q"], project, env={"FLIPS": flips}, timeout=120)
        assert done.returncode == 1, "the regression gates every run"
        entries = json.loads((gates / "quarantine.json").read_text())["entries"]
        states.append({e["test_id"].split("::")[-1]: e["state"] for e in entries})
    assert [s["test_regressed"] for s in states] == ["watched"] * 6
    assert [s["test_flips"] for s in states] == ["watched"] * 4 + ["quarantined"] * 2
    last = finals(gates)
    assert last["test_q.py::test_flips"]["quarantined"] is True
    assert last["test_q.py::test_regressed"]["quarantined"] is False
