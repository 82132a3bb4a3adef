"""Unit and property tests for ``supervisor.parse``: the event stream and how a child ended."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import events as ev
from supervisor import parse
from supervisor.model import Outcome, TestItem, TestResult
from supervisor.parse import (
    crash_message,
    decode_event,
    decode_events,
    describe_exit,
    hung_message,
    result_from_end,
)

# -- decode_events -------------------------------------------------------------


def test_decode_events_reads_complete_lines_and_leaves_a_partial_one() -> None:
    data = b'{"e": "start", "id": "a"}\n{"e": "end", "id": "a", "outc'
    events, used = decode_events(data)
    assert events == [ev.Start(pid=None, test_id="a")]
    assert data[:used] == b'{"e": "start", "id": "a"}\n'


def test_decode_events_of_nothing_or_of_only_a_partial_line() -> None:
    assert decode_events(b"") == ([], 0)
    assert decode_events(b'{"e": "hello"}') == ([], 0)


def test_decode_events_skips_garbage_and_non_objects() -> None:
    data = (
        b"not json at all\n"
        b"[1, 2, 3]\n"
        b'"a string"\n'
        b"\n"
        b"   \n"
        b"\xff\xfe\xfd\n"
        b'{"e": "end", "id": "t"}\n'
        b"42\n"
        b'{"e": "no such kind", "id": "t"}\n'
        b'{"e": "start"}\n'
        b'{"e": "exit", "code": "zero"}\n'
    )
    events, used = decode_events(data)
    assert events == [ev.End(pid=None, test_id="t", outcome="")]
    assert used == len(data)


def test_decode_events_skips_a_deeply_nested_garbage_line() -> None:
    data = b"[" * 100_000 + b'\n{"e": "done", "chunk": 1}\n'
    assert decode_events(data) == ([ev.Done(pid=None, chunk=1)], len(data))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"e": "start", "id": "a", "pid": 7, "t": 1.0}, ev.Start(pid=7, test_id="a")),
        ({"e": "start", "id": "a", "pid": "7"}, ev.Start(pid=None, test_id="a")),
        ({"e": "start", "id": "a", "pid": True}, ev.Start(pid=None, test_id="a")),
        ({"e": "cstart", "file": "t.py"}, ev.CollectStart(pid=None, file="t.py")),
        ({"e": "cend", "file": "t.py"}, ev.CollectEnd(pid=None, file="t.py")),
        ({"e": "unknown", "ids": ["a", "b"]}, ev.Unknown(pid=None, ids=("a", "b"))),
        ({"e": "done", "chunk": 4, "pid": 3}, ev.Done(pid=3, chunk=4)),
        ({"e": "done", "chunk": 4, "over_rss": True}, ev.Done(pid=None, chunk=4, over_rss=True)),
        ({"e": "done", "chunk": 4, "over_rss": 1}, ev.Done(pid=None, chunk=4)),
        ({"e": "start", "id": "a", "rss": 4096}, ev.Start(pid=None, test_id="a", rss_bytes=4096)),
        ({"e": "start", "id": "a", "rss": "big"}, ev.Start(pid=None, test_id="a")),
        ({"e": "exit", "code": 1, "pid": 3}, ev.Exit(pid=3, code=1)),
        (
            {"e": "threads", "id": "t.py::a", "names": ["worker"]},
            ev.Threads(pid=None, test_id="t.py::a", names=("worker",)),
        ),
        (
            {"e": "session_error", "where": "teardown", "message": "boom", "longrepr": "tb"},
            ev.SessionError(pid=None, where="teardown", message="boom", longrepr="tb"),
        ),
        (
            {"e": "collect_problem", "id": "t.py", "outcome": "error", "message": "m"},
            ev.CollectProblem(pid=None, test_id="t.py", error=True, message="m"),
        ),
        (
            {"e": "collected", "count": 1, "items": [["t.py::a", 3, ["slow"], 2]]},
            ev.Collected(
                pid=None,
                count=1,
                items=(
                    TestItem(
                        test_id="t.py::a", file="t.py", line=3, markers=("slow",), timeout=2.0
                    ),
                ),
            ),
        ),
        ({"e": "collected", "count": 5}, ev.Collected(pid=None, count=5, items=None)),
        (
            {"e": "hello", "pid": 9, "python": "3.12", "plugins": ["x-1"], "timeout": 5},
            ev.Hello(pid=9, python="3.12", plugins=("x-1",), timeout=5.0),
        ),
        ({"e": "hello", "timeout": "soon"}, ev.Hello(pid=None)),
    ],
)
def test_decode_event_types_each_kind(raw: dict[str, Any], expected: ev.Event) -> None:
    assert decode_event(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        {"e": "start"},
        {"e": "exit", "code": "zero"},
        {"e": "collected", "count": 1, "items": [["too", "short"]]},
        {"e": "cstart"},
        {"e": "bogus", "id": "x"},
        {"id": "x"},
    ],
)
def test_an_event_with_missing_or_mistyped_fields_is_skipped(raw: dict[str, Any]) -> None:
    assert decode_event(raw) is None


json_values = st.none() | st.integers() | st.text(max_size=8) | st.lists(st.integers(), max_size=3)
events_st = st.lists(st.dictionaries(st.text(max_size=6), json_values, max_size=3), max_size=5)
garbage_st = st.lists(
    st.binary(max_size=12).map(lambda b: b.replace(b"\n", b""))
    | st.sampled_from([b"[1]", b"null", b"{", b"}", b"\r", b'"x"', b"\xe2\x82"]),
    max_size=3,
)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """JSONL as the probe writes it (ASCII or raw UTF-8), with garbage lines mixed in."""
    ascii_only = draw(st.booleans())
    lines = [json.dumps(e, ensure_ascii=ascii_only).encode() for e in draw(events_st)]
    for junk in draw(garbage_st):
        lines.insert(draw(st.integers(0, len(lines))), junk)
    data = b"\n".join(lines)
    return data + b"\n" if draw(st.booleans()) else data


def read_in_pieces(data: bytes, cuts: list[int]) -> tuple[list[ev.Event], bytes]:
    """What a reader gets when the stream arrives in pieces: it keeps the unused tail."""
    events: list[ev.Event] = []
    pending = b""
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        pending += data[start:cut]
        start = cut
        got, used = decode_events(pending)
        events += got
        pending = pending[used:]
    return events, pending


@settings(max_examples=200, deadline=None)
@given(data=streams(), cut=st.integers(min_value=0))
def test_a_stream_split_in_two_reads_decodes_like_one_read(data: bytes, cut: int) -> None:
    cut %= len(data) + 1
    whole, used = decode_events(data)
    assert read_in_pieces(data, [cut]) == (whole, data[used:])


@settings(max_examples=100, deadline=None)
@given(data=streams(), cuts=st.lists(st.integers(min_value=0), max_size=8))
def test_a_stream_split_anywhere_decodes_like_one_read(data: bytes, cuts: list[int]) -> None:
    whole, used = decode_events(data)
    assert read_in_pieces(data, [c % (len(data) + 1) for c in cuts]) == (whole, data[used:])


@settings(max_examples=60, deadline=None)
@given(data=streams())
def test_decode_events_uses_exactly_the_complete_lines(data: bytes) -> None:
    _, used = decode_events(data)
    assert used == data.rfind(b"\n") + 1
    assert b"\n" not in data[used:]


# -- result_from_end -----------------------------------------------------------


def end(raw: dict[str, Any]) -> ev.End:
    event = decode_event({**raw, "e": "end"})
    assert isinstance(event, ev.End)
    return event


def test_result_from_a_full_end_event() -> None:
    event = {
        "e": "end",
        "id": "tests/test_x.py::test_y[a-b]",
        "outcome": "failed",
        "duration": 0.25,
        "message": "AssertionError: deliberate",
        "when": "call",
        "longrepr": "[call]\nE   AssertionError",
        "sections": [["Captured stdout call", "hello\n"], ["Captured stderr call", "oops\n"]],
        "t": 12.5,
    }
    result = result_from_end(end(event), chunk=3, worker=1, child=7)
    assert result == TestResult(
        test_id="tests/test_x.py::test_y[a-b]",
        outcome=Outcome.FAILED,
        duration_s=0.25,
        message="AssertionError: deliberate",
        when="call",
        longrepr="[call]\nE   AssertionError",
        sections=(("Captured stdout call", "hello\n"), ("Captured stderr call", "oops\n")),
        chunk=3,
        worker=1,
        child=7,
    )


def test_result_from_a_minimal_end_event_uses_plain_defaults() -> None:
    result = result_from_end(
        end({"id": "t.py::a", "outcome": "passed"}), chunk=0, worker=0, child=0
    )
    assert result == TestResult(test_id="t.py::a", outcome=Outcome.PASSED, duration_s=0.0)


@pytest.mark.parametrize("outcome", ["nonsense", None, "", 3, "PASSED"])
def test_an_unknown_outcome_reads_as_error_never_as_success(outcome: object) -> None:
    event = {"id": "t.py::a", "outcome": outcome}
    assert result_from_end(end(event), chunk=0, worker=0, child=0).outcome is Outcome.ERROR


@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_known_outcome_is_taken_as_written(outcome: Outcome) -> None:
    event = {"id": "t.py::a", "outcome": outcome.value}
    assert result_from_end(end(event), chunk=0, worker=0, child=0).outcome is outcome


def test_an_end_events_resource_use_reaches_the_result() -> None:
    event = {"id": "t.py::a", "outcome": "passed", "rss": 5 * MIB, "rss_growth": -4096,
             "cpu": 0.125}  # fmt: skip
    result = result_from_end(end(event), chunk=0, worker=0, child=0)
    assert (result.rss_bytes, result.rss_growth_bytes, result.cpu_s) == (5 * MIB, -4096, 0.125)


@pytest.mark.parametrize("bad", [True, "5", 1.5, None, [1]])
def test_a_mistyped_resource_field_is_unknown_not_fatal(bad: object) -> None:
    event = end({"id": "t.py::a", "outcome": "passed", "rss": bad, "rss_growth": bad})
    assert (event.rss_bytes, event.rss_growth_bytes) == (None, None)
    assert event.outcome == "passed"


def test_malformed_sections_are_dropped_and_good_ones_kept() -> None:
    event = {
        "id": "t.py::a",
        "outcome": "error",
        "sections": [["Captured log setup", "x"], ["only one"], "text", ["a", "b", "c"], [1, 2]],
    }
    result = result_from_end(end(event), chunk=0, worker=0, child=0)
    assert result.sections == (("Captured log setup", "x"), ("1", "2"))


# -- how a child ended ---------------------------------------------------------


@pytest.mark.parametrize(
    ("returncode", "expected"),
    [
        (None, "is still running"),
        (0, "exited with code 0"),
        (3, "exited with code 3"),
        (-signal.SIGSEGV, f"was killed by signal {int(signal.SIGSEGV)} (SIGSEGV)"),
        (-signal.SIGKILL, f"was killed by signal {int(signal.SIGKILL)} (SIGKILL)"),
        (-200, "was killed by signal 200 (unknown signal)"),
    ],
)
def test_describe_exit(returncode: int | None, expected: str) -> None:
    assert describe_exit(returncode) == expected


def died(returncode: int | None, **changes: Any) -> parse.Blame:
    return parse.Blame(returncode=returncode, stacks="", output="", worker=0, child=1, **changes)


def test_crash_message_names_the_signal() -> None:
    message = crash_message(died(-signal.SIGSEGV))
    assert message == (
        f"the child was killed by signal {int(signal.SIGSEGV)} (SIGSEGV) "
        "while this test was running"
    )


def test_crash_message_of_a_clean_exit_mid_test_suggests_os_exit() -> None:
    assert (
        crash_message(died(0))
        == "the child exited with code 0 while this test was running (os._exit?)"
    )
    assert "os._exit" not in crash_message(died(1))


MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("blamed", "message"),
    [
        (
            died(-signal.SIGKILL, rss_bytes=int(812.5 * MIB)),
            "the child was killed by SIGKILL — out of memory? (mtest sent no signal; "
            "its RSS was 812.5 MiB when last measured) while this test was running",
        ),
        (
            died(-signal.SIGKILL),
            "the child was killed by SIGKILL — out of memory? (mtest sent no signal; "
            "its memory was not measured) while this test was running",
        ),
        # mtest's own kill sequence sent it: no guess about memory.
        (
            died(-signal.SIGKILL, signalled=True, rss_bytes=MIB),
            f"the child was killed by signal {int(signal.SIGKILL)} (SIGKILL) "
            "while this test was running",
        ),
        (
            died(-signal.SIGTERM, signalled=True, exceeded=(301 * MIB, 150 * MIB)),
            "exceeded --max-rss (RSS 301 MiB > 150 MiB); mtest killed its worker",
        ),
    ],
)  # fmt: skip
def test_crash_message_decides_oom_and_max_rss(blamed: parse.Blame, message: str) -> None:
    assert crash_message(blamed) == message


def test_a_crash_record_carries_the_memory_and_its_growth_during_the_test() -> None:
    blamed = died(-signal.SIGKILL, rss_bytes=300 * MIB, start_rss_bytes=40 * MIB)
    result = parse.crash_result("t.py::a", blamed, duration_s=1.0, chunk=2)
    assert (result.rss_bytes, result.rss_growth_bytes) == (300 * MIB, 260 * MIB)
    unknown = parse.crash_result("t.py::a", died(-11), duration_s=1.0, chunk=2)
    assert (unknown.rss_bytes, unknown.rss_growth_bytes, unknown.cpu_s) == (None, None, None)


def test_an_import_that_dies_of_an_unsent_sigkill_asks_about_memory_too() -> None:
    result = parse.import_blame("t.py", died(-signal.SIGKILL, rss_bytes=MIB), hung_after_s=None)
    assert result.message == (
        "the child was killed by SIGKILL — out of memory? (mtest sent no signal; "
        "its RSS was 1 MiB when last measured) while importing it"
    )


@pytest.mark.parametrize(
    ("timeout_s", "grace_s", "returncode", "expected"),
    [
        (10.0, 5.0, -signal.SIGKILL, "exceeded the 10s timeout and was killed "
         "(ignored SIGTERM; SIGKILL after 5s)"),
        (2.5, 1.0, -signal.SIGTERM, "exceeded the 2.5s timeout and was killed (ended on SIGTERM)"),
        (60.0, 5.0, 0, "exceeded the 60s timeout and was killed "
         "(exited with code 0 after SIGTERM)"),
        (0.5, 0.25, 1, "exceeded the 0.5s timeout and was killed "
         "(exited with code 1 after SIGTERM)"),
    ],
)  # fmt: skip
def test_hung_message(timeout_s: float, grace_s: float, returncode: int, expected: str) -> None:
    assert hung_message(timeout_s, grace_s, returncode) == expected


def test_start_costs_sum_to_mtests_clock_and_split_by_the_childs() -> None:
    hello = ev.Hello(pid=1, t=100.0)
    collected = ev.Collected(pid=1, count=3, items=None, t=100.75)
    # Both events read in one turn: mtest's clock alone would say nothing was collected.
    startup, collect = parse.start_costs(
        spawned=10.0, hello_at=12.0, now=12.0, hello=hello, collected=collected
    )
    assert (startup, collect) == (1.25, 0.75)


def test_start_costs_never_exceed_what_mtest_measured() -> None:
    hello = ev.Hello(pid=1, t=0.0)
    collected = ev.Collected(pid=1, count=3, items=None, t=1e9)  # a clock gone wild
    assert parse.start_costs(
        spawned=10.0, hello_at=11.0, now=12.0, hello=hello, collected=collected
    ) == (0.0, 2.0)
    untimed = ev.Collected(pid=1, count=3, items=None)
    assert parse.start_costs(
        spawned=10.0, hello_at=11.0, now=12.5, hello=None, collected=untimed
    ) == (1.0, 1.5)
