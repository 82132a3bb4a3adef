"""Unit tests for ``--cov``'s parts that need no child: when a child saves, the totals'
words, and the store's handling of data files (``covdata``, ``probecov``, ``store``)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import covdata, probecov, worker
from supervisor.covdata import Total
from supervisor.store import COVERAGE_LAST, Store

# -- probecov.Saver: a child saves after a test that executed something new ----------


class FakeCollector:
    """coverage.py's collector as ``Saver`` sees it: sets of lines per file, emptied
    into the data file when flushed."""

    def __init__(self, stored: dict[str, set[int]]) -> None:
        self.data: dict[str, set[int]] = {}
        self.stored = stored
        self.flushes = 0

    def flush_data(self) -> bool:
        self.flushes += 1
        for name, hits in self.data.items():
            self.stored.setdefault(name, set()).update(hits)
            hits.clear()
        return True


class FakeCoverage:
    def __init__(self, *, dynamic_context: str | None = None) -> None:
        self.stored: dict[str, set[int]] = {}
        self._collector = FakeCollector(self.stored)
        self.options: dict[str, Any] = {"run:dynamic_context": dynamic_context}
        self.full_saves = 0

    @property
    def saves(self) -> int:
        return self._collector.flushes

    def get_option(self, name: str) -> Any:
        return self.options.get(name)

    def run(self, lines: dict[str, set[int]]) -> None:
        for name, hits in lines.items():
            self._collector.data.setdefault(name, set()).update(hits)

    def save(self) -> None:
        self.full_saves += 1
        self._collector.flush_data()


def test_a_test_that_runs_only_known_lines_is_not_saved_again() -> None:
    cov = FakeCoverage()
    saver = probecov.Saver(cov)
    for lines in ({"a.py": {1, 2}}, {"a.py": {1, 2}}, {"a.py": {2}, "b.py": set()}):
        cov.run(lines)
        saver.after_test()
    assert cov.saves == 1
    cov.run({"a.py": {1, 3}})
    saver.after_test()
    assert (cov.saves, cov.stored["a.py"]) == (2, {1, 2, 3})
    assert (saver.tests, saver.saves) == (4, 2)
    assert cov.full_saves == 1  # the first; later ones only flush the new lines


def test_new_lines_in_a_set_of_the_same_size_are_news() -> None:
    cov = FakeCoverage()
    saver = probecov.Saver(cov)
    for line in (1, 2, 3):
        cov.run({"a.py": {line}})
        saver.after_test()
    assert cov.saves == 3 and cov.stored["a.py"] == {1, 2, 3}


TESTS = st.lists(
    st.dictionaries(st.sampled_from(["a.py", "b.py", "c.py"]), st.sets(st.integers(1, 30))),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(TESTS)
def test_after_every_test_everything_executed_so_far_is_saved(tests: list[Any]) -> None:
    cov = FakeCoverage()
    saver = probecov.Saver(cov)
    executed: dict[str, set[int]] = {}
    news = 0
    for lines in tests:
        cov.run(lines)
        new = any(not hits <= executed.get(name, set()) for name, hits in lines.items())
        news += new
        for name, hits in lines.items():
            executed.setdefault(name, set()).update(hits)
        saver.after_test()
        assert {n: h for n, h in executed.items() if h} == {
            n: h for n, h in cov.stored.items() if h
        }
    assert cov.saves == news  # and never when nothing new ran


def test_with_dynamic_contexts_every_test_is_saved() -> None:
    cov = FakeCoverage(dynamic_context="test_function")
    saver = probecov.Saver(cov)
    for _ in range(3):
        cov.run({"a.py": {1}})
        saver.after_test()
    assert cov.saves == 3


def test_an_unknown_collector_means_saving_after_every_test() -> None:
    class Other:
        def __init__(self) -> None:
            self._collector = object()
            self.saves = 0

        def get_option(self, name: str) -> Any:
            return None

        def save(self) -> None:
            self.saves += 1

    cov = Other()
    saver = probecov.Saver(cov)
    saver.after_test()
    saver.after_test()
    assert cov.saves == 2


def test_a_failing_save_is_one_line_and_the_tests_go_on() -> None:
    class Broken(FakeCoverage):
        def save(self) -> None:
            raise OSError("disk full")

    cov = Broken()
    cov.run({"a.py": {1}})
    err = io.StringIO()
    with redirect_stderr(err):
        probecov.Saver(cov).after_test()
    assert err.getvalue() == "mtest: coverage.py could not save its data: disk full\n"


def test_both_sides_speak_the_same_protocol() -> None:
    assert covdata.ENV_VAR == probecov.ENV
    assert covdata.ENV_VAR in worker.PROTOCOL_VARS
    assert covdata.MARK == probecov.MARK
    assert covdata.NO_COVERAGE_EXIT == probecov.NO_COVERAGE_EXIT
    assert covdata.SCRIPT.is_file() and covdata.SCRIPT.name == "probecov.py"
    assert set(probecov.CHILD_FILES) <= {p.name for p in covdata.SCRIPT.parent.glob("probe*.py")}


# -- what the run says about its total ----------------------------------------------


def test_the_total_in_words() -> None:
    total = Total(percent=87.54321, display="87.54", fail_under=90.0, failed=True)
    assert total.ratio == pytest.approx(0.8754321)
    assert total.short == "coverage 87.54%"
    assert total.fail_line == "FAIL required test coverage of 90% not reached: total 87.54%"
    assert Total(percent=95.0, display="95.00", fail_under=90.0).fail_line == ""
    none = Total(percent=None, fail_under=80.5, failed=True, problem="no test saved coverage data")
    assert (none.ratio, none.short) == (None, "coverage: no data")
    assert none.fail_line.endswith("80.5% not reached: no test saved coverage data")


# -- the store's data files -----------------------------------------------------------


def new_store(root: Path) -> Store:
    return Store(root, lambda _: None)


def part(store: Store, run_id: str, pid: int = 1) -> Path:
    path = store.paths.coverage / f".coverage.{run_id}.{pid}.abc123"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(run_id.encode())
    return path


def test_another_runs_data_files_are_moved_aside_and_this_runs_stay(tmp_path: Path) -> None:
    store = new_store(tmp_path / ".gates")
    old = [part(store, "OLD", 1), part(store, "OLDER", 2)]
    mine = part(store, "NOW")
    (store.paths.coverage_stale).mkdir()
    (store.paths.coverage_stale / "left-from-before").write_text("x")
    store.begin_coverage("NOW")
    assert store.coverage_parts() == [mine] == store.coverage_parts("NOW")
    assert sorted(p.name for p in store.paths.coverage_stale.iterdir()) == sorted(
        p.name for p in old
    )
    assert store.notes == [
        f"2 coverage data file(s) of an earlier run were in `{store.paths.coverage}`: "
        f"moved to `{store.paths.coverage_stale}`, not combined into this run"
    ]
    store.drop_coverage_parts("NOW")
    assert store.coverage_parts() == []


def test_nothing_in_the_way_means_no_note(tmp_path: Path) -> None:
    store = new_store(tmp_path / ".gates")
    store.begin_coverage("NOW")
    assert store.paths.coverage.is_dir() and store.notes == []


def test_a_data_file_mtest_did_not_leave_is_moved_aside(tmp_path: Path) -> None:
    store = new_store(tmp_path / ".gates")
    target = tmp_path / ".coverage"
    assert store.set_aside(target, owned=False)  # nothing there
    target.write_text("the user's")
    assert store.set_aside(target, owned=True) and target.read_text() == "the user's"
    assert store.notes == []
    assert store.set_aside(target, owned=False)
    assert not target.exists()
    assert (store.paths.coverage_replaced / ".coverage").read_text() == "the user's"
    assert "was not written by mtest" in store.notes[0]


def test_mtest_knows_its_own_data_file_by_size_and_mtime(tmp_path: Path) -> None:
    store = new_store(tmp_path / ".gates")
    target = tmp_path / ".coverage"
    target.write_text("combined")
    assert not covdata._owned(store, target)  # no last.json: not known to be mtest's
    total = Total(percent=50.0, display="50.00", data_file=target)
    store.write_json(COVERAGE_LAST, covdata._last_json(total, "R", target))
    assert covdata._owned(store, target)
    last = json.loads(store.paths.file(COVERAGE_LAST).read_text())
    assert (last["version"], last["run_id"], last["percent"]) == (1, "R", 50.0)
    target.write_text("changed by someone else")
    assert not covdata._owned(store, target)
    target.unlink()
    assert covdata._owned(store, target)  # nothing there to keep
