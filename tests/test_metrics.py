"""The Prometheus exposition: ``render`` over plain values, and a strict parser it must pass.

``parse_exposition`` below is a small, strict reader of the text format 0.0.4
written from Prometheus' description of it (not from mtest's renderer): every
exposition ``render`` makes, for any snapshot hypothesis builds, must pass it,
and it must reject each kind of malformed text. Where ``promtool`` is
installed (Debian's ``prometheus`` package), its ``check metrics`` must accept
the output too.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import metrics
from supervisor.errors import MtestError
from supervisor.metrics import RESULTS, Snapshot, render, result_label
from supervisor.model import Outcome
from supervisor.result import RunResult
from supervisor.version import __version__

# -- a strict parser of the text format 0.0.4 ----------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_VALUE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN")
_TIMESTAMP = re.compile(r"-?\d+")
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
Series = tuple[str, tuple[tuple[str, str], ...]]


class FormatError(AssertionError):
    """The text is not a valid exposition (the line number is in the message)."""


@dataclass
class ParsedFamily:
    name: str
    kind: str = ""
    help: str | None = None
    samples: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    def value(self, **labels: str) -> float:
        return self.samples[tuple(sorted(labels.items()))]


def _unescape(text: str, allowed: str, line: int) -> str:
    """``\\\\``, ``\\n`` and, where ``allowed`` says so, ``\\"``: nothing else after a backslash."""
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        after = next(chars, "")
        if after not in allowed:
            raise FormatError(f"line {line}: invalid escape \\{after!s}")
        out.append("\n" if after == "n" else after)
    return "".join(out)


def _labels(text: str, line: int) -> tuple[tuple[str, str], ...]:
    """``name="value",…`` (a trailing comma allowed) → sorted pairs; each name once."""
    pairs: dict[str, str] = {}
    at = 0
    pair = re.compile(rf'\s*({_LABEL})\s*=\s*"((?:[^"\\\n]|\\.)*)"\s*(,|$)')
    while at < len(text):
        found = pair.match(text, at)
        if found is None:
            raise FormatError(f"line {line}: bad label syntax at {text[at:]!r}")
        name = found.group(1)
        if name.startswith("__"):
            raise FormatError(f"line {line}: label name {name} is reserved")
        if name in pairs:
            raise FormatError(f"line {line}: label {name} twice")
        pairs[name] = _unescape(found.group(2), '\\"n', line)
        at = found.end()
        if found.group(3) == "" and at < len(text):
            raise FormatError(f"line {line}: text after the labels")
    return tuple(sorted(pairs.items()))


def _value(text: str, line: int) -> float:
    if not _VALUE.fullmatch(text):
        raise FormatError(f"line {line}: value {text!r} is not a float")
    return float(text.replace("Inf", "inf"))


def _sample(text: str, line: int) -> tuple[str, tuple[tuple[str, str], ...], float]:
    found = re.fullmatch(rf"({_NAME})(?:\{{(.*)\}})?[ \t]+(\S+)(?:[ \t]+(\S+))?", text)
    if found is None:
        raise FormatError(f"line {line}: not a sample: {text!r}")
    name, labels, value, timestamp = found.groups()
    if timestamp is not None and not _TIMESTAMP.fullmatch(timestamp):
        raise FormatError(f"line {line}: bad timestamp {timestamp!r}")
    return name, _labels(labels or "", line), _value(value, line)


def parse_exposition(text: str) -> dict[str, ParsedFamily]:
    """Every family of ``text``, checked: a ``FormatError`` names the first offence.

    Beyond the format itself, mtest's own bar: every family has HELP and TYPE
    and at least one sample, is a gauge or a counter, and a counter's name ends
    in ``_total`` and its values are finite and not negative.
    """
    if not text.endswith("\n"):
        raise FormatError("the last line does not end with a line feed")
    found: dict[str, ParsedFamily] = {}
    order: list[str] = []
    for number, raw in enumerate(text[:-1].split("\n"), start=1):
        line = raw.strip(" \t")
        if not line:
            continue
        if line.startswith("#"):
            _comment(line, number, found, order)
            continue
        name, labels, value = _sample(line, number)
        family = found.get(name)
        if family is None or not family.kind:
            raise FormatError(f"line {number}: sample of {name} before its TYPE")
        if order[-1] != name:
            raise FormatError(f"line {number}: {name}'s samples are not grouped together")
        if labels in family.samples:
            raise FormatError(f"line {number}: series {name}{dict(labels)} twice")
        family.samples[labels] = value
    for family in found.values():
        _check_family(family)
    return found


