"""Unit tests for ``supervisor.config`` and ``args.make_config``: values, rootdir, validation.

Project layouts are real directory trees under ``tmp_path``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.args import make_config
from supervisor.config import (
    DEFAULT_KILL_GRACE_S,
    FlakyResult,
    Mode,
    check_keys,
    find_rootdir,
    parse_duration,
    parse_jobs,
    parse_positive,
    tier_map_from,
    usable_cpus,
)
from supervisor.errors import MtestError
from supervisor.select import DEFAULT_TIERS


def tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path → text) under ``root``; return ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def table_error(tmp_path: Path, text: str) -> MtestError:
    """The usage error (exit 4) of a project whose ``pyproject.toml`` is ``text``."""
    root = tree(tmp_path / "p", {"pyproject.toml": text})
    with pytest.raises(MtestError) as caught:
        make_config([], root)
    assert caught.value.code == 4
    return caught.value


# -- parse_duration ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h", 3600.0),
        ("2h0m5s", 7205.0),
        ("0.5m", 30.0),
        ("1.5", 1.5),
        ("10", 10.0),
        ("  5m ", 300.0),
        ("5M", 300.0),
    ],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text, "--budget") == seconds


@pytest.mark.parametrize(
    "text", ["abc", "0", "-1", "5x", "", "0s", "0h0m", "1h 30m", "m", "h5", "nan", "-5m", "30m1h"]
)
def test_parse_duration_rejects_naming_the_value_and_its_origin(text: str) -> None:
    with pytest.raises(MtestError) as caught:
        parse_duration(text, "--budget")
    assert caught.value.code == 4
    assert f"`{text}`" in caught.value.message
    assert "--budget" in caught.value.message
    assert "90s" in caught.value.hint


# -- parse_positive / parse_jobs -----------------------------------------------


@pytest.mark.parametrize(
    ("value", "integer", "allow_zero", "expected"),
    [
        ("5", True, False, 5),
        (3, True, False, 3),
        ("2.5", False, False, 2.5),
        (0.25, False, False, 0.25),
        ("0", True, True, 0),
        ("0", False, True, 0.0),
    ],
)
def test_parse_positive_accepts(
    value: object, integer: bool, allow_zero: bool, expected: float
) -> None:
    assert parse_positive(value, "--x", integer=integer, allow_zero=allow_zero) == expected


@pytest.mark.parametrize(
    ("value", "integer", "allow_zero"),
    [
        ("0", True, False),
        ("0", False, False),
        ("-1", True, True),
        ("-0.5", False, True),
        ("1.5", True, False),
        ("abc", False, False),
        ("", True, False),
        (True, True, False),
        (False, False, True),
        ("nan", False, False),
        (None, False, False),
    ],
)
def test_parse_positive_rejects_naming_the_value(
    value: object, integer: bool, allow_zero: bool
) -> None:
    with pytest.raises(MtestError) as caught:
        parse_positive(value, "--retries", integer=integer, allow_zero=allow_zero)
    assert caught.value.code == 4
    assert f"`{value}`" in caught.value.message
    assert "--retries" in caught.value.message
    assert ("whole number" if integer else "seconds") in caught.value.hint


@pytest.mark.parametrize("text", ["auto", "AUTO", " auto "])
def test_parse_jobs_auto_is_the_usable_cpus(text: str) -> None:
    assert parse_jobs(text, "--jobs") == usable_cpus() >= 1


def test_parse_jobs_takes_a_whole_number() -> None:
    assert parse_jobs("4", "--jobs") == 4
    assert parse_jobs(2, "`jobs` in pyproject.toml") == 2


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5", ""])
def test_parse_jobs_rejects(value: str) -> None:
    with pytest.raises(MtestError) as caught:
        parse_jobs(value, "--jobs")
    assert caught.value.code == 4
    assert f"--jobs `{value}`" in caught.value.message


# -- find_rootdir --------------------------------------------------------------


def test_pytest_ini_in_a_parent_is_the_rootdir(tmp_path: Path) -> None:
    root = tree(tmp_path, {"pytest.ini": "[pytest]\n", "tests/unit/test_a.py": ""})
    assert find_rootdir((), root / "tests" / "unit") == root
    assert find_rootdir(("tests/unit/test_a.py",), root) == root
    assert find_rootdir(("tests/unit/test_a.py::test_x[a-b]",), root) == root


def test_the_nearest_config_file_wins(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {"pytest.ini": "[pytest]\n", "sub/pyproject.toml": "[tool.pytest.ini_options]\n"},
    )
    assert find_rootdir((), root / "sub") == root / "sub"


def test_a_pyproject_without_pytest_config_is_passed_over(tmp_path: Path) -> None:
    root = tree(
        tmp_path, {"pytest.ini": "[pytest]\n", "sub/pyproject.toml": "[project]\nname = 'x'\n"}
    )
    assert find_rootdir((), root / "sub") == root


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("pytest.ini", "[pytest]\naddopts = -q\n"),
        (".pytest.ini", "[pytest]\n"),
        ("pyproject.toml", "[tool.pytest.ini_options]\nminversion = '8'\n"),
        ("tox.ini", "[tox]\nenvlist = py311\n\n[pytest]\naddopts = -q\n"),
        ("setup.cfg", "[metadata]\nname = x\n\n[tool:pytest]\naddopts = -q\n"),
    ],
)
def test_each_pytest_config_file_marks_the_rootdir(tmp_path: Path, name: str, text: str) -> None:
    root = tree(tmp_path / "project", {name: text, "tests/test_a.py": ""})
    assert find_rootdir(("tests",), root) == root
    assert find_rootdir((), root / "tests") == root


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("tox.ini", "[tox]\nenvlist = py311\n"),
        ("setup.cfg", "[metadata]\nname = x\n"),
        ("pyproject.toml", "this is [not toml\n"),
    ],
)
def test_a_file_without_a_pytest_section_does_not_mark_the_rootdir(
    tmp_path: Path, name: str, text: str
) -> None:
    outer = tree(tmp_path / "outer", {"pytest.ini": "[pytest]\n"})
    inner = tree(outer / "inner", {name: text, "tests/test_a.py": ""})
    assert find_rootdir(("tests",), inner) == outer


def test_setup_py_is_the_fallback(tmp_path: Path) -> None:
    root = tree(tmp_path / "project", {"setup.py": "", "pkg/tests/test_a.py": ""})
    assert find_rootdir((), root / "pkg" / "tests") == root


def test_rootdir_option_wins_in_both_spellings(tmp_path: Path) -> None:
    root = tree(tmp_path, {"pytest.ini": "[pytest]\n", "elsewhere/x": ""})
    assert find_rootdir(("--rootdir=elsewhere",), root) == root / "elsewhere"
    assert find_rootdir(("-x", "--rootdir", "elsewhere"), root) == root / "elsewhere"


def test_options_and_missing_paths_are_not_taken_for_paths(tmp_path: Path) -> None:
    root = tree(tmp_path, {"a/pytest.ini": "[pytest]\n", "a/tests/test_x.py": ""})
    cwd = root / "a" / "tests"
    assert find_rootdir(("-x", "--tb=short", "does/not/exist"), cwd) == root / "a"


def test_the_common_ancestor_of_several_paths_is_searched(tmp_path: Path) -> None:
    root = tree(tmp_path, {"p/pytest.ini": "[pytest]\n", "p/a/test_a.py": "", "p/b/test_b.py": ""})
    assert find_rootdir(("p/a/test_a.py", "p/b/test_b.py"), tmp_path) == root / "p"


def test_pytest_toml_marks_the_rootdir(tmp_path: Path) -> None:
    root = tree(tmp_path / "project", {"pytest.toml": "[pytest]\n", "tests/test_a.py": ""})
    assert find_rootdir((), root / "tests") == root


def test_a_bare_pyproject_is_nearer_than_a_setup_py_above_it(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "mono",
        {"setup.py": "", "pkg/pyproject.toml": "[project]\nname = 'pkg'\n", "pkg/tests/t.py": ""},
    )
    assert find_rootdir((), root / "pkg" / "tests") == root / "pkg"


# -- tier_map_from / check_keys ------------------------------------------------


def test_no_tiers_table_means_the_default_map() -> None:
    assert dict(tier_map_from({}, "pyproject.toml [tool.mtest]")) == dict(DEFAULT_TIERS)


def test_tier_overrides_merge_into_the_defaults() -> None:
    merged = tier_map_from({"tiers": {"smoke": 2, "gpu": 3}}, "origin")
    assert merged["smoke"] == 2
    assert merged["gpu"] == 3
    assert {k: v for k, v in merged.items() if k not in ("smoke", "gpu")} == {
        k: v for k, v in DEFAULT_TIERS.items() if k != "smoke"
    }


def test_the_merged_tier_map_is_read_only() -> None:
    merged = tier_map_from({"tiers": {"gpu": 3}}, "origin")
    with pytest.raises(TypeError):
        merged["gpu"] = 0  # type: ignore[index]


@pytest.mark.parametrize("tier", [4, -1, "1", True, 1.0, None])
def test_an_invalid_tier_is_a_usage_error_naming_marker_and_value(tier: object) -> None:
    with pytest.raises(MtestError) as caught:
        tier_map_from({"tiers": {"gpu": tier}}, "pyproject.toml [tool.mtest]")
    assert caught.value.code == 4
    assert "`gpu`" in caught.value.message
    assert repr(tier) in caught.value.message
    assert "pyproject.toml [tool.mtest]" in caught.value.message


def test_a_tiers_value_that_is_not_a_table_is_a_usage_error() -> None:
    with pytest.raises(MtestError) as caught:
        tier_map_from({"tiers": [0, 1]}, "origin")
    assert caught.value.code == 4
    assert "tiers" in caught.value.message


def test_known_keys_pass() -> None:
    check_keys(
        {"jobs": 2, "timeout": 30, "kill_grace": 1, "retries": 1, "tiers": {}, "budget": "5m",
         "gates_dir": ".g", "python": "py", "skip_quarantined": True, "fail_fast": False,
         "pytest_args": []},
        "origin",
    )  # fmt: skip


def test_an_unknown_key_is_named_with_the_known_ones() -> None:
    with pytest.raises(MtestError) as caught:
        check_keys({"jobs": 1, "job": 2}, "pyproject.toml [tool.mtest]")
    assert caught.value.code == 4
    assert "`job`" in caught.value.message
    assert "pyproject.toml [tool.mtest]" in caught.value.message
    assert "jobs" in caught.value.hint


# -- args.make_config ----------------------------------------------------------

MTEST_TABLE = """\
[tool.pytest.ini_options]
addopts = "-q"

