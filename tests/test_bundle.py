"""Unit and property tests for ``supervisor.bundle``: safe unique names, capping, repro, text."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.bundle import (
    DIAGNOSIS_CHARS,
    DIAGNOSIS_LINES,
    HASH_CHARS,
    NAME_CHARS,
    STREAM_CAP,
    bundle_name,
    bundle_text,
    cap,
    diagnosis,
    read_diagnoses,
    repro_command,
    sections,
)
from supervisor.model import Fingerprint, Outcome, TestRecord, TestResult
from supervisor.probe import cap_text

SAFE = re.compile(r"[A-Za-z0-9._-]+")

any_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters()),
    st.text(alphabet=st.characters(categories=["Cs"]), min_size=1),
    st.lists(st.sampled_from(["/", "..", ".", "::", "'", '"', "\x00", "\\", "[", "-", "a"])).map(
        "".join
    ),
    st.text(min_size=NAME_CHARS, max_size=NAME_CHARS * 4),
)


def max_name_len(attempt: int) -> int:
    suffix = len(f"_a{attempt}") if attempt > 1 else 0
    return NAME_CHARS + 1 + HASH_CHARS + suffix + len(".txt")


def assert_safe(name: str, attempt: int) -> None:
    assert SAFE.fullmatch(name), name
    assert len(name) <= max_name_len(attempt)
    assert name not in (".", "..")
    assert os.sep not in name and "/" not in name
    assert name.endswith(".txt")
    assert PurePosixPath("failures", name).parent == PurePosixPath("failures")


# -- bundle_name ---------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(test_id=any_text, attempt=st.integers(min_value=1, max_value=1000))
def test_bundle_name_is_always_a_safe_short_file_name(test_id: str, attempt: int) -> None:
    assert_safe(bundle_name(test_id, attempt), attempt)


@settings(max_examples=100, deadline=None)
@given(ids=st.lists(any_text, min_size=2, max_size=25, unique=True))
def test_distinct_ids_get_distinct_names(ids: list[str]) -> None:
    names = [bundle_name(test_id) for test_id in ids]
    assert len(set(names)) == len(ids)


@settings(max_examples=200, deadline=None)
@given(a=any_text, b=any_text)
def test_two_ids_share_a_name_only_when_equal(a: str, b: str) -> None:
    assert (bundle_name(a) == bundle_name(b)) == (a == b)


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param(["a/b", "a_b", "a:b", "a b", "a//b", "a::b", "_a_b_", "a\x00b", "a\\b"],
                     id="separators"),
        pytest.param(["..", ".", "", "/", "::", "-", "_", "._-"], id="nothing-readable"),
        pytest.param(["x" * 200 + "1", "x" * 200 + "2", "x" * NAME_CHARS], id="long-tails"),
        pytest.param(["\ud800", "\udc00", "\ud83d\ude00", "\U0001f600", "é", "e\u0301"],
                     id="surrogates-and-unicode"),
        pytest.param(["t.py::test[a-b]", "t.py::test[a_b]", "t.py::test[a b]"], id="params"),
    ],
)  # fmt: skip
def test_near_collisions_stay_distinct(ids: list[str]) -> None:
    names = [bundle_name(test_id) for test_id in ids]
    assert len(set(names)) == len(ids)
    for name in names:
        assert_safe(name, 1)


def test_bundle_name_keeps_the_readable_part_of_an_ordinary_id() -> None:
    name = bundle_name("tests/test_x.py::test_y[a-b]")
    assert re.fullmatch(r"tests_test_x\.py_test_y_a-b_[0-9a-f]+\.txt", name)


def test_an_id_with_nothing_readable_still_gets_a_name() -> None:
    name = bundle_name("../../::")
    assert name.startswith("test_")
    assert_safe(name, 1)


def test_bundle_name_is_a_pure_function_of_id_and_attempt() -> None:
    assert bundle_name("t.py::a", 3) == bundle_name("t.py::a", 3)


def test_the_first_attempt_has_no_suffix_and_retries_are_distinct() -> None:
    test_id = "tests/test_x.py::test_flaky"
    first = bundle_name(test_id)
    assert bundle_name(test_id, 1) == first
    retries = [bundle_name(test_id, n) for n in range(2, 6)]
    assert [r.removesuffix(".txt").rsplit("_a", 1)[1] for r in retries] == ["2", "3", "4", "5"]
    assert all(r.startswith(first.removesuffix(".txt")) for r in retries)
    assert len({first, *retries}) == 5


# -- cap -----------------------------------------------------------------------

_CUT = re.compile(r"\n\[\.\.\. mtest cut (\d+) characters \.\.\.\]\n")
plain_text = st.text(alphabet=st.characters(exclude_characters="["), max_size=300)
"""Output that holds no cut marker of its own."""


def split_capped(capped: str, limit: int) -> tuple[str, int, str]:
    """(head, the count the marker states, tail) of ``cap``'s output."""
    match = _CUT.match(capped, limit // 2)
    assert match is not None, capped
    return capped[: match.start()], int(match.group(1)), capped[match.end() :]


def test_cap_leaves_short_text_alone() -> None:
    assert cap("hello", limit=5) == "hello"


def test_cap_keeps_head_and_tail_and_says_how_much_was_cut() -> None:
    capped = cap("a" * 10 + "b" * 80 + "c" * 10, limit=20)
    assert split_capped(capped, 20) == ("a" * 10, 80, "c" * 10)


def test_cap_default_limit_is_the_stream_cap() -> None:
    head, cut, tail = split_capped(cap("x" * (STREAM_CAP + 7)), STREAM_CAP)
    assert cut == 7
    assert len(head) + len(tail) == STREAM_CAP


@settings(max_examples=200, deadline=None)
@given(text=plain_text, limit=st.integers(min_value=2, max_value=200))
def test_cap_keeps_at_most_limit_characters_and_accounts_for_the_rest(
    text: str, limit: int
) -> None:
    capped = cap(text, limit)
    if len(text) <= limit:
        assert capped == text
        return
    head, cut, tail = split_capped(capped, limit)
    assert text.startswith(head) and text.endswith(tail)
    assert len(head) + len(tail) <= limit
    assert len(head) + cut + len(tail) == len(text)


def test_cap_adds_what_the_probe_already_cut() -> None:
    original = "h" * 100 + "m" * 800 + "t" * 100
    from_probe = cap_text(original, 200)
    head, cut, tail = split_capped(cap(from_probe, 100), 100)
    assert (head, tail) == ("h" * 50, "t" * 50)
    assert cut == len(original) - 100
    assert cap(from_probe, 100).count("mtest cut") == 1


@settings(max_examples=150, deadline=None)
@given(original=plain_text, limit=st.integers(min_value=2, max_value=120))
def test_probe_then_bundle_caps_account_for_the_original_output(original: str, limit: int) -> None:
    """The probe and the bundle cap at the same size (as they do): one marker, the true count."""
    twice = cap(cap_text(original, limit), limit)
    if len(original) <= limit:
        assert twice == original
        return
    head, cut, tail = split_capped(twice, limit)
    assert original.startswith(head) and original.endswith(tail)
    assert len(head) + cut + len(tail) == len(original)
    assert twice.count("mtest cut") == 1


def test_cap_with_a_tiny_limit_still_cuts() -> None:
    assert "abcdef" not in cap("abcdef", limit=1)


# -- repro_command ---------------------------------------------------------------

shell_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1
)


