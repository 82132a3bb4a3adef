"""``--cov``: real children measuring with real coverage.py, combined by mtest.

Each expected total is computed in the test itself with ``coverage run -m pytest``
and ``coverage report`` on an identical copy of the project: mtest's total must
equal it (within 0.1 points), whatever the jobs and wherever a child crashed.
Skipped (with the reason) where coverage.py is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Completed, finals, finish, mtest_env, run_mtest, start_mtest, write_suite

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("coverage") is None,
        reason="coverage.py is not installed in this environment (pip install coverage)",
    ),
]

TIMEOUT_S = 240.0
"""A hang guard for one mtest or pytest run, never a timing claim."""

PACKAGE = {
    "pkg/__init__.py": "from pkg.shapes import Square\n\nVERSION = 1\n",
    "pkg/shapes.py": """\
        class Square:
            def __init__(self, side):
                if side < 0:
                    raise ValueError("negative side")
                self.side = side

            def area(self):
                return self.side * self.side

            def describe(self):
                if self.side == 0:
                    return "point"
                elif self.side < 10:
                    return "small"
                return "large"

            def unused(self):
                return "never called"
    """,
    "pkg/text.py": """\
        def shout(word, times=1):
            out = []
            for _ in range(times):
                out.append(word.upper())
            return " ".join(out)


        def whisper(word):
            if not word:
                return ""
            return word.lower()


        def unused(word):
            return word[::-1]
    """,
    "pkg/maths.py": """\
        def clamp(x, low, high):
            if x < low:
                return low
            if x > high:
                return high
            return x


        def mean(values):
            if not values:
                raise ValueError("empty")
            return sum(values) / len(values)
    """,
}
TESTS = {
    "conftest.py": "import pkg\n",
    "tests/test_shapes.py": """\
        import pytest
        from pkg import Square

        @pytest.mark.parametrize("side", [0, 3])
        def test_describe(side):
            assert Square(side).describe() in ("point", "small")

        def test_area():
            assert Square(4).area() == 16
    """,
    "tests/test_text.py": """\
        from pkg import text

        def test_shout():
            assert text.shout("a", 2) == "A A"

        def test_whisper():
            assert text.whisper("B") == "b"
    """,
    "tests/test_maths.py": """\
        import pytest
        from pkg import maths

        @pytest.mark.parametrize("x", [-1, 5])
        def test_clamp(x):
            assert 0 <= maths.clamp(x, 0, 3) <= 3

        def test_mean():
            assert maths.mean([1, 3]) == 2
    """,
    "tests/test_more.py": """\
        import pytest
        from pkg import Square

        def test_negative():
            with pytest.raises(ValueError):
                Square(-1)
    """,
}


def make_project(root: Path, files: dict[str, str]) -> Path:
    write_suite(root, {})
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def project(tmp_path: Path, name: str = "p", extra: dict[str, str] | None = None) -> Path:
    return make_project(tmp_path / name, {**PACKAGE, **TESTS, **(extra or {})})


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=mtest_env(), stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip


def report_total(cwd: Path) -> float:
    """``coverage report``'s total for the data file in ``cwd``, unrounded enough."""
    done = run([sys.executable, "-m", "coverage", "report", "--format=total", "--precision=6"], cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return float(done.stdout.strip())


def coverage_run_total(source: Path, *, branch: bool, dest: Path) -> float:
    """``coverage run --source=pkg -m pytest`` and ``coverage report`` on a copy of ``source``."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".gates", ".coverage*"))
    argv = [sys.executable, "-m", "coverage", "run", "--source=pkg"]
    done = run([*argv, *(["--branch"] if branch else []), "-m", "pytest", "-q"], dest)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return report_total(dest)


def last(project_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project_dir / ".gates/coverage/last.json").read_text())
    return data


def mtest(args: list[str], cwd: Path) -> Completed:
    return run_mtest(args, cwd, timeout=TIMEOUT_S)


@pytest.mark.parametrize(
    ("jobs", "branch"), [(1, False), (2, False), (2, True)], ids=["j1", "j2", "j2-branch"]
)
def test_total_equals_coverage_run(tmp_path: Path, jobs: int, branch: bool) -> None:
    root = project(tmp_path)
    expected = coverage_run_total(root, branch=branch, dest=tmp_path / "reference")
    args = ["--cov=pkg", "-j", str(jobs), *(["--cov-branch"] if branch else [])]
    done = mtest(args, root)
    assert done.returncode == 0, done.stdout + done.stderr
    measured = last(root)
    assert measured["percent"] == pytest.approx(expected, abs=0.1)
    assert measured["branch"] is branch
    assert f"coverage {measured['display']}%" in done.stdout
    # The combined data is left where `coverage html` and `coverage report` look.
    assert report_total(root) == pytest.approx(measured["percent"], abs=1e-6)
    assert sorted(p.name for p in (root / ".gates/coverage").iterdir()) == ["last.json"]
    summary = (root / ".gates/last-run/summary.md").read_text()
    assert f"Coverage: **{measured['display']}%**" in summary
    assert 100 > measured["percent"] > 50  # the unused functions are missed, the rest is not


def test_a_crashing_chunk_keeps_the_coverage_of_the_tests_before_it(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "p",
        {
            "pkg/__init__.py": "",
            "pkg/paths.py": """\
                def first():
                    return "only test_first runs this"


                def second():
                    return "only test_second runs this"


                def in_flight():
                    return "only the crashing test runs this"


                def after():
                    return "only test_after runs this"
            """,
            "test_chunk.py": """\
                import ctypes
                from pkg import paths

                def test_first():
                    assert paths.first()

                def test_second():
                    assert paths.second()

                def test_crash():
                    assert paths.in_flight()
                    ctypes.string_at(0)

                def test_after():
                    assert paths.after()
            """,
        },
    )
    done = mtest(["--cov=pkg", "-j", "1"], root)
    assert done.returncode == 1, done.stdout + done.stderr
    outcomes = {tid: r["outcome"] for tid, r in finals(root / ".gates").items()}
    assert outcomes == {
        "test_chunk.py::test_first": "passed",
        "test_chunk.py::test_second": "passed",
        "test_chunk.py::test_crash": "crashed",
        "test_chunk.py::test_after": "passed",
    }
    import coverage

    data = coverage.CoverageData(basename=str(root / ".coverage"))
    data.read()
    source = str((root / "pkg" / "paths.py").resolve())
    executed = set(data.lines(source) or ())
    # Each function's body is its second line: 2, 6, 10, 14 (definitions 1, 5, 9, 13).
    assert {1, 2, 5, 6, 9, 13, 14} <= executed
    assert 10 not in executed  # the crashed test was in flight: its lines are lost


def test_cov_fail_under_fails_a_passing_run(tmp_path: Path) -> None:
    root = project(tmp_path)
    junit = tmp_path / "junit.xml"
    done = mtest(["--cov=pkg", "--cov-fail-under", "99.5", "--junit-xml", str(junit)], root)
    measured = last(root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert measured["failed"] is True
    line = f"FAIL required test coverage of 99.5% not reached: total {measured['display']}%"
    assert line in done.stdout
    assert "**not reached**" in (root / ".gates/last-run/summary.md").read_text()
    assert f'<property name="coverage" value="{measured["display"]}"' in junit.read_text()
    assert all(r["outcome"] == "passed" for r in finals(root / ".gates").values())

    passing = mtest(["--cov=pkg", "--cov-fail-under", "50"], root)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "FAIL" not in passing.stdout
    # The run's own .coverage was replaced without a note: mtest wrote it.
    assert "was not written by mtest" not in passing.stdout


def test_without_coverage_in_the_tested_environment_nothing_runs(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    made = run([sys.executable, "-m", "venv", "--without-pip", str(bare)], tmp_path)
    assert made.returncode == 0, made.stderr
    python = bare / "bin" / "python"
    if run([str(python), "-c", "import coverage"], tmp_path).returncode == 0:
        pytest.skip(f"{python} can import coverage: no interpreter without it here")
    root = project(tmp_path)
    done = mtest(["--cov", "--python", str(python)], root)
    assert done.returncode == 4, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"mtest: error: --cov needs coverage.py, and `{python}` (--python)")
    assert f"`{python} -m pip install coverage`" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert not (root / ".gates" / "last-run").exists()  # before any test ran


def test_data_files_of_an_earlier_run_are_moved_aside_not_combined(tmp_path: Path) -> None:
    root = project(tmp_path)
    # A data file of another run that covers every line of pkg/text.py.
    import coverage

    stale = root / ".gates" / "coverage" / ".coverage.20200101T000000Z-dead.1.abcdef"
    stale.parent.mkdir(parents=True)
    old = coverage.CoverageData(basename=str(stale))
    old.add_lines({str((root / "pkg" / "text.py").resolve()): list(range(1, 16))})
    old.write()
    expected = coverage_run_total(root, branch=False, dest=tmp_path / "reference")
    done = mtest(["--cov=pkg"], root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 coverage data file(s) of an earlier run" in done.stdout
    assert (root / ".gates/coverage/stale" / stale.name).is_file()
    assert last(root)["percent"] == pytest.approx(expected, abs=0.1)


def test_a_users_data_file_is_moved_aside_with_a_note(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / ".coverage").write_bytes(b"not mtest's")
    done = mtest(["--cov=pkg"], root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"`{root / '.coverage'}` was not written by mtest" in done.stdout
    assert (root / ".gates/coverage/replaced/.coverage").read_bytes() == b"not mtest's"


def test_resume_combines_the_interrupted_sessions_data(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        extra={
            "tests/test_zblock.py": """\
                import os, time
                from pkg import text

                def test_blocks_once():
                    assert text.shout("z") == "Z"
                    if os.path.exists("block"):
                        open("blocked", "w").write("1")
                        time.sleep(600)
            """
        },
    )
    expected = coverage_run_total(root, branch=False, dest=tmp_path / "reference")
    (root / "block").write_text("1")
    began = time.monotonic()
    proc = start_mtest(["--cov=pkg", "-j", "1"], root)
    deadline = time.monotonic() + TIMEOUT_S
    while not (root / "blocked").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the blocking test never ran"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    first = finish(proc, began, TIMEOUT_S)
    assert first.returncode == 2, first.stdout + first.stderr
    assert list((root / ".gates/coverage").glob(".coverage.*")), "the data stays for --resume"
    (root / "block").unlink()
    resumed = mtest(["--resume"], root)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert last(root)["percent"] == pytest.approx(expected, abs=0.1)
    assert not list((root / ".gates/coverage").glob(".coverage.*"))


def test_pytest_cov_in_addopts_does_not_measure_beside_mtest(tmp_path: Path) -> None:
    if importlib.util.find_spec("pytest_cov") is None:
        pytest.skip("pytest-cov is not installed in this environment")
    root = project(tmp_path)
    expected = coverage_run_total(root, branch=False, dest=tmp_path / "reference")
    (root / "pytest.ini").write_text("[pytest]\naddopts = --cov=pkg --cov-fail-under=100\n")
    done = mtest(["--cov=pkg", "-j", "2"], root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert last(root)["percent"] == pytest.approx(expected, abs=0.1)