[tool.mtest]
jobs = 3
timeout = 30
kill_grace = 1.5
retries = 2
budget = "5m"
fail_fast = true
pytest_args = ["-p", "no:randomly"]

[tool.mtest.tiers]
gpu = 3
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tree(tmp_path / "project", {"pyproject.toml": MTEST_TABLE, "tests/test_a.py": ""})


def test_defaults_without_any_configuration(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {"pytest.ini": "[pytest]\n"})
    config = make_config([], root)
    assert config.mode is Mode.RUN
    assert config.rootdir == root
    assert config.gates_dir == root / ".gates"
    assert (config.jobs, config.timeout_s, config.retries, config.budget_s) == (1, None, 0, None)
    assert config.kill_grace_s == DEFAULT_KILL_GRACE_S
    assert config.tiers == frozenset({0, 1, 2, 3})
    assert config.shard is None
    assert (config.fail_fast, config.skip_quarantined) == (False, False)
    assert config.lazy_collection is True
    assert config.pytest_args == () and config.paths == ()


def test_lazy_collection_can_be_turned_off_in_the_table(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {"pyproject.toml": "[tool.mtest]\nlazy_collection = false\n"})
    assert make_config([], root).lazy_collection is False


def test_tool_mtest_table_is_read(project: Path) -> None:
    config = make_config([], project)
    assert config.jobs == 3
    assert config.timeout_s == 30.0
    assert config.kill_grace_s == 1.5
    assert config.retries == 2
    assert config.budget_s == 300.0
    assert config.fail_fast is True
    assert config.tier_map["gpu"] == 3
    assert config.pytest_args == ("-p", "no:randomly")


