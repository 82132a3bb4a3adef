"""Unit tests for ``supervisor.pytestopts``: which pytest options mtest takes, keeps, refuses."""

from __future__ import annotations

import argparse

import pytest
from _pytest.config import get_config

from supervisor.errors import MtestError
from supervisor.pytestopts import REFUSED, VALUE_LONGS, VALUE_SHORTS, take

WHERE = "after `--`"


@pytest.mark.parametrize(
    ("args", "kept", "maxfail", "collect_only"),
    [
        ([], (), None, False),
        (["-x"], (), 1, False),
        (["--exitfirst"], (), 1, False),
        (["-xvs"], ("-vs",), 1, False),
        (["-vx"], ("-v",), 1, False),
        (["--maxfail", "3"], (), 3, False),
        (["--maxfail=2"], (), 2, False),
        (["--maxfail=0"], (), None, False),
        (["-x", "--maxfail", "3"], (), 3, False),  # the last one wins, as in pytest
        (["--maxfail", "3", "-x"], (), 1, False),
        (["--collect-only"], (), None, True),
        (["--co", "-q"], ("-q",), None, True),
        # a value-taking short option ends the bundle: -rxs is -r with "xs"
        (["-rxs"], ("-rxs",), None, False),
        (["-kx"], ("-kx",), None, False),
        (["-vkx", "tests"], ("-vkx", "tests"), None, False),
        # values are never read as options
        (["-k", "not slow", "-x"], ("-k", "not slow"), 1, False),
        (["-m", "smoke", "--tb", "short"], ("-m", "smoke", "--tb", "short"), None, False),
        (["-p", "no:randomly", "--deselect", "t.py::a"],
         ("-p", "no:randomly", "--deselect", "t.py::a"), None, False),
        (["tests/test_a.py::test_b[-x]"], ("tests/test_a.py::test_b[-x]",), None, False),
        (["--timeout", "5", "-s"], ("--timeout", "5", "-s"), None, False),
    ],
)  # fmt: skip
def test_take(
    args: list[str], kept: tuple[str, ...], maxfail: int | None, collect_only: bool
) -> None:
    taken = take(args, WHERE)
    assert taken.child_args == kept
    assert taken.maxfail == maxfail
    assert taken.collect_only is collect_only


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--pdb"], "--pdb"),
        (["--trace"], "--trace"),
        (["-n", "4"], "-n"),
        (["-vn4"], "-n"),
        (["--numprocesses=auto"], "--numprocesses"),
        (["--lf"], "--lf"),
        (["--ff"], "--ff"),
        (["--sw"], "--sw"),
        (["--setup-only"], "--setup-only"),
        (["--fixtures"], "--fixtures"),
        (["-h"], "-h"),
        (["--version"], "--version"),
        (["--cov=pkg"], "--cov"),
        (["--cov"], "--cov"),
        (["--cov-report", "html"], "--cov-report"),
        (["--cov-fail-under=90"], "--cov-fail-under"),
        (["--cov-branch"], "--cov-branch"),
    ],
)
def test_refused_options_name_themselves_where_and_why(args: list[str], option: str) -> None:
    with pytest.raises(MtestError) as caught:
        take(args, WHERE)
    assert caught.value.code == 4
    assert f"`{option}`" in caught.value.message
    assert WHERE in caught.value.message
    assert caught.value.hint == REFUSED[option]


def test_pytest_covs_options_point_to_mtests_own() -> None:
    assert "mtest's own `--cov[=SOURCE]`" in REFUSED["--cov"]
    # Switching pytest-cov off (e.g. its --cov in addopts) is the user's to ask for.
    assert take(["--no-cov"], WHERE).child_args == ("--no-cov",)


@pytest.mark.parametrize("args", [["--maxfail", "x"], ["--maxfail=-1"], ["--maxfail"]])
def test_a_bad_maxfail_is_a_usage_error(args: list[str]) -> None:
    with pytest.raises(MtestError) as caught:
        take(args, WHERE)
    assert caught.value.code == 4
    assert "--maxfail" in caught.value.message


def _pytest_parser() -> argparse.ArgumentParser:
    parser = get_config([])._parser.optparser
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def test_the_tables_match_the_pytest_installed_here() -> None:
    """Every pytest short option that takes a value is known, and so is every long one."""
    actions = _pytest_parser()._actions
    names = {n: a for a in actions for n in a.option_strings}
    shorts = {n[1] for n, a in names.items() if len(n) == 2 and a.nargs != 0}
    assert shorts <= VALUE_SHORTS
    longs = {n for n, a in names.items() if n.startswith("--") and a.nargs is None}
    refused = {n for n in longs if n in REFUSED}
    assert longs - refused - {"--maxfail"} <= VALUE_LONGS | {
        "--last-failed-no-failures", "--lfnf", "--pdbcls"
    }  # fmt: skip
    # every refused option of pytest itself still exists (plugins' may be absent)
    core = {n for n in REFUSED if n in names}
    assert {"--pdb", "--trace", "--lf", "--ff", "--sw", "--setup-only", "--fixtures"} <= core
