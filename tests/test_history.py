"""Unit and property tests for the run history: ``supervisor.history``, the ``SharedLog``
of ``supervisor.store`` and the table of ``supervisor.trend``.

Entries are built from plain ``RunResult`` values; the file tests use real files in
``tmp_path`` (and real processes for concurrent appends); git is the real ``git``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import gitinfo, history, store, trend
from supervisor.args import make_config
from supervisor.config import Config, Mode
from supervisor.errors import MtestError
from supervisor.history import Compaction, Context, Entry, Line
from supervisor.model import Outcome, TestRecord
from supervisor.result import RunResult

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
DAY = 86400.0


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def result(
    outcomes: Mapping[str, Outcome],
    *,
    run_id: str = "r1",
    exit_code: int = 0,
    ended: dt.datetime = T0,
    **changes: object,
) -> RunResult:
    records = tuple(
        TestRecord(run_id=run_id, test_id=test_id, outcome=outcome, duration_s=1.0, tier=1)
        for test_id, outcome in outcomes.items()
    )
    counts: dict[str, int] = {}
    for record in records:
        counts[record.outcome.value] = counts.get(record.outcome.value, 0) + 1
    base = RunResult(
        exit_code=exit_code,
        run_id=run_id,
        started=iso(ended - dt.timedelta(seconds=10)),
        ended=iso(ended),
        wall_s=10.0,
        counts=counts,
        records=records,
        tiers=(0, 1),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def entry(outcomes: Mapping[str, Outcome], previous: Entry | None = None, **kw: Any) -> Entry:
    return history.entry_for(result(outcomes, **kw), Context(), previous)


def line(e: Entry) -> Line:
    return Line(history.encode(e), e)


# -- entry_for ------------------------------------------------------------------------------


def test_an_entry_says_what_the_run_did_and_where() -> None:
    run = result(
        {"a": Outcome.PASSED, "b": Outcome.FAILED, "c": Outcome.SKIPPED, "d": Outcome.CRASHED},
        exit_code=1,
        coverage_ratio=0.8125,
        peak_rss_bytes=123456789,
        slowest=("a", 3.14159),
        budget_s=90.0,
        outstanding=2,
    )
    context = Context(git_commit="ab" * 20, git_dirty=True, mtest_version="9.9", resumed=True)
    got = history.entry_for(run, context, None).to_json()
    assert got == {
        "version": 1,
        "run_id": "r1",
        "started": "2026-03-01T11:59:50.000Z",
        "ended": "2026-03-01T12:00:00.000Z",
        "wall_s": 10.0,
        "exit_code": 1,
        "counts": {"crashed": 1, "failed": 1, "passed": 1, "skipped": 1},
        "outstanding": 2,
        "interrupted": False,
        "resumed": True,
        "pass_rate": pytest.approx(1 / 3, abs=1e-4),
        "coverage_ratio": 0.8125,
        "peak_rss_bytes": 123456789,
        "slowest": {"test_id": "a", "duration_s": 3.142},
        "failing": ["b", "d"],
        "failing_total": 2,
        "newly_failing": None,
        "newly_failing_total": None,
        "newly_passing": None,
        "git_commit": "ab" * 20,
        "git_dirty": True,
        "mtest_version": "9.9",
        "selection": {"tiers": [0, 1], "budget_s": 90.0},
    }


def test_what_was_not_measured_is_null_and_a_run_without_verdicts_has_no_pass_rate() -> None:
    got = entry({"s": Outcome.SKIPPED}).to_json()
    assert got["coverage_ratio"] is None
    assert got["peak_rss_bytes"] is None
    assert got["git_commit"] is None and got["git_dirty"] is None
    assert got["pass_rate"] is None
    assert got["slowest"] is None


def test_flaky_counts_as_passing_and_xfail_neither_way() -> None:
    got = entry({"a": Outcome.FLAKY, "b": Outcome.XFAILED, "c": Outcome.ERROR})
    assert got.pass_rate == 0.5
    assert got.failing == ("c",)


def test_newly_failing_and_newly_passing_are_against_the_previous_line() -> None:
    before = entry({"a": Outcome.FAILED, "b": Outcome.FAILED, "c": Outcome.PASSED})
    now = entry(
        {"a": Outcome.PASSED, "b": Outcome.HUNG, "c": Outcome.FAILED, "d": Outcome.ERROR},
        previous=before,
    )
    assert now.newly_failing == ("c", "d")
    assert now.newly_failing_total == 2
    assert now.newly_passing == ("a",)


def test_a_previous_failing_test_that_did_not_run_now_is_not_newly_passing() -> None:
    before = entry({"a": Outcome.FAILED, "b": Outcome.FAILED})
    now = entry({"b": Outcome.SKIPPED}, previous=before)
    assert now.newly_passing == ()
    assert now.newly_failing == ()


def test_long_lists_are_capped_with_exact_totals_and_a_capped_previous_compares_nothing() -> None:
    many = {f"t{i:04d}": Outcome.FAILED for i in range(history.LIST_CAP + 7)}
    first = entry(many)
    assert len(first.failing) == history.LIST_CAP
    assert first.failing_total == history.LIST_CAP + 7
    assert not first.failing_complete
    after = entry({"t0000": Outcome.PASSED, "new": Outcome.FAILED}, previous=first)
    assert after.newly_failing is None and after.newly_passing is None
    # A complete previous list, and more newly failing tests than a line lists.
    second = entry(many, previous=entry({"x": Outcome.PASSED}))
    assert second.newly_failing_total == history.LIST_CAP + 7
    assert second.newly_failing is not None and len(second.newly_failing) == history.LIST_CAP


ids_st = st.lists(st.sampled_from([f"t{i}" for i in range(12)]), unique=True, max_size=12)
outcomes_st = st.dictionaries(
    st.sampled_from([f"t{i}" for i in range(12)]), st.sampled_from(list(Outcome)), max_size=12
)


@settings(max_examples=200, deadline=None)
@given(previous=outcomes_st, now=outcomes_st)
def test_trend_sets_follow_their_definitions(
    previous: dict[str, Outcome], now: dict[str, Outcome]
) -> None:
    before = entry(previous)
    after = entry(now, previous=before)
    failed_before = {t for t, o in previous.items() if o.gating}
    failed_now = {t for t, o in now.items() if o.gating}
    passed_now = {t for t, o in now.items() if o in (Outcome.PASSED, Outcome.FLAKY)}
    assert set(after.failing) == failed_now
    assert after.newly_failing is not None and after.newly_passing is not None
    assert set(after.newly_failing) == failed_now - failed_before
    assert set(after.newly_passing) == failed_before & passed_now
    assert after.newly_failing_total == len(failed_now - failed_before)


# -- the line: encoding, reading, corruption ------------------------------------------------

entries_st = st.builds(
    Entry,
    run_id=st.text(max_size=20),
    started=st.just(iso(T0)),
    ended=st.datetimes(
        dt.datetime(1970, 1, 2), dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)
    ).map(iso),
    wall_s=st.floats(min_value=0, max_value=1e6),
    exit_code=st.integers(min_value=0, max_value=5),
    counts=st.dictionaries(st.sampled_from([o.value for o in Outcome]), st.integers(0, 10**6)),
    outstanding=st.integers(0, 100),
    interrupted=st.booleans(),
    resumed=st.booleans(),
    pass_rate=st.none() | st.floats(min_value=0, max_value=1),
    coverage_ratio=st.none() | st.floats(min_value=0, max_value=1),
    peak_rss_bytes=st.none() | st.integers(0, 2**40),
    slowest=st.none() | st.tuples(st.text(), st.floats(min_value=0, max_value=1e6)),
    failing=st.lists(st.text(), max_size=5).map(tuple),
    failing_total=st.integers(0, 10),
    newly_failing=st.none() | st.lists(st.text(), max_size=3).map(tuple),
    newly_failing_total=st.none() | st.integers(0, 10),
    newly_passing=st.none() | st.lists(st.text(), max_size=3).map(tuple),
    git_commit=st.none() | st.text(alphabet="0123456789abcdef", min_size=40, max_size=40),
    git_dirty=st.none() | st.booleans(),
    mtest_version=st.just("0.1.0"),
    tiers=st.lists(st.integers(0, 3), unique=True).map(tuple),
    budget_s=st.none() | st.floats(min_value=0, max_value=1e6),
)


@settings(max_examples=200, deadline=None)
@given(e=entries_st)
def test_an_entry_round_trips_through_its_line(e: Entry) -> None:
    raw = history.encode(e)
    assert b"\n" not in raw
    assert raw.isascii()
    assert history.parse_lines(raw + b"\n") == [Line(raw, e)]


@pytest.mark.parametrize(
    "bad",
    [
        b"garbage",
        b"[1, 2]",
        b'{"version": 2, "run_id": "x"}',
        b'{"run_id": "x"}',
        b"{" * 5000,
        b'{"version": 1, "run_id": "x", "started": "", "ended": "yesterday", "wall_s": 1}',
    ],
    ids=["not-json", "not-object", "newer-version", "no-version", "deep", "bad-time"],
)
def test_a_line_that_does_not_read_is_corrupt_and_kept_verbatim(bad: bytes) -> None:
    good = history.encode(entry({"a": Outcome.PASSED}))
    lines = history.parse_lines(good + b"\n" + bad + b"\n\n" + good + b"\n")
    assert [ln.raw for ln in lines] == [good, bad, good]
    assert [ln.entry is None for ln in lines] == [False, True, False]
    assert history.corrupt_count(lines) == 1


def test_a_last_line_without_its_newline_reads_when_whole_and_is_corrupt_when_cut() -> None:
    good = history.encode(entry({"a": Outcome.PASSED}))
    whole = history.parse_lines(good + b"\n" + good)
    assert history.corrupt_count(whole) == 0 and len(whole) == 2
    cut = history.parse_lines(good + b"\n" + good[:40])
    assert history.corrupt_count(cut) == 1 and cut[1].raw == good[:40]


# -- compaction ---------------------------------------------------------------------------


def run_lines(count: int, *, every_s: float = 3600.0) -> list[Line]:
    return [
        line(entry({}, run_id=f"r{i}", ended=T0 + dt.timedelta(seconds=i * every_s)))
        for i in range(count)
    ]


def now_after(lines: list[Line], seconds: float = 1.0) -> float:
    last = lines[-1].entry
    assert last is not None
    return history.ended_epoch(last.ended) + seconds


def test_within_the_limits_nothing_is_rewritten() -> None:
    lines = run_lines(5)
    assert history.compaction(lines, keep_runs=5, keep_s=30 * DAY, now=now_after(lines)) is None


def test_small_limits_are_exact() -> None:
    lines = run_lines(4)
    plan = history.compaction(lines, keep_runs=3, keep_s=30 * DAY, now=now_after(lines))
    assert plan == Compaction(kept=tuple(ln.raw for ln in lines[1:]), moved=(), dropped=1)


def test_large_limits_have_slack_so_the_file_is_not_rewritten_on_every_append() -> None:
    lines = run_lines(1000 + 1000 // history.SLACK_DIVISOR)
    now = now_after(lines)
    assert history.compaction(lines, keep_runs=1000, keep_s=365 * DAY, now=now) is None
    more = [*lines, *run_lines(1)]
    plan = history.compaction(more, keep_runs=1000, keep_s=365 * DAY, now=now)
    assert plan is not None and len(plan.kept) == 1000 and plan.dropped == len(more) - 1000


def test_old_runs_go_once_past_the_age_slack_and_future_ones_stay() -> None:
    lines = run_lines(10, every_s=DAY)  # r0 … r9, one a day
    now = now_after(lines)  # r0 ended 9 days and a second ago
    assert history.compaction(lines, keep_runs=100, keep_s=9 * DAY, now=now) is None
    plan = history.compaction(lines, keep_runs=100, keep_s=8 * DAY, now=now)
    assert plan is not None
    assert plan.kept == tuple(ln.raw for ln in lines[2:])  # r1 ended 8 days + 1 s ago
    early = history.ended_epoch(iso(T0)) - DAY  # the clock was set back
    assert history.compaction(lines, keep_runs=100, keep_s=DAY, now=early) is None


def test_corrupt_lines_force_a_compaction_that_moves_them_and_keeps_every_good_line() -> None:
    good = run_lines(3)
    lines = [good[0], Line(b"junk", None), good[1], Line(b"{", None), good[2]]
    plan = history.compaction(lines, keep_runs=10, keep_s=DAY, now=now_after(good))
    assert plan == Compaction(kept=tuple(ln.raw for ln in good), moved=(b"junk", b"{"), dropped=0)


@settings(max_examples=300, deadline=None)
@given(
    shape=st.lists(st.booleans(), max_size=40),
    keep_runs=st.integers(1, 30),
    keep_days=st.integers(1, 50),
    gap_days=st.floats(0, 5),
)
def test_a_compaction_loses_no_line_and_keeps_within_the_limits(
    shape: list[bool], keep_runs: int, keep_days: int, gap_days: float
) -> None:
    lines: list[Line] = []
    for i, readable in enumerate(shape):
        ended = T0 + dt.timedelta(days=i * gap_days)
        lines.append(line(entry({}, run_id=f"r{i}", ended=ended)) if readable else Line(b"x", None))
    now = history.ended_epoch(iso(T0 + dt.timedelta(days=len(shape) * gap_days)))
    keep_s = keep_days * DAY
    plan = history.compaction(lines, keep_runs=keep_runs, keep_s=keep_s, now=now)
    good = [ln for ln in lines if ln.entry is not None]
    if plan is None:
        assert all(ln.entry is not None for ln in lines)
        return
    assert list(plan.moved) == [ln.raw for ln in lines if ln.entry is None]
    assert len(plan.kept) + plan.dropped == len(good)
    assert len(plan.kept) <= keep_runs
    kept = [ln for ln in good if ln.raw in plan.kept]
    assert [ln.raw for ln in good][len(good) - len(kept) :] == list(plan.kept), "the newest"
    assert all(now - history.ended_epoch(ln.entry.ended) <= keep_s for ln in kept if ln.entry)


# -- git ------------------------------------------------------------------------------------


def test_parse_git_status_reads_the_commit_and_changes() -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    clean = f"# branch.oid {sha}\n# branch.head main\n"
    assert gitinfo.parse_git_status(clean) == (sha, False)
    dirty = clean + "1 .M N... 100644 100644 100644 aaa bbb test_x.py\n"
    assert gitinfo.parse_git_status(dirty) == (sha, True)
    assert gitinfo.parse_git_status("# branch.oid (initial)\n# branch.head main\n") == (None, False)


def git(cwd: Path, *args: str) -> str:
    """Run the real git in ``cwd`` (with an author), and return what it printed."""
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_state_of_a_real_repository(tmp_path: Path) -> None:
    assert gitinfo.git_state(tmp_path) == (None, None)  # not a repository
    git(tmp_path, "init", "-q")
    assert gitinfo.git_state(tmp_path) == (None, False)  # no commit yet
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", "a.py")
    git(tmp_path, "commit", "-qm", "one")
    sha = git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "untracked.txt").write_text("not a change\n")
    assert gitinfo.git_state(tmp_path) == (sha, False)
    (tmp_path / "a.py").write_text("x = 2\n")
    assert gitinfo.git_state(tmp_path) == (sha, True)


# -- the file: SharedLog and append -----------------------------------------------------------


def config_for(root: Path, **changes: object) -> Config:
    """A run's config rooted at ``root`` (parsed as ``mtest history`` to skip the python check)."""
    base = make_config(["history"], root)
    # The results are dated T0: a keep of a century keeps them whenever this test runs.
    values: dict[str, object] = {"history_keep_s": 36500 * DAY, **changes}
    return dataclasses.replace(base, mode=Mode.RUN, **values)  # type: ignore[arg-type]