def test_flags_beat_the_table(project: Path) -> None:
    config = make_config(
        ["--jobs", "5", "--timeout", "10", "--kill-grace", "0", "--retries", "0",
         "--budget", "1h30m"],
        project,
    )  # fmt: skip
    assert (config.jobs, config.timeout_s, config.kill_grace_s) == (5, 10.0, 0.0)
    assert (config.retries, config.budget_s) == (0, 5400.0)


def test_double_dash_splits_off_pytest_args(project: Path) -> None:
    config = make_config(["tests", "-v", "--", "-x", "-k", "not slow", "--tb", "short"], project)
    assert config.paths == ("tests",)
    assert config.pytest_args == ("-p", "no:randomly", "-k", "not slow", "--tb", "short")
    assert config.maxfail == 1, "-x is mtest's to honour across workers, not a child's"
    assert config.child_args == (*config.pytest_args, "tests")
    assert config.verbosity == 1


def test_selection_and_mode_flags(project: Path) -> None:
    config = make_config(
        ["--tier", "0-1,3", "--shard", "2/4", "--resume", "--skip-quarantined", "-q", "-q",
         "--gates-dir", "state", "--junit-xml", "out/j.xml", "--python", "/opt/py"],
        project,
    )  # fmt: skip
    assert config.mode is Mode.RESUME
    assert config.tiers == frozenset({0, 1, 3})
    assert config.shard == (2, 4)
    assert config.skip_quarantined is True
    assert config.verbosity == -2
    assert config.gates_dir == project / "state"
    assert config.junit_xml == project / "out" / "j.xml"
    assert config.python == "/opt/py"