def _comment(line: str, number: int, found: dict[str, ParsedFamily], order: list[str]) -> None:
    parts = line[1:].strip(" \t").split(None, 2)
    if not parts or parts[0] not in ("HELP", "TYPE"):
        return  # a plain comment
    if len(parts) < 2 or not re.fullmatch(_NAME, parts[1]):
        raise FormatError(f"line {number}: {parts[0]} without a valid metric name")
    name = parts[1]
    family = found.get(name)
    if family is None:
        family = found[name] = ParsedFamily(name=name)
        order.append(name)
    elif family.samples or order[-1] != name:
        raise FormatError(f"line {number}: {parts[0]} of {name} after its samples")
    rest = parts[2] if len(parts) > 2 else ""
    if parts[0] == "HELP":
        if family.help is not None:
            raise FormatError(f"line {number}: a second HELP for {name}")
        family.help = _unescape(rest, "\\n", number)
        return
    if family.kind:
        raise FormatError(f"line {number}: a second TYPE for {name}")
    if rest not in _TYPES:
        raise FormatError(f"line {number}: TYPE {rest!r} of {name}")
    family.kind = rest


def _check_family(family: ParsedFamily) -> None:
    name = family.name
    if not family.help or not family.kind:
        raise FormatError(f"{name} lacks HELP or TYPE")
    if not family.samples:
        raise FormatError(f"{name} has no sample")
    if family.kind not in ("gauge", "counter"):
        raise FormatError(f"{name} is a {family.kind}: mtest exposes gauges and counters")
    if family.kind == "counter":
        if not name.endswith("_total"):
            raise FormatError(f"counter {name} does not end in _total")
        if not all(math.isfinite(v) and v >= 0 for v in family.samples.values()):
            raise FormatError(f"counter {name} has a negative or non-finite value")
    elif name.endswith("_total"):
        raise FormatError(f"gauge {name} ends in _total")


# -- the parser itself rejects what it must ------------------------------------------

GOOD = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 2\n'


@pytest.mark.parametrize(
    ("text", "offence"),
    [
        (GOOD[:-1], "line feed"),
        (GOOD + 'a_total{x="1"} 3\n', "twice"),
        ("# HELP a A.\n# TYPE a counter\na 1\n", "_total"),
        ('# HELP a A.\n# TYPE a gauge\na{x="1\\q"} 1\n', "invalid escape"),
        ('# HELP a A.\n# TYPE a gauge\na{x="1"2"} 1\n', "label syntax"),
        ('# HELP a A.\n# TYPE a gauge\na{x="1",x="2"} 1\n', "twice"),
        ('# HELP a A.\n# TYPE a gauge\na{__x="1"} 1\n', "reserved"),
        ("# HELP a A.\n# TYPE a gauge\na 1.2.3\n", "not a float"),
        ("# HELP a A.\n# TYPE a gauge\na inf\n", "not a float"),
        ("# HELP a A.\n# TYPE a gauge\na 1 1.5\n", "timestamp"),
        ("# HELP a A.\na 1\n# TYPE a gauge\n", "before its TYPE"),
        ("# HELP a A.\n# HELP a B.\n# TYPE a gauge\na 1\n", "second HELP"),
        ("# HELP a A.\n# TYPE a gauge\n# TYPE a gauge\na 1\n", "second TYPE"),
        ("# HELP a A \\x.\n# TYPE a gauge\na 1\n", "invalid escape"),
        ("# HELP a A.\n# TYPE a gauges\na 1\n", "TYPE"),
        ("# TYPE a gauge\na 1\n", "lacks HELP"),
        ("# HELP a A.\n# TYPE a gauge\n", "no sample"),
        ("# HELP a A.\n# TYPE a summary\na 1\n", "gauges and counters"),
        ("# HELP a_total A.\n# TYPE a_total counter\na_total -1\n", "negative"),
        ("# HELP a_total A.\n# TYPE a_total gauge\na_total 1\n", "ends in _total"),
        (
            '# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na{x="y"} 2\n',
            "grouped",
        ),
        ("# HELP a A.\n# TYPE a gauge\na 1\n# HELP a again\n", "after its samples"),
        ("# HELP 1a A.\n# TYPE 1a gauge\n1a 1\n", "valid metric name"),
    ],
)
def test_the_parser_rejects_malformed_text(text: str, offence: str) -> None:
    with pytest.raises(FormatError, match=offence):
        parse_exposition(text)


