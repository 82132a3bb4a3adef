"""Unit and property tests for ``supervisor.report``: exit codes, terminal lines, summary.md."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.covdata import Total
from supervisor.model import Outcome, TestRecord, final_records
from supervisor.report import (
    SUMMARY_PROBLEMS,
    RunFacts,
    exit_code,
    problem_line,
    summary_line,
    summary_markdown,
)

GATING = {Outcome.FAILED, Outcome.ERROR, Outcome.HUNG, Outcome.CRASHED, Outcome.ORDER_DEPENDENT}


def rec(test_id: str, outcome: Outcome, **changes: Any) -> TestRecord:
    values: dict[str, Any] = {
        "run_id": "r1",
        "test_id": test_id,
        "outcome": outcome,
        "duration_s": 0.1,
        "tier": 1,
    }
    values.update(changes)
    return TestRecord(**values)


def finals_of(*records: TestRecord) -> dict[str, TestRecord]:
    return final_records(list(records))


FACTS = RunFacts(run_id="20260101T000000Z-abcd", elapsed_s=12.34)

# -- exit_code -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("records", "interrupted", "selected", "code"),
    [
        pytest.param([rec("a", Outcome.PASSED)], False, 1, 0, id="all-passed"),
        pytest.param([rec("a", Outcome.FAILED)], True, 1, 2, id="interrupted-beats-failure"),
        pytest.param([], True, 0, 2, id="interrupted-before-anything"),
        pytest.param([], False, 0, 5, id="nothing-selected"),
        pytest.param([], False, 3, 0, id="selected-but-none-ran"),
        pytest.param([rec("a", Outcome.SKIPPED)], False, 0, 0, id="finals-without-selection"),
        pytest.param(
            [rec("a", Outcome.PASSED), rec("b", Outcome.HUNG)], False, 2, 1, id="one-hung"
        ),
        pytest.param(
            [rec("a", Outcome.CRASHED, quarantined=True)], False, 1, 0, id="quarantined-alone"
        ),
        pytest.param(
            [rec("a", Outcome.ERROR, quarantined=True), rec("b", Outcome.FAILED)],
            False, 2, 1, id="quarantined-and-real-failure",
        ),
        pytest.param([rec("a", Outcome.FLAKY)], False, 1, 0, id="flaky"),
        pytest.param(
            [rec("a", Outcome.XFAILED), rec("b", Outcome.XPASSED), rec("c", Outcome.SKIPPED)],
            False, 3, 0, id="non-gating-outcomes",
        ),
    ],
)  # fmt: skip
def test_exit_code(records: list[TestRecord], interrupted: bool, selected: int, code: int) -> None:
    assert exit_code(finals_of(*records), interrupted=interrupted, selected=selected) == code


def test_a_later_attempt_decides_the_exit_code() -> None:
    finals = finals_of(rec("a", Outcome.FAILED), rec("a", Outcome.PASSED, attempt=2))
    assert exit_code(finals, interrupted=False, selected=1) == 0


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(st.tuples(st.sampled_from(Outcome), st.booleans()), min_size=1, max_size=8)
)
def test_the_run_fails_exactly_when_a_gating_test_is_not_quarantined(
    outcomes: list[tuple[Outcome, bool]],
) -> None:
    finals = finals_of(
        *(rec(f"t{i}", outcome, quarantined=q) for i, (outcome, q) in enumerate(outcomes))
    )
    failing = any(outcome in GATING and not q for outcome, q in outcomes)
    assert exit_code(finals, interrupted=False, selected=len(outcomes)) == (1 if failing else 0)
    assert exit_code(finals, interrupted=True, selected=len(outcomes)) == 2


# -- summary_line / problem_line -----------------------------------------------


def test_summary_line_counts_in_pytest_order() -> None:
    finals = finals_of(
        rec("a", Outcome.PASSED),
        rec("b", Outcome.SKIPPED),
        rec("c", Outcome.FAILED),
        rec("d", Outcome.PASSED),
        rec("e", Outcome.HUNG),
        rec("f", Outcome.XFAILED),
    )
    expected = "1 failed, 1 hung, 2 passed, 1 skipped, 1 xfailed in 12.3s"
    assert summary_line(finals, FACTS) == expected


def test_summary_line_mentions_quarantined_and_not_run() -> None:
    finals = finals_of(rec("a", Outcome.CRASHED, quarantined=True), rec("b", Outcome.FLAKY))
    facts = RunFacts(run_id="r", elapsed_s=0.04, outstanding=7)
    assert summary_line(finals, facts) == "1 crashed, 1 flaky, 1 quarantined, 7 not run in 0.0s"


def test_summary_line_of_an_empty_run() -> None:
    assert summary_line({}, RunFacts(run_id="r", elapsed_s=1.0)) == "no tests ran in 1.0s"


@pytest.mark.parametrize(
    ("record", "line"),
    [
        (rec("t.py::a", Outcome.FAILED, message="AssertionError: boom"),
         "FAILED t.py::a - AssertionError: boom"),
        (rec("t.py::a", Outcome.HUNG), "HUNG t.py::a"),
        (rec("t.py::a", Outcome.CRASHED, quarantined=True, message="signal 11"),
         "CRASHED (quarantined) t.py::a - signal 11"),
        (rec("t.py::a", Outcome.FLAKY, attempt=3, message="passed on retry"),
         "FLAKY (attempt 3) t.py::a - passed on retry"),
        (rec("t.py::a", Outcome.ERROR, attempt=2, quarantined=True),
         "ERROR (quarantined) (attempt 2) t.py::a"),
    ],
)  # fmt: skip
def test_problem_line(record: TestRecord, line: str) -> None:
    assert problem_line(record) == line


# -- summary_markdown ----------------------------------------------------------


def section(markdown: str, title: str) -> list[str]:
    """The non-blank lines under ``## title`` up to the next section."""
    lines = markdown.splitlines()
    start = lines.index(f"## {title}") + 1
    body: list[str] = []
    for line in lines[start:]:
        if line.startswith("## "):
            break
        if line.strip():
            body.append(line)
    return body


