"""``--changed [REV]`` on a real git repository, run as a real ``mtest`` process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import error_lines, finals, run_mtest, write_suite

PROJECT = {
    "pkg/__init__.py": "",
    "pkg/core.py": "def value():\n    return 1\n",
    "pkg/other.py": "def other():\n    return 2\n",
    "pkg/render.py": (
        "from pathlib import Path\n\n"
        "def render():\n"
        "    return (Path(__file__).parent / 'templates' / 'page.html').read_text().strip()\n"
    ),
    "pkg/templates/page.html": "<p>hello</p>\n",
    "tests/__init__.py": "",
    "tests/conftest.py": "import pytest\n\n@pytest.fixture\ndef answer():\n    return 42\n",
    "tests/data/expected.json": '{"value": 1}\n',
    "tests/test_core.py": (
        "import json\nfrom pathlib import Path\nfrom pkg.core import value\n\n"
        "def test_value():\n"
        "    data = json.loads((Path(__file__).parent / 'data' / 'expected.json').read_text())\n"
        "    assert value() == data['value']\n"
    ),
    "tests/test_render.py": (
        "from pkg.render import render\n\ndef test_render():\n"
        "    assert render() == '<p>hello</p>'\n"
    ),
    "tests/test_fixture.py": "def test_answer(answer):\n    assert answer == 42\n",
    "tests/test_dynamic.py": (
        "import importlib\n\nNAME = 'pkg.' + 'core'\n\n"
        "def test_other():\n    assert importlib.import_module(NAME).value() == 1\n"
    ),
    "other/test_alone.py": "def test_alone():\n    assert True\n",
}
ALL_FILES = 5


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@localhost"}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout


def repo(tmp_path: Path) -> Path:
    root = write_suite(tmp_path / "p", {})
    for rel, text in PROJECT.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    return root


def selected(root: Path, *args: str, code: tuple[int, ...] = (0, 5)) -> tuple[set[str], str]:
    """``mtest --collect-only --changed ARGS``: the test files listed, and all output."""
    done = run_mtest(["--collect-only", "--changed", *args], root)
    assert done.returncode in code, done.stdout + done.stderr
    files = {line.partition("::")[0] for line in done.stdout.splitlines() if "::" in line}
    return files, done.stdout + done.stderr


def edit(root: Path, rel: str, text: str) -> None:
    (root / rel).write_text(text, encoding="utf-8")


def test_nothing_changed_runs_nothing_and_exits_5(tmp_path: Path) -> None:
    root = repo(tmp_path)
    done = run_mtest(["--changed"], root)
    assert done.returncode == 5, done.stdout + done.stderr
    assert "--changed: nothing changed since `HEAD`" in done.stdout + done.stderr
    assert f"--changed: 0 of {ALL_FILES} test file(s) selected" in done.stdout + done.stderr


def test_a_changed_module_runs_the_tests_reaching_it_and_the_dynamic_one(tmp_path: Path) -> None:
    root = repo(tmp_path)
    edit(root, "pkg/core.py", "def value():\n    return 2\n")
    done = run_mtest(["--changed"], root)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "--changed: 1 changed module(s), reached by 1 test file(s)" in out
    # test_dynamic imports pkg.core by a computed name: the graph is unsure about it, so
    # it runs whatever changed, and catches the change.
    assert "--changed: 1 test file(s) reach modules the import graph is unsure about " in out
    assert "(first: `tests/test_dynamic.py`: line 6: " in out
    assert f"--changed: 2 of {ALL_FILES} test file(s) selected" in out
    results = {t: r["outcome"] for t, r in finals(root / ".gates").items()}
    assert results == {"tests/test_core.py::test_value": "failed",
                       "tests/test_dynamic.py::test_other": "failed"}  # fmt: skip


def test_a_module_no_test_reaches_runs_everything(tmp_path: Path) -> None:
    root = repo(tmp_path)
    edit(root, "pkg/other.py", "def other():\n    return 3\n")
    files, out = selected(root)
    assert len(files) == ALL_FILES
    assert (
        "--changed: `pkg/other.py` changed and no test reaches it through the imports "
        f"(a plugin, a subprocess or a path may run it): all {ALL_FILES} test file(s)"
    ) in out


def test_a_conftest_change_widens_to_its_directory(tmp_path: Path) -> None:
    root = repo(tmp_path)
    edit(root, "tests/conftest.py", PROJECT["tests/conftest.py"].replace("42", "43"))
    files, out = selected(root)
    assert files == {"tests/test_core.py", "tests/test_render.py", "tests/test_fixture.py",
                     "tests/test_dynamic.py"}  # fmt: skip
    assert "--changed: `tests/conftest.py` changed: all 4 test file(s) under tests/" in out


def test_data_files_widen_to_their_area(tmp_path: Path) -> None:
    root = repo(tmp_path)
    edit(root, "tests/data/expected.json", '{"value": 2}\n')
    files, out = selected(root)
    assert "tests/test_core.py" in files and "other/test_alone.py" not in files
    assert "`tests/data/expected.json` changed (not Python): the 4 test file(s) under tests/" in (
        out
    )
    git(root, "checkout", "-q", "--", ".")
    edit(root, "pkg/templates/page.html", "<p>bye</p>\n")
    files, out = selected(root)
    # render.py reads it: the tests reaching any module of pkg/ run.
    assert "tests/test_render.py" in files and "other/test_alone.py" not in files
    assert "`pkg/templates/page.html` changed (not Python)" in out
    done = run_mtest(["--changed", "-k", "render"], root)
    assert done.returncode == 1, done.stdout + done.stderr
    assert set(finals(root / ".gates")) == {"tests/test_render.py::test_render"}


def test_configuration_selects_everything(tmp_path: Path) -> None:
    root = repo(tmp_path)
    edit(root, "pytest.ini", (root / "pytest.ini").read_text() + "# changed\n")
    files, out = selected(root)
    assert len(files) == ALL_FILES
    assert f"--changed: `pytest.ini` changed (configuration): all {ALL_FILES} test file(s)" in out


def test_an_untracked_test_file_and_a_revision(tmp_path: Path) -> None:
    root = repo(tmp_path)
    edit(root, "other/test_new.py", "def test_new():\n    assert True\n")
    files, _ = selected(root)
    assert files == {"other/test_new.py", "tests/test_dynamic.py"}  # the unsure one always
    git(root, "add", "-A")
    git(root, "commit", "-qm", "second")
    assert selected(root)[0] == set()
    files, out = selected(root, "HEAD~1")
    assert files == {"other/test_new.py", "tests/test_dynamic.py"}, out


def test_a_deleted_module_selects_its_importers_tests(tmp_path: Path) -> None:
    root = repo(tmp_path)
    (root / "pkg/core.py").unlink()
    files, out = selected(root, code=(1,))  # test_core.py cannot be imported now
    assert files == {"tests/test_dynamic.py"}
    assert "ERROR tests/test_core.py - ModuleNotFoundError: No module named 'pkg.core'" in out
    assert "`pkg/core.py` was deleted: the 1 test file(s) reaching the 1 file(s) that import" in (
        out
    )
    assert f"--changed: 2 of {ALL_FILES} test file(s) selected" in out


def test_an_unknown_revision_not_a_repository_and_no_git(tmp_path: Path) -> None:
    root = repo(tmp_path)
    done = run_mtest(["--changed", "no-such-rev"], root)
    assert done.returncode == 4
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith(
        "mtest: error: --changed: unknown revision `no-such-rev` (git: fatal: "
    )
    assert "Traceback" not in done.stdout + done.stderr
    # A path given after --changed is taken for the REV: the hint says what to do.
    done = run_mtest(["--changed", "tests"], root)
    assert done.returncode == 4 and "put paths before --changed" in done.stderr
    plain = write_suite(tmp_path / "plain", {"test_a.py": "def test_a():\n    pass\n"})
    done = run_mtest(["--changed"], plain, env={"GIT_CEILING_DIRECTORIES": str(tmp_path)})
    assert done.returncode == 4
    lines = error_lines(done.stderr)
    assert (
        len(lines) == 1
        and "is not in a git repository (git: fatal: not a git repository" in (lines[0])
    )
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    done = run_mtest(["--changed"], root, env={"PATH": str(empty)})
    assert done.returncode == 4
    assert error_lines(done.stderr) == [
        "mtest: error: --changed needs git, and there is no `git` on PATH "
        "(hint: install git, or run without --changed)"
    ]


def test_changed_composes_with_tier(tmp_path: Path) -> None:
    root = repo(tmp_path)
    edit(root, "tests/test_fixture.py", (
        "import pytest\n\n@pytest.mark.smoke\ndef test_answer(answer):\n    assert answer == 42\n"
        "\ndef test_other(answer):\n    assert answer\n"
    ))  # fmt: skip
    done = run_mtest(["tests", "--changed", "--tier", "0", "--budget", "10m"], root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(finals(root / ".gates")) == {"tests/test_fixture.py::test_answer"}
    # test_dynamic (unsure) and test_fixture are kept; the tier takes test_other out.
    assert "left out by changed: 2 test(s)" in done.stdout
    assert "left out by tier: 2 test(s)" in done.stdout


def test_a_file_that_does_not_parse_is_unsure_and_widens(tmp_path: Path) -> None:
    root = repo(tmp_path)
    edit(root, "pkg/broken.py", "def broken(:\n")
    edit(root, "other/test_broken.py", "import pkg.broken\n\ndef test_b():\n    pass\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "broken")
    edit(root, "pkg/core.py", "def value():\n    return 1  # same\n")
    files, out = selected(root, code=(1,))  # test_broken.py cannot be imported
    assert "other/test_broken.py" not in files  # it has no test ids: its error is listed
    assert "ERROR other/test_broken.py - " in out
    assert "(first: `pkg/broken.py`: does not parse: line 1: " in out
    assert "--changed: 3 of 6 test file(s) selected" in out, out
