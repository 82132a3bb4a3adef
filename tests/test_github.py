"""Tests for supervisor.github: annotations, escaping and the step summary."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.github import (
    MAX_ANNOTATIONS,
    annotations,
    append_step_summary,
    escape_data,
    escape_property,
)
from supervisor.model import Outcome, TestItem, TestRecord
from supervisor.text import console_text


def rec(
    test_id: str,
    outcome: Outcome,
    *,
    message: str = "",
    bundle: str | None = None,
    quarantined: bool = False,
    attempt: int = 1,
) -> TestRecord:
    return TestRecord(
        run_id="r1",
        test_id=test_id,
        outcome=outcome,
        duration_s=0.1,
        tier=1,
        attempt=attempt,
        quarantined=quarantined,
        message=message,
        bundle=bundle,
    )


def finals_of(*records: TestRecord) -> dict[str, TestRecord]:
    return {r.test_id: r for r in records}


def item(test_id: str, line: int | None) -> TestItem:
    return TestItem(test_id=test_id, file=test_id.split("::", 1)[0], line=line)


def unescape(text: str) -> str:
    for code, char in (("%2C", ","), ("%3A", ":"), ("%0A", "\n"), ("%0D", "\r"), ("%25", "%")):
        text = text.replace(code, char)
    return text


def test_escape_data_encodes_percent_cr_lf_only() -> None:
    assert escape_data("50%\r\nnext: a,b") == "50%25%0D%0Anext: a,b"
    assert escape_data("%0A") == "%250A"  # escaped first, so no double meaning


def test_escape_property_also_encodes_colon_and_comma() -> None:
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


def test_failed_test_is_an_error_with_file_line_title_and_message() -> None:
    tid = "tests/x.py::test_y"
    got = annotations(
        finals_of(rec(tid, Outcome.FAILED, message="assert 1 == 2\nmore")), {tid: item(tid, 12)}
    )
    assert got == [
        "::error file=tests/x.py,line=12,title=mtest%3A failed tests/x.py%3A%3Atest_y"
        "::assert 1 == 2%0Amore"
    ]


def test_line_is_omitted_when_unknown() -> None:
    tid = "tests/x.py::test_y"
    for items in ({}, {tid: item(tid, None)}):
        (line,) = annotations(finals_of(rec(tid, Outcome.HUNG, message="slow")), items)
        assert line.startswith("::error file=tests/x.py,title=")
        assert ",line=" not in line


@pytest.mark.parametrize("outcome", [Outcome.FAILED, Outcome.ERROR, Outcome.HUNG, Outcome.CRASHED])
def test_gating_outcomes_are_errors_unless_quarantined(outcome: Outcome) -> None:
    (line,) = annotations(finals_of(rec("t.py::a", outcome)), {})
    assert line.startswith("::error ")
    assert f"title=mtest%3A {outcome.value} t.py" in line
    (quarantined,) = annotations(finals_of(rec("t.py::a", outcome, quarantined=True)), {})
    assert quarantined.startswith("::warning ")
    assert f"title=mtest%3A {outcome.value} (quarantined) t.py" in quarantined


def test_flaky_is_a_warning_with_a_default_message() -> None:
    (line,) = annotations(
        finals_of(rec("t.py::f", Outcome.FLAKY, attempt=2, bundle="failures/f.txt")), {}
    )
    assert line == (
        "::warning file=t.py,title=mtest%3A flaky t.py%3A%3Af"
        "::failed, then passed on attempt 2%0Abundle: failures/f.txt"
    )


@pytest.mark.parametrize(
    "outcome", [Outcome.PASSED, Outcome.SKIPPED, Outcome.XFAILED, Outcome.XPASSED]
)
@pytest.mark.parametrize("quarantined", [False, True])
def test_non_failing_outcomes_get_no_annotation(outcome: Outcome, quarantined: bool) -> None:
    assert annotations(finals_of(rec("t.py::p", outcome, quarantined=quarantined)), {}) == []


def test_annotations_are_errors_then_warnings_each_by_test_id() -> None:
    finals = finals_of(
        rec("tests/z.py::t", Outcome.FAILED),
        rec("tests/a.py::t", Outcome.FLAKY),
        rec("tests/m.py::t", Outcome.CRASHED),
        rec("tests/b.py::t", Outcome.PASSED),
    )
    files = [line.split("file=", 1)[1].split(",", 1)[0] for line in annotations(finals, {})]
    assert files == ["tests/m.py", "tests/z.py", "tests/a.py"]


def test_weird_id_is_escaped_in_file_and_title() -> None:
    tid = "tests/a,b:c.py::test_[x,y:%z]"
    (line,) = annotations(finals_of(rec(tid, Outcome.ERROR, message="m")), {})
    assert line == (
        "::error file=tests/a%2Cb%3Ac.py,"
        "title=mtest%3A error tests/a%2Cb%3Ac.py%3A%3Atest_[x%2Cy%3A%25z]::m"
    )


@settings(max_examples=100, deadline=None)
@given(
    test_id=st.text(st.characters(exclude_categories=()), max_size=40),
    message=st.text(st.characters(exclude_categories=()), min_size=1, max_size=40),
)
def test_annotation_is_one_line_and_unescapes_to_the_message(test_id: str, message: str) -> None:
    (line,) = annotations(finals_of(rec(test_id, Outcome.FAILED, message=message)), {})
    assert "\n" not in line and "\r" not in line
    line.encode("utf-8")
    head, _, data = line.partition(" ")[2].partition("::")
    assert head.count(",") == 1  # file=…,title=…: values cannot split the properties
    assert unescape(data) == console_text(message)


def test_append_step_summary_creates_then_appends(tmp_path: Path) -> None:
    summary = tmp_path / "step_summary.md"
    append_step_summary(summary, "# mtest\n\n| a | b |")
    append_step_summary(summary, "second ünïcode")
    assert summary.read_text(encoding="utf-8") == "# mtest\n\n| a | b |\nsecond ünïcode\n"


def test_only_the_first_failures_are_annotated_and_a_notice_counts_the_rest() -> None:
    failing = [rec(f"tests/t.py::test_{n:02d}", Outcome.FAILED) for n in range(14)]
    lines = annotations(finals_of(*failing, rec("tests/a.py::t", Outcome.FLAKY)), {})
    assert len(lines) == MAX_ANNOTATIONS + 1
    assert all(line.startswith("::error ") for line in lines[:MAX_ANNOTATIONS])
    assert "test_09" in lines[MAX_ANNOTATIONS - 1]
    assert lines[-1] == "::notice title=mtest::… and 5 more failure(s): see the step summary"


def test_exactly_the_limit_needs_no_notice() -> None:
    failing = [rec(f"tests/t.py::test_{n:02d}", Outcome.FAILED) for n in range(MAX_ANNOTATIONS)]
    assert not any(line.startswith("::notice") for line in annotations(finals_of(*failing), {}))


def test_the_annotation_carries_the_end_of_the_traceback() -> None:
    record = rec(
        "tests/a.py::t", Outcome.FAILED, message="AssertionError: 1", bundle="failures/a.txt"
    )
    trace = "def t():\n>   assert 0\nE   AssertionError: 1"
    (line,) = annotations(finals_of(record), {}, {"failures/a.txt": trace})
    data = unescape(line.partition(" ")[2].partition("::")[2])
    assert data == f"AssertionError: 1\n{trace}\nbundle: failures/a.txt"


def test_terminal_controls_from_a_test_are_shown_not_sent() -> None:
    record = rec("tests/a.py::t\x1b[2J", Outcome.FAILED, message="\x1b]0;title\x07 \ud800")
    (line,) = annotations(finals_of(record), {}, {})
    assert "\x1b" not in line and "\x07" not in line
    line.encode("utf-8")
    assert "\\x1b]0;title\\x07 \\ud800" in line
    assert "title=mtest%3A failed tests/a.py%3A%3At\\x1b[2J" in line