def test_summary_markdown_header_table_and_verdict() -> None:
    finals = finals_of(rec("a", Outcome.PASSED), rec("b", Outcome.FAILED, message="boom"))
    markdown = summary_markdown(finals, FACTS, 1, list(finals.values()))
    lines = markdown.splitlines()
    assert lines[0] == "# mtest run 20260101T000000Z-abcd"
    assert "**1 failed, 1 passed in 12.3s** — exit code 1" in lines
    assert lines[lines.index("| outcome | tests |") + 1 :][:3] == [
        "|---|---|",
        "| failed | 1 |",
        "| passed | 1 |",
    ]
    assert markdown.endswith("\n")


def test_summary_markdown_lists_every_problem_with_its_bundle() -> None:
    finals = finals_of(
        rec("t.py::ok", Outcome.PASSED),
        rec("t.py::skip", Outcome.SKIPPED, message="not here"),
        rec("t.py::z", Outcome.FAILED, message="AssertionError", bundle="failures/t.py_z_1.txt"),
        rec("t.py::a", Outcome.FAILED, message="", bundle="failures/t.py_a_2.txt"),
        rec("t.py::crash", Outcome.CRASHED, quarantined=True, message="signal 11"),
        rec("t.py::flip", Outcome.FLAKY, message="passed on retry"),
    )
    markdown = summary_markdown(finals, FACTS, 1, list(finals.values()))
    assert section(markdown, "Problems") == [
        "- **failed** `t.py::a`: (no message) — `failures/t.py_a_2.txt`",
        "- **failed** `t.py::z`: AssertionError — `failures/t.py_z_1.txt`",
        "- **crashed** (quarantined, not gating) `t.py::crash`: signal 11",
        "- **flaky** `t.py::flip`: passed on retry",
    ]


def test_a_clean_run_has_no_problem_or_not_run_section() -> None:
    finals = finals_of(rec("a", Outcome.PASSED), rec("b", Outcome.XFAILED))
    markdown = summary_markdown(finals, FACTS, 0, list(finals.values()))
    assert "## Problems" not in markdown
    assert "## Not run" not in markdown
    assert "Retries" not in markdown