def test_a_partial_last_line_is_ended_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"cut')
    with store.open_shared_log(path) as log:
        log.append(b"{}\n")
    assert path.read_bytes() == b'{"cut\n{}\n'


def test_replace_moves_lines_to_the_side_file_before_the_rename(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"a\nbad\nb\n")
    (tmp_path / "log.jsonl.corrupt").write_bytes(b"older\n")
    with store.open_shared_log(path) as log:
        side = log.replace([b"a", b"b"], [b"bad"])
    assert side == tmp_path / "log.jsonl.corrupt"
    assert path.read_bytes() == b"a\nb\n"
    assert side.read_bytes() == b"older\nbad\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "log.jsonl.corrupt"]


WRITER = """
import sys
from pathlib import Path
from typing import Any
from supervisor import store
path, name, count, compact = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
for i in range(count):
    with store.open_shared_log(path) as log:
        if compact:  # rewrite the file as it is, under the lock: a rename each time
            log.replace([ln for ln in log.read().split(b"\\n") if ln], [])
        else:
            log.append(f"{name}-{i:04d}-".encode() + b"x" * 5000 + b"\\n")
"""


def test_appends_from_processes_at_once_are_whole_lines_and_none_is_lost(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    writers = [("a", 60, "0"), ("b", 60, "0"), ("c", 60, "0"), ("z", 40, "1")]
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(n), compact])
        for name, n, compact in writers
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    expected = {f"{name}-{i:04d}-".encode() + b"x" * 5000 for name, n, c in writers[:3]
                for i in range(n)}  # fmt: skip
    assert sorted(lines[:-1]) == sorted(expected)


