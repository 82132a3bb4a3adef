"""Issue 10: the test index — later runs import only what they run, and never go stale.

Every test module here touches a mark file named ``<module>.<pid>`` when it is
imported, so a test can tell which child imported which test file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import finals, run_mtest, write_suite

pytestmark = pytest.mark.integration

MARK = (
    "import os\n"
    "from pathlib import Path\n\n"
    "Path(os.environ['IMPORTS'], f'{__name__}.{os.getpid()}').touch()\n\n\n"
)


def _suite(root: Path) -> Path:
    files = {
        "test_smoke.py": MARK + "import pytest\n\n\n@pytest.mark.smoke\ndef test_smoke():\n"
        "    pass\n",
        "test_one.py": MARK + "def test_a():\n    pass\n\n\ndef test_b():\n    pass\n",
        "test_two.py": MARK + "import pytest\n\n\n@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_n(n):\n    pass\n",
    }
    return write_suite(root, files)


def _run(project: Path, marks: Path, *args: str) -> dict[str, str]:
    """Run mtest with fresh import marks; return each test's outcome."""
    if marks.exists():
        for mark in marks.iterdir():
            mark.unlink()
    marks.mkdir(exist_ok=True)
    result = run_mtest(list(args), project, env={"IMPORTS": str(marks)})
    assert result.returncode in (0, 1, 5), result.stderr
    outcomes = {k: v["outcome"] for k, v in finals(project / ".gates").items()}
    outcomes["<exit>"] = str(result.returncode)
    outcomes["<notes>"] = "\n".join(
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith("note:")
    )
    return outcomes


def _imported(marks: Path) -> list[str]:
    """The test modules imported in the last run, one entry per import."""
    return sorted(mark.name.rpartition(".")[0] for mark in marks.iterdir())


def _tests(outcomes: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in outcomes.items() if not k.startswith("<")}


ALL = {
    "test_smoke.py::test_smoke": "passed",
    "test_one.py::test_a": "passed",
    "test_one.py::test_b": "passed",
    "test_two.py::test_n[1]": "passed",
    "test_two.py::test_n[2]": "passed",
}


def test_a_warm_tier0_run_imports_only_the_file_that_holds_its_tests(tmp_path: Path) -> None:
    project = _suite(tmp_path / "p")
    marks = tmp_path / "marks"
    first = _run(project, marks, "-j", "2")
    assert _tests(first) == ALL
    assert sorted(set(_imported(marks))) == ["test_one", "test_smoke", "test_two"]
    index = json.loads((project / ".gates" / "index.json").read_text())
    assert sorted(index["files"]) == ["test_one.py", "test_smoke.py", "test_two.py"]

    smoke = _run(project, marks, "--tier", "0", "-j", "2")

    assert _tests(smoke) == {"test_smoke.py::test_smoke": "passed"}
    assert _imported(marks) == ["test_smoke"], "a warm narrow run imports only what it runs"

    again = _run(project, marks, "-j", "2")
    assert _tests(again) == ALL
    assert _imported(marks) == ["test_one", "test_smoke", "test_two"], "each file once"


def test_changes_between_runs_are_picked_up_without_a_stale_result(tmp_path: Path) -> None:
    project = _suite(tmp_path / "p")
    marks = tmp_path / "marks"
    assert _tests(_run(project, marks)) == ALL

    # A renamed test and a new one in a changed file; a new file; a removed file.
    (project / "test_one.py").write_text(MARK + "def test_a2():\n    pass\n\n\ndef test_c():\n"
                                         "    assert 0\n")  # fmt: skip
    (project / "test_three.py").write_text(MARK + "def test_new():\n    pass\n")
    (project / "test_two.py").unlink()
    changed = _run(project, marks)
    assert _tests(changed) == {
        "test_smoke.py::test_smoke": "passed",
        "test_one.py::test_a2": "passed",
        "test_one.py::test_c": "failed",
        "test_three.py::test_new": "passed",
    }
    assert changed["<exit>"] == "1"
    index = json.loads((project / ".gates" / "index.json").read_text())
    assert sorted(index["files"]) == ["test_one.py", "test_smoke.py", "test_three.py"]

    # A conftest that acts on the whole session changes every file's listing.
    (project / "conftest.py").write_text(
        "def pytest_collection_modifyitems(items):\n"
        "    items[:] = [i for i in items if not i.name.endswith('c')]\n"
    )
    filtered = _run(project, marks)
    assert _tests(filtered) == {
        "test_smoke.py::test_smoke": "passed",
        "test_one.py::test_a2": "passed",
        "test_three.py::test_new": "passed",
    }
    assert "another environment" in filtered["<notes>"], filtered["<notes>"]


