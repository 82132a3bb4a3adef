"""Tests for supervisor.junit: the merged JUnit XML, read back by a real consumer."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from junitparser import JUnitXml, xunit2

from supervisor.junit import XML_DECLARATION, clean, junit_xml, write_junit
from supervisor.model import Outcome, TestItem, TestRecord


def rec(
    test_id: str,
    outcome: Outcome,
    *,
    attempt: int = 1,
    duration_s: float = 0.25,
    message: str = "",
    bundle: str | None = None,
    quarantined: bool = False,
) -> TestRecord:
    return TestRecord(
        run_id="r1",
        test_id=test_id,
        outcome=outcome,
        duration_s=duration_s,
        tier=1,
        attempt=attempt,
        quarantined=quarantined,
        message=message,
        bundle=bundle,
    )


def pytest_mangling(test_id: str) -> tuple[str, str]:
    """pytest's junitxml (classname, name) for a node id, written out independently."""
    path, bracket, params = test_id.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def mixed_records() -> list[TestRecord]:
    """Every outcome, plus retries that end flaky, failing and erroring."""
    f = "tests/test_m.py::"
    return [
        rec(f + "test_pass", Outcome.PASSED),
        rec(f + "test_fail", Outcome.FAILED, message="AssertionError: no", bundle="failures/a.txt"),
        rec(f + "test_error", Outcome.ERROR, message="fixture broke", bundle="failures/b.txt"),
        rec(f + "test_skip", Outcome.SKIPPED, message="not today"),
        rec(f + "test_xfail", Outcome.XFAILED, message="known bug"),
        rec(f + "test_xpass", Outcome.XPASSED),
        rec(
            f + "test_hang",
            Outcome.HUNG,
            message="exceeded the 1s timeout",
            bundle="failures/c.txt",
        ),
        rec(
            f + "test_crash", Outcome.CRASHED, message="killed by SIGSEGV", bundle="failures/d.txt"
        ),
        rec(f + "test_flaky", Outcome.FAILED, message="first try", bundle="failures/e1.txt"),
        rec(f + "test_retry", Outcome.HUNG, message="hung once", bundle="failures/f1.txt"),
        rec(f + "test_quar", Outcome.FAILED, message="known flaky", quarantined=True),
        rec(f + "test_flaky", Outcome.CRASHED, attempt=2, message="second try"),
        rec(f + "test_flaky", Outcome.FLAKY, attempt=3, duration_s=0.5, bundle="failures/e3.txt"),
        rec(f + "test_retry", Outcome.ERROR, attempt=2, message="setup broke"),
        rec(f + "test_retry", Outcome.FAILED, attempt=3, message="still failing", duration_s=1.5),
    ]


def parsed(records: list[TestRecord], items: dict[str, TestItem] | None = None) -> ET.Element:
    return ET.fromstring(junit_xml(records, items or {}))


def case_of(root: ET.Element, name: str) -> ET.Element:
    (case,) = [c for c in root.iter("testcase") if c.get("name") == name]
    return case


def props(case: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


def test_junitparser_counts_equal_what_the_records_say() -> None:
    xml: Any = JUnitXml.fromstring(junit_xml(mixed_records(), {}))
    (suite,) = list(xml)
    expected = {"tests": 11, "failures": 5, "errors": 1, "skipped": 2}
    declared = {k: getattr(suite, k) for k in expected}
    declared_root = {k: getattr(xml, k) for k in expected}
    xml.update_statistics()  # junitparser recounts from the testcases themselves
    recounted = {k: getattr(suite, k) for k in expected}
    assert declared == declared_root == recounted == expected
    assert suite.time == pytest.approx(sum(case.time for case in suite))


def test_junitparser_sees_each_outcome() -> None:
    xml: Any = JUnitXml.fromstring(junit_xml(mixed_records(), {}))
    cases = {case.name: case for suite in xml for case in suite}
    assert cases["test_pass"].is_passed and cases["test_xpass"].is_passed
    assert cases["test_flaky"].is_passed
    for name in ("test_fail", "test_hang", "test_crash", "test_quar", "test_retry"):
        assert cases[name].is_failure, name
    assert cases["test_error"].is_error
    assert cases["test_skip"].is_skipped and cases["test_xfail"].is_skipped


def test_one_testcase_per_test_in_first_seen_order() -> None:
    names = [c.get("name") for c in parsed(mixed_records()).iter("testcase")]
    assert names == [
        "test_pass", "test_fail", "test_error", "test_skip", "test_xfail", "test_xpass",
        "test_hang", "test_crash", "test_flaky", "test_retry", "test_quar",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "tag", "type_"),
    [
        ("test_fail", "failure", "failed"),
        ("test_error", "error", "error"),
        ("test_hang", "failure", "hung"),
        ("test_crash", "failure", "crashed"),
        ("test_skip", "skipped", "pytest.skip"),
        ("test_xfail", "skipped", "pytest.xfail"),
    ],
)
def test_final_outcome_maps_to_one_result_element(name: str, tag: str, type_: str) -> None:
    case = case_of(parsed(mixed_records()), name)
    results = [c for c in case if c.tag in {"failure", "error", "skipped"}]
    assert [(r.tag, r.get("type")) for r in results] == [(tag, type_)]


