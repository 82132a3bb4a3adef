"""Tests that attack the supervisor itself (issue 9), each next to an innocent sibling.

Every scenario is a small project under ``tests/fixtures/attacks/``, copied
and run by a real mtest; the checks read ``.gates/last-run/run.jsonl``: exactly
one record per test, the right outcomes, and no process of the run alive
after mtest exits.
"""

from __future__ import annotations

import os
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

ATTACKS = FIXTURES / "attacks"
SESSION = "<session>::child-"


@dataclass(frozen=True, kw_only=True)
class Attack:
    project: Path
    result: Completed
    records: list[dict[str, Any]]
    survivors: list[int]

    @property
    def outcomes(self) -> dict[str, str]:
        return {r["test_id"]: r["outcome"] for r in self.records}

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    def session_errors(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["test_id"].startswith(SESSION)]

    def assert_one_record_per_test(self) -> None:
        """One record per test, besides the rerun alone of a test that failed in its chunk."""
        firsts = {r["test_id"]: r["outcome"] for r in self.records if r["attempt"] == 1}
        counts = Counter(r["test_id"] for r in self.records)
        for test_id, n in counts.items():
            assert n == 1 or (n == 2 and firsts.get(test_id) in ("failed", "error")), counts
        assert all(r["attempt"] in (1, 2) for r in self.records), self.records
        assert self.survivors == [], f"alive after mtest exited: {self.survivors}"


def attack(tmp_path: Path, name: str, *args: str) -> Attack:
    """Run mtest on a copy of ``attacks/<name>`` and look at what it left."""
    project = tmp_path / name
    shutil.copytree(ATTACKS / name, project)
    result = run_mtest(["-j", "1", *args], project, timeout=180)
    run_log = project / ".gates" / "last-run" / "run.jsonl"
    found = records(project / ".gates") if run_log.exists() else []
    run_ids = {r["run_id"] for r in found}
    # At once: "nothing outlives mtest" allows no grace period.
    survivors = [pid for run_id in run_ids for pid in run_processes(run_id)]
    return Attack(project=project, result=result, records=found, survivors=survivors)


# -- 1. forked test processes -----------------------------------------------------


def test_a_forked_copy_of_the_worker_adds_no_record_and_does_not_survive(tmp_path: Path) -> None:
    run = attack(tmp_path, "fork", "--timeout", "30")
    assert run.outcomes == {
        "test_fork.py::test_forks_and_the_copy_runs_on": "passed",
        "test_fork.py::test_after_the_fork_one": "passed",
        "test_fork.py::test_after_the_fork_two": "passed",
    }, run.output
    run.assert_one_record_per_test()
    assert run.result.returncode == 0, run.output


def test_events_another_process_writes_into_the_stream_are_dropped_and_noted(
    tmp_path: Path,
) -> None:
    run = attack(tmp_path, "forged", "--timeout", "30")
    assert run.outcomes == {
        "test_forged.py::test_forges_a_pass_for_itself_and_fails": "failed",
        "test_forged.py::test_fails_on_its_own": "failed",
        "test_forged.py::test_innocent_after_the_forgery": "passed",
    }, run.output
    run.assert_one_record_per_test()
    assert run.result.returncode == 1
    assert "wrote events into child" in run.result.stdout, run.output


def test_a_buried_childs_event_stream_is_emptied(tmp_path: Path) -> None:
    """Captured output is stored once: in the bundles, not also in the events files."""
    run = attack(tmp_path, "forged", "--timeout", "30")
    children = run.project / ".gates" / "last-run" / "children"
    streams = list(children.glob("*.events.jsonl"))
    assert streams, sorted(p.name for p in children.iterdir())
    assert all(p.stat().st_size == 0 for p in streams)
    failing = [r for r in run.records if r["outcome"] == "failed"]
    assert all(r.get("bundle") for r in failing), failing


# -- 3. the test's clock is not the supervisor's -----------------------------------


