"""The options of issue 13: ``--isolate-failures``, ``--find-polluter``, ``--failed``."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.args import make_config
from supervisor.config import Mode
from supervisor.errors import MtestError


def project(tmp_path: Path, table: str = "") -> Path:
    root = tmp_path / "p"
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    if table:
        (root / "pyproject.toml").write_text(f"[tool.mtest]\n{table}")
    return root


def test_the_defaults(tmp_path: Path) -> None:
    config = make_config([], project(tmp_path))
    assert (config.isolate_failures, config.find_polluter, config.failed_only) == (
        True, False, False,
    )  # fmt: skip


def test_the_flags_and_the_table(tmp_path: Path) -> None:
    root = project(tmp_path, "isolate_failures = false\n")
    assert not make_config([], root).isolate_failures
    assert make_config(["--isolate-failures"], root).isolate_failures
    on = make_config(["--find-polluter", "--failed"], project(tmp_path / "q"))
    assert on.find_polluter and on.failed_only and on.isolate_failures
    assert not make_config(["--no-isolate-failures"], project(tmp_path / "r")).isolate_failures
    assert make_config(["--collect-only", "--failed"], root).mode is Mode.COLLECT_ONLY


@pytest.mark.parametrize(
    ("argv", "table", "needle"),
    [
        (["--find-polluter", "--no-isolate-failures"], "", "--find-polluter needs"),
        (["--find-polluter"], "isolate_failures = false\n", "--find-polluter needs"),
        ([], 'isolate_failures = "no"\n', "invalid `isolate_failures` 'no'"),
        (["--report", "--failed"], "", "--failed is not used by this command"),
        (["--report", "--find-polluter"], "", "--find-polluter is not used by this command"),
    ],
)
def test_bad_combinations_are_one_line_usage_errors(
    tmp_path: Path, argv: list[str], table: str, needle: str
) -> None:
    with pytest.raises(MtestError) as caught:
        make_config(argv, project(tmp_path, table))
    assert caught.value.code == 4
    assert needle in str(caught.value) and "\n" not in str(caught.value)
