"""``order_dependent`` wherever outcomes are reported: summary, exit code, JUnit,
GitHub annotations, metrics, the quarantine, the bundle and the recorder."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

from supervisor import bundle, github, junit, quarantine, report
from supervisor.console import Console
from supervisor.model import Fingerprint, Outcome, TestRecord, TestResult
from supervisor.record import Context, Recorder
from supervisor.store import Store

PREDS = ("t.py::test_a", "t.py::test_x")


def od(*, quarantined: bool = False, attempt: int = 2) -> TestRecord:
    return TestRecord(
        run_id="r", test_id="t.py::test_b", outcome=Outcome.ORDER_DEPENDENT, duration_s=0.5,
        tier=1, attempt=attempt, quarantined=quarantined, message="fails after t.py::test_a",
        bundle="failures/b.txt", predecessors=PREDS, polluter="t.py::test_a",
    )  # fmt: skip


def test_it_gates_the_run_unless_quarantined() -> None:
    facts = report.RunFacts(run_id="r", elapsed_s=1.0)
    assert report.exit_code({"b": od()}, interrupted=False, selected=1) == report.EXIT_FAILED
    assert report.exit_code({"b": od(quarantined=True)}, interrupted=False, selected=1) == 0
    passed = TestRecord(run_id="r", test_id="a", outcome=Outcome.PASSED, duration_s=0, tier=1)
    line = report.summary_line({"b": od(), "a": passed}, facts)
    assert line.startswith("1 order_dependent, 1 passed")
    assert report.is_problem(od())
    summary = report.summary_markdown({"b": od()}, facts, 1, [od()])
    assert "order_dependent" in summary and r"fails after t.py::test\_a" in summary


def test_junit_reports_it_as_a_failure() -> None:
    first = TestRecord(
        run_id="r", test_id="t.py::test_b", outcome=Outcome.FAILED, duration_s=0.1, tier=1
    )
    root = ET.fromstring(junit.junit_xml([first, od()], {}).split("\n", 1)[1])
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    failure = root.find(".//testcase/failure")
    assert failure is not None and failure.get("type") == "order_dependent"


def test_github_annotates_it_as_an_error() -> None:
    lines = github.annotations({"t.py::test_b": od()}, {}, {})
    assert len(lines) == 1 and lines[0].startswith("::error ")
    assert "order_dependent" in lines[0]


def test_it_counts_as_a_failure_for_the_quarantine() -> None:
    assert Outcome.ORDER_DEPENDENT in quarantine.FAILING_OUTCOMES


def test_the_bundle_has_the_order_section_and_reproduces_the_pair() -> None:
    result = TestResult(
        test_id="t.py::test_b", outcome=Outcome.ORDER_DEPENDENT, duration_s=0.5,
        longrepr="AssertionError: polluted", predecessors=PREDS, polluter="t.py::test_a",
    )  # fmt: skip
    repro = bundle.repro_command("t.py::test_b", "python", (), "/p", before=("t.py::test_a",))
    text = bundle.bundle_text(result, od(), repro=repro, fingerprint=Fingerprint())
    sections = bundle.sections(text)
    assert sections[bundle.ORDER].startswith("polluter: t.py::test_a\n")
    assert "  t.py::test_x" in sections[bundle.ORDER]
    assert "python -m pytest t.py::test_a t.py::test_b" in text
    assert bundle.diagnosis(text) == "AssertionError: polluted"


def test_the_recorder_keeps_predecessors_only_on_an_order_dependent_record(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / ".gates", lambda line: None)
    store.begin_run(fresh=True)
    context = Context(
        run_id="r", tiers={}, items={}, quarantined=frozenset(), fingerprint=Fingerprint(),
        python="python", pytest_args=(), cwd=str(tmp_path),
    )  # fmt: skip
    console = Console(io.StringIO(), verbosity=0, tty=False, color=False)
    recorder = Recorder(store=store, console=console, context=context)
    failing = TestResult(
        test_id="t.py::test_b", outcome=Outcome.FAILED, duration_s=0.1, predecessors=PREDS
    )
    recorder(failing)
    moved = TestResult(
        test_id="t.py::test_b", outcome=Outcome.ORDER_DEPENDENT, duration_s=0.2,
        predecessors=PREDS, polluter="t.py::test_a",
    )  # fmt: skip
    recorder(moved)
    store.close_log()
    first, second = store.read_records()
    assert first.outcome is Outcome.FAILED and first.predecessors == ()
    assert second.outcome is Outcome.ORDER_DEPENDENT and second.attempt == 2
    assert second.predecessors == PREDS and second.polluter == "t.py::test_a"
    assert second.bundle is not None and second.bundle.endswith("_a2.txt")
    text = (tmp_path / ".gates" / "last-run" / second.bundle).read_text(encoding="utf-8")
    assert "t.py::test_a t.py::test_b" in text