def test_a_leaked_clock_patch_neither_hides_a_hang_nor_kills_the_next_test(
    tmp_path: Path,
) -> None:
    run = attack(tmp_path, "clock", "--timeout", "3", "--kill-grace", "1")
    assert run.outcomes == {
        "test_clock.py::test_freezes_the_clock_and_leaks_it": "passed",
        "test_clock.py::test_short_after_the_frozen_clock": "passed",
        "test_clock.py::test_hangs_after_the_frozen_clock": "hung",
        "test_clock.py::test_jumps_the_clock_ahead_and_leaks_it": "passed",
        "test_clock.py::test_short_after_the_clock_jumped": "passed",
    }, run.output
    run.assert_one_record_per_test()
    hung = next(r for r in run.records if r["outcome"] == "hung")
    assert 0 < hung["duration_s"] < 1000, hung  # mtest's clock, not the patched one


def test_leaked_patches_of_getpid_and_json_do_not_fake_a_session_failure(
    tmp_path: Path,
) -> None:
    run = attack(tmp_path, "leaks", "--timeout", "30")
    assert run.outcomes == {
        "test_leaks.py::test_patches_getpid_and_json_and_leaks_them": "passed",
        "test_leaks.py::test_innocent_after_the_patches": "passed",
    }, run.output
    run.assert_one_record_per_test()
    assert run.session_errors() == [], run.output
    assert run.result.returncode == 0, run.output


# -- 4. blame after a stack dump -----------------------------------------------------


def test_the_test_blamed_is_the_one_still_in_flight_when_the_stacks_were_taken(
    tmp_path: Path,
) -> None:
    run = attack(tmp_path, "stacks", "--timeout", "3", "--kill-grace", "1")
    assert run.outcomes == {
        # Ended when asked for its stacks: nobody is killed, and it is noted.
        "test_stacks.py::test_returns_when_asked_for_its_stacks": "passed",
        "test_stacks.py::test_innocent_after_the_early_return": "passed",
        # Ignores SIGUSR2 and hangs: still in flight at the kill.
        "test_stacks.py::test_ignores_the_stacks_signal_and_hangs": "hung",
        "test_stacks.py::test_innocent_after_the_ignored_signal": "passed",
    }, run.output
    run.assert_one_record_per_test()
    assert "ended only when mtest asked for its stacks" in run.result.stdout, run.output
    hung = next(r for r in run.records if r["outcome"] == "hung")
    bundle = (run.project / ".gates" / "last-run" / hung["bundle"]).read_text(encoding="utf-8")
    assert "in test_ignores_the_stacks_signal_and_hangs" in bundle, bundle[-3000:]


# -- 6. the state directory under attack ---------------------------------------------


def test_removing_or_renaming_the_state_directory_loses_no_record(tmp_path: Path) -> None:
    run = attack(tmp_path, "state_dir", "--timeout", "30")
    assert run.outcomes == {
        "test_state_dir.py::test_removes_the_state_directory": "passed",
        "test_state_dir.py::test_innocent_after_the_removal": "passed",
        "test_state_dir.py::test_renames_the_state_directory": "passed",
        "test_state_dir.py::test_innocent_after_the_rename": "passed",
    }, run.output
    run.assert_one_record_per_test()
    assert run.result.returncode == 0, run.output
    assert "the state directory was removed during the run" in run.result.stdout


# -- 7. failures at session end ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "passing", "needle"),
    [
        ("session_finish", 2, "pytest_sessionfinish raised: RuntimeError"),
        ("session_exitstatus", 1, "exit status"),
        ("session_unexplained", 1, "exit code 3"),
        ("session_hang", 1, "did not end in time"),
    ],
)
def test_a_session_that_fails_after_its_tests_passed_is_an_error_and_fails_the_run(
    tmp_path: Path, name: str, passing: int, needle: str
) -> None:
    run = attack(tmp_path, name, "--timeout", "30")
    errors = run.session_errors()
    assert len(errors) == 1, run.output
    assert errors[0]["outcome"] == "error"
    assert needle in errors[0]["message"], errors[0]
    assert "out.txt" in errors[0]["message"]  # where the child's output is
    tests = [r for r in run.records if r not in errors]
    assert [r["outcome"] for r in tests] == ["passed"] * passing, run.output
    run.assert_one_record_per_test()
    assert run.result.returncode == 1, run.output