def test_merge_mode_takes_directories(project: Path) -> None:
    config = make_config(["--merge", "a", "b"], project)
    assert config.mode is Mode.MERGE
    assert config.merge_dirs == (project / "a", project / "b")


@pytest.mark.parametrize(
    ("argv", "value", "flag"),
    [
        (["--jobs", "0"], "0", "--jobs"),
        (["-j", "lots"], "lots", "--jobs"),
        (["--timeout", "abc"], "abc", "--timeout"),
        (["--kill-grace", "-1"], "-1", "--kill-grace"),
        (["--retries", "1.5"], "1.5", "--retries"),
        (["--budget", "5x"], "5x", "--budget"),
        (["--tier", "9"], "9", "--tier"),
        (["--tier", "2-1"], "2-1", "--tier"),
        (["--tier", ""], "''", "--tier"),
        (["--shard", "3/2"], "3/2", "--shard"),
        (["--shard", "0/2"], "0/2", "--shard"),
        (["--shard", "half"], "half", "--shard"),
    ],
)
def test_a_bad_flag_value_is_a_usage_error_naming_it(
    project: Path, argv: list[str], value: str, flag: str
) -> None:
    with pytest.raises(MtestError) as caught:
        make_config(argv, project)
    assert caught.value.code == 4
    assert value in caught.value.message
    assert flag in f"{caught.value.message} {caught.value.hint}"


@pytest.mark.parametrize(
    ("line", "value", "key"),
    [
        ('jobs = "many"', "many", "jobs"),
        ("timeout = -3", "-3", "timeout"),
        ('budget = "forever"', "forever", "budget"),
        ("retries = true", "True", "retries"),
        ('pytest_args = "-x"', "pytest_args", "pytest_args"),
        ("tiers = { gpu = 7 }", "7", "gpu"),
        ("jobz = 2", "jobz", "jobz"),
    ],
)
def test_a_bad_table_value_is_a_usage_error_naming_it_and_the_file(
    tmp_path: Path, line: str, value: str, key: str
) -> None:
    error = table_error(tmp_path, f"[tool.mtest]\n{line}\n")
    assert value in error.message
    assert key in error.message
    assert str(tmp_path / "p" / "pyproject.toml") in error.message