def test_the_parser_reads_escapes_special_values_and_comments() -> None:
    text = (
        "# a plain comment\n"
        "# HELP m_total Back\\\\slash and\\nnewline.\n"
        "# TYPE m_total counter\n"
        'm_total{path="C:\\\\DIR",msg="say \\"hi\\"\\n",} 3 1395066363000\n'
        "\n"
        "# HELP g G.\n# TYPE g gauge\n"
        'g{k="a"} +Inf\ng{k="b"} -Inf\ng{k="c"} NaN\ng{k="d"} 1.458255915e9\n'
    )
    parsed = parse_exposition(text)
    assert parsed["m_total"].help == "Back\\slash and\nnewline."
    assert parsed["m_total"].value(path="C:\\DIR", msg='say "hi"\n') == 3
    assert parsed["g"].value(k="a") == math.inf
    assert parsed["g"].value(k="b") == -math.inf
    assert math.isnan(parsed["g"].value(k="c"))
    assert parsed["g"].value(k="d") == 1.458255915e9


# -- render over plain values --------------------------------------------------------

ENDED = "2024-03-01T12:00:05.500Z"
ENDED_TS = 1709294405.5


def result(**changes: object) -> RunResult:
    base = RunResult(
        exit_code=1,
        run_id="r1",
        started="2024-03-01T12:00:00.000Z",
        ended=ENDED,
        wall_s=5.5,
        counts={"passed": 3, "failed": 1, "crashed": 2},
        outstanding=4,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_fresh_process_exposes_its_counters_at_zero_and_no_last_run() -> None:
    parsed = parse_exposition(render(Snapshot.fresh(1700000000.25)))
    assert {r: parsed["mtest_runs_total"].value(result=r) for r in RESULTS} == dict.fromkeys(
        RESULTS, 0
    )
    assert parsed["mtest_cycles_skipped_total"].value() == 0
    assert parsed["mtest_service_faults_total"].value() == 0
    assert parsed["mtest_start_time_seconds"].value() == 1700000000.25
    assert parsed["mtest_up"].value() == 1
    assert parsed["mtest_healthy"].value() == 1
    assert not [name for name in parsed if name.startswith("mtest_last_")]
    info = parsed["mtest_build_info"].samples
    assert len(info) == 1
    [(labels, value)] = info.items()
    assert dict(labels)["version"] == __version__
    assert dict(labels)["metrics_version"] == str(metrics.METRICS_VERSION)
    assert value == 1


def test_the_last_run_gauges_carry_its_values() -> None:
    last = result(coverage_ratio=0.875, peak_rss_bytes=123_456_789, slowest=("t.py::x", 1.25))
    parsed = parse_exposition(render(Snapshot.fresh(1.0).after(last)))
    tests = parsed["mtest_last_run_tests"]
    assert {dict(k)["outcome"] for k in tests.samples} == {o.value for o in Outcome}
    assert tests.value(outcome="passed") == 3
    assert tests.value(outcome="failed") == 1
    assert tests.value(outcome="crashed") == 2
    assert tests.value(outcome="hung") == 0
    assert parsed["mtest_last_run_not_run_tests"].value() == 4
    assert parsed["mtest_last_run_duration_seconds"].value() == 5.5
    assert parsed["mtest_last_run_exit_code"].value() == 1
    assert parsed["mtest_last_run_timestamp_seconds"].value() == ENDED_TS
    assert parsed["mtest_last_run_coverage_ratio"].value() == 0.875
    assert parsed["mtest_last_run_peak_rss_bytes"].value() == 123_456_789
    assert parsed["mtest_last_run_slowest_test_seconds"].value(test_id="t.py::x") == 1.25
    assert parsed["mtest_runs_total"].value(result="failed") == 1
    assert "mtest_last_success_timestamp_seconds" not in parsed


def test_what_was_not_measured_is_left_out() -> None:
    text = render(Snapshot.fresh(1.0).after(result()))
    for name in ("coverage_ratio", "peak_rss_bytes", "slowest_test_seconds"):
        assert f"mtest_last_run_{name}" not in text
    unreadable = render(Snapshot.fresh(1.0).after(result(ended="not a time")))
    assert "mtest_last_run_timestamp_seconds" not in unreadable
    parse_exposition(unreadable)


def test_a_passing_run_sets_the_last_success_and_a_failing_one_keeps_it() -> None:
    passed = Snapshot.fresh(1.0).after(result(exit_code=0))
    assert passed.last_success_ts == ENDED_TS
    later = passed.after(result(exit_code=1, ended="2024-03-01T13:00:00Z"))
    assert later.last_success_ts == ENDED_TS
    assert later.runs_total == {"passed": 1, "failed": 1, "interrupted": 0, "error": 0}
    parsed = parse_exposition(render(later))
    assert parsed["mtest_last_success_timestamp_seconds"].value() == ENDED_TS
    assert parsed["mtest_last_run_timestamp_seconds"].value() == ENDED_TS + 3600 - 5.5


def test_an_unhealthy_snapshot_says_so_and_a_finished_run_makes_it_healthy() -> None:
    sick = replace(Snapshot.fresh(1.0), healthy=False, service_faults_total=3)
    parsed = parse_exposition(render(sick))
    assert parsed["mtest_healthy"].value() == 0
    assert parsed["mtest_service_faults_total"].value() == 3
    assert sick.after(result()).healthy


@pytest.mark.parametrize(
    ("code", "label"),
    [(0, "passed"), (1, "failed"), (2, "interrupted"), (3, "error"), (4, "error"),
     (-11, "error"), (130, "error")],
)  # fmt: skip
def test_result_label(code: int, label: str) -> None:
    assert result_label(code) == label


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (42, "42"), (-3, "-3"), (2**63, "9223372036854775808"), (0.5, "0.5"),
     (1e-05, "1e-05"), (1e16, "1e+16"), (1700000000.25, "1700000000.25"),
     (math.inf, "+Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"), (True, "1")],
)  # fmt: skip
def test_format_value(value: float, text: str) -> None:
    assert metrics.format_value(value) == text
    assert _VALUE.fullmatch(text)


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("plain", "plain"), ('a"b', 'a\\"b'), ("a\\b", "a\\\\b"), ("a\nb", "a\\nb"),
     ('\\"\n', '\\\\\\"\\n'), ("tab\there ü", "tab\there ü")],
)  # fmt: skip
def test_escape_label_value(raw: str, escaped: str) -> None:
    assert metrics.escape_label_value(raw) == escaped