def test_a_failing_session_teardown_fails_the_run_as_in_pytest(tmp_path: Path) -> None:
    run = attack(tmp_path, "session_teardown", "--timeout", "30")
    outcomes = run.outcomes
    assert outcomes["test_teardown.py::test_uses_the_session_resource"] == "passed"
    # pytest tears the session fixture down with the last test: it carries the error.
    assert outcomes["test_teardown.py::test_last_in_the_session"] == "error", run.output
    run.assert_one_record_per_test()
    assert run.result.returncode == 1


# -- 9. lingering workers ---------------------------------------------------------------


def test_a_thread_left_running_is_named_and_costs_no_long_wait(tmp_path: Path) -> None:
    run = attack(tmp_path, "lingering", "--timeout", "30")
    assert run.outcomes == {
        "test_lingering.py::test_leaves_a_thread_running": "passed",
        "test_lingering.py::test_innocent_next_to_the_thread": "passed",
    }, run.output
    run.assert_one_record_per_test()
    assert run.result.returncode == 0
    note = next(line for line in run.result.stdout.splitlines() if "non-daemon" in line)
    assert "test_lingering.py::test_leaves_a_thread_running" in note
    assert "left-behind" in note
    assert run.session_errors() == []


# -- 10. selections that collect nothing ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("test_a.py::test_nope",), 4, "not found"),
        (("test_nope.py",), 4, "not found"),
    ],
)
def test_a_selection_that_does_not_exist_ends_with_pytests_code_and_message(
    tmp_path: Path, args: tuple[str, ...], code: int, needle: str
) -> None:
    run = attack(tmp_path, "not_found", *args)
    assert run.result.returncode == code, run.output
    assert needle in run.result.stderr, run.output
    assert len(list((run.project / ".gates" / "last-run" / "children").glob("*.out.txt"))) <= 2


def test_the_innocent_selection_next_to_it_runs(tmp_path: Path) -> None:
    run = attack(tmp_path, "not_found", "test_a.py::test_exists")
    assert run.outcomes == {"test_a.py::test_exists": "passed"}, run.output
    run.assert_one_record_per_test()


def test_a_conftest_that_cannot_be_imported_ends_the_run_with_pytests_code(
    tmp_path: Path,
) -> None:
    run = attack(tmp_path, "broken_conftest")
    assert run.result.returncode == 4, run.output
    assert "this conftest cannot be imported" in run.result.stderr


def test_workers_that_keep_dying_before_a_test_end_the_run_with_a_clear_error(
    tmp_path: Path,
) -> None:
    run = attack(tmp_path, "dying_workers")
    assert run.result.returncode == 1, run.output
    assert "before listing the tests" in run.result.stderr
    children = run.project / ".gates" / "last-run" / "children"
    assert len(list(children.glob("*.out.txt"))) <= 4  # a bounded number of attempts


def test_a_test_file_whose_name_is_not_utf8_runs_like_any_other(tmp_path: Path) -> None:
    project = tmp_path / "p"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n")
    odd = project / os.fsdecode(b"test_bad_\xff_name.py")
    odd.write_text("def test_ok():\n    pass\n\n\ndef test_fails():\n    assert 0\n")
    (project / "test_good.py").write_text("def test_good():\n    pass\n")
    # pytest's own cache plugin cannot write such ids to JSON: leave it out, as pytest must.
    result = run_mtest(["-j", "2", "--timeout", "30", "--", "-p", "no:cacheprovider"], project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "internal error" not in result.stdout + result.stderr
    outcomes = {r["test_id"]: r["outcome"] for r in records(project / ".gates")}
    assert outcomes == {
        "test_bad_\udcff_name.py::test_ok": "passed",
        "test_bad_\udcff_name.py::test_fails": "failed",
        "test_good.py::test_good": "passed",
    }, result.stdout
