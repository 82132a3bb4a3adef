"""mtest's processes and theirs: signals to mtest, cleanup, what children see.

The sleeping suite's tests write their ``MTEST_RUN_ID`` to a file once they
run, which tells the test both that the children are up and which processes
belong to the run (every one of them carries that id in its environment).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    finals,
    finish,
    run_mtest,
    run_processes,
    start_mtest,
    wait_for_file,
    write_suite,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

KILL_GRACE_S = 2
HANG_GUARD_S = 120
"""How long mtest may take to end after a signal: a hang guard, far below the tests' 600 s."""
SLEEPERS = {
    "test_a_stubborn.py": (
        "import os, signal, subprocess, sys, time\n"
        "from pathlib import Path\n\n\n"
        "def test_ignores_sigterm_and_leaks():\n"
        "    # Ignores SIGTERM, but leaves a mark that mtest sent it.\n"
        "    term = Path(os.environ['MARKS'], 'term')\n"
        "    signal.signal(signal.SIGTERM, lambda *_: term.write_text('got SIGTERM'))\n"
        "    code = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "time.sleep(600)'\n"
        "    subprocess.Popen([sys.executable, '-c', code], start_new_session=True)\n"
        "    subprocess.Popen([sys.executable, '-c', code])\n"
        "    Path(os.environ['MARKS'], 'a').write_text(os.environ['MTEST_RUN_ID'])\n"
        "    time.sleep(600)\n"
    ),
    "test_b_sleepy.py": (
        "import os, time\n"
        "from pathlib import Path\n\n\n"
        "def test_sleeps():\n"
        "    Path(os.environ['MARKS'], 'b').write_text(os.environ['MTEST_RUN_ID'])\n"
        "    time.sleep(600)\n"
    ),
}


