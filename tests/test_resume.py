"""Unit and property tests for ``supervisor.resume``: reconciling, the checkpoint, resuming."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.args import make_config
from supervisor.config import Mode
from supervisor.errors import MtestError
from supervisor.model import Outcome, TestRecord
from supervisor.resume import (
    Layout,
    ResumePoint,
    SavedState,
    ignored_flags,
    load_resume_point,
    load_state,
    reconcile,
    save_state,
)
from supervisor.store import STATE, Store

RUN = "20260101T000000Z-abcd"


def ignore(warning: str) -> None:
    """A warn callback for tests that do not look at warnings."""


def rec(test_id: str, run_id: str = RUN, outcome: Outcome = Outcome.PASSED) -> TestRecord:
    return TestRecord(run_id=run_id, test_id=test_id, outcome=outcome, duration_s=0.1, tier=1)


# -- reconcile -----------------------------------------------------------------


def test_reconcile_keeps_the_unrecorded_tests_in_selection_order() -> None:
    selected = ["t::c", "t::a", "t::d", "t::b"]
    records = [rec("t::d"), rec("t::c", outcome=Outcome.FAILED), rec("t::d")]
    assert reconcile(selected, records, RUN) == ["t::a", "t::b"]


def test_records_of_other_runs_do_not_count() -> None:
    records = [rec("t::a", run_id="older-run"), rec("t::b")]
    assert reconcile(["t::a", "t::b"], records, RUN) == ["t::a"]


def test_records_of_unselected_tests_add_nothing() -> None:
    assert reconcile(["t::a"], [rec("t::zzz")], RUN) == ["t::a"]
    assert reconcile([], [rec("t::a")], RUN) == []


ids = st.text(alphabet="abcdef:/[]", min_size=1, max_size=6)


@st.composite
def reconcile_cases(draw: st.DrawFn) -> tuple[list[str], list[TestRecord]]:
    selected = draw(st.lists(ids, unique=True, max_size=12))
    pool = selected + draw(st.lists(ids, max_size=4))
    records = draw(
        st.lists(
            st.builds(
                rec,
                test_id=st.sampled_from(pool) if pool else ids,
                run_id=st.sampled_from([RUN, "other-run", ""]),
                outcome=st.sampled_from(Outcome),
            ),
            max_size=20,
        )
    )
    return selected, records


@settings(max_examples=300, deadline=None)
@given(case=reconcile_cases())
def test_reconcile_is_exactly_the_selected_ids_without_a_record_of_this_run(
    case: tuple[list[str], list[TestRecord]],
) -> None:
    selected, records = case
    outstanding = reconcile(selected, records, RUN)
    recorded = {r.test_id for r in records if r.run_id == RUN}
    # A subsequence of the selection, in its order, without repeats ...
    position = [selected.index(t) for t in outstanding]
    assert position == sorted(set(position))
    # ... holding every selected test that has no record of this run, and nothing else.
    assert set(outstanding) == set(selected) - recorded


@settings(max_examples=150, deadline=None)
@given(case=reconcile_cases(), foreign=st.lists(ids, max_size=6))
def test_reconcile_ignores_any_number_of_other_runs_records(
    case: tuple[list[str], list[TestRecord]], foreign: list[str]
) -> None:
    selected, records = case
    others = [rec(t, run_id="other-run", outcome=Outcome.FAILED) for t in selected + foreign]
    assert reconcile(selected, records + others, RUN) == reconcile(selected, records, RUN)


# -- SavedState ----------------------------------------------------------------

texts = st.text(max_size=20)
strings = st.lists(texts, max_size=6).map(tuple)
states = st.builds(
    SavedState,
    run_id=texts,
    argv=strings,
    cwd=texts,
    selected=strings,
    outstanding=strings,
    complete=st.booleans(),
    exit_code=st.none() | st.integers(min_value=0, max_value=5),
)


@settings(max_examples=200, deadline=None)
@given(state=states)
def test_saved_state_round_trips_through_json_text(state: SavedState) -> None:
    data = json.loads(json.dumps(state.to_json()))
    assert data["version"] == 1
    assert SavedState.from_json(data) == state


GOOD: dict[str, Any] = {
    "version": 1,
    "run_id": RUN,
    "argv": ["-j", "2"],
    "cwd": "/w",
    "selected": ["t::a", "t::b"],
    "outstanding": ["t::b"],
    "complete": False,
    "exit_code": None,
}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("argv", "-j 2"),
        ("argv", ["-j", 2]),
        ("selected", None),
        ("selected", {"t::a": 1}),
        ("outstanding", [["t::b"]]),
        ("exit_code", "1"),
        ("exit_code", 1.5),
    ],
)
def test_from_json_rejects_a_malformed_field(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        SavedState.from_json({**GOOD, key: value})


@pytest.mark.parametrize("key", ["run_id", "argv", "cwd", "selected", "outstanding", "complete"])
def test_from_json_rejects_a_missing_field(key: str) -> None:
    data = {k: v for k, v in GOOD.items() if k != key}
    with pytest.raises((KeyError, ValueError)):
        SavedState.from_json(data)


def test_from_json_accepts_the_good_state() -> None:
    state = SavedState.from_json(GOOD)
    assert state.selected == ("t::a", "t::b")
    assert state.outstanding == ("t::b",)
    assert state.exit_code is None


# -- the checkpoint on disk ----------------------------------------------------


def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return root


def test_save_then_load_state(tmp_path: Path) -> None:
    root = project(tmp_path)
    config = make_config(["--retries", "1", "--", "-x"], root)
    warnings: list[str] = []
    store = Store(config.gates_dir, warnings.append)
    save_state(
        store, config, RUN, ["t::a", "t::b", "t::c"], done={"t::b": rec("t::b")}, complete=False
    )
    assert load_state(store) == SavedState(
        run_id=RUN,
        argv=("--retries", "1", "--", "-x"),
        cwd=str(root),
        selected=("t::a", "t::b", "t::c"),
        outstanding=("t::a", "t::c"),
        complete=False,
        exit_code=None,
    )
    assert warnings == []


@pytest.mark.parametrize(
    "content",
    ['{"version": 1, "run_id": "r", "argv": ["-x"', '{"version": 1, "run_id": "r"}', "[]", ""],
)
def test_a_broken_state_file_means_nothing_to_resume(tmp_path: Path, content: str) -> None:
    root = project(tmp_path)
    config = make_config(["--resume"], root)
    warnings: list[str] = []
    store = Store(config.gates_dir, warnings.append)
    config.gates_dir.mkdir()
    (config.gates_dir / STATE).write_text(content, encoding="utf-8")
    assert load_state(store) is None
    assert len(warnings) == 1 and STATE in warnings[0]
    with pytest.raises(MtestError) as caught:
        load_resume_point(store, config)
    assert caught.value.code == 4
    assert "nothing to resume" in caught.value.message


def test_a_completed_run_is_nothing_to_resume(tmp_path: Path) -> None:
    root = project(tmp_path)
    config = make_config([], root)
    store = Store(config.gates_dir, ignore)
    save_state(store, config, RUN, ["t::a"], done={"t::a": rec("t::a")}, complete=True)
    with pytest.raises(MtestError) as caught:
        load_resume_point(store, make_config(["--resume"], root))
    assert caught.value.code == 4
    assert "no run was interrupted" in caught.value.message


def test_the_run_log_is_the_truth_when_the_state_lags_behind(tmp_path: Path) -> None:
    root = project(tmp_path)
    original = make_config(["--jobs", "2", "--", "-x"], root)
    store = Store(original.gates_dir, ignore)
    selected = ["t::a", "t::b", "t::c", "t::d"]
    # The checkpoint was written when only t::a was done ...
    save_state(store, original, RUN, selected, done={"t::a": rec("t::a")}, complete=False)
    # ... but run.jsonl went on: t::b finished too; t::c only ran in an older run.
    store.begin_run(fresh=True)
    for record in (rec("t::a"), rec("t::b", outcome=Outcome.FAILED), rec("t::c", "older")):
        store.append(record)
    store.close_log()

    resume_config = make_config(["--resume", "-v", "--gates-dir", "elsewhere"], root)
    point = load_resume_point(Store(original.gates_dir, ignore), resume_config)
    assert point.run_id == RUN
    assert point.selected == tuple(selected)
    assert point.outstanding == ("t::c", "t::d")
    assert [r.test_id for r in point.records] == ["t::a", "t::b"]
    # The resumed run keeps the original options, runs (not resumes) and keeps this gates dir.
    assert point.config.mode is Mode.RUN
    assert (point.config.jobs, point.config.maxfail) == (2, 1)
    assert point.config.verbosity == 1
    assert point.config.gates_dir == resume_config.gates_dir


@pytest.mark.parametrize(
    ("argv", "ignored"),
    [
        (["--resume"], []),
        (["--resume", "-q", "--gates-dir", "g", "-v"], []),
        (["--resume", "--gates-dir=g"], []),
        (["--resume", "--metrics-file", "m.prom", "--events=-"], []),
        (["--resume", "--events", "e.jsonl", "--history", "h"], ["--history", "h"]),
        (["--resume", "-j", "4", "--tier", "0"], ["-j", "4", "--tier", "0"]),
        (["--resume", "--", "-k", "x"], ["--", "-k", "x"]),
    ],
)
def test_resume_names_the_flags_it_ignores(argv: list[str], ignored: list[str]) -> None:
    assert ignored_flags(argv) == ignored


def test_the_layout_is_saved_and_a_state_without_it_still_loads(tmp_path: Path) -> None:
    config = make_config([], project(tmp_path))
    store = Store(config.gates_dir, ignore)
    layout = Layout(rootdir="/r", inifile="/r/pytest.ini")
    save_state(store, config, RUN, ["t::a"], done={}, complete=False, layout=layout)
    state = load_state(store)
    assert state is not None and state.layout == layout
    raw = json.loads((config.gates_dir / STATE).read_text())
    del raw["rootdir"], raw["inifile"]
    (config.gates_dir / STATE).write_text(json.dumps(raw))
    old = load_state(store)
    assert old is not None and old.layout == Layout()


def test_a_resumed_run_lists_only_the_files_of_its_outstanding_tests(tmp_path: Path) -> None:
    config = make_config([], project(tmp_path))
    outstanding = ("a/t.py::x", "b.py::y[1]", "a/t.py::z")

    def point(layout: Layout) -> ResumePoint:
        return ResumePoint(
            run_id=RUN, config=config, selected=outstanding, outstanding=outstanding,
            records=[], layout=layout,
        )  # fmt: skip

    assert point(Layout(rootdir="/r")).listed() == ("a/t.py", "b.py")
    assert point(Layout()).listed() is None, "rootdir unknown: list the whole suite"