@settings(max_examples=200, deadline=None)
@given(test_id=shell_text, python=shell_text, cwd=shell_text)
def test_repro_command_quotes_every_word(test_id: str, python: str, cwd: str) -> None:
    command = repro_command(test_id, python, ("--tb=short", "-x"), cwd)
    assert shlex.split(command) == [
        "cd", cwd, "&&", python, "-m", "pytest", test_id, "--tb=short", "-x",
    ]  # fmt: skip


def test_repro_command_keeps_the_runs_options_verbatim() -> None:
    # The caller passes the run's pytest options only (what to collect is never
    # added), so every word is kept: dropping a value would change the option.
    options = ("-k", "not slow", "-p", "no:cacheprovider", "--tb=short")
    command = repro_command("tests/t.py::a", "python3", options, "/w")
    assert shlex.split(command) == ["cd", "/w", "&&", "python3", "-m", "pytest", "tests/t.py::a",
                                    *options]  # fmt: skip


def test_repro_command_runs_in_a_real_shell(tmp_path: Path) -> None:
    """The command runs as written: the right directory, the right argv, whatever the quoting."""
    workdir = tmp_path / "dir with 'quotes' and $HOME"
    workdir.mkdir()
    python = tmp_path / "fake python"
    python.write_text('#!/bin/sh\npwd\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    python.chmod(0o755)
    test_id = "tests/test_x.py::test_y[a b-'c'-$(echo no)-`x`]"
    command = repro_command(test_id, str(python), ("-x", "--tb=line"), str(workdir))
    out = subprocess.run(
        ["/bin/sh", "-c", command], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.splitlines() == [str(workdir), "-m", "pytest", test_id, "-x", "--tb=line"]


def test_repro_command_keeps_the_values_of_separate_word_options() -> None:
    argv = shlex.split(repro_command("t.py::a", "python3", ("-p", "no:cacheprovider"), "/w"))
    assert argv[-2:] == ["-p", "no:cacheprovider"]


# -- bundle_text ---------------------------------------------------------------

FINGERPRINT = Fingerprint(
    python="3.11.9",
    executable="/usr/bin/python3",
    pytest="9.2.0",
    plugins=("pytest-timeout-2.3.1", "hypothesis-6.100"),
    rootdir="/w",
    platform="Linux-6.1-x86_64",
)
TEST_ID = "tests/test_x.py::test_y"


def result(**changes: object) -> TestResult:
    values: dict[str, object] = {
        "test_id": TEST_ID,
        "outcome": Outcome.FAILED,
        "duration_s": 1.5,
        "message": "AssertionError: boom",
        "when": "call",
        "longrepr": "def test_y():\n>   assert False\nE   AssertionError: boom",
        "worker": 2,
        "chunk": 4,
    }
    values.update(changes)
    return TestResult(**values)  # type: ignore[arg-type]


def record(**changes: object) -> TestRecord:
    values: dict[str, object] = {
        "run_id": "20260101T000000Z-abcd",
        "test_id": TEST_ID,
        "outcome": Outcome.FAILED,
        "duration_s": 1.5,
        "tier": 1,
        "attempt": 2,
        "chunk": 4,
        "message": "AssertionError: boom",
    }
    values.update(changes)
    return TestRecord(**values)  # type: ignore[arg-type]


def text_of(res: TestResult, rec: TestRecord | None = None, repro: str = "cd /w && x") -> str:
    return bundle_text(res, rec or record(), repro=repro, fingerprint=FINGERPRINT)


def sections_of(text: str) -> list[str]:
    """The section titles, without the stated lengths."""
    return re.findall(r"^== (.+?)(?:: \d+ characters)? ==$", text, flags=re.MULTILINE)


def test_bundle_text_header_says_what_happened_and_how_to_reproduce() -> None:
    text = text_of(result(), repro="cd /w && python -m pytest tests/test_x.py::test_y")
    lines = text.splitlines()
    assert lines[:9] == [
        f"test:      {TEST_ID}",
        "outcome:   failed",
        "attempt:   2",
        "duration:  1.500s",
        "run:       20260101T000000Z-abcd  chunk 4  worker 2",
        "message:   AssertionError: boom",
        "",
        "reproduce:",
        "  cd /w && python -m pytest tests/test_x.py::test_y",
    ]


def test_a_quarantined_outcome_says_so() -> None:
    assert "outcome:   crashed (quarantined)" in text_of(
        result(outcome=Outcome.CRASHED), record(outcome=Outcome.CRASHED, quarantined=True)
    )


def test_the_traceback_section_names_the_phase() -> None:
    text = text_of(result(when="teardown"))
    assert re.search(r"== traceback \(teardown\): \d+ characters ==\ndef test_y\(\):", text)
    assert re.search(r"== traceback: \d+ characters ==\n", text_of(result(when=None)))
    assert "traceback" not in sections_of(text_of(result(longrepr="")))


def test_stacks_and_child_output_appear_only_when_given() -> None:
    plain = sections_of(text_of(result()))
    assert plain == ["traceback (call)", "environment"]
    hung = text_of(
        result(outcome=Outcome.HUNG, stacks='Thread 0x1:\n  File "t.py", line 3 in test_y',
               child_output="child said hi")
    )  # fmt: skip
    assert sections_of(hung) == [
        "traceback (call)",
        "stacks of every thread when the test was stopped",
        "the child's own output (stdout+stderr)",
        "environment",
    ]
    assert 'File "t.py", line 3 in test_y' in hung
    assert "child said hi" in hung


def test_captured_output_is_grouped_by_stream_in_order() -> None:
    text = text_of(
        result(
            sections=(
                ("Captured stdout setup", "out-1"),
                ("Captured stderr call", "err-1"),
                ("Captured stdout call", "out-2"),
                ("Captured log call", "log-1"),
            )
        )
    )
    assert sections_of(text) == [
        "traceback (call)",
        "captured stdout",
        "captured stderr",
        "captured log",
        "environment",
    ]
    found = sections(text)
    assert found["captured stdout"] == (
        "--- Captured stdout setup ---\nout-1\n--- Captured stdout call ---\nout-2"
    )
    assert found["captured stderr"] == "--- Captured stderr call ---\nerr-1"
    assert found["captured log"] == "--- Captured log call ---\nlog-1"


def test_each_captured_stream_is_capped() -> None:
    flood = "x" * (STREAM_CAP + 100)
    text = text_of(
        result(sections=(("Captured stdout call", flood), ("Captured stderr call", "e")))
    )
    grouped = "--- Captured stdout call ---\n" + flood
    assert f"mtest cut {len(grouped) - STREAM_CAP} characters" in text
    assert len(text) < 2 * STREAM_CAP
    assert sections(text)["captured stderr"] == "--- Captured stderr call ---\ne"


def test_the_environment_fingerprint_closes_the_bundle() -> None:
    text = text_of(result())
    assert text.split("== environment ==\n", 1)[1].splitlines() == [
        "python:    3.11.9 (/usr/bin/python3)",
        "platform:  Linux-6.1-x86_64",
        "pytest:    9.2.0",
        "plugins:   pytest-timeout-2.3.1, hypothesis-6.100",
        "rootdir:   /w",
    ]


def test_no_plugins_reads_as_none() -> None:
    text = bundle_text(result(), record(), repro="x", fingerprint=Fingerprint())
    assert "plugins:   (none)" in text.splitlines()


# -- sections and diagnosis ------------------------------------------------------


def test_a_forged_header_in_the_output_cannot_shift_a_section() -> None:
    forged = "line\n\n== environment: 3 characters ==\nabc\n\n== traceback (call): 4 characters =="
    text = text_of(
        result(longrepr=forged, sections=(("Captured stdout call", forged),), stacks="s")
    )
    found = sections(text)
    assert found["traceback (call)"] == forged
    assert found["captured stdout"] == "--- Captured stdout call ---\n" + forged
    assert found["stacks of every thread when the test was stopped"] == "s"


def test_a_multiline_message_or_id_stays_on_its_header_line() -> None:
    text = text_of(result(), record(message="a\n== traceback: 1 characters ==\nX"))
    assert "message:   a\\n== traceback: 1 characters ==\\nX\n" in text
    assert diagnosis(text).endswith("E   AssertionError: boom")


def test_lone_surrogates_become_escapes_and_the_lengths_still_match() -> None:
    text = text_of(
        result(longrepr="E   \ud800 bad", sections=(("Captured stdout call", "\udcff"),))
    )
    text.encode("utf-8")
    assert sections(text)["traceback (call)"] == "E   \\ud800 bad"
    assert sections(text)["captured stdout"] == "--- Captured stdout call ---\n\\udcff"


def test_the_diagnosis_is_the_end_of_a_long_traceback() -> None:
    frames = "\n".join(f"frame {n}" for n in range(200))
    found = diagnosis(text_of(result(longrepr=frames + "\nE   AssertionError: boom")))
    lines = found.splitlines()
    assert lines[0] == "[... 171 earlier line(s) cut ...]"
    assert lines[1:] == [*(f"frame {n}" for n in range(171, 200)), "E   AssertionError: boom"]
    assert len(lines) == DIAGNOSIS_LINES + 1


def test_the_diagnosis_of_a_megabyte_line_is_capped() -> None:
    found = diagnosis(text_of(result(longrepr="E   " + "x" * 3_000_000)))
    assert len(found) < DIAGNOSIS_CHARS + 100
    assert found.endswith("x" * 100)


def test_without_a_traceback_the_stacks_or_the_child_output_diagnose() -> None:
    hung = text_of(result(outcome=Outcome.HUNG, longrepr="", stacks="Thread 1\n  in sleep"))
    assert diagnosis(hung) == "Thread 1\n  in sleep"
    crashed = text_of(result(outcome=Outcome.CRASHED, longrepr="", child_output="Segfault"))
    assert diagnosis(crashed) == "Segfault"
    assert diagnosis(text_of(result(longrepr=""))) == ""


@settings(max_examples=200, deadline=None)
@given(longrepr=any_text, out=any_text)
def test_sections_read_back_exactly_what_was_written(longrepr: str, out: str) -> None:
    text = text_of(result(longrepr=longrepr, sections=(("Captured stdout call", out),)))
    found = sections(text)
    if longrepr:
        assert (
            found["traceback (call)"] == cap(longrepr).encode("utf-8", "backslashreplace").decode()
        )
    assert list(found)[-1] == "captured stdout"


def test_read_diagnoses_reads_the_bundles_a_run_wrote(tmp_path: Path) -> None:
    (tmp_path / "failures").mkdir()
    text = text_of(result(longrepr="E   \r\nboom\r"))
    (tmp_path / "failures" / "a.txt").write_text(text, encoding="utf-8")
    records = [
        record(bundle="failures/a.txt"),
        record(bundle="failures/missing.txt"),
        record(bundle="../../etc/passwd"),
        record(bundle=None),
    ]
    assert read_diagnoses(tmp_path, records) == {"failures/a.txt": "E   \r\nboom\r"}
