"""``slowest``: the N slowest tests, pytest's ``--durations`` block, and the options."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.args import make_config
from supervisor.config import Mode
from supervisor.errors import MtestError
from supervisor.model import Outcome, TestRecord
from supervisor.slowest import durations_lines, render, slowest


def _r(test_id: str, seconds: float, outcome: Outcome = Outcome.PASSED) -> TestRecord:
    return TestRecord(run_id="r", test_id=test_id, outcome=outcome, duration_s=seconds, tier=1)


RECORDS = [
    _r("t.py::a", 0.5), _r("t.py::b", 2.0, Outcome.FAILED), _r("t.py::c", 0.001),
    _r("t.py::skipped", 9.0, Outcome.SKIPPED), _r("broken.py", 7.0, Outcome.ERROR),
    _r("t.py::d", 0.5),
]  # fmt: skip


def test_slowest_first_ties_by_id_without_skips_or_files() -> None:
    assert [r.test_id for r in slowest(RECORDS, 3)] == ["t.py::b", "t.py::a", "t.py::d"]
    assert len(slowest(RECORDS, 0)) == 4


def test_durations_block_is_pytests() -> None:
    lines = durations_lines(RECORDS, 10, verbosity=0)
    assert lines[0].strip("= ") == "slowest 10 durations"
    assert lines[1] == "2.00s failed   t.py::b"
    assert lines[-1] == "(1 durations < 0.005s hidden.  Use -vv to show these durations.)"
    everything = durations_lines(RECORDS, 0, verbosity=2)
    assert everything[0].strip("= ") == "slowest durations"
    assert everything[-1] == "0.00s passed   t.py::c"


def test_render_escapes_control_characters() -> None:
    lines = render(slowest([_r("t.py::x\x1b[31m", 1.0)], 5), total=1)
    assert "\x1b" not in "".join(lines) and "\\x1b" in lines[1]
    assert render([], total=0) == ["no timed tests in the last run"]


def test_options(tmp_path: Path) -> None:
    config = make_config(["slowest", "7", "--json"], tmp_path)
    assert (config.mode, config.slowest_n, config.json_output) == (Mode.SLOWEST, 7, True)
    assert make_config(["slowest"], tmp_path).slowest_n == 20
    run = make_config(["--html", "r/x.html", "--trace", "t.json", "--durations", "0"], tmp_path)
    assert run.html_path == tmp_path / "r" / "x.html" and run.trace_path == tmp_path / "t.json"
    assert run.durations == 0
    (tmp_path / "pyproject.toml").write_text('[tool.mtest]\ndurations = 5\nhtml = "rep.html"\n')
    keyed = make_config([], tmp_path)
    assert (keyed.durations, keyed.html_path) == (5, tmp_path / "rep.html")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["slowest", "many"], "invalid `mtest slowest` count `many`"),
        (["slowest", "3", "4"], "unexpected `4` after `mtest slowest`"),
        (["--durations", "-1"], "invalid --durations `-1`"),
        (["history", "--durations", "3"], "--durations is not used by this command"),
        (["slowest", "--html", "x.html"], "--html is not used by this command"),
        (["--html", "."], "invalid --html"),
    ],
)
def test_bad_options_name_the_value(tmp_path: Path, argv: list[str], fragment: str) -> None:
    with pytest.raises(MtestError) as caught:
        make_config(argv, tmp_path)
    assert fragment in caught.value.message
    assert caught.value.code == 4
