"""The command line as a user meets it: exit codes, usage errors, entry points, self-check."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import venv
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import error_lines, finals, mtest_env, run_mtest, write_suite

import supervisor
from supervisor import learn

pytestmark = pytest.mark.integration

PASSING = {
    "test_ok.py": "def test_one():\n    pass\n\n\ndef test_two():\n    assert 1 + 1 == 2\n",
}


def assert_one_error_line(stderr: str, *needles: str) -> str:
    """Exactly one line on stderr, ``mtest: error: …``, naming every needle; no traceback."""
    assert "Traceback" not in stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("mtest: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def names_value(line: str, value: str) -> bool:
    return any(f"{q}{value}{q}" in line for q in ("`", "'", '"'))


# -- exit codes ------------------------------------------------------------------


def test_all_passing_suite_exits_0(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", PASSING)
    result = run_mtest([], project)
    assert result.returncode == 0, result.stderr
    assert {r["outcome"] for r in finals(project / ".gates").values()} == {"passed"}


def test_no_smoke_tests_at_tier_0_exits_5(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", PASSING)
    result = run_mtest(["--tier", "0"], project)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_empty_directory_exits_5(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {})
    result = run_mtest([], project)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (["--budget", "abc"], "abc"),
        (["--jobs", "0"], "0"),
        (["--timeout", "-1"], "-1"),
        (["--tier", "9"], "9"),
        (["--shard", "3/2"], "3/2"),
        (["--kill-grace", "soon"], "soon"),
        (["--retries", "x"], "x"),
    ],
)
def test_bad_flag_value_exits_4_naming_it(tmp_path: Path, args: list[str], value: str) -> None:
    project = write_suite(tmp_path / "p", PASSING)
    result = run_mtest(args, project)
    assert result.returncode == 4
    line = assert_one_error_line(result.stderr, args[0])
    assert names_value(line, value), line
    assert not (project / ".gates" / "last-run").exists(), "a usage error must not run tests"


def test_values_that_cannot_work_are_refused_before_any_test_runs(tmp_path: Path) -> None:
    """inf/nan durations, a --junit-xml directory, a --python that is no interpreter."""
    project = write_suite(tmp_path / "p", PASSING)
    (project / "reports").mkdir()
    text = project / "notes.txt"
    text.write_text("not a program\n")
    cases = [
        (["--budget", "inf"], "--budget `inf`"),
        (["--timeout", "nan"], "--timeout `nan`"),
        (["--kill-grace", "inf"], "--kill-grace `inf`"),
        (["--junit-xml", "reports"], "it is a directory"),
        (["--python", str(text)], "not executable"),
        (["--python", str(project / "reports")], "not a file"),
        (["--python", str(project / "nope" / "python")], "no such file"),
    ]
    for args, needle in cases:
        result = run_mtest(args, project)
        assert result.returncode == 4, (args, result.stdout + result.stderr)
        line = assert_one_error_line(result.stderr, args[0], needle, "hint:")
        assert names_value(line, args[1]) or args[1] in line, line
    assert not (project / ".gates").exists(), "a usage error must not run tests"
    (project / "pyproject.toml").write_text("[tool.mtest]\ntimeout = inf\n")
    (project / "pytest.ini").unlink()
    result = run_mtest([], project)
    assert result.returncode == 4
    assert_one_error_line(result.stderr, "`timeout`", str(project / "pyproject.toml"), "`inf`")


def test_unknown_flag_exits_4(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", PASSING)
    result = run_mtest(["--frobnicate"], project)
    assert result.returncode == 4
    assert_one_error_line(result.stderr, "--frobnicate")


@pytest.mark.parametrize(
    "line",
    [
        'jobs = "many"',
        "jobs = true",
        "timeout = -5",
        'kill_grace = "x"',
        'budget = "soon"',
        "retries = 1.5",
        'pytest_args = "-x"',
        "frobnicate = 1",
        'fail_fast = "no"',
        'skip_quarantined = "no"',
        "python = 3",
        "gates_dir = 5",
    ],
)
def test_bad_pyproject_value_exits_4_naming_key_and_file(tmp_path: Path, line: str) -> None:
    project = write_suite(tmp_path / "p", PASSING)
    (project / "pytest.ini").unlink()
    pyproject = project / "pyproject.toml"
    pyproject.write_text(f"[tool.mtest]\n{line}\n")
    result = run_mtest([], project)
    assert result.returncode == 4, result.stdout + result.stderr
    key = line.partition(" =")[0]
    assert_one_error_line(result.stderr, f"`{key}`", str(pyproject))


def test_empty_tier_spec_is_a_usage_error(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", PASSING)
    result = run_mtest(["--tier", ""], project)
    assert result.returncode == 4
    assert_one_error_line(result.stderr, "--tier")


# -- an interpreter without pytest ---------------------------------------------


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with no pip and no pytest."""
    root = tmp_path_factory.mktemp("bare") / "venv"
    venv.create(root, with_pip=False, system_site_packages=False)
    python = root / "bin" / "python"
    check = subprocess.run([python, "-c", "import pytest"], capture_output=True, check=False)
    assert check.returncode != 0, "the bare venv can import pytest"
    return python