def wait_until_gone(run_id: str, within: float) -> list[int]:
    deadline = time.monotonic() + within
    while (alive := run_processes(run_id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@dataclass(frozen=True, kw_only=True)
class Sleepers:
    project: Path
    proc: subprocess.Popen[str]
    run_id: str
    started: float
    marks: Path
    """Where the tests leave their marks: ``a``, ``b`` once running, ``term`` on SIGTERM."""


@pytest.fixture
def start_sleepers(tmp_path: Path) -> Iterator[Callable[[float], Sleepers]]:
    """Start mtest on the sleeping suite with a kill grace; returns once the test runs.

    Whatever the test does, teardown leaves no process of those runs behind.
    """
    procs: list[subprocess.Popen[str]] = []
    run_ids: list[str] = []

    def start(grace: float) -> Sleepers:
        project = write_suite(tmp_path / f"p{len(procs)}", SLEEPERS)
        marks = tmp_path / f"marks{len(procs)}"
        marks.mkdir()
        started = time.monotonic()
        args = ["-j", "2", "--timeout", "120", "--kill-grace", str(grace)]
        proc = start_mtest(args, project, env={"MARKS": str(marks)})
        procs.append(proc)
        run_id = wait_for_file(marks / "a", proc, timeout=HANG_GUARD_S)
        run_ids.append(run_id)
        # The scan must see the run at all, or "none left" would prove nothing.
        # (The two short tests make one chunk: one worker, the plan can use no more.)
        assert len(run_processes(run_id)) >= 3, "the child and its two grandchildren"
        return Sleepers(project=project, proc=proc, run_id=run_id, started=started, marks=marks)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    for pid in (pid for run_id in run_ids for pid in run_processes(run_id)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(3 * HANG_GUARD_S)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_mtest_exits_2_and_kills_everything(
    start_sleepers: Callable[[float], Sleepers], sig: signal.Signals
) -> None:
    run = start_sleepers(KILL_GRACE_S)
    sent = time.monotonic()
    run.proc.send_signal(sig)
    result = finish(run.proc, run.started, timeout=HANG_GUARD_S)
    took = time.monotonic() - sent
    assert result.returncode == 2, result.stdout + result.stderr
    # The stubborn test ignores SIGTERM: mtest waited the grace (a lower bound,
    # which load cannot break), then SIGKILLed it: it sleeps 600 s, and the run
    # ended within the hang guard.
    assert took >= KILL_GRACE_S, took
    assert "Traceback" not in result.stderr
    assert run_processes(run.run_id) == []
    state = json.loads((run.project / ".gates" / "state.json").read_text())
    assert state["complete"] is False
    assert set(state["outstanding"]) == {
        "test_a_stubborn.py::test_ignores_sigterm_and_leaks",
        "test_b_sleepy.py::test_sleeps",
    }


@pytest.mark.timeout(3 * HANG_GUARD_S)
def test_second_sigint_kills_at_once(start_sleepers: Callable[[float], Sleepers]) -> None:
    """The second SIGINT comes once the first was taken (the stubborn test got SIGTERM).

    The grace is far longer than the hang guard: a run that ends at all did not wait it.
    """
    run = start_sleepers(10 * HANG_GUARD_S)
    run.proc.send_signal(signal.SIGINT)
    assert wait_for_file(run.marks / "term", run.proc, timeout=HANG_GUARD_S) == "got SIGTERM"
    run.proc.send_signal(signal.SIGINT)
    result = finish(run.proc, run.started, timeout=HANG_GUARD_S)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert run_processes(run.run_id) == []


@pytest.mark.timeout(3 * HANG_GUARD_S)
def test_sigkill_to_mtest_leaves_nothing_behind(
    start_sleepers: Callable[[float], Sleepers],
) -> None:
    run = start_sleepers(KILL_GRACE_S)
    run.proc.kill()
    run.proc.communicate(timeout=HANG_GUARD_S)
    # The watchdog cleans up on its own: wait for that, up to the hang guard.
    assert wait_until_gone(run.run_id, within=HANG_GUARD_S) == []


RESUMABLE = {
    "test_r.py": (
        "import os, time\n"
        "from pathlib import Path\n\n\n"
        "def test_1():\n"
        "    pass\n\n\n"
        "def test_2():\n"
        "    if os.environ.get('MARKS'):  # only in the run that gets interrupted\n"
        "        Path(os.environ['MARKS'], 'a').write_text(os.environ['MTEST_RUN_ID'])\n"
        "        time.sleep(600)\n\n\n"
        "def test_3():\n"
        "    pass\n"
    ),
    "test_broken.py": "import a_module_that_does_not_exist\n",
}


@pytest.mark.timeout(3 * HANG_GUARD_S)
def test_interrupted_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", RESUMABLE)
    marks = tmp_path / "marks"
    marks.mkdir()
    started = time.monotonic()
    proc = start_mtest(["--kill-grace", "1"], project, env={"MARKS": str(marks)})
    run_id = wait_for_file(marks / "a", proc, timeout=HANG_GUARD_S)
    proc.send_signal(signal.SIGTERM)
    first = finish(proc, started, timeout=HANG_GUARD_S)
    assert first.returncode == 2, first.stderr
    # The test in flight and the one never started get no record.
    assert set(finals(project / ".gates")) == {"test_r.py::test_1", "test_broken.py"}

    resumed = run_mtest(["--resume"], project)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr  # the broken file gates
    results = finals(project / ".gates")
    assert {t: r["outcome"] for t, r in results.items()} == {
        "test_broken.py": "error",
        "test_r.py::test_1": "passed",
        "test_r.py::test_2": "passed",
        "test_r.py::test_3": "passed",
    }
    assert {r["run_id"] for r in results.values()} == {run_id}
    # Nothing that had its outcome ran (or was recorded) again: one record per test.
    lines = (project / ".gates" / "last-run" / "run.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["test_id"] for line in lines) == sorted(results)
    again = run_mtest(["--resume"], project)
    assert again.returncode == 4, "a finished run leaves nothing to resume"


def test_pytest_args_after_double_dash_select_tests(tmp_path: Path) -> None:
    project = write_suite(
        tmp_path / "p",
        {"test_k.py": "def test_alpha():\n    pass\n\n\ndef test_beta():\n    pass\n"},
    )
    result = run_mtest(["--", "-k", "alpha"], project)
    assert result.returncode == 0, result.stderr
    assert set(finals(project / ".gates")) == {"test_k.py::test_alpha"}


def test_children_see_their_worker_slot_and_run_id(tmp_path: Path) -> None:
    report = (
        "import json, os\n"
        "from pathlib import Path\n\n\n"
        "def test_{n}():\n"
        "    keys = ('MTEST_WORKER', 'MTEST_RUN_ID')\n"
        "    seen = {{k: os.environ.get(k) for k in keys}}\n"
        "    Path(os.environ['MARKS'], '{n}').write_text(json.dumps(seen))\n"
    )
    project = write_suite(
        tmp_path / "p", {f"test_{n}.py": report.format(n=n) for n in ("one", "two", "three")}
    )
    marks = tmp_path / "marks"
    marks.mkdir()
    result = run_mtest(["-j", "2"], project, env={"MARKS": str(marks)})
    assert result.returncode == 0, result.stderr
    run_ids = {r["run_id"] for r in finals(project / ".gates").values()}
    assert len(run_ids) == 1
    for mark in ("one", "two", "three"):
        seen = json.loads((marks / mark).read_text())
        assert seen["MTEST_RUN_ID"] in run_ids
        assert seen["MTEST_WORKER"] in {"0", "1"}, seen
    assert os.environ.get("MTEST_RUN_ID") not in run_ids


def test_stop_after_test_finishes_the_test_in_flight_and_starts_nothing_else(
    tmp_path: Path,
) -> None:
    """``Stop.AFTER_TEST`` (``-x``): the rest of a running chunk stays outstanding.

    The test after the failing one waits until mtest has sent ``stop`` (the
    pool's ``tick`` runs after the loop sent it and writes the marker).
    """
    from supervisor.drive import DriveOptions, Pool, Stop, StopControl
    from supervisor.model import Chunk, Outcome, TestResult

    marker = tmp_path / "stop-sent"
    waits = (
        "import time\nfrom pathlib import Path\n\n\n"
        "def test_a_fails():\n    raise AssertionError('first failure')\n\n\n"
        "def test_b_in_flight_when_stopped():\n"
        "    deadline = time.monotonic() + 60\n"
        f"    while not Path({str(marker)!r}).exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.01)\n\n\n"
    )
    rest = "".join(f"def test_c{i}():\n    pass\n\n\n" for i in range(3))
    project = write_suite(tmp_path / "suite", {"test_x.py": waits + rest})
    gates = project / ".gates"
    options = DriveOptions(
        python=sys.executable, python_origin="the test", pytest_args=(), paths=(),
        cwd=project, jobs=1, timeout_s=120.0, kill_grace_s=2.0, run_id="stoptest",
        ancestry="stoptest", work_dir=gates / "children", junit_dir=gates, cache_dir=gates / "c",
    )  # fmt: skip
    stop = StopControl()
    results: list[TestResult] = []

    def sink(result: TestResult) -> None:
        results.append(result)
        if result.outcome is Outcome.FAILED:
            stop.mode = Stop.AFTER_TEST

    def tick() -> None:
        if stop.mode is Stop.AFTER_TEST:
            marker.touch()

    with Pool(options) as pool:
        collection = pool.collect(stop)
        chunk = Chunk(index=0, tests=collection.items)
        outstanding = pool.run([chunk], sink, stop, tick=tick)
        pool.release()
    assert [(r.test_id, r.outcome) for r in results] == [
        ("test_x.py::test_a_fails", Outcome.FAILED),
        ("test_x.py::test_b_in_flight_when_stopped", Outcome.PASSED),
    ]
    assert outstanding == [f"test_x.py::test_c{i}" for i in range(3)]
