"""Unit tests for ``supervisor.progress``: when gating failures stop a run."""

from __future__ import annotations

import pytest

from supervisor.drive import Stop
from supervisor.model import Outcome, TestRecord
from supervisor.progress import StopRule, escalate


def rec(outcome: Outcome, *, quarantined: bool = False) -> TestRecord:
    return TestRecord(
        run_id="r", test_id="t.py::x", outcome=outcome, duration_s=0.1, tier=1,
        quarantined=quarantined,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("outcome", "gates"),
    [
        (Outcome.FAILED, True),
        (Outcome.ERROR, True),
        (Outcome.HUNG, True),
        (Outcome.CRASHED, True),
        (Outcome.PASSED, False),
        (Outcome.SKIPPED, False),
        (Outcome.XFAILED, False),
        (Outcome.XPASSED, False),
        (Outcome.FLAKY, False),
    ],
)
def test_what_counts_as_a_failure(outcome: Outcome, gates: bool) -> None:
    assert StopRule().gates(rec(outcome)) is gates
    assert StopRule().gates(rec(outcome, quarantined=True)) is False


def test_flaky_counts_with_flaky_result_fail_even_when_quarantined() -> None:
    rule = StopRule(flaky_fails=True)
    assert rule.gates(rec(Outcome.FLAKY))
    assert rule.gates(rec(Outcome.FLAKY, quarantined=True))
    assert not rule.gates(rec(Outcome.PASSED))


@pytest.mark.parametrize(
    ("rule", "failures", "stop"),
    [
        (StopRule(), 0, None),
        (StopRule(), 50, None),
        (StopRule(fail_fast=True), 0, None),
        (StopRule(fail_fast=True), 1, Stop.DRAIN),
        (StopRule(maxfail=1), 0, None),
        (StopRule(maxfail=1), 1, Stop.AFTER_TEST),
        (StopRule(maxfail=3), 2, None),
        (StopRule(maxfail=3), 3, Stop.AFTER_TEST),
        (StopRule(maxfail=3), 4, Stop.AFTER_TEST),
        (StopRule(maxfail=3, fail_fast=True), 1, Stop.DRAIN),
        (StopRule(maxfail=3, fail_fast=True), 3, Stop.AFTER_TEST),
    ],
)
def test_the_stop_after_n_failures(rule: StopRule, failures: int, stop: Stop | None) -> None:
    assert rule.after(failures) is stop


@pytest.mark.parametrize(
    ("current", "wanted", "result"),
    [
        (None, None, None),
        (None, Stop.DRAIN, Stop.DRAIN),
        (Stop.DRAIN, Stop.AFTER_TEST, Stop.AFTER_TEST),
        (Stop.AFTER_TEST, Stop.DRAIN, Stop.AFTER_TEST),
        (Stop.HALT, Stop.AFTER_TEST, Stop.HALT),
        (Stop.HALT, None, Stop.HALT),
    ],
)
def test_a_stop_is_never_softened(current: Stop | None, wanted: Stop | None, result: Stop) -> None:
    assert escalate(current, wanted) is result