def test_result_element_carries_message_and_bundle() -> None:
    case = case_of(parsed(mixed_records()), "test_fail")
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == "AssertionError: no"
    assert failure.text == "AssertionError: no\nbundle: failures/a.txt"
    skipped = case_of(parsed(mixed_records()), "test_xfail").find("skipped")
    assert skipped is not None and skipped.get("message") == "known bug"


def test_missing_message_falls_back_to_outcome_and_bundle_alone() -> None:
    root = parsed([rec("t.py::x", Outcome.CRASHED, bundle="failures/x.txt")])
    failure = case_of(root, "x").find("failure")
    assert failure is not None
    assert failure.get("message") == "crashed"
    assert failure.text == "bundle: failures/x.txt"


def test_passed_and_xpassed_have_no_result_and_only_xpassed_has_outcome_property() -> None:
    root = parsed(mixed_records())
    passed, xpassed = case_of(root, "test_pass"), case_of(root, "test_xpass")
    assert list(passed) == []
    assert [c.tag for c in xpassed] == ["properties"]
    assert props(xpassed) == {"mtest.outcome": "xpassed"}


def test_outcome_property_names_the_mtest_outcome() -> None:
    root = parsed(mixed_records())
    got = {c.get("name"): props(c).get("mtest.outcome") for c in root.iter("testcase")}
    assert got == {
        "test_pass": None,
        "test_fail": "failed",
        "test_error": "error",
        "test_skip": "skipped",
        "test_xfail": "xfailed",
        "test_xpass": "xpassed",
        "test_hang": "hung",
        "test_crash": "crashed",
        "test_flaky": "flaky",
        "test_retry": "failed",
        "test_quar": "failed",
    }


def test_flaky_is_a_passed_case_with_one_flaky_element_per_earlier_failure() -> None:
    xml: Any = xunit2.JUnitXml.fromstring(junit_xml(mixed_records(), {}))
    (case,) = [c for s in xml for c in s if c.name == "test_flaky"]
    assert case.is_passed and case.is_flaky and not case.is_rerun
    flaky = case.flaky_failures()
    assert [(f.type, f.message) for f in flaky] == [
        ("failed", "first try"),
        ("crashed", "second try"),
    ]
    assert flaky[0].stack_trace == "first try\nbundle: failures/e1.txt"
    assert case.time == pytest.approx(0.5)


def test_failing_retries_become_rerun_elements_after_the_failure() -> None:
    root = parsed(mixed_records())
    case = case_of(root, "test_retry")
    assert [c.tag for c in case] == ["properties", "failure", "rerunFailure", "rerunError"]
    assert [(c.get("type"), c.get("message")) for c in case][2:] == [
        ("hung", "hung once"),
        ("error", "setup broke"),
    ]
    failure = case.find("failure")
    assert failure is not None and failure.get("message") == "still failing"
    assert case.get("time") == "1.500"
    xml: Any = xunit2.JUnitXml.fromstring(junit_xml(mixed_records(), {}))
    (parsed_case,) = [c for s in xml for c in s if c.name == "test_retry"]
    assert parsed_case.is_rerun and len(parsed_case.interim_result) == 2