def test_broken_toml_is_a_usage_error(tmp_path: Path) -> None:
    error = table_error(tmp_path, "[tool.mtest\njobs = 2\n")
    assert str(tmp_path / "p" / "pyproject.toml") in error.message


def test_an_unknown_flag_points_at_the_double_dash(project: Path) -> None:
    with pytest.raises(MtestError) as caught:
        make_config(["--tb", "short"], project)
    assert caught.value.code == 4
    assert "--tb" in caught.value.message
    assert "`--`" in caught.value.hint


def test_config_is_read_from_the_rootdir_not_the_cwd(project: Path) -> None:
    config = make_config([], project / "tests")
    assert config.rootdir == project
    assert config.jobs == 3
    assert config.gates_dir == project / ".gates"


def test_gates_dir_from_the_table_is_relative_to_the_rootdir(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {"pyproject.toml": '[tool.mtest]\ngates_dir = "ci-gates"\n'})
    (root / "tests").mkdir()
    assert make_config([], root / "tests").gates_dir == root / "ci-gates"


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('fail_fast = "false"', "fail_fast"),
        ("fail_fast = 0", "fail_fast"),
        ('skip_quarantined = "yes"', "skip_quarantined"),
        ('lazy_collection = "no"', "lazy_collection"),
        ("gates_dir = 5", "gates_dir"),
        ('python = ""', "python"),
    ],
)
def test_a_table_value_of_the_wrong_type_is_a_usage_error(
    tmp_path: Path, line: str, key: str
) -> None:
    error = table_error(tmp_path, f"[tool.mtest]\n{line}\n")
    assert key in error.message
    assert line.split(" = ", 1)[1].strip('"') in error.message


# -- values checked before any test runs (inf, nan, files, interpreters) ---------


@pytest.mark.parametrize(
    ("argv", "value", "flag"),
    [
        (["--budget", "inf"], "inf", "--budget"),
        (["--budget", "nan"], "nan", "--budget"),
        (["--budget", "1e999"], "1e999", "--budget"),
        (["--timeout", "inf"], "inf", "--timeout"),
        (["--timeout", "nan"], "nan", "--timeout"),
        (["--kill-grace", "inf"], "inf", "--kill-grace"),
        (["--kill-grace=-inf"], "-inf", "--kill-grace"),
        (["--kill-grace", "NaN"], "NaN", "--kill-grace"),
    ],
)
def test_an_infinite_or_nan_duration_flag_is_refused(
    project: Path, argv: list[str], value: str, flag: str
) -> None:
    with pytest.raises(MtestError) as caught:
        make_config(argv, project)
    assert caught.value.code == 4
    assert f"{flag} `{value}`" in caught.value.message
    assert "finite" in caught.value.hint


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("budget = inf", "budget"),
        ("budget = nan", "budget"),
        ("timeout = inf", "timeout"),
        ("timeout = nan", "timeout"),
        ("kill_grace = inf", "kill_grace"),
        ('kill_grace = "nan"', "kill_grace"),
    ],
)
def test_an_infinite_or_nan_duration_in_the_table_is_refused(
    tmp_path: Path, line: str, key: str
) -> None:
    error = table_error(tmp_path, f"[tool.mtest]\n{line}\n")
    assert f"`{key}` in {tmp_path / 'p' / 'pyproject.toml'} [tool.mtest]" in error.message
    assert "finite" in error.hint


def test_junit_xml_naming_a_directory_is_refused(project: Path) -> None:
    (project / "reports").mkdir()
    with pytest.raises(MtestError) as caught:
        make_config(["--junit-xml", "reports"], project)
    assert caught.value.code == 4
    assert f"--junit-xml `{project / 'reports'}`: it is a directory" in caught.value.message


def test_junit_xml_in_an_unwritable_place_is_refused(project: Path) -> None:
    blocker = project / "afile"
    blocker.write_text("not a directory")
    with pytest.raises(MtestError) as caught:
        make_config(["--junit-xml", "afile/junit.xml"], project)
    assert caught.value.code == 4
    assert "--junit-xml" in caught.value.message and "cannot write it" in caught.value.message
    assert blocker.read_text() == "not a directory"


