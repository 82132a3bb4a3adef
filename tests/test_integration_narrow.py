"""Issue 10: runs start only the children they need, and those collect only what they run."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from conftest import finals, finish, records, run_mtest, start_mtest, wait_for_file, write_suite

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


MARKS_IMPORT = (
    "import os\n"
    "from pathlib import Path\n\n"
    "Path(os.environ['IMPORTS'], f'{__name__}.{os.getpid()}').touch()\n\n\n"
)


def _imports(marks: Path) -> dict[int, set[str]]:
    """Which test modules each child imported (pid → module names)."""
    by_pid: dict[int, set[str]] = {}
    for mark in marks.iterdir():
        module, _, pid = mark.name.rpartition(".")
        by_pid.setdefault(int(pid), set()).add(module)
    return by_pid


def _outcomes(gates: Path) -> dict[str, str]:
    return {k: v["outcome"] for k, v in finals(gates).items()}


def test_a_one_chunk_plan_runs_in_one_worker_and_too_many_jobs_warn_once(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", PASSING)
    result = run_mtest(["-j", "64"], project)
    assert result.returncode == 0, result.stderr
    gates = project / ".gates"
    streams = [n for n in _children(gates) if n.endswith(".events.jsonl")]
    assert streams == ["0001.events.jsonl"], "two tests make one chunk: one child"
    warnings = [line for line in result.stderr.splitlines() if "usable core" in line]
    assert len(warnings) == 1 and "-j 64" in warnings[0], result.stderr
    assert set(_outcomes(gates).values()) == {"passed"}


def test_a_second_worker_collects_only_its_lane_with_the_suites_node_ids(tmp_path: Path) -> None:
    # No ini file and the tests in a subdirectory: a child given only some files
    # keeps the whole suite's rootdir (and node ids) because mtest passes it.
    project = tmp_path / "p"
    (project / "tests").mkdir(parents=True)
    names = [f"test_f{i}" for i in range(4)]
    for name in names:
        body = "".join(f"def test_{n}():\n    pass\n\n\n" for n in range(3))
        (project / "tests" / f"{name}.py").write_text(MARKS_IMPORT + body)
    marks = tmp_path / "marks"
    marks.mkdir()
    result = run_mtest(["-j", "2", "tests"], project, env={"IMPORTS": str(marks)})
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = _outcomes(project / ".gates")
    assert outcomes == {f"tests/{name}.py::test_{n}": "passed" for name in names for n in range(3)}
    imported = sorted(_imports(marks).values(), key=len)
    assert len(imported) == 2, imported
    lane, whole = imported
    assert whole == set(names), "the first child lists the whole suite"
    assert lane and lane < whole, "the second collects only the files of its lane"


def test_a_crashed_workers_replacement_collects_only_its_chunks_files(tmp_path: Path) -> None:
    crash = MARKS_IMPORT + (
        "def test_boom():\n    os.kill(os.getpid(), 9)\n\n\n"
        "def test_after_one():\n    pass\n\n\n"
        "def test_after_two():\n    pass\n"
    )
    # The crash comes in the last file of the (one) chunk: what is left is that file's.
    others = {f"test_other{i}.py": MARKS_IMPORT + "def test_it():\n    pass\n" for i in range(2)}
    project = write_suite(tmp_path / "p", {"test_z_crash.py": crash, **others})
    marks = tmp_path / "marks"
    marks.mkdir()
    result = run_mtest([], project, env={"IMPORTS": str(marks)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert _outcomes(project / ".gates") == {
        "test_z_crash.py::test_boom": "crashed",
        "test_z_crash.py::test_after_one": "passed",
        "test_z_crash.py::test_after_two": "passed",
        "test_other0.py::test_it": "passed",
        "test_other1.py::test_it": "passed",
    }
    imported = sorted(_imports(marks).values(), key=len, reverse=True)
    whole, *replacements = imported
    assert whole == {"test_z_crash", "test_other0", "test_other1"}
    assert replacements, "the crash needed a fresh child"
    assert replacements == [{"test_z_crash"}], imported


def test_lanes_started_from_a_subdirectory_name_the_same_tests(tmp_path: Path) -> None:
    # mtest runs in tests/, the ini (and rootdir) is above: the files a lane's child
    # is given are rootdir-relative node ids, so mtest must name them absolutely.
    files = {
        f"tests/test_f{i}.py": MARKS_IMPORT
        + "def test_a():\n    pass\n\n\ndef test_b():\n    pass\n"
        for i in range(4)
    }
    project = tmp_path / "p"
    (project / "tests").mkdir(parents=True)
    write_suite(project, files)
    marks = tmp_path / "marks"
    marks.mkdir()
    result = run_mtest(["-j", "2"], project / "tests", env={"IMPORTS": str(marks)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert _outcomes(project / ".gates") == {
        f"tests/test_f{i}.py::test_{x}": "passed" for i in range(4) for x in "ab"
    }
    assert len(_imports(marks)) == 2, "the second lane's child ran too"


def test_resume_collects_only_the_files_of_the_outstanding_tests(tmp_path: Path) -> None:
    hold = (
        "def test_holds():\n"
        "    if os.environ.get('STARTED'):\n"
        "        Path(os.environ['STARTED']).write_text('x')\n"
        "        time.sleep(600)\n"
    )
    files = {
        "test_a.py": MARKS_IMPORT + "def test_ok():\n    pass\n",
        "test_b.py": "import time\n" + MARKS_IMPORT + hold,
        "test_c.py": MARKS_IMPORT + "def test_it():\n    pass\n",
    }
    project = write_suite(tmp_path / "p", files)
    first_marks, resume_marks = tmp_path / "first", tmp_path / "resume"
    for marks in (first_marks, resume_marks):
        marks.mkdir()
    started = tmp_path / "started"
    t0 = time.monotonic()
    first = start_mtest([], project, env={"IMPORTS": str(first_marks), "STARTED": str(started)})
    wait_for_file(started, first)
    first.send_signal(signal.SIGINT)
    assert finish(first, t0, timeout=60).returncode == 2
    assert _outcomes(project / ".gates") == {"test_a.py::test_ok": "passed"}

    resumed = run_mtest(["--resume"], project, env={"IMPORTS": str(resume_marks)})

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _outcomes(project / ".gates") == {
        "test_a.py::test_ok": "passed",
        "test_b.py::test_holds": "passed",
        "test_c.py::test_it": "passed",
    }
    assert list(_imports(resume_marks).values()) == [{"test_b", "test_c"}]
    # The narrow listing does not make the tests it did not collect look gone.
    durations = json.loads((project / ".gates" / "durations.json").read_text())
    assert "test_a.py::test_ok" in durations["tests"]