def test_append_writes_one_line_per_run_and_compares_with_the_previous(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    warnings: list[str] = []
    history.append(config, result({"a": Outcome.FAILED}, run_id="one"), warn=warnings.append)
    history.append(config, result({"a": Outcome.PASSED}, run_id="two"), warn=warnings.append)
    path = tmp_path / ".gates" / "history.jsonl"
    got = history.read(path, warnings.append)
    assert [e.run_id for e in got] == ["one", "two"]
    assert got[1].newly_passing == ("a",)
    assert warnings == []


def test_keep_three_keeps_the_last_three(tmp_path: Path) -> None:
    path = tmp_path / "h" / "runs.jsonl"
    config = config_for(tmp_path, history_file=path, history_keep_runs=3)
    warnings: list[str] = []
    for i in range(6):
        history.append(config, result({}, run_id=f"r{i}"), warn=warnings.append)
    assert [e.run_id for e in history.read(path, warnings.append)] == ["r3", "r4", "r5"]
    assert path.read_bytes().count(b"\n") == 3
    assert warnings == []


def test_append_drops_runs_older_than_the_age_kept(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    config = config_for(tmp_path, history_file=path, history_keep_s=30 * DAY)
    history.append(config, result({}, run_id="long-ago", ended=T0))
    history.append(config, result({}, run_id="now", ended=dt.datetime.now(dt.UTC)))
    assert [e.run_id for e in history.read(path, print)] == ["now"]


def test_append_moves_corrupt_lines_aside_with_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    good = history.encode(entry({}, run_id="old"))
    path.write_bytes(good + b"\nnot json\n" + good[:30])
    config = config_for(tmp_path, history_file=path)
    warnings: list[str] = []
    history.append(config, result({}, run_id="new"), warn=warnings.append)
    assert [e.run_id for e in history.read(path, warnings.append)] == ["old", "new"]
    assert (tmp_path / "runs.jsonl.corrupt").read_bytes() == b"not json\n" + good[:30] + b"\n"
    assert warnings == [f"`{path}`: skipped 2 corrupt line(s); moved them to `{path}.corrupt`"]


OBSTACLES = ["directory", "file-as-parent"]


def unwritable(where: Path, obstacle: str) -> Path:
    """A history path that cannot be written: a directory, or a path under a plain file
    (both hold for root too, unlike permission bits)."""
    if obstacle == "directory":
        (where / "in-the-way").mkdir()
        return where / "in-the-way"
    (where / "plain").write_text("a file\n")
    return where / "plain" / "history.jsonl"


@pytest.mark.parametrize("obstacle", OBSTACLES)
def test_an_unwritable_history_is_one_mtest_error(tmp_path: Path, obstacle: str) -> None:
    path = unwritable(tmp_path, obstacle)
    with pytest.raises(MtestError) as caught:
        history.append(config_for(tmp_path, history_file=path), result({}))
    assert caught.value.message.startswith(f"cannot write the history `{path}`: ")
    assert "\n" not in caught.value.message
    assert "--history" in caught.value.hint


def test_read_warns_once_with_the_count_and_a_missing_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    warnings: list[str] = []
    assert history.read(path, warnings.append) == []
    good = history.encode(entry({}))
    path.write_bytes(b"x\n" + good + b"\ny\n")
    assert len(history.read(path, warnings.append)) == 1
    assert warnings == [
        f"`{path}`: skipped 2 corrupt line(s); the next run moves them to `{path}.corrupt`"
    ]
    with pytest.raises(MtestError, match="cannot read the history"):
        history.read(tmp_path, warnings.append)


# -- the trend table ------------------------------------------------------------------------


def test_an_empty_history_is_one_clear_line() -> None:
    assert trend.render([], "/x/history.jsonl") == [
        "no runs in the history yet (`/x/history.jsonl`); every `mtest` run adds one"
    ]


def test_the_table_has_a_row_per_run_and_the_changes_under_it() -> None:
    first = entry({"a": Outcome.FAILED, "b": Outcome.PASSED}, run_id="run-1", exit_code=1)
    fixed = {"a": Outcome.PASSED, "b": Outcome.PASSED, "c": Outcome.SKIPPED}
    second = entry(fixed, previous=first, run_id="run-2", slowest=("b", 2.5))
    lines = trend.render([first, second], "h.jsonl")
    header = lines[2]
    assert header.split("  ")[0] == "started (UTC)"
    for column in ("run", "exit", "passed", "failing", "pass rate", "new fail", "new pass"):
        assert column in header
    assert "cov" not in header and "peak rss" not in header
    row1, row2 = lines[3], lines[4]
    assert row1.startswith("2026-03-01 11:59:50  run-1")
    assert "50.0%" in row1 and "100.0%" in row2
    assert row2.endswith("b (2.5s)")
    assert lines[-1] == "run-2: newly passing: a"


def test_coverage_and_rss_columns_appear_when_a_run_measured_them() -> None:
    plain = entry({"a": Outcome.PASSED}, run_id="p")
    measured = entry({"a": Outcome.PASSED}, run_id="m", coverage_ratio=0.875,
                     peak_rss_bytes=300 * 1024 * 1024)  # fmt: skip
    lines = trend.render([plain, measured], "h")
    assert "cov" in lines[2] and "peak rss" in lines[2]
    assert "87.5%" in lines[4] and "300 MiB" in lines[4]


def test_many_newly_failing_ids_are_shortened() -> None:
    first = entry({"ok": Outcome.PASSED})
    second = entry({f"t{i}": Outcome.FAILED for i in range(8)}, previous=first, run_id="r2")
    assert trend.render([first, second], "h")[-1] == (
        "r2: newly failing: t0, t1, t2, t3, t4 and 3 more"
    )