def test_a_changed_helper_module_changes_the_listing_of_the_files_that_import_it(
    tmp_path: Path,
) -> None:
    project = write_suite(
        tmp_path / "p",
        {
            "cases.py": "CASES = [1, 2]\n",
            "test_cases.py": MARK + "import pytest\nfrom cases import CASES\n\n\n"
            "@pytest.mark.parametrize('n', CASES)\ndef test_case(n):\n    pass\n",
            "test_other.py": MARK + "def test_other():\n    pass\n",
        },
    )
    marks = tmp_path / "marks"
    assert set(_tests(_run(project, marks))) == {
        "test_cases.py::test_case[1]", "test_cases.py::test_case[2]", "test_other.py::test_other",
    }  # fmt: skip
    (project / "cases.py").write_text("CASES = [1, 3, 4]\n")

    after = _run(project, marks)

    assert set(_tests(after)) == {
        "test_cases.py::test_case[1]", "test_cases.py::test_case[3]",
        "test_cases.py::test_case[4]", "test_other.py::test_other",
    }  # fmt: skip


def test_a_listing_the_keys_cannot_see_change_is_reconciled_with_a_note(tmp_path: Path) -> None:
    """A module that parametrizes from a data file: the index cannot know the file.
    The test that is gone gets no record (a note says why); the index is corrected."""
    project = write_suite(
        tmp_path / "p",
        {
            "cases.txt": "a\nb\nc\n",
            "test_data.py": MARK + "import pytest\n\n"
            "CASES = (Path(__file__).parent / 'cases.txt').read_text().split()\n\n\n"
            "@pytest.mark.parametrize('name', CASES)\ndef test_name(name):\n    pass\n",
        },
    )
    marks = tmp_path / "marks"
    assert len(_tests(_run(project, marks))) == 3
    (project / "cases.txt").write_text("a\nb\n")

    second = _run(project, marks)

    assert _tests(second) == {
        "test_data.py::test_name[a]": "passed",
        "test_data.py::test_name[b]": "passed",
    }
    assert second["<exit>"] == "0"
    assert "test_data.py::test_name[c]" in second["<notes>"], second["<notes>"]
    index = json.loads((project / ".gates" / "index.json").read_text())
    assert [row[0] for row in index["files"]["test_data.py"]["tests"]] == [
        "test_name[a]", "test_name[b]",
    ]  # fmt: skip


def test_a_crash_replacement_imports_only_what_it_runs(tmp_path: Path) -> None:
    project = write_suite(
        tmp_path / "p",
        {
            "test_crash.py": MARK + "import ctypes\n\n\ndef test_crash():\n"
            "    ctypes.string_at(0)\n\n\ndef test_after():\n    pass\n",
            **{f"test_m{n}.py": MARK + "def test_ok():\n    pass\n" for n in range(4)},
        },
    )
    marks = tmp_path / "marks"
    first = _run(project, marks, "-j", "1")
    assert first["test_crash.py::test_crash"] == "crashed"

    second = _run(project, marks, "-j", "1")

    assert second["test_crash.py::test_crash"] == "crashed"
    assert second["test_crash.py::test_after"] == "passed"
    assert all(second[f"test_m{n}.py::test_ok"] == "passed" for n in range(4))
    imported = _imported(marks)
    # The crashed child's replacement imports test_crash again (test_after still had to
    # run) only if the crash came first; no other module is imported twice.
    others = [m for m in imported if m != "test_crash"]
    assert sorted(others) == [f"test_m{n}" for n in range(4)], imported
    assert imported.count("test_crash") in (1, 2), imported


def test_an_import_that_crashes_a_warm_worker_blames_the_file_and_the_rest_run(
    tmp_path: Path,
) -> None:
    project = write_suite(
        tmp_path / "p",
        {
            "test_x.py": MARK + "def test_x():\n    pass\n",
            "test_y.py": MARK + "def test_y():\n    pass\n",
        },
    )
    marks = tmp_path / "marks"
    assert _tests(_run(project, marks)) == {"test_x.py::test_x": "passed",
                                            "test_y.py::test_y": "passed"}  # fmt: skip
    # The file changes: it is collected before the plan, and its import kills the child.
    (project / "test_x.py").write_text(
        MARK + "import ctypes\nctypes.string_at(0)\n\n\ndef test_x():\n    pass\n"
    )
    second = _run(project, marks)
    assert second["test_x.py"] == "error"
    assert second["test_y.py::test_y"] == "passed"
    assert "test_x.py::test_x" not in second