def test_junit_xml_that_can_be_written_is_accepted_and_not_left_behind(project: Path) -> None:
    config = make_config(["--junit-xml", "out/deep/junit.xml"], project)
    assert config.junit_xml == project / "out" / "deep" / "junit.xml"
    assert not config.junit_xml.exists(), "the check must not leave an empty report behind"


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda d: d / "missing-python", "no such file"),
        (lambda d: d, "not a file"),
        (lambda d: (d / "notes.txt", (d / "notes.txt").write_text("hi"))[0], "not executable"),
        (lambda d: _executable(d / "text", "just words\n"), "cannot run it"),
        (lambda d: _executable(d / "sh", "#!/bin/sh\nexit 0\n"), "does not run Python code"),
        (lambda d: _executable(d / "false", "#!/bin/sh\nexit 3\n"), "exited 3"),
    ],
    ids=["missing", "directory", "text-file", "not-a-program", "shell-script", "failing"],
)
def test_python_that_is_not_an_interpreter_is_refused(
    tmp_path: Path, project: Path, make: Callable[[Path], Path], why: str
) -> None:
    (tmp_path / "bin").mkdir()
    python = make(tmp_path / "bin")
    with pytest.raises(MtestError) as caught:
        make_config(["--python", str(python)], project)
    assert caught.value.code == 4
    assert f"--python `{python}`" in caught.value.message
    assert why in caught.value.message, caught.value.message
    assert "interpreter" in caught.value.hint


def test_python_from_the_table_is_checked_and_named(tmp_path: Path) -> None:
    error = table_error(tmp_path, '[tool.mtest]\npython = "nowhere/python"\n')
    assert "`python` in" in error.message and "`nowhere/python`" in error.message


def test_a_bare_python_name_is_looked_up_on_path(project: Path) -> None:
    with pytest.raises(MtestError) as caught:
        make_config(["--python", "no-such-python-anywhere"], project)
    assert "not found on PATH" in caught.value.message
    assert make_config(["--python", Path(sys.executable).name], project).python


def test_a_real_interpreter_is_accepted(project: Path) -> None:
    assert make_config(["--python", sys.executable], project).python == sys.executable


def test_python_is_not_checked_by_commands_that_run_no_tests(project: Path) -> None:
    config = make_config(["--report", "--python", "/no/such/python"], project)
    assert config.mode is Mode.REPORT


# -- pytest's options at the top level and after `--` ----------------------------


def test_k_and_m_at_the_top_level_go_to_every_child(project: Path) -> None:
    config = make_config(["-k", "not slow", "-m", "smoke", "tests"], project)
    assert config.pytest_args == ("-p", "no:randomly", "-k", "not slow", "-m", "smoke")
    assert config.paths == ("tests",)


@pytest.mark.parametrize(
    ("argv", "maxfail"),
    [
        ([], None),
        (["-x"], 1),
        (["--exitfirst"], 1),
        (["--maxfail", "3"], 3),
        (["--maxfail", "0"], None),
        (["--", "-x"], 1),
        (["--", "--maxfail=4"], 4),
        (["--maxfail", "2", "--", "-x"], 2),
        (["-x", "--", "--maxfail", "5"], 1),
    ],
)
def test_x_and_maxfail_are_mtests_to_honour(
    project: Path, argv: list[str], maxfail: int | None
) -> None:
    config = make_config(argv, project)
    assert config.maxfail == maxfail
    assert not {"-x", "--maxfail", "--exitfirst"} & set(config.pytest_args)


@pytest.mark.parametrize("argv", [["--collect-only"], ["--co"], ["--", "--collect-only"]])
def test_collect_only_is_a_mode(project: Path, argv: list[str]) -> None:
    config = make_config(argv, project)
    assert config.mode is Mode.COLLECT_ONLY
    assert "--collect-only" not in config.pytest_args


