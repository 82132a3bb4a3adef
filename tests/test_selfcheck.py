"""The self-check's verdicts: pure functions over scenarios and records, no processes.

The scenarios themselves run end to end in
``tests/test_integration_cli.py::test_self_check_passes_quickly``.
"""

from __future__ import annotations

import json

import pytest

from supervisor.model import Outcome, TestRecord
from supervisor.selfcheck import (
    Scenario,
    Verdict,
    fixtures_dir,
    judge,
    load_scenarios,
    parse_pids,
    render,
)

FORK = Scenario(
    name="fork-continue",
    about="a forked copy runs on",
    outcomes={"t.py::test_fork": Outcome.PASSED, "t.py::test_sibling": Outcome.PASSED},
    leaves_pid=True,
)
HANG = Scenario(name="hang", about="hangs", outcomes={"h.py::test_hang": Outcome.HUNG})


def rec(
    test_id: str, outcome: Outcome, *, bundle: str | None = "b.txt", message: str = ""
) -> TestRecord:
    return TestRecord(
        run_id="r", test_id=test_id, outcome=outcome, duration_s=0.1, tier=1,
        bundle=None if outcome is Outcome.PASSED else bundle, message=message,
    )  # fmt: skip


GOOD = [
    rec("t.py::test_fork", Outcome.PASSED),
    rec("t.py::test_sibling", Outcome.PASSED),
    rec("h.py::test_hang", Outcome.HUNG),
]


def problems_of(verdicts: tuple[Verdict, ...]) -> dict[str, tuple[str, ...]]:
    return {v.scenario.name: v.problems for v in verdicts}


def test_the_shipped_expected_json_loads_and_names_every_install_scenario() -> None:
    data = json.loads((fixtures_dir() / "expected.json").read_text(encoding="utf-8"))
    scenarios = load_scenarios(data)
    names = [s.name for s in scenarios]
    assert len(set(names)) == len(names), "scenario names are unique"
    assert {"fork-continue", "clock-patch", "parent-signal"} <= set(names)
    for scenario in scenarios:
        for test_id in scenario.outcomes:
            assert (fixtures_dir() / test_id.partition("::")[0]).is_file(), test_id


def test_a_run_that_matches_passes_every_scenario() -> None:
    verdicts, strays = judge(
        [FORK, HANG], GOOD, pids={"fork-continue": [41]}, alive=frozenset(), summary=""
    )
    assert [v.ok for v in verdicts] == [True, True]
    assert strays == ()
    assert verdicts[1].got == (("h.py::test_hang", "hung"),)


def test_a_wrong_outcome_says_what_happened() -> None:
    records = [*GOOD[:2], rec("h.py::test_hang", Outcome.PASSED)]
    verdicts, _ = judge(
        [FORK, HANG], records, pids={"fork-continue": [41]}, alive=frozenset(), summary=""
    )
    assert problems_of(verdicts)["hang"] == ("h.py::test_hang: expected hung, got passed",)
    assert problems_of(verdicts)["fork-continue"] == ()


def test_a_duplicate_record_fails_the_scenario_even_when_the_last_one_is_right() -> None:
    records = [*GOOD, rec("t.py::test_sibling", Outcome.PASSED)]
    verdicts, _ = judge(
        [FORK, HANG], records, pids={"fork-continue": [41]}, alive=frozenset(), summary=""
    )
    assert problems_of(verdicts)["fork-continue"] == (
        "t.py::test_sibling: 2 records, expected exactly one",
    )


def test_a_missing_record_a_missing_bundle_and_a_surviving_pid_are_each_named() -> None:
    records = [GOOD[0], rec("h.py::test_hang", Outcome.HUNG, bundle=None, message="")]
    verdicts, _ = judge(
        [FORK, HANG], records, pids={"fork-continue": [41, 42]}, alive=frozenset({42}), summary=""
    )
    assert problems_of(verdicts) == {
        "fork-continue": (
            "t.py::test_sibling: expected passed, got no record",
            "pid 42 outlived the run",
        ),
        "hang": ("h.py::test_hang: hung but no failure bundle was written",),
    }


def test_a_scenario_that_should_leave_a_pid_but_did_not_fails() -> None:
    verdicts, _ = judge([FORK], GOOD[:2], pids={}, alive=frozenset(), summary="")
    assert problems_of(verdicts)["fork-continue"] == ("left no pid to check (did its test run?)",)


def test_a_test_no_scenario_expects_is_reported_apart() -> None:
    records = [*GOOD, rec("x.py::test_new", Outcome.FAILED)]
    _, strays = judge(
        [FORK, HANG], records, pids={"fork-continue": [1]}, alive=frozenset(), summary=""
    )
    assert strays == ("x.py::test_new: unexpected test (failed)",)


def test_render_gives_one_line_per_scenario_and_the_problems_under_it() -> None:
    records = [*GOOD[:2], rec("h.py::test_hang", Outcome.CRASHED, message="signal 9")]
    verdicts, _ = judge(
        [FORK, HANG], records, pids={"fork-continue": [41]}, alive=frozenset(), summary=""
    )
    assert render(verdicts) == [
        "  ok    fork-continue  test_fork passed, test_sibling passed",
        "  FAIL  hang           test_hang crashed",
        "        h.py::test_hang: expected hung, got crashed (signal 9)",
    ]


def test_pid_lines_name_their_scenario_and_junk_is_skipped() -> None:
    text = "12 grandchild\n13 fork-continue\nnot a pid\n14\n15 grandchild\n"
    assert parse_pids(text) == {"grandchild": [12, 15], "fork-continue": [13]}


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"version": 2, "scenarios": []},
        {"version": 1, "scenarios": []},
        {"version": 1, "scenarios": [{"name": "x"}]},
        {"version": 1, "scenarios": [{"name": "x", "outcomes": {"t": "exploded"}}]},
    ],
)
def test_malformed_expected_json_is_a_value_error(data: object) -> None:
    with pytest.raises(ValueError, match=r"expected\.json|exploded"):
        load_scenarios(data)


def test_a_note_the_scenario_expects_must_be_in_the_summary() -> None:
    signal = Scenario(
        name="parent-signal",
        about="SIGTERM to mtest",
        outcomes={"s.py::test_kill": Outcome.PASSED},
        note="sent SIGTERM to mtest",
    )
    records = [rec("s.py::test_kill", Outcome.PASSED)]
    heard = "## Notes\n\n- pid 7 (of the run) sent SIGTERM to mtest; ignored\n"
    verdicts, _ = judge([signal], records, pids={}, alive=frozenset(), summary=heard)
    assert verdicts[0].ok
    verdicts, _ = judge([signal], records, pids={}, alive=frozenset(), summary="# mtest run\n")
    assert verdicts[0].problems == ("no note saying 'sent SIGTERM to mtest' in summary.md",)