def test_a_file_the_plan_splits_over_workers_is_made_only_in_each_share(tmp_path: Path) -> None:
    """Each worker makes only its share of a big file's tests (partial collection); every
    test still runs once, and the index keeps the whole file's listing."""
    counts = tmp_path / "counts"
    counts.mkdir()
    conftest = (
        "import os\n\n\n"
        "def pytest_collection_modifyitems(items):\n"
        "    if items:\n"
        "        path = os.path.join(os.environ['COUNTS'], str(os.getpid()))\n"
        "        with open(path, 'a') as out:\n"
        "            out.write(f'{len(items)}\\n')\n"
    )
    names = "".join(f"def test_{n:02d}():\n    time.sleep(0.02)\n\n\n" for n in range(40))
    project = write_suite(
        tmp_path / "p", {"conftest.py": conftest, "test_big.py": "import time\n\n\n" + names}
    )
    env = {"COUNTS": str(counts)}
    first = run_mtest(["-j", "2"], project, env=env)
    assert first.returncode == 0, first.stderr
    for mark in counts.iterdir():
        mark.unlink()

    warm = run_mtest(["-j", "2"], project, env=env)

    assert warm.returncode == 0, warm.stderr
    outcomes = {k: v["outcome"] for k, v in finals(project / ".gates").items()}
    assert outcomes == {f"test_big.py::test_{n:02d}": "passed" for n in range(40)}
    made = {int(mark.name): sum(map(int, mark.read_text().split())) for mark in counts.iterdir()}
    # Two workers each made fewer than the file's 40 tests (a stolen slice is made again
    # in a fresh node, so the sum may exceed 40 — but never a whole copy per worker).
    assert len(made) == 2, made
    assert all(n < 40 for n in made.values()), made
    index = json.loads((project / ".gates" / "index.json").read_text())
    assert len(index["files"]["test_big.py"]["tests"]) == 40


def test_a_changed_directory_conftest_collects_only_the_files_below_it_again(
    tmp_path: Path,
) -> None:
    """A conftest with path-bound hooks is in the key of the files under it only."""
    generate = (
        "def pytest_generate_tests(metafunc):\n"
        "    if 'n' in metafunc.fixturenames:\n"
        "        metafunc.parametrize('n', {values})\n"
    )
    (tmp_path / "p" / "sub").mkdir(parents=True)
    project = write_suite(
        tmp_path / "p",
        {
            "test_top.py": MARK + "def test_top():\n    pass\n",
            "sub/conftest.py": generate.format(values=[1, 2]),
            "sub/test_gen.py": MARK + "def test_gen(n):\n    pass\n",
        },
    )
    marks = tmp_path / "marks"
    assert set(_tests(_run(project, marks))) == {
        "test_top.py::test_top", "sub/test_gen.py::test_gen[1]", "sub/test_gen.py::test_gen[2]",
    }  # fmt: skip
    (project / "sub" / "conftest.py").write_text(generate.format(values=[1, 2, 3]))

    after = _run(project, marks, "--tier", "0")  # selects nothing: only what was collected

    assert _imported(marks) == ["test_gen"], "only the file under the changed conftest"
    assert _tests(after) == {} and after["<exit>"] == "5"
    index = json.loads((project / ".gates" / "index.json").read_text())
    assert len(index["files"]["sub/test_gen.py"]["tests"]) == 3


DOCTESTS = (
    'def double(x):\n    """\n    >>> double(2)\n    4\n    """\n    return x * 2\n\n\n'
    'def broken():\n    """\n    >>> broken()\n    1\n    """\n    return 2\n\n\n'
    "def test_double():\n    assert double(3) == 6\n"
)


def test_doctest_modules_runs_a_files_doctests_beside_its_tests_cold_and_warm(
    tmp_path: Path,
) -> None:
    # With --doctest-modules pytest makes two nodes with the same id for one file
    # (its module and its doctests): both are the file's tests.
    project = write_suite(
        tmp_path / "p",
        {"pytest.ini": "[pytest]\naddopts = --doctest-modules\n", "test_doc.py": DOCTESTS},
    )
    expected = {
        "test_doc.py::test_doc.double": "passed",
        "test_doc.py::test_doc.broken": "failed",
        "test_doc.py::test_double": "passed",
    }
    marks = tmp_path / "marks"
    cold = _run(project, marks, "-j", "2")
    warm = _run(project, marks, "-j", "2")
    assert (_tests(cold), cold["<exit>"]) == (expected, "1")
    assert (_tests(warm), warm["<exit>"]) == (expected, "1")


CROSS_FILE = (
    "def pytest_collection_modifyitems(config, items):\n"
    "    kept, dropped = items[:2], items[2:]\n"
    "    if dropped:\n"
    "        config.hook.pytest_deselected(items=dropped)\n"
    "    items[:] = kept\n"
)


def test_lazy_collection_off_lets_a_collection_hook_see_every_test_at_once(
    tmp_path: Path,
) -> None:
    # A hook that keeps the session's first two tests decides across files: it needs
    # the whole suite in one call, as plain pytest gives it.
    project = write_suite(
        tmp_path / "p",
        {
            "pyproject.toml": "[tool.mtest]\nlazy_collection = false\n",
            "conftest.py": CROSS_FILE,
            "test_a.py": "def test_1():\n    pass\n\n\ndef test_2():\n    pass\n\n\n"
            "def test_3():\n    pass\n",
            "test_b.py": "def test_4():\n    pass\n",
        },
    )
    outcomes = _run(project, tmp_path / "marks", "-j", "2")
    assert _tests(outcomes) == {"test_a.py::test_1": "passed", "test_a.py::test_2": "passed"}
    assert outcomes["<exit>"] == "0"