def test_the_not_run_section_says_how_many_why_and_how_to_resume() -> None:
    facts = RunFacts(run_id="r", elapsed_s=3.0, outstanding=4, stopped_reason="budget reached")
    markdown = summary_markdown(finals_of(rec("a", Outcome.PASSED)), facts, 0, [])
    assert section(markdown, "Not run") == [
        "4 test(s) did not run (budget reached); `mtest --resume` runs them."
    ]


def test_an_interrupted_run_without_a_reason_says_interrupted() -> None:
    facts = RunFacts(run_id="r", elapsed_s=3.0, outstanding=2, interrupted=True)
    markdown = summary_markdown({}, facts, 2, [])
    assert section(markdown, "Not run") == [
        "2 test(s) did not run (interrupted); `mtest --resume` runs them."
    ]
    assert "— exit code 2" in markdown


def test_left_out_tests_and_retries_are_reported() -> None:
    facts = RunFacts(
        run_id="r", elapsed_s=1.0, left_out=(("tier 3", 12, 340.26), ("quarantined", 1, 0.5))
    )
    attempts = [
        rec("a", Outcome.FAILED),
        rec("a", Outcome.FAILED, attempt=2),
        rec("a", Outcome.PASSED, attempt=3),
    ]
    markdown = summary_markdown(final_records(attempts), facts, 0, attempts)
    assert section(markdown, "Left out by selection") == [
        "- tier 3: 12 test(s), ~340.3s",
        "- quarantined: 1 test(s), ~0.5s",
    ]
    assert "Retries: 2 extra attempt(s)." in markdown.splitlines()


def test_summary_markdown_says_when_a_run_was_resumed() -> None:
    resumed = dataclasses.replace(FACTS, resumed=True)
    assert summary_markdown({}, resumed, 0, []).splitlines()[0].endswith("(resumed)")
    assert "(resumed)" not in summary_markdown({}, FACTS, 0, []).splitlines()[0]


def test_summary_line_of_a_merge_has_no_time() -> None:
    assert summary_line({}, RunFacts(run_id="a + b", elapsed_s=None)) == "no tests ran"


# -- flaky-result, quarantine kinds, notes --------------------------------------


@pytest.mark.parametrize("quarantined", [False, True])
def test_flaky_fails_makes_a_flaky_outcome_gate_quarantined_or_not(quarantined: bool) -> None:
    finals = finals_of(rec("a", Outcome.FLAKY, quarantined=quarantined), rec("b", Outcome.PASSED))
    assert exit_code(finals, interrupted=False, selected=2) == 0
    assert exit_code(finals, interrupted=False, selected=2, flaky_fails=True) == 1


def test_flaky_fails_changes_nothing_without_a_flaky_outcome() -> None:
    finals = finals_of(rec("a", Outcome.PASSED), rec("b", Outcome.FAILED, quarantined=True))
    assert exit_code(finals, interrupted=False, selected=2, flaky_fails=True) == 0


def test_the_summary_tells_flaky_from_broken_quarantine() -> None:
    finals = finals_of(
        rec("t.py::f", Outcome.FAILED, quarantined=True, message="m"),
        rec("t.py::b", Outcome.FAILED, message="m"),
    )
    facts = dataclasses.replace(FACTS, quarantine_kinds={"t.py::f": "flaky", "t.py::b": "broken"})
    text = summary_markdown(finals, facts, 1, [])
    assert "- **failed** (broken) `t.py::b`: m" in text
    assert "- **failed** (quarantined: flaky, not gating) `t.py::f`: m" in text
    assert "Quarantine: 1 broken, 1 flaky." in text


def test_notes_are_listed_and_escaped() -> None:
    facts = dataclasses.replace(FACTS, notes=("a <b>note</b>", "thread left by `t.py::x`\nmore"))
    text = summary_markdown({}, facts, 0, [])
    assert text.endswith(
        "## Notes\n\n- a \\<b\\>note\\</b\\>\n- thread left by \\`t.py::x\\`\\\\nmore\n"
    )


def test_no_notes_no_heading() -> None:
    assert "Notes" not in summary_markdown({}, FACTS, 0, [])


# -- hostile text ----------------------------------------------------------------