def test_quarantined_failure_stays_a_failure_with_a_property() -> None:
    case = case_of(parsed(mixed_records()), "test_quar")
    assert case.find("failure") is not None
    assert props(case) == {"mtest.outcome": "failed", "mtest.quarantined": "true"}


def test_quarantined_pass_has_only_the_quarantine_property() -> None:
    case = case_of(parsed([rec("t.py::q", Outcome.PASSED, quarantined=True)]), "q")
    assert props(case) == {"mtest.quarantined": "true"}
    assert case.find("failure") is None


def test_file_line_and_time_attributes() -> None:
    tid = "tests/sub/test_f.py::TestC::test_m[1]"
    items = {tid: TestItem(test_id=tid, file="tests/sub/test_f.py", line=42)}
    case = case_of(parsed([rec(tid, Outcome.PASSED, duration_s=1.23456)], items), "test_m[1]")
    assert case.attrib == {
        "classname": "tests.sub.test_f.TestC",
        "name": "test_m[1]",
        "file": "tests/sub/test_f.py",
        "line": "42",
        "time": "1.235",
    }


def test_line_is_omitted_when_unknown() -> None:
    tid = "tests/test_f.py::test_m"
    items = {tid: TestItem(test_id=tid, file="tests/test_f.py", line=None)}
    assert "line" not in case_of(parsed([rec(tid, Outcome.PASSED)], items), "test_m").attrib
    assert "line" not in case_of(parsed([rec(tid, Outcome.PASSED)]), "test_m").attrib


def test_empty_run_is_an_empty_suite() -> None:
    xml: Any = JUnitXml.fromstring(junit_xml([], {}, suite_name="shard 1/2"))
    (suite,) = list(xml)
    assert (suite.name, suite.tests, suite.failures, len(list(suite))) == ("shard 1/2", 0, 0, 0)


WEIRD_IDS = [
    "tests/a/test_x.py::TestK::test_y[a::b]",
    "tests/a/test_x.py::test_y[a[1]]",
    "tests/test_q.py::test_q['x\"y']",
    "tests/test_q.py::test_q[<a & b>]",
    "tests/тест_ü.py::Класс::тест[日本]",
    "tests/test_long.py::test_" + "x" * 300,
    "tests/test_long.py::test_p[" + "a:b/c.py-" * 40 + "]",
    "tests/test_py.py::test_in_dir.py/x",
    "test_top.py",
    "tests/test_ctl.py::test_c[\x1b[0m\x00\x07]",
]


@pytest.mark.parametrize("test_id", WEIRD_IDS)
def test_weird_ids_round_trip_to_pytest_mangling(test_id: str) -> None:
    xml: Any = JUnitXml.fromstring(junit_xml([rec(test_id, Outcome.FAILED)], {}))
    (case,) = [c for s in xml for c in s]
    classname, name = pytest_mangling(test_id)
    assert (case.classname, case.name) == (clean(classname), clean(name))
    assert case._elem.get("file") == clean(test_id.split("::", 1)[0])


@pytest.mark.parametrize("test_id", [t for t in WEIRD_IDS if clean(t) == t])
def test_reference_mangling_agrees_with_pytest(test_id: str) -> None:
    from _pytest.junitxml import mangle_test_address

    names = mangle_test_address(test_id)
    assert pytest_mangling(test_id) == (".".join(names[:-1]), names[-1])