def test_escape_help_leaves_quotes_alone() -> None:
    assert metrics.escape_help('say "hi"\\\nbye') == 'say "hi"\\\\\\nbye'


def test_a_hostile_test_id_is_escaped_and_reads_back_unchanged() -> None:
    test_id = 'tests/t.py::test_x[a"b\\c\nd} 1\n# TYPE x counter]'
    last = result(slowest=(test_id, 2.0))
    parsed = parse_exposition(render(Snapshot.fresh(1.0).after(last)))
    assert parsed["mtest_last_run_slowest_test_seconds"].value(test_id=test_id) == 2.0
    assert "x" not in parsed


# -- every exposition passes the parser ----------------------------------------------

finite = st.floats(min_value=0, max_value=1e12, allow_nan=False)
anything = st.floats(allow_nan=True, allow_infinity=True)
test_ids = st.text(min_size=1, max_size=80)
counts = st.dictionaries(
    st.sampled_from([o.value for o in Outcome]) | st.text(max_size=12),
    st.integers(min_value=0, max_value=10**9),
    max_size=12,
)
iso = st.datetimes(timezones=st.just(dt.UTC)).map(
    lambda d: d.isoformat().replace("+00:00", "Z")
) | st.text(max_size=20)
results = st.builds(
    RunResult,
    exit_code=st.integers(min_value=-64, max_value=255),
    run_id=st.text(max_size=10),
    started=iso,
    ended=iso,
    wall_s=anything,
    counts=counts,
    outstanding=st.integers(min_value=0, max_value=10**6),
    coverage_ratio=st.none() | st.floats(min_value=0, max_value=1),
    peak_rss_bytes=st.none() | st.integers(min_value=0, max_value=2**48),
    slowest=st.none() | st.tuples(test_ids, anything),
)
snapshots = st.builds(
    Snapshot,
    last=st.none() | results,
    last_success_ts=st.none() | finite,
    runs_total=st.fixed_dictionaries(
        {r: st.integers(min_value=0, max_value=10**12) for r in RESULTS}
    ),
    cycles_skipped_total=st.integers(min_value=0, max_value=10**9),
    service_faults_total=st.integers(min_value=0, max_value=10**9),
    start_ts=finite,
    healthy=st.booleans(),
)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@settings(max_examples=300, deadline=None)
@given(snapshots)
def test_every_rendered_exposition_is_valid_and_reads_back(snapshot: Snapshot) -> None:
    parsed = parse_exposition(render(snapshot))
    for label, n in snapshot.runs_total.items():
        assert parsed["mtest_runs_total"].value(result=label) == n
    assert parsed["mtest_healthy"].value() == int(snapshot.healthy)
    last = snapshot.last
    if last is None:
        return
    tests = parsed["mtest_last_run_tests"]
    for outcome in Outcome:
        assert tests.value(outcome=outcome.value) == last.counts.get(outcome.value, 0)
    for key, n in last.counts.items():
        assert tests.value(outcome=key) == n
    assert _same(parsed["mtest_last_run_duration_seconds"].value(), last.wall_s)
    assert parsed["mtest_last_run_exit_code"].value() == last.exit_code
    if last.slowest is not None:
        test_id, seconds = last.slowest
        slowest = parsed["mtest_last_run_slowest_test_seconds"]
        assert _same(slowest.value(test_id=test_id), seconds)


