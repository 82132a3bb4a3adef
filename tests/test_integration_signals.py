"""Tests that attack the supervisor: signals to mtest, and processes that escape the sweep.

Each scenario is a real mtest run over a small suite in ``fixtures/signals``:
an attacking test between two innocent ones. Every test must be recorded, the
innocent ones must pass, and no process the tests wrote down may be alive
once mtest has exited.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import FIXTURES, finals, finish, run_mtest, start_mtest, wait_for_file

pytestmark = pytest.mark.integration

SUITES = FIXTURES / "signals"
INNOCENT = ("test_a_innocent.py::test_before", "test_c_innocent.py::test_after")
ATTACK = "test_b_attack.py::test_signals_its_parent"
ESCAPES = "test_b_escapes.py::test_leaves_processes_behind"


def _state(pid: int) -> str:
    """``R``, ``S``, ``T`` (stopped), ``Z`` (zombie) ... or ``gone``."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "gone"


def _alive(pid: int) -> bool:
    return _state(pid) not in ("Z", "X", "gone")


def _wait_until(ready: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    """Wait for ``ready()`` while mtest runs (a hang guard of 60 s, never a timing claim)."""
    deadline = time.monotonic() + 60
    while not ready():
        assert time.monotonic() < deadline and proc.poll() is None, what
        time.sleep(0.05)


def _still_alive(pids: list[int], within: float = 30.0) -> list[int]:
    """The pids still alive after waiting up to ``within`` for them to go (a hang guard)."""
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


@pytest.fixture
def suite(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(project, marks): a fresh copy of a fixture suite; whatever the tests marked dies after."""
    marks = tmp_path / "marks"
    marks.mkdir()
    yield tmp_path / "p", marks
    for mark in marks.iterdir():
        text = mark.read_text().strip()
        if text.isdigit() and _alive(int(text)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(text), signal.SIGKILL)


def _copy(name: str, project: Path) -> Path:
    shutil.copytree(SUITES / name, project)
    return project


def _outcomes(project: Path) -> dict[str, str]:
    return {tid: r["outcome"] for tid, r in finals(project / ".gates").items()}


def _all_pass(
    suite: tuple[Path, Path], name: str, env: dict[str, str], tests: tuple[str, ...],
    args: tuple[str, ...] = (),
) -> str:  # fmt: skip
    """Run mtest over a copy of suite ``name``: exit 0, ``tests`` all passed. Its output."""
    project, marks = suite
    _copy(name, project)
    result = run_mtest(args, project, env={**env, "MARKS": str(marks)}, timeout=150)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert _outcomes(project) == dict.fromkeys(tests, "passed"), output
    return output


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGTSTP"])
def test_a_test_signalling_mtest_is_ignored_and_named(suite: tuple[Path, Path], sig: str) -> None:
    # The attacker runs last: mtest names the last test its worker started.
    args = ("test_a_innocent.py", "test_b_attack.py")
    env = {"ATTACK": sig, "ATTACKER": "worker"}
    output = _all_pass(suite, "parent", env, (INNOCENT[0], ATTACK), args)
    assert f"the last test its worker had started: {ATTACK})" in output, output
    assert f"sent {sig} to mtest; ignored" in output, output
    summary = (suite[0] / ".gates" / "last-run" / "summary.md").read_text()
    assert f"sent {sig} to mtest; ignored" in summary, summary


@pytest.mark.timeout(180)
def test_a_grandchild_signalling_mtest_from_a_new_session_is_ignored_and_killed(
    suite: tuple[Path, Path],
) -> None:
    env = {"ATTACK": "SIGTERM", "ATTACKER": "grandchild"}
    output = _all_pass(suite, "parent", env, (*INNOCENT, ATTACK))
    grandchild = int((suite[1] / "grandchild").read_text())
    assert f"pid {grandchild}" in output and "sent SIGTERM to mtest; ignored" in output, output
    assert _still_alive([grandchild]) == []


@pytest.mark.timeout(180)
def test_a_kill_command_run_by_a_test_is_ignored_although_it_is_gone_at_once(
    suite: tuple[Path, Path],
) -> None:
    env = {"ATTACK": "SIGTERM", "ATTACKER": "command"}
    output = _all_pass(suite, "parent", env, (*INNOCENT, ATTACK))
    assert "sent SIGTERM to mtest" in output and "; ignored" in output, output


@pytest.mark.timeout(180)
def test_a_test_stopping_mtest_does_not_freeze_the_run(suite: tuple[Path, Path]) -> None:
    env = {"ATTACK": "SIGSTOP", "ATTACKER": "worker"}
    output = _all_pass(suite, "parent", env, (*INNOCENT, ATTACK))
    assert "mtest was stopped (SIGSTOP) and the watchdog continued it" in output, output


@pytest.mark.timeout(180)
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_escaped_processes_do_not_outlive_the_run(suite: tuple[Path, Path], jobs: str) -> None:
    _all_pass(suite, "escapes", {}, (*INNOCENT, ESCAPES), ("-j", jobs))
    pids = [int((suite[1] / name).read_text()) for name in ("escaped", "daemon")]
    assert _still_alive(pids) == []


@pytest.mark.timeout(180)
def test_after_sigkill_of_mtest_the_watchdog_kills_the_escaped_processes(
    suite: tuple[Path, Path],
) -> None:
    project, marks = suite
    _copy("escapes", project)
    proc = start_mtest([], project, env={"MARKS": str(marks), "HOLD": "1"})
    try:
        pids = [
            int(wait_for_file(marks / name, proc, timeout=90)) for name in ("escaped", "daemon")
        ]
        # The watchdog scans the tree twice a second: wait until it has seen both.
        watched = project / ".gates" / "last-run" / "children" / "watchdog.txt"
        _wait_until(lambda: set(pids) <= _pids_in(watched), proc, "the watchdog missed them")
    finally:
        proc.kill()
        proc.communicate()
    assert _still_alive(pids) == []


def _pids_in(path: Path) -> set[int]:
    try:
        return {int(line) for line in path.read_text().split() if line.isdigit()}
    except OSError:
        return set()


@pytest.mark.timeout(180)
def test_ctrl_z_from_outside_stops_mtest_and_its_workers_until_continued(
    suite: tuple[Path, Path],
) -> None:
    project, marks = suite
    _copy("pause", project)
    started = time.monotonic()
    proc = start_mtest(["--timeout", "150"], project, env={"MARKS": str(marks)})
    try:
        worker = int(wait_for_file(marks / "worker", proc, timeout=90))
        proc.send_signal(signal.SIGTSTP)
        stopped = lambda: (_state(proc.pid), _state(worker)) == ("T", "T")  # noqa: E731
        _wait_until(stopped, proc, "mtest and its worker did not stop")
        (marks / "go").write_text("go")
        proc.send_signal(signal.SIGCONT)  # what the shell's `fg` sends
        result = finish(proc, started, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert result.returncode == 0, result.stdout + result.stderr
    assert _outcomes(project) == {"test_waits.py::test_waits_for_go": "passed"}