HOSTILE_ID = "t.py::test[<script>alert(1)</script>|`x`*y*[l](http://z)]"


def test_a_hostile_id_and_message_stay_inert_in_the_summary() -> None:
    record = rec(HOSTILE_ID, Outcome.FAILED, message="<img src=x>|*b*\n# heading\x1b[2J")
    text = summary_markdown(finals_of(record), FACTS, 1, [])
    (line,) = [line for line in text.splitlines() if line.startswith("- **failed**")]
    assert line == (
        "- **failed** ``t.py::test[<script>alert(1)</script>|`x`*y*[l](http://z)]``: "
        "\\<img src=x\\>\\|\\*b\\*\\\\n\\# heading\\\\x1b\\[2J"
    )


def test_a_megabyte_message_is_clipped_in_the_summary_and_on_the_console() -> None:
    record = rec("t.py::x", Outcome.FAILED, message="x" * 2_000_000)
    text = summary_markdown(finals_of(record), FACTS, 1, [])
    assert len(text) < 2000
    assert "more characters" in text
    assert len(problem_line(record)) < 400


def test_the_problem_line_is_one_line_without_controls() -> None:
    line = problem_line(rec("t.py::x\x1b[H", Outcome.FAILED, message="a\nb\x07\ud800"))
    assert line == "FAILED t.py::x\\x1b[H - a\\nb\\x07\\ud800"


def test_the_problem_list_is_capped_for_githubs_step_summary() -> None:
    finals = finals_of(*(rec(f"t.py::x{n}", Outcome.FAILED) for n in range(SUMMARY_PROBLEMS + 7)))
    text = summary_markdown(finals, FACTS, 1, [])
    assert sum(line.startswith("- **failed**") for line in text.splitlines()) == SUMMARY_PROBLEMS
    assert "- … and 7 more: `last-run/run.jsonl` has them all" in text


@settings(max_examples=200, deadline=None)
@given(
    test_id=st.text(st.characters(exclude_categories=()), min_size=1),
    message=st.text(st.characters(exclude_categories=())),
)
def test_any_id_and_message_give_one_problem_line(test_id: str, message: str) -> None:
    text = summary_markdown(finals_of(rec(test_id, Outcome.FAILED, message=message)), FACTS, 1, [])
    text.encode("utf-8")
    problems = text.split("## Problems\n\n", 1)[1].splitlines()
    assert problems[0].startswith("- **failed** `") and len(problems) == 1


def test_a_quarantined_flaky_outcome_is_not_called_not_gating() -> None:
    # It may gate (--flaky-result fail); the summary only says what it is.
    finals = finals_of(rec("t.py::f", Outcome.FLAKY, quarantined=True, message="m"))
    facts = dataclasses.replace(FACTS, quarantine_kinds={"t.py::f": "flaky"})
    assert "- **flaky** (quarantined: flaky) `t.py::f`: m" in summary_markdown(finals, facts, 1, [])


def test_coverage_in_the_end_line_the_summary_and_the_exit_code() -> None:
    finals = finals_of(rec("a", Outcome.PASSED))
    total = Total(
        percent=87.5432, display="87.54", branch=True, fail_under=90.0, failed=True,
        data_file=Path("/p/.coverage"), version="7.18.0", parts=2,
    )  # fmt: skip
    facts = dataclasses.replace(FACTS, coverage=total)
    assert summary_line(finals, facts) == "1 passed in 12.3s, coverage 87.54%"
    text = summary_markdown(finals, facts, 1, [])
    assert (
        "Coverage: **87.54%** of lines and branches (coverage.py 7.18.0, 2 data file(s) "
        "combined, in `/p/.coverage`)." in text
    )
    assert "Required coverage 90%: **not reached**: the run fails." in text
    assert exit_code(finals, interrupted=False, selected=1, coverage_failed=True) == 1
    assert exit_code(finals, interrupted=True, selected=1, coverage_failed=True) == 2
    empty = Total(percent=None, problem="no test saved coverage data")
    assert "Coverage: **no data** (no test saved coverage data)." in summary_markdown(
        finals, dataclasses.replace(FACTS, coverage=empty), 0, []
    )