@settings(max_examples=100, deadline=None)
@given(st.lists(results, max_size=8), st.integers(min_value=0, max_value=5))
def test_after_counts_every_run_once_by_its_result(runs: list[RunResult], faults: int) -> None:
    snapshot = replace(Snapshot.fresh(0.0), service_faults_total=faults)
    for run in runs:
        snapshot = snapshot.after(run)
    expected = dict.fromkeys(RESULTS, 0)
    for run in runs:
        expected[result_label(run.exit_code)] += 1
    assert dict(snapshot.runs_total) == expected
    assert snapshot.last == (runs[-1] if runs else None)
    assert snapshot.service_faults_total == faults


# -- promtool, where it is installed ---------------------------------------------------

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian: apt-get install prometheus)",
)
EXAMPLES: Mapping[str, Snapshot] = {
    "fresh": Snapshot.fresh(1700000000.0),
    "failed": Snapshot.fresh(1700000000.0).after(result()),
    "everything": replace(
        Snapshot.fresh(1700000000.0).after(result(exit_code=0)),
        cycles_skipped_total=2,
        service_faults_total=1,
        healthy=False,
    ).after(
        result(
            coverage_ratio=0.5,
            peak_rss_bytes=2**33,
            slowest=('tests/t.py::test_x[a"b\\c\nd]', math.inf),
            wall_s=math.nan,
        )
    ),
}


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


@needs_promtool
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_promtool_accepts_the_exposition(name: str) -> None:
    done = promtool_check(render(EXAMPLES[name]))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@needs_promtool
def test_promtool_is_a_real_check() -> None:
    """The same check flags a counter without ``_total`` (so a pass above means something)."""
    done = promtool_check("# HELP a_seconds A.\n# TYPE a_seconds counter\na_seconds 1\n")
    assert done.returncode != 0
    assert "_total" in done.stdout + done.stderr


# -- write_textfile --------------------------------------------------------------------


def test_write_textfile_replaces_the_file_readable_by_all_and_leaves_no_temp(
    tmp_path: Path,
) -> None:
    target = tmp_path / "textfile" / "mtest.prom"
    metrics.write_textfile(target, "old\n")
    metrics.write_textfile(target, "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(target.parent) == ["mtest.prom"]


@pytest.mark.parametrize("where", ["parent is a file", "target is a directory"])
def test_write_textfile_names_the_path_it_cannot_write(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "blocker"
    if where == "parent is a file":
        blocker.write_text("")
        target = blocker / "mtest.prom"
    else:
        (blocker / "mtest.prom").mkdir(parents=True)
        target = blocker / "mtest.prom"
    with pytest.raises(MtestError) as caught:
        metrics.write_textfile(target, "x 1\n")
    assert f"`{target}`" in caught.value.message
    assert caught.value.hint
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["blocker"] + (["mtest.prom"] if where == "target is a directory" else [])
    )