@pytest.mark.parametrize(
    "argv", [["--report", "--", "--co"], ["--collect-only", "--resume"], ["--co", "--merge", "d"]]
)
def test_collect_only_with_another_mode_is_a_usage_error(project: Path, argv: list[str]) -> None:
    with pytest.raises(MtestError) as caught:
        make_config(argv, project)
    assert caught.value.code == 4


@pytest.mark.parametrize(
    ("argv", "option", "where"),
    [
        (["--pdb"], "--pdb", "on the command line"),
        (["-n", "2"], "-n", "on the command line"),
        (["--", "--lf"], "--lf", "after `--`"),
        (["--", "-vn", "2"], "-n", "after `--`"),
        (["--", "--cov=pkg"], "--cov", "after `--`"),
        (["--cov-report=html"], "--cov-report", "on the command line"),
    ],
)
def test_pytest_options_mtest_cannot_honour_are_refused(
    project: Path, argv: list[str], option: str, where: str
) -> None:
    with pytest.raises(MtestError) as caught:
        make_config(argv, project)
    assert caught.value.code == 4
    assert f"`{option}`" in caught.value.message and where in caught.value.message


def test_mtests_own_coverage_options_are_not_pytest_covs(project: Path) -> None:
    config = make_config(["--cov=pkg", "--cov=lib", "--cov-branch", "--cov-fail-under=90"], project)
    assert (config.cov, config.cov_sources, config.cov_branch) == (True, ("pkg", "lib"), True)
    assert config.cov_fail_under == 90
    assert make_config(["--cov"], project).cov_sources == ()


def test_pytest_args_in_the_table_are_checked_too(tmp_path: Path) -> None:
    error = table_error(tmp_path, '[tool.mtest]\npytest_args = ["--pdb"]\n')
    assert "`pytest_args` in" in error.message and "`--pdb`" in error.message


def test_flaky_result_from_flag_and_table(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {"pyproject.toml": '[tool.mtest]\nflaky_result = "fail"\n'})
    assert make_config([], root).flaky_result is FlakyResult.FAIL
    assert make_config(["--flaky-result", "pass"], root).flaky_result is FlakyResult.PASS
    plain = tree(tmp_path / "q", {"pytest.ini": "[pytest]\n"})
    assert make_config([], plain).flaky_result is FlakyResult.PASS


@pytest.mark.parametrize("line", ['flaky_result = "maybe"', "flaky_result = true"])
def test_a_bad_flaky_result_is_a_usage_error(tmp_path: Path, line: str) -> None:
    error = table_error(tmp_path, f"[tool.mtest]\n{line}\n")
    assert "`flaky_result`" in error.message and '"pass" or "fail"' in error.hint


@pytest.mark.parametrize(
    ("argv", "whole"),
    [
        ([], True),
        (["--", "--tb", "short", "-p", "no:randomly"], True),
        (["tests"], False),
        (["tests/test_a.py::test_x"], False),
        (["-k", "fast"], False),
        (["-m", "smoke"], False),
        (["--", "-knot slow"], False),
        (["--", "--deselect", "tests/test_a.py::test_x"], False),
        (["--", "--ignore=tests/slow"], False),
    ],
)
def test_whether_a_run_collects_the_whole_suite(
    tmp_path: Path, argv: list[str], whole: bool
) -> None:
    root = tree(tmp_path / "p", {"pytest.ini": "[pytest]\n", "tests/test_a.py": ""})
    assert make_config(argv, root).whole_suite is whole


def test_changed_takes_an_optional_revision(tmp_path: Path) -> None:
    root = tree(tmp_path / "p", {"pytest.ini": "[pytest]\n"})
    assert make_config([], root).changed is None
    assert make_config(["--changed"], root).changed == "HEAD"
    assert make_config(["--changed", "main", "tests"], root).changed == "main"
    assert make_config(["tests", "--changed"], root).paths == ("tests",)
    assert make_config(["--changed=v1", "--collect-only"], root).changed == "v1"
    with pytest.raises(MtestError, match="--changed is not used by this command"):
        make_config(["--report", "--changed"], root)
