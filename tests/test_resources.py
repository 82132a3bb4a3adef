"""Unit tests for resource use: sizes, samples, the ``--max-rss`` rules, the summary's
"may leak" list and the records' optional fields. Plain values, except where the
measurement itself is under test (this process's own ``/proc``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_report import section

from supervisor import probeio, resources
from supervisor.model import Outcome, TestRecord
from supervisor.report import RunFacts, summary_markdown
from supervisor.resources import Sample, format_growth, format_size

MIB = 1024 * 1024


def rec(test_id: str, **changes: Any) -> TestRecord:
    values: dict[str, Any] = {
        "run_id": "r1", "test_id": test_id, "outcome": Outcome.PASSED, "duration_s": 0.1,
        "tier": 1,
    }  # fmt: skip
    values.update(changes)
    return TestRecord(**values)


# -- sizes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (812 * 1024, "812 KiB"),
        (150 * MIB, "150 MiB"),
        (int(301.2 * MIB), "301.2 MiB"),
        (1536 * MIB, "1.5 GiB"),
        (-int(3.5 * MIB), "-3.5 MiB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


def test_format_growth_shows_the_sign() -> None:
    assert format_growth(200 * MIB) == "+200 MiB"
    assert format_growth(-2 * MIB) == "-2 MiB"
    assert format_growth(0) == "+0 B"


@given(st.integers(min_value=-(2**50), max_value=2**50))
def test_any_size_reads_as_one_number_and_a_unit(size: int) -> None:
    number, unit = format_size(size).split(" ")
    assert unit in ("B", "KiB", "MiB", "GiB")
    assert float(number) < 1024 or unit == "GiB"
    assert number.startswith("-") == (size < 0)


# -- samples -----------------------------------------------------------------------


def test_parse_status_reads_rss_and_high_water_mark_in_bytes() -> None:
    text = b"Name:\tpython\nVmPeak:\t  300000 kB\nVmHWM:\t  250000 kB\nVmRSS:\t  120000 kB\n"
    assert resources.parse_status(text) == Sample(rss_bytes=120000 * 1024, peak_bytes=250000 * 1024)


def test_a_zombie_or_kernel_thread_has_no_memory_lines() -> None:
    assert resources.parse_status(b"Name:\tpython\nState:\tZ (zombie)\n") is None


def test_a_high_water_mark_below_the_rss_is_raised_to_it() -> None:
    sample = resources.parse_status(b"VmRSS:\t 100 kB\nVmHWM:\t 90 kB\n")
    assert sample == Sample(rss_bytes=100 * 1024, peak_bytes=100 * 1024)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_sample_of_this_process_matches_its_own_measurement() -> None:
    sample = resources.sample(os.getpid())
    mine = probeio.rss_bytes()
    assert sample is not None and mine is not None
    assert sample.peak_bytes >= sample.rss_bytes > 1 * MIB
    # Both read the same kernel counters a moment apart: close, not equal.
    assert abs(sample.rss_bytes - mine) < 16 * MIB


def test_sample_of_a_process_that_does_not_exist_is_none() -> None:
    assert resources.sample(2**22 + 12345) is None


def test_the_probe_measures_growth_of_memory_it_keeps() -> None:
    before = probeio.rss_bytes()
    kept = bytearray(40 * MIB)
    kept[::4096] = b"x" * len(kept[::4096])  # touch every page: resident now
    after = probeio.rss_bytes()
    assert before is not None and after is not None
    if sys.platform.startswith("linux"):
        assert after - before >= 35 * MIB
    else:  # ru_maxrss: the peak, which this raised or which was already higher
        assert after >= before
    del kept


def test_cpu_seconds_counts_work_done() -> None:
    start = probeio.cpu_seconds()
    sum(i * i for i in range(300_000))
    assert probeio.cpu_seconds() > start


@pytest.mark.parametrize(
    ("value", "size"), [("157286400", 157286400), ("", None), ("0", None), ("12M", None)]
)
def test_env_size(monkeypatch: pytest.MonkeyPatch, value: str, size: int | None) -> None:
    monkeypatch.setenv("MTEST_MAX_RSS", value)
    assert probeio.env_size("MTEST_MAX_RSS") == size


# -- the --max-rss rules --------------------------------------------------------------


@pytest.mark.parametrize(
    ("rss", "limit", "over"),
    [(None, 100, False), (150, None, False), (100, 100, False), (101, 100, True)],
)
def test_exceeds_needs_both_and_is_strict(rss: int | None, limit: int | None, over: bool) -> None:
    assert resources.exceeds(rss, limit) is over


def test_an_idle_worker_above_the_limit_is_replaced_once_it_ran_a_test() -> None:
    assert resources.recycles(rss_bytes=200, limit_bytes=150, ran=3)
    assert not resources.recycles(rss_bytes=100, limit_bytes=150, ran=3)
    # A fresh worker already above: replacing it would start the same again.
    assert not resources.recycles(rss_bytes=200, limit_bytes=150, ran=0)
    assert not resources.recycles(rss_bytes=200, limit_bytes=None, ran=3)


@pytest.mark.parametrize(
    ("rss", "growth", "limit", "replaced"),
    [
        (160, 0, 150, True),  # above the limit after the test
        (93, 60, 150, True),  # one more test like this one would take it over
        (93, 50, 150, False),  # exactly at the limit is not above it
        (120, -40, 150, False),  # a test that freed memory predicts no growth
        (120, None, 150, False),  # growth unknown: only the size counts
        (None, 60, 150, False),
        (160, 60, None, False),  # no --max-rss
    ],
)
def test_the_probe_replaces_a_worker_above_or_one_tests_growth_from_the_limit(
    rss: int | None, growth: int | None, limit: int | None, replaced: bool
) -> None:
    assert probeio.over_max_rss(rss, growth, limit) is replaced


@given(
    st.integers(min_value=0, max_value=2**40),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.integers(min_value=1, max_value=2**40),
)
def test_a_worker_above_the_limit_is_always_replaced(rss: int, growth: int, limit: int) -> None:
    if resources.exceeds(rss, limit):
        assert probeio.over_max_rss(rss, growth, limit)


def test_the_recycle_note_counts_and_names_the_limit() -> None:
    assert resources.recycle_note([], 150 * MIB) is None
    note = resources.recycle_note([160 * MIB, None, 93 * MIB], 150 * MIB)
    assert note == (
        "3 worker(s) were replaced between tests for --max-rss 150 MiB "
        "(above it, or one test's growth away from it; largest 160 MiB)"
    )


# -- the run's peak and the "may leak" list ------------------------------------------


def test_largest_growth_is_the_top_five_above_the_floor_largest_first() -> None:
    records = [rec(f"t::g{n}", rss_growth_bytes=n * MIB) for n in range(1, 9)]
    records += [rec("t::none"), rec("t::shrank", rss_growth_bytes=-50 * MIB)]
    records.append(rec("t::tie", rss_growth_bytes=8 * MIB))
    chosen = resources.largest_growth(records)
    assert [r.test_id for r in chosen] == ["t::g8", "t::tie", "t::g7", "t::g6", "t::g5"]


def test_growth_below_the_floor_is_noise_not_a_leak() -> None:
    records = [rec("t::a", rss_growth_bytes=4096), rec("t::b", rss_growth_bytes=MIB - 1)]
    assert resources.largest_growth(records) == []
    assert [r.test_id for r in resources.largest_growth(records, floor=0)] == ["t::b", "t::a"]


def test_run_peak_takes_the_largest_of_samples_and_records() -> None:
    records = [rec("a", rss_bytes=90 * MIB), rec("b"), rec("c", rss_bytes=120 * MIB)]
    assert resources.run_peak(100 * MIB, records) == 120 * MIB
    assert resources.run_peak(200 * MIB, records) == 200 * MIB
    assert resources.run_peak(None, [rec("b")]) is None


def test_the_summary_names_the_peak_and_the_tests_that_may_leak() -> None:
    records = {
        "t.py::leaks": rec("t.py::leaks", rss_bytes=232 * MIB, rss_growth_bytes=200 * MIB),
        "t.py::small": rec("t.py::small", rss_bytes=32 * MIB, rss_growth_bytes=4096),
        "t.py::`odd`": rec("t.py::`odd`", rss_bytes=40 * MIB, rss_growth_bytes=8 * MIB),
        "t.py::hog": rec(
            "t.py::hog", outcome=Outcome.CRASHED, rss_bytes=170 * MIB, rss_growth_bytes=9 * MIB
        ),
    }
    facts = RunFacts(run_id="r1", elapsed_s=1.0, peak_rss_bytes=244 * MIB)
    body = section(summary_markdown(records, facts, 0, list(records.values())), "Resource use")
    assert body == [
        "Peak RSS of any worker: 244 MiB.",
        "The tests that grew their worker's RSS the most (may leak):",
        "- `t.py::leaks`: +200 MiB (RSS 232 MiB after it)",
        "- `t.py::hog`: +9 MiB (RSS 170 MiB when last measured)",
        "- `` t.py::`odd` ``: +8 MiB (RSS 40 MiB after it)",
    ]


def test_a_run_that_measured_nothing_has_no_resource_section() -> None:
    records = {"a": rec("a")}
    markdown = summary_markdown(records, RunFacts(run_id="r1", elapsed_s=1.0), 0, [])
    assert "## Resource use" not in markdown


# -- records ----------------------------------------------------------------------------


def test_a_record_carries_its_resources_through_json() -> None:
    record = rec("t::a", rss_bytes=123 * MIB, rss_growth_bytes=-4096, cpu_s=0.25)
    data = json.loads(json.dumps(record.to_json()))
    assert (data["rss_bytes"], data["rss_growth_bytes"], data["cpu_s"]) == (
        123 * MIB, -4096, 0.25,
    )  # fmt: skip
    assert TestRecord.from_json(data) == record


def test_unknown_resources_are_left_out_and_old_records_still_read() -> None:
    data = rec("t::a").to_json()
    assert not {"rss_bytes", "rss_growth_bytes", "cpu_s"} & data.keys()
    old = {"version": 1, "run_id": "r", "test_id": "t::a", "outcome": "passed"}
    restored = TestRecord.from_json(old)
    assert (restored.rss_bytes, restored.rss_growth_bytes, restored.cpu_s) == (None, None, None)


def test_a_record_with_a_malformed_resource_field_is_not_a_record() -> None:
    data = {**rec("t::a").to_json(), "rss_bytes": "lots"}
    with pytest.raises(ValueError):
        TestRecord.from_json(data)
