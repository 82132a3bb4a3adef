"""Unit and property tests for the probe's pure parts (``supervisor.probeio``): outcomes, capping.

``outcome_of`` decides a test's one outcome from its phase reports
``(when, outcome, wasxfail)``; the table below is the spec's outcome table as
pytest reports each case.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.probeio import MESSAGE_CHARS, cap_text, first_line, outcome_of

Phase = tuple[str, str, bool]

OK_SETUP: Phase = ("setup", "passed", False)
OK_CALL: Phase = ("call", "passed", False)
OK_TEARDOWN: Phase = ("teardown", "passed", False)
ALLOWED = {"passed", "failed", "error", "skipped", "xfailed", "xpassed"}


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        pytest.param([OK_SETUP, OK_CALL, OK_TEARDOWN], ("passed", 1), id="all-clean"),
        pytest.param([("setup", "failed", False), OK_TEARDOWN], ("error", 0), id="setup-failed"),
        pytest.param(
            [OK_SETUP, ("call", "failed", False), OK_TEARDOWN], ("failed", 1), id="call-failed"
        ),
        pytest.param(
            [OK_SETUP, ("call", "failed", False), ("teardown", "failed", False)],
            ("failed", 1),
            id="call-failed-beats-teardown-error",
        ),
        pytest.param(
            [OK_SETUP, OK_CALL, ("teardown", "failed", False)],
            ("error", 2),
            id="teardown-failed-alone",
        ),
        pytest.param(
            [OK_SETUP, ("call", "skipped", True), OK_TEARDOWN], ("xfailed", 1), id="xfail-happened"
        ),
        pytest.param(
            [OK_SETUP, ("call", "passed", True), OK_TEARDOWN], ("xpassed", 1), id="xfail-passed"
        ),
        pytest.param(
            [OK_SETUP, ("call", "skipped", False), OK_TEARDOWN],
            ("skipped", 1),
            id="skip-inside-body",
        ),
        pytest.param([("setup", "skipped", False), OK_TEARDOWN], ("skipped", 0), id="skip-marker"),
        pytest.param(
            [("setup", "skipped", True), OK_TEARDOWN], ("xfailed", 0), id="xfail-run-false"
        ),
        pytest.param(
            [OK_SETUP, ("call", "skipped", True), ("teardown", "failed", False)],
            ("error", 2),
            id="xfailed-then-teardown-error",
        ),
        pytest.param(
            [OK_SETUP, ("call", "passed", True), ("teardown", "failed", False)],
            ("error", 2),
            id="xpassed-then-teardown-error",
        ),
        pytest.param([], ("error", -1), id="no-phases-is-never-success"),
    ],
)
def test_outcome_table(phases: list[Phase], expected: tuple[str, int]) -> None:
    assert outcome_of(phases) == expected


def test_teardown_skip_does_not_hide_a_passed_call() -> None:
    assert outcome_of([OK_SETUP, OK_CALL, ("teardown", "skipped", False)]) == ("passed", 1)


phase_lists = st.lists(
    st.tuples(
        st.sampled_from(["setup", "call", "teardown", ""]),
        st.sampled_from(["passed", "failed", "skipped"]),
        st.booleans(),
    ),
    max_size=6,
)


@st.composite
def pytest_phases(draw: st.DrawFn) -> list[Phase]:
    """Phase reports in the shape pytest produces: setup, a call only after a
    clean setup, and a teardown."""
    outcomes = st.sampled_from(["passed", "failed", "skipped"])
    xfail = draw(st.booleans())
    setup = draw(outcomes)
    phases: list[Phase] = [("setup", setup, xfail and setup == "skipped")]
    if setup == "passed":
        call = draw(outcomes)
        phases.append(("call", call, xfail and call != "failed"))
    phases.append(("teardown", draw(st.sampled_from(["passed", "failed"])), False))
    return phases


@settings(max_examples=300, deadline=None)
@given(phases=phase_lists)
def test_outcome_is_always_one_allowed_name_with_a_valid_index(phases: list[Phase]) -> None:
    outcome, index = outcome_of(phases)
    assert outcome in ALLOWED
    assert -1 <= index < len(phases)
    if outcome in ("failed", "error") and phases:
        assert phases[index][1] == "failed"


@settings(max_examples=300, deadline=None)
@given(phases=phase_lists)
def test_the_first_failed_phase_decides(phases: list[Phase]) -> None:
    failed = [i for i, (_, outcome, _) in enumerate(phases) if outcome == "failed"]
    if not failed:
        outcome, _ = outcome_of(phases)
        assert outcome != "failed"
        assert (outcome == "error") == (not phases)
        return
    first = failed[0]
    expected = "failed" if phases[first][0] == "call" else "error"
    assert outcome_of(phases) == (expected, first)


@settings(max_examples=200, deadline=None)
@given(phases=pytest_phases())
def test_a_failed_call_is_always_failed(phases: list[Phase]) -> None:
    outcome, index = outcome_of(phases)
    call_failed = any(when == "call" and result == "failed" for when, result, _ in phases)
    assert (outcome == "failed") == call_failed
    if call_failed:
        assert phases[index][0] == "call"


@settings(max_examples=200, deadline=None)
@given(phases=pytest_phases())
def test_a_failed_setup_or_teardown_without_a_failed_call_is_an_error(
    phases: list[Phase],
) -> None:
    call_failed = any(when == "call" and result == "failed" for when, result, _ in phases)
    other_failed = any(when != "call" and result == "failed" for when, result, _ in phases)
    if other_failed and not call_failed:
        assert outcome_of(phases)[0] == "error"


# -- cap_text ------------------------------------------------------------------

_CUT = re.compile(r"\n\[\.\.\. mtest cut (\d+) characters \.\.\.\]\n")


def test_cap_text_leaves_text_within_the_limit_alone() -> None:
    assert cap_text("abcdef", limit=6) == "abcdef"
    assert cap_text("", limit=4) == ""


def test_cap_text_keeps_head_and_tail_and_says_how_much_was_cut() -> None:
    text = "H" * 50 + "M" * 900 + "T" * 50
    capped = cap_text(text, limit=100)
    head, cut, tail = _CUT.split(capped)
    assert head == "H" * 50
    assert tail == "T" * 50
    assert int(cut) == 900


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300), limit=st.integers(min_value=2, max_value=200))
def test_cap_text_keeps_at_most_limit_characters_and_accounts_for_the_rest(
    text: str, limit: int
) -> None:
    capped = cap_text(text, limit)
    if len(text) <= limit:
        assert capped == text
        return
    match = _CUT.match(capped, limit // 2)
    assert match is not None
    head, tail = capped[: match.start()], capped[match.end() :]
    assert text.startswith(head)
    assert text.endswith(tail)
    assert len(head) + len(tail) <= limit
    assert len(head) + int(match.group(1)) + len(tail) == len(text)


def test_cap_text_with_a_tiny_limit_still_cuts() -> None:
    capped = cap_text("abcdef", limit=1)
    assert "abcdef" not in capped


# -- first_line ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("\n  \n\t\n", ""),
        ("AssertionError: boom", "AssertionError: boom"),
        ("\n\n   first  \nsecond\n", "first"),
        ("  \n  indented line\n", "indented line"),
    ],
)
def test_first_line_is_the_first_non_blank_line_stripped(text: str, expected: str) -> None:
    assert first_line(text) == expected


def test_first_line_is_capped() -> None:
    line = first_line("x" * (MESSAGE_CHARS * 3) + "\nmore")
    assert line == "x" * MESSAGE_CHARS