def test_characters_xml_forbids_are_shown_as_escapes_everywhere() -> None:
    record = rec(
        "t.py::x\x01\udce9\ufffe",
        Outcome.FAILED,
        message="a\x00b\x1b[31mc\td\ne",
        bundle="f\x02.txt",
    )
    text = junit_xml([record], {}, suite_name="s\x0b")
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe]", text)
    text.encode("utf-8")  # no lone surrogate left to refuse encoding
    assert case_of(ET.fromstring(text), "x\\x01\\udce9\\ufffe") is not None
    failure = ET.fromstring(text).find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message") == "a\\x00b\\x1b[31mc\td\ne"
    assert failure.text == "a\\x00b\\x1b[31mc\td\ne\nbundle: f\\x02.txt"


def test_the_failure_body_holds_the_diagnosis_between_message_and_bundle() -> None:
    record = rec("t.py::x", Outcome.FAILED, message="AssertionError: 1", bundle="failures/x.txt")
    diagnosis = "def test_x():\n>   assert 0\nE   AssertionError: 1"
    text = junit_xml([record], {}, diagnoses={"failures/x.txt": diagnosis})
    failure = ET.fromstring(text).find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.text == f"AssertionError: 1\n{diagnosis}\nbundle: failures/x.txt"


def test_an_earlier_attempt_carries_its_own_diagnosis() -> None:
    first = rec("t.py::x", Outcome.FAILED, message="boom", bundle="failures/x.txt")
    second = rec("t.py::x", Outcome.PASSED, attempt=2)
    text = junit_xml([first, second], {}, diagnoses={"failures/x.txt": "E   boom"})
    trace = ET.fromstring(text).find("testsuite/testcase/flakyFailure/stackTrace")
    assert trace is not None
    assert trace.text == "boom\nE   boom\nbundle: failures/x.txt"


@settings(max_examples=300, deadline=None)
@given(
    test_id=st.text(st.characters(exclude_categories=()), min_size=1),
    message=st.text(st.characters(exclude_categories=())),
    diagnosis=st.text(st.characters(exclude_categories=())),
)
def test_any_text_gives_a_document_that_parses(test_id: str, message: str, diagnosis: str) -> None:
    record = rec(test_id, Outcome.ERROR, message=message, bundle="failures/b.txt")
    text = junit_xml([record], {}, diagnoses={"failures/b.txt": diagnosis})
    root = ET.fromstring(text.encode("utf-8"))
    assert len(root.findall("testsuite/testcase/error")) == 1


def test_write_junit_is_utf8_with_declaration_and_atomic(tmp_path: Path) -> None:
    target = tmp_path / "out" / "deep" / "junit.xml"
    write_junit(target, [rec("tests/ü.py::t", Outcome.PASSED)], {})
    write_junit(target, mixed_records(), {})  # replaces the first file
    data = target.read_bytes()
    assert data.startswith(XML_DECLARATION.encode())
    assert data.decode("utf-8") == junit_xml(mixed_records(), {})
    assert [p.name for p in target.parent.iterdir()] == ["junit.xml"]
    xml: Any = JUnitXml.fromfile(str(target))
    assert xml.tests == 11


any_text = st.text(st.characters(exclude_categories=()), max_size=40)


@settings(max_examples=100, deadline=None)
@given(
    ids=st.lists(any_text, min_size=1, max_size=6),
    messages=st.lists(any_text, min_size=1, max_size=6),
    outcomes=st.lists(st.sampled_from(Outcome), min_size=1, max_size=6),
    suite_name=any_text,
    bundle=st.none() | any_text,
)
def test_always_parseable_xml(
    ids: list[str],
    messages: list[str],
    outcomes: list[Outcome],
    suite_name: str,
    bundle: str | None,
) -> None:
    records = [
        rec(tid, outcomes[i % len(outcomes)], message=messages[i % len(messages)], bundle=bundle)
        for i, tid in enumerate(ids)
    ]
    root = ET.fromstring(junit_xml(records, {}, suite_name=suite_name))
    cases = list(root.iter("testcase"))
    assert len(cases) == len(dict.fromkeys(ids))
    finals = {r.test_id: r for r in records}
    for case, test_id in zip(cases, dict.fromkeys(ids), strict=True):
        classname, name = pytest_mangling(test_id)
        assert (case.get("classname"), case.get("name")) == (clean(classname), clean(name))
        failure = case.find("failure")
        if failure is not None and clean(finals[test_id].message):
            assert failure.get("message") == clean(finals[test_id].message)


def test_the_runs_coverage_is_a_property_of_the_testsuite(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(path, mixed_records(), {}, properties={"coverage": "87.54"})
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    listed = suite.find("properties")
    assert listed is not None and suite[0] is listed  # before the testcases
    assert [(p.get("name"), p.get("value")) for p in listed] == [("coverage", "87.54")]
    parsed_suite: Any = next(iter(JUnitXml.fromfile(str(path))))
    assert {p.name: p.value for p in parsed_suite.properties()} == {"coverage": "87.54"}
    assert ET.fromstring(junit_xml(mixed_records(), {})).find("testsuite/properties") is None