@pytest.mark.parametrize("mode", [[], ["--self-check"]], ids=["run", "self-check"])
def test_python_without_pytest_exits_4(tmp_path: Path, bare_python: Path, mode: list[str]) -> None:
    project = write_suite(tmp_path / "p", PASSING)
    result = run_mtest([*mode, "--python", str(bare_python)], project)
    assert result.returncode == 4, result.stdout + result.stderr
    assert_one_error_line(result.stderr, "pytest")


def test_mtest_without_pytest_beside_it_uses_the_pytest_on_path(
    tmp_path: Path, bare_python: Path
) -> None:
    """mtest installed on its own (pipx, a fresh venv) runs the project's pytest."""
    project = write_suite(tmp_path / "p", PASSING)
    src = Path(supervisor.__file__).resolve().parent.parent
    with_pytest = Path(sys.executable).parent
    env = {"PYTHONPATH": str(src), "PATH": f"{with_pytest}:{os.environ['PATH']}"}
    result = subprocess.run(
        [bare_python, "-m", "supervisor"],
        cwd=project, env=mtest_env(env), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"pytest runs under {with_pytest}/python3" in result.stdout
    assert "on PATH, since mtest's interpreter has no pytest" in result.stdout


# -- self-check and entry points -------------------------------------------------


@pytest.mark.timeout(150)
def test_self_check_passes(tmp_path: Path) -> None:
    """No bound on its time here (a loaded machine is slow); the timeout is a hang guard."""
    result = run_mtest(["--self-check"], tmp_path, timeout=140)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^PASS\b", result.stdout, re.MULTILINE), result.stdout
    assert list(tmp_path.iterdir()) == [], "the self-check must not write into the cwd"


def test_every_entry_point_prints_the_same_version(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    commands = [
        [str(bindir / "mtest")],
        [str(bindir / "test-supervisor")],
        [sys.executable, "-m", "supervisor"],
    ]
    outputs = set()
    for command in commands:
        done = subprocess.run(
            [*command, "--version"],
            cwd=tmp_path,
            env=mtest_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, (command, done.stderr)
        outputs.add(done.stdout.strip())
    assert len(outputs) == 1, outputs
    assert version("mtest") in outputs.pop()


# -- on a terminal ----------------------------------------------------------------


def run_on_a_terminal(
    args: list[str], cwd: Path, *, env: dict[str, str], release: tuple[str, Path] | None = None
) -> tuple[int, str]:
    """Run mtest with its stdout on a pseudo-terminal; return its exit code and all it wrote.

    ``release``: (text, path) — once mtest has written ``text``, create ``path``.
    """
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", *args],
        cwd=cwd,
        env=mtest_env(env),
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,
    )
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not data:
            break
        chunks.append(data)
        if release is not None and release[0].encode() in b"".join(chunks):
            release[1].touch()
    os.close(main)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


SLOW_AND_FAILING = {
    "test_slow.py": (
        "import os, time\n"
        "from pathlib import Path\n\n\n"
        "def test_slow_one():\n"
        "    # With RELEASE: in flight until the status line has named it.\n"
        "    deadline = time.monotonic() + 120  # a hang guard\n"
        "    while 'RELEASE' in os.environ and not Path(os.environ['RELEASE']).exists():\n"
        "        assert time.monotonic() < deadline, 'never released'\n"
        "        time.sleep(0.05)\n\n\n"
        "def test_slow_two():\n    pass\n\n\n"
        "def test_fails():\n    assert False, 'boom'\n"
    )
}


def test_terminal_gets_a_live_status_line_and_colours(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", SLOW_AND_FAILING)
    release = tmp_path / "release"
    env = {"TERM": "xterm", "RELEASE": str(release)}
    running = "running test_slow.py::test_slow_one"
    code, text = run_on_a_terminal([], project, env=env, release=(running, release))
    assert code == 1, text
    assert "internal error" not in text and "Traceback" not in text
    # The status line is redrawn in place, names the test in flight, and is
    # cleared before the problem and summary lines.
    assert "\r\x1b[K[" in text
    assert running in text
    assert "\x1b[31mFAILED test_slow.py::test_fails - AssertionError: boom\x1b[0m" in text
    assert re.search(r"mtest: 1 failed, 2 passed in [\d.]+s", text)


def test_no_color_keeps_the_terminal_output_plain(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", SLOW_AND_FAILING)
    code, text = run_on_a_terminal([], project, env={"TERM": "xterm", "NO_COLOR": "1"})
    assert code == 1, text
    assert "\x1b[31m" not in text
    assert "FAILED test_slow.py::test_fails - AssertionError: boom" in text


# -- notes -------------------------------------------------------------------------

LINGERING = {
    "test_linger.py": (
        "import threading\n\n\n"
        "def test_leaves_a_thread():\n"
        "    threading.Thread(target=threading.Event().wait, name='lingerer').start()\n\n\n"
        "def test_innocent():\n    pass\n"
    )
}


@pytest.mark.timeout(120)
def test_the_runs_notes_are_printed_at_the_end_and_kept_in_the_summary(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", LINGERING)
    result = run_mtest([], project, timeout=100)
    assert result.returncode == 0, result.stdout + result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1, result.stdout
    assert "test_linger.py::test_leaves_a_thread" in notes[0] and "lingerer" in notes[0]
    last = result.stdout.splitlines()[-1]
    assert last.startswith("mtest: 2 passed"), "notes come before the final line"
    summary = (project / ".gates" / "last-run" / "summary.md").read_text()
    assert "lingerer" in summary.partition("Notes")[2], summary


def test_the_quarantine_view_says_broken_for_a_test_that_keeps_failing(tmp_path: Path) -> None:
    project = write_suite(
        tmp_path / "p", {"test_r.py": "def test_regressed():\n    assert False\n"}
    )
    for _ in range(2):
        assert run_mtest(["-q"], project).returncode == 1
    view = run_mtest(["--quarantine"], project)
    assert view.returncode == 0, view.stderr
    assert "test_r.py::test_regressed (broken:" in view.stdout, view.stdout
    assert "it still fails the run" in view.stdout


def test_a_test_gone_for_the_retention_is_forgotten_and_the_run_says_so(tmp_path: Path) -> None:
    project = write_suite(
        tmp_path / "p",
        {"test_a.py": "def test_stays():\n    pass\n", "test_b.py": "def test_goes():\n    pass\n"},
    )
    assert run_mtest(["-q"], project).returncode == 0
    (project / "test_b.py").unlink()
    durations_path = project / ".gates" / "durations.json"
    durations = json.loads(durations_path.read_text())
    assert "test_b.py::test_goes" in durations["tests"]
    # As if the test had already been missing from RETENTION_RUNS - 1 runs.
    durations["absent"] = {"test_b.py::test_goes": learn.RETENTION_RUNS - 1}
    durations_path.write_text(json.dumps(durations))
    result = run_mtest([], project)
    assert result.returncode == 0, result.stdout + result.stderr
    notes = [line for line in result.stdout.splitlines() if line.startswith("note: ")]
    assert any("forgot the history of 1 test(s)" in note for note in notes), result.stdout
    assert "test_b.py::test_goes" not in json.loads(durations_path.read_text())["tests"]
