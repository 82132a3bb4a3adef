"""``mtest service`` as a real process: cycles, history, metrics over HTTP, signals, faults.

Nothing here depends on how long anything takes: each test waits for what it
can observe (a history line, a marker a test wrote, a line of service.log, an
answer of ``/health``) with a generous hang guard, and asserts on what was
recorded — history lines, metrics, exit codes — never on how many cycles fit
in some time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    Completed,
    finals,
    finish,
    run_mtest,
    run_processes,
    start_mtest,
    wait_for_file,
    write_suite,
)
from test_metrics import ParsedFamily, parse_exposition

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

HANG_GUARD_S = 240.0
SUITE = {
    "test_s.py": "def test_one():\n    pass\n\n\ndef test_two():\n    pass\n",
}


def history(project: Path) -> list[dict[str, Any]]:
    path = project / ".gates" / "history.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    """Wait for ``ready()`` while the service runs (a hang guard, never a timing claim)."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"the service ended ({proc.returncode}) before {what}\n{out}\n{err}"
            )
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def metrics_url(proc: subprocess.Popen[str]) -> str:
    """The address the service printed first (``--metrics-port 0``)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"metrics on (http://\S+)/metrics", line)
    assert match, f"expected the metrics address first, got {line!r}"
    return match.group(1)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(families: dict[str, ParsedFamily], name: str, **labels: str) -> float:
    return families[name].value(**labels)


def stop(proc: subprocess.Popen[str], started: float) -> Completed:
    proc.send_signal(signal.SIGTERM)
    return finish(proc, started, timeout=HANG_GUARD_S)


@contextlib.contextmanager
def running(args: list[str], project: Path, **env: str) -> Iterator[subprocess.Popen[str]]:
    """A service that is killed (with its session) if the test fails while it runs."""
    proc = start_mtest(args, project, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def test_three_cycles_write_three_history_lines_and_exit_0(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", SUITE)
    done = run_mtest(
        ["service", "--every", "1s", "--cycles", "3", "--metrics-file", "m.prom"],
        project, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = history(project)
    assert len(lines) == 3
    assert len({line["run_id"] for line in lines}) == 3, "each cycle is a run of its own"
    assert all(line["exit_code"] == 0 for line in lines)
    assert all(line["counts"] == {"passed": 2} for line in lines)
    assert "service ended after 3 cycle(s)" in done.stdout
    samples = parse_exposition((project / "m.prom").read_text())
    assert metric(samples, "mtest_runs_total", result="passed") == 3
    assert metric(samples, "mtest_service_faults_total") == 0
    assert not (project / ".gates" / "service.log").exists(), "no fault, nothing logged"
    for line in lines:
        assert run_processes(line["run_id"]) == []


def test_metrics_and_health_are_served_over_http(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", SUITE)
    started = time.monotonic()
    with running(["service", "--every", "1s", "--metrics-port", "0"], project) as proc:
        url = metrics_url(proc)
        wait_until(lambda: len(history(project)) >= 1, proc, "the first cycle's history line")
        status, text = get(f"{url}/metrics")
        assert status == 200
        samples = parse_exposition(text)
        assert metric(samples, "mtest_runs_total", result="passed") >= 1
        assert metric(samples, "mtest_service_faults_total") == 0
        assert metric(samples, "mtest_last_run_tests", outcome="passed") == 2
        assert get(f"{url}/health")[0] == 200
        ended = stop(proc, started)
        assert ended.returncode == 0, ended.stdout + ended.stderr


BLOCKING = {
    "test_b.py": (
        "import os, time\n"
        "from pathlib import Path\n\n\n"
        "def test_1():\n"
        "    pass\n\n\n"
        "def test_2():\n"
        "    marks = Path(os.environ['MARKS'])\n"
        "    (marks / 'running').write_text(os.environ['MTEST_RUN_ID'])\n"
        "    deadline = time.monotonic() + 600  # a hang guard\n"
        "    while not (marks / 'release').exists() and time.monotonic() < deadline:\n"
        "        time.sleep(0.05)\n\n\n"
        "def test_3():\n"
        "    pass\n"
    ),
}


def test_sigterm_mid_cycle_exits_0_and_the_cycle_can_be_resumed(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", BLOCKING)
    marks = tmp_path / "marks"
    marks.mkdir()
    started = time.monotonic()
    with running(
        ["service", "--every", "1s", "--kill-grace", "1"], project, MARKS=str(marks)
    ) as proc:
        run_id = wait_for_file(marks / "running", proc, timeout=HANG_GUARD_S)
        done = stop(proc, started)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    # As on Ctrl-C: the test in flight and the one never started have no record.
    assert set(finals(project / ".gates")) == {"test_b.py::test_1"}
    (line,) = history(project)
    assert line["run_id"] == run_id
    assert line["exit_code"] == 2
    assert run_processes(run_id) == []

    (marks / "release").write_text("")
    resumed = run_mtest(["--resume"], project, env={"MARKS": str(marks)}, timeout=HANG_GUARD_S)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    results = finals(project / ".gates")
    assert {t: r["outcome"] for t, r in results.items()} == {
        "test_b.py::test_1": "passed",
        "test_b.py::test_2": "passed",
        "test_b.py::test_3": "passed",
    }
    assert {r["run_id"] for r in results.values()} == {run_id}


def test_an_internal_fault_is_survived_counted_and_shown_by_health(tmp_path: Path) -> None:
    """The history file becomes a directory between cycles, then a file again."""
    project = write_suite(tmp_path / "p", SUITE)
    path = project / ".gates" / "history.jsonl"
    log = project / ".gates" / "service.log"
    started = time.monotonic()
    args = ["service", "--every", "1s", "--metrics-port", "0"]
    # No restart here, however many cycles fault before the test reacts.
    with running(args, project, MTEST_SERVICE_FAULT_LIMIT="1000/1000") as proc:
        url = metrics_url(proc)
        wait_until(lambda: len(history(project)) >= 1, proc, "the first history line")
        aside = tmp_path / "history-before"
        while not path.is_dir():  # the service may append meanwhile: try until it is ours
            with contextlib.suppress(FileNotFoundError):
                path.rename(aside)
            with contextlib.suppress(FileExistsError):
                path.mkdir()
        wait_until(lambda: log.is_file() and "fault in the history" in log.read_text(), proc,
                   "a fault in service.log")  # fmt: skip
        wait_until(lambda: get(f"{url}/health")[0] == 503, proc, "/health to say 503")
        samples = parse_exposition(get(f"{url}/metrics")[1])
        assert metric(samples, "mtest_service_faults_total") >= 1
        assert "Traceback (most recent call last)" in log.read_text()

        path.rmdir()
        wait_until(lambda: path.is_file() and bool(history(project)), proc, "a history line again")
        wait_until(lambda: get(f"{url}/health")[0] == 200, proc, "/health to recover")
        faults = metric(parse_exposition(get(f"{url}/metrics")[1]), "mtest_service_faults_total")
        assert faults >= metric(samples, "mtest_service_faults_total"), "a counter never goes down"
        ended = stop(proc, started)
        assert ended.returncode == 0, ended.stdout + ended.stderr


def test_a_restart_storm_ends_with_a_clear_error_after_a_bounded_number_of_restarts(
    tmp_path: Path,
) -> None:
    """Every cycle faults: another process holds ``.gates/lock`` for the whole test."""
    project = write_suite(tmp_path / "p", SUITE)
    (project / ".gates").mkdir()
    with open(project / ".gates" / "lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("the test that holds it")
        lock.flush()
        done = run_mtest(
            ["service", "--every", "0.2s", "--metrics-port", "0"], project,
            timeout=HANG_GUARD_S,
            env={
                "MTEST_SERVICE_FAULT_LIMIT": "2/3",
                "MTEST_SERVICE_RESTART_LIMIT": "2/1h",
                "MTEST_SERVICE_BACKOFF": "0.1s/0.2s",
            },
        )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("mtest: error:")]
    assert len(errors) == 1
    assert "restarted 2 time(s)" in errors[0] and "giving up" in errors[0]
    assert "Traceback" not in done.stderr
    log = (project / ".gates" / "service.log").read_text()
    assert log.count("restarted (restart") == 2, "exactly the restart budget was spent"
    assert log.count(": fault in the run: Busy: ") == 6, "2 faults per process, 3 processes"
    assert "is held by the test that holds it" in log
    # Each process served its own metrics (a fresh port each time).
    assert done.stdout.count("metrics on http://") == 3
    assert "Traceback" not in done.stdout


SLOW_ONCE = {
    "test_slow.py": (
        "import os, time\n"
        "from pathlib import Path\n\n\n"
        "def test_slow_the_first_time():\n"
        "    mark = Path(os.environ['MARKS'], 'slept')\n"
        "    if not mark.exists():\n"
        "        mark.write_text('')\n"
        "        time.sleep(3)\n"
    ),
}


def test_starts_that_fall_during_a_long_cycle_are_skipped_and_counted(tmp_path: Path) -> None:
    """The first cycle lasts more than 3 s at ``--every 1s``: at least 2 starts pass."""
    project = write_suite(tmp_path / "p", SLOW_ONCE)
    marks = tmp_path / "marks"
    marks.mkdir()
    done = run_mtest(
        ["service", "--every", "1s", "--cycles", "2", "--metrics-file", "m.prom"],
        project, timeout=HANG_GUARD_S, env={"MARKS": str(marks)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(history(project)) == 2, "skipped starts are not cycles"
    samples = parse_exposition((project / "m.prom").read_text())
    assert metric(samples, "mtest_cycles_skipped_total") >= 2
    assert "start(s) skipped" in done.stdout


def test_bad_limits_in_the_environment_are_a_usage_error_before_any_cycle(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", SUITE)
    done = run_mtest(
        ["service", "--every", "1s"], project, env={"MTEST_SERVICE_FAULT_LIMIT": "lots"}
    )
    assert done.returncode == 4
    assert "MTEST_SERVICE_FAULT_LIMIT" in done.stderr
    assert history(project) == []


STUBBORN = {
    "test_t.py": (
        "import os, signal, time\n"
        "from pathlib import Path\n\n\n"
        "def test_outlives_sigterm():\n"
        "    marks = Path(os.environ['MARKS'])\n"
        "    signal.signal(signal.SIGTERM, lambda *a: (marks / 'terminated').write_text(''))\n"
        "    (marks / 'running').write_text(os.environ['MTEST_RUN_ID'])\n"
        "    deadline = time.monotonic() + 600  # a hang guard\n"
        "    while time.monotonic() < deadline:\n"
        "        time.sleep(0.05)\n"
    ),
}


def test_a_second_sigterm_kills_the_cycle_at_once_and_the_service_exits_0(
    tmp_path: Path,
) -> None:
    """The test survives SIGTERM and the kill grace is longer than the hang guard: only the
    second signal's SIGKILL can end the cycle before the guard gives up."""
    project = write_suite(tmp_path / "p", STUBBORN)
    marks = tmp_path / "marks"
    marks.mkdir()
    started = time.monotonic()
    grace = str(int(HANG_GUARD_S * 4))
    with running(
        ["service", "--every", "1s", "--kill-grace", grace], project, MARKS=str(marks)
    ) as proc:
        run_id = wait_for_file(marks / "running", proc, timeout=HANG_GUARD_S)
        proc.send_signal(signal.SIGTERM)
        wait_until((marks / "terminated").exists, proc, "the test to get SIGTERM")
        done = stop(proc, started)
    assert done.returncode == 0, done.stdout + done.stderr
    assert history(project)[0]["exit_code"] == 2
    assert run_processes(run_id) == []
