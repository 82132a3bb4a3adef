"""Unit and property tests for ``supervisor.store``: records, atomic JSON, the lock, bundles.

Warnings are collected in a plain list (``Store(root, warnings.append)``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.errors import MtestError
from supervisor.model import Outcome, TestRecord
from supervisor.store import (
    DURATIONS,
    LAST_RUN_CAP_BYTES,
    QUARANTINE,
    STATE,
    Paths,
    Store,
    parse_records,
    write_atomic,
)


def rec(test_id: str = "tests/test_a.py::test_one", **changes: Any) -> TestRecord:
    values: dict[str, Any] = {
        "run_id": "r1",
        "test_id": test_id,
        "outcome": Outcome.PASSED,
        "duration_s": 0.125,
        "tier": 1,
        "ts": "2026-01-01T00:00:00.000Z",
    }
    values.update(changes)
    return TestRecord(**values)


def line_of(record: TestRecord) -> bytes:
    """One line of run.jsonl, serialized as ``Store.append`` does."""
    return json.dumps(record.to_json(), ensure_ascii=True).encode() + b"\n"


def normalized(record: TestRecord) -> TestRecord:
    """The record as it reads back (``to_json`` rounds the duration)."""
    return TestRecord.from_json(json.loads(json.dumps(record.to_json())))


def new_store(root: Path) -> tuple[Store, list[str]]:
    warnings: list[str] = []
    return Store(root, warnings.append), warnings


# -- parse_records -------------------------------------------------------------


def test_parse_records_reads_every_complete_line() -> None:
    records = [rec("a"), rec("b", outcome=Outcome.FAILED, message="boom", bundle="failures/b.txt")]
    assert parse_records(b"".join(line_of(r) for r in records)) == (records, 0)


def test_a_partial_last_line_is_ignored_silently() -> None:
    whole = line_of(rec("b"))
    data = line_of(rec("a")) + whole[: len(whole) // 2]
    assert parse_records(data) == ([rec("a")], 0)


def test_damaged_complete_lines_are_counted_and_skipped() -> None:
    data = (
        line_of(rec("a"))
        + b"garbage\n"
        + b'{"run_id": "r1"}\n'  # an object, but not a record
        + b"[1, 2]\n"
        + b'{"run_id": "r1", "test_id": "x", "outcome": "exploded"}\n'
        + b'{"run_id": "r1", "test_id": "x", "outcome": "passed", "markers": 5}\n'
        + b"\n"  # blank lines are not damage
        + line_of(rec("b"))
    )
    assert parse_records(data) == ([rec("a"), rec("b")], 5)


def test_a_deeply_nested_damaged_line_is_counted_not_raised() -> None:
    assert parse_records(b"[" * 100_000 + b"\n" + line_of(rec("a"))) == ([rec("a")], 1)


records_st = st.lists(
    st.builds(
        TestRecord,
        run_id=st.text(max_size=12),
        test_id=st.text(max_size=40),
        outcome=st.sampled_from(Outcome),
        duration_s=st.floats(min_value=0, max_value=1e6),
        tier=st.integers(0, 3),
        markers=st.lists(st.text(max_size=8), max_size=3).map(tuple),
        attempt=st.integers(1, 5),
        chunk=st.integers(0, 1000),
        quarantined=st.booleans(),
        message=st.text(max_size=40),
        bundle=st.none() | st.text(max_size=20),
        ts=st.text(max_size=24),
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(records=records_st, cut=st.integers(min_value=0))
def test_a_log_truncated_at_any_byte_reads_as_a_prefix(records: list[TestRecord], cut: int) -> None:
    lines = [line_of(r) for r in records]
    data = b"".join(lines)
    cut %= len(data) + 1
    read, damaged = parse_records(data[:cut])
    assert damaged == 0
    # Exactly the records whose JSON object survived whole (its newline may be cut off).
    ends, offset = [], 0
    for line in lines:
        offset += len(line)
        ends.append(offset - 1)
    survived = sum(1 for end in ends if end <= cut)
    assert read == [normalized(r) for r in records[:survived]]


# -- write_atomic --------------------------------------------------------------


def test_write_atomic_creates_parents_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "state.json"
    write_atomic(target, '{"version": 1}\n')
    assert target.read_text(encoding="utf-8") == '{"version": 1}\n'
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_write_atomic_replaces_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    write_atomic(target, "old and much longer content\n")
    write_atomic(target, "néw ✓\n")
    assert target.read_text(encoding="utf-8") == "néw ✓\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.md"]


# -- read_json / write_json / load ---------------------------------------------


def test_a_missing_json_file_is_absent_without_a_word(tmp_path: Path) -> None:
    store, warnings = new_store(tmp_path)
    assert store.read_json("state.json") is None
    assert warnings == []


def test_write_json_then_read_json_round_trips(tmp_path: Path) -> None:
    store, warnings = new_store(tmp_path)
    data = {"version": 1, "ids": ["a", "é"], "nested": {"n": 1.5}}
    store.write_json("durations.json", data)
    assert store.read_json("durations.json") == data
    assert warnings == []


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"  \n\t\n", id="blank"),
        pytest.param(b'{"version": 1, "selected": ["a", "b', id="truncated"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"version": 2, "x": 1}', id="newer-version"),
        pytest.param(b'{"version": "1"}', id="version-as-text"),
        pytest.param(b'{"x": 1}', id="no-version"),
        pytest.param(b"[1, 2, 3]", id="a-list"),
        pytest.param(b'"version"', id="a-string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"\xff\xfe{\x00", id="not-utf8"),
    ],
)
def test_an_unusable_json_file_is_absent_with_one_warning_naming_it(
    tmp_path: Path, content: bytes
) -> None:
    store, warnings = new_store(tmp_path)
    (tmp_path / "state.json").write_bytes(content)
    assert store.read_json("state.json") is None
    assert len(warnings) == 1
    assert str(tmp_path / "state.json") in warnings[0]


def test_an_unreadable_json_path_is_absent_with_one_warning(tmp_path: Path) -> None:
    store, warnings = new_store(tmp_path)
    (tmp_path / "state.json").mkdir()
    assert store.read_json("state.json") is None
    assert len(warnings) == 1
    assert str(tmp_path / "state.json") in warnings[0]


def test_a_deeply_nested_json_file_is_absent_with_one_warning(tmp_path: Path) -> None:
    store, warnings = new_store(tmp_path)
    (tmp_path / "state.json").write_text("[" * 100_000)
    assert store.read_json("state.json") is None
    assert len(warnings) == 1


def decode_ids(data: dict[str, Any]) -> list[str]:
    ids = data["ids"]
    if not isinstance(ids, list):
        raise ValueError("`ids` is not a list")
    return [str(i) for i in ids]


def test_load_decodes_a_good_file(tmp_path: Path) -> None:
    store, warnings = new_store(tmp_path)
    store.write_json("q.json", {"version": 1, "ids": ["a", "b"]})
    assert store.load("q.json", decode_ids) == ["a", "b"]
    assert warnings == []


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"version": 1, "ids": "a"}, "`ids` is not a list"),
        ({"version": 1}, "'ids'"),
    ],
)
def test_load_reads_a_file_its_decoder_rejects_as_absent(
    tmp_path: Path, data: dict[str, Any], problem: str
) -> None:
    store, warnings = new_store(tmp_path)
    store.write_json("q.json", data)
    assert store.load("q.json", decode_ids) is None
    assert len(warnings) == 1
    assert str(tmp_path / "q.json") in warnings[0]
    assert problem in warnings[0]


def test_load_of_a_missing_file_never_calls_the_decoder(tmp_path: Path) -> None:
    store, warnings = new_store(tmp_path)
    seen: list[dict[str, Any]] = []

    def decode(data: dict[str, Any]) -> int:
        seen.append(data)
        return 1

    assert store.load("missing.json", decode) is None
    assert seen == [] and warnings == []


# -- the lock ------------------------------------------------------------------

HOLDER = "mtest pid 4242 (started 2026-01-01T00:00:00Z, `mtest -j 2`)"


def test_a_second_store_on_a_locked_directory_is_refused_naming_the_holder(
    tmp_path: Path,
) -> None:
    first, _ = new_store(tmp_path / ".gates")
    second, _ = new_store(tmp_path / ".gates")
    with first.locked(HOLDER):
        assert (tmp_path / ".gates" / "lock").read_text(encoding="utf-8") == HOLDER
        with pytest.raises(MtestError) as caught, second.locked("someone else"):
            pass
        assert caught.value.code == 4
        assert HOLDER in caught.value.message
        assert caught.value.hint
        # The refused attempt leaves the holder's line in place.
        assert (tmp_path / ".gates" / "lock").read_text(encoding="utf-8") == HOLDER


def test_the_lock_is_free_again_after_the_run(tmp_path: Path) -> None:
    first, _ = new_store(tmp_path)
    second, _ = new_store(tmp_path)
    with first.locked(HOLDER):
        pass
    assert (tmp_path / "lock").read_text(encoding="utf-8") == ""
    with second.locked("run two") as held:
        assert held is second
        assert (tmp_path / "lock").read_text(encoding="utf-8") == "run two"


def test_an_unusable_gates_directory_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    store, _ = new_store(tmp_path / "file" / ".gates")
    with pytest.raises(MtestError) as caught, store.locked(HOLDER):
        pass
    assert caught.value.code == 4
    assert str(tmp_path / "file" / ".gates") in caught.value.message


# -- run.jsonl -----------------------------------------------------------------


def test_records_appended_in_a_run_read_back(tmp_path: Path) -> None:
    store, warnings = new_store(tmp_path)
    records = [rec("a"), rec("b", outcome=Outcome.CRASHED, attempt=2)]
    store.begin_run(fresh=True)
    for record in records:
        store.append(record)
    store.close_log()
    assert store.read_records() == records
    assert warnings == []


def test_a_fresh_run_starts_from_an_empty_last_run(tmp_path: Path) -> None:
    store, _ = new_store(tmp_path)
    store.begin_run(fresh=True)
    store.append(rec("old"))
    store.write_bundle("old.txt", "old bundle")
    store.close_log()
    store.begin_run(fresh=True)
    store.close_log()
    assert store.read_records() == []
    assert list(store.paths.failures.iterdir()) == []


def test_a_resumed_run_ends_a_partial_last_line_before_appending(tmp_path: Path) -> None:
    store, warnings = new_store(tmp_path)
    store.paths.last_run.mkdir(parents=True)
    partial = line_of(rec("cut"))[:30]
    store.paths.run_log.write_bytes(line_of(rec("a")) + partial)
    store.begin_run(fresh=False)
    store.append(rec("b"))
    store.close_log()
    data = store.paths.run_log.read_bytes()
    assert data == line_of(rec("a")) + partial + b"\n" + line_of(rec("b"))
    assert store.read_records() == [rec("a"), rec("b")]
    assert len(warnings) == 1
    assert "1 damaged line" in warnings[0]


def test_a_resumed_run_after_a_clean_end_adds_no_blank_line(tmp_path: Path) -> None:
    store, warnings = new_store(tmp_path)
    store.begin_run(fresh=True)
    store.append(rec("a"))
    store.close_log()
    store.begin_run(fresh=False)
    store.append(rec("b"))
    store.close_log()
    assert store.paths.run_log.read_bytes() == line_of(rec("a")) + line_of(rec("b"))
    assert warnings == []


def test_reading_records_of_a_run_that_never_began(tmp_path: Path) -> None:
    store, warnings = new_store(tmp_path)
    assert store.read_records() == []
    assert warnings == []


# -- bundles -------------------------------------------------------------------


def test_a_bundle_lands_in_failures(tmp_path: Path) -> None:
    store, _ = new_store(tmp_path)
    store.begin_run(fresh=True)
    store.close_log()
    store.write_bundle("tests_test_x.py_test_y_0123456789.txt", "diagnosis ✓")
    written = store.paths.failures / "tests_test_x.py_test_y_0123456789.txt"
    assert written.read_text(encoding="utf-8") == "diagnosis ✓"


@pytest.mark.parametrize(
    "name",
    ["../escape.txt", "../../escape.txt", "sub/x.txt", "..", ".", "", "./../x.txt"],
)
def test_a_bundle_name_escaping_failures_is_refused(tmp_path: Path, name: str) -> None:
    store, _ = new_store(tmp_path / ".gates")
    store.begin_run(fresh=True)
    store.close_log()
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(MtestError) as caught:
        store.write_bundle(name, "should not be written")
    assert caught.value.code == 3
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_an_absolute_bundle_name_is_refused(tmp_path: Path) -> None:
    store, _ = new_store(tmp_path / ".gates")
    store.begin_run(fresh=True)
    store.close_log()
    outside = tmp_path / "outside.txt"
    with pytest.raises(MtestError):
        store.write_bundle(str(outside), "x")
    assert not outside.exists()


def test_a_symlink_in_failures_cannot_redirect_a_bundle(tmp_path: Path) -> None:
    store, _ = new_store(tmp_path / ".gates")
    store.begin_run(fresh=True)
    store.close_log()
    outside = tmp_path / "outside.txt"
    (store.paths.failures / "link.txt").symlink_to(outside)
    with pytest.raises(MtestError):
        store.write_bundle("link.txt", "x")
    assert not outside.exists()


# -- the state directory under attack --------------------------------------------


def run_with(store: Store, first: list[TestRecord], attack: Any, then: list[TestRecord]) -> None:
    """Append ``first``, let ``attack()`` do its worst, append ``then``, end the run."""
    with store.locked("mtest (test)"):
        store.begin_run(fresh=True)
        for record in first:
            store.append(record)
        attack()
        for record in then:
            store.append(record)


def test_records_survive_the_gates_directory_being_deleted_mid_run(tmp_path: Path) -> None:
    root = tmp_path / ".gates"
    store, warnings = new_store(root)
    run_with(store, [rec("a")], lambda: shutil.rmtree(root), [rec("b")])
    assert store.read_records() == [rec("a"), rec("b")]
    assert len(store.notes) == 1 and "removed or replaced" in store.notes[0]
    assert f"`{root}`" in store.notes[0] and "restored from mtest's open handle" in store.notes[0]
    assert warnings == []


def test_the_next_record_after_a_removal_restores_the_log_at_once(tmp_path: Path) -> None:
    root = tmp_path / ".gates"
    store, _ = new_store(root)
    store.begin_run(fresh=True)
    store.append(rec("a"))
    shutil.rmtree(root)
    store.append(rec("b"))
    assert len(store.notes) == 1, "known before the summary is written"
    store.append(rec("c"))
    assert store.read_records() == [rec("a"), rec("b"), rec("c")], "while the run goes on"
    store.close_log()
    assert store.read_records() == [rec("a"), rec("b"), rec("c")]


def test_records_survive_the_gates_directory_being_renamed_mid_run(tmp_path: Path) -> None:
    root = tmp_path / ".gates"
    store, _ = new_store(root)
    run_with(store, [rec("a")], lambda: root.rename(tmp_path / "moved"), [rec("b")])
    assert store.read_records() == [rec("a"), rec("b")]
    assert len(store.notes) == 1
    # The renamed copy is left alone; the path has every record again.
    moved = store.read_records(tmp_path / "moved" / "last-run" / "run.jsonl")
    assert moved == [rec("a"), rec("b")]


def test_a_replaced_run_log_is_restored_and_names_the_file(tmp_path: Path) -> None:
    store, _ = new_store(tmp_path / ".gates")

    def replace_log() -> None:
        store.paths.run_log.unlink()
        store.paths.run_log.write_bytes(b"written by a test\n")

    run_with(store, [rec("a")], replace_log, [rec("b")])
    assert store.read_records() == [rec("a"), rec("b")]
    assert store.notes and f"`{store.paths.run_log}`" in store.notes[0]


def test_deleting_the_directory_between_every_append_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / ".gates"
    store, _ = new_store(root)
    records = [rec(f"t{n}") for n in range(5)]
    with store.locked("mtest (test)"):
        store.begin_run(fresh=True)
        for record in records:
            store.append(record)
            shutil.rmtree(root, ignore_errors=True)
            store.ensure_log()  # restores, and later appends go to the restored file
        store.write_summary("# summary\n")
    assert store.read_records() == records
    assert store.read_summary() == "# summary\n"
    assert len(store.notes) == 1, "one note, however often it happened"


def test_writes_after_the_removal_land_in_recreated_directories(tmp_path: Path) -> None:
    root = tmp_path / ".gates"
    store, _ = new_store(root)
    with store.locked("mtest (test)"):
        store.begin_run(fresh=True)
        store.append(rec("a"))
        shutil.rmtree(root)
        store.write_bundle("a.txt", "diagnosis")
        store.write_chunk_junit(3, "<testsuites/>")
        store.write_json(DURATIONS, {"version": 1})
        store.write_summary("# summary\n")
    assert (store.paths.failures / "a.txt").read_text(encoding="utf-8") == "diagnosis"
    assert store.paths.chunk_junit(3).read_text(encoding="utf-8") == "<testsuites/>"
    assert store.read_json(DURATIONS) == {"version": 1}
    assert store.read_records() == [rec("a")]


def test_a_gates_path_turned_into_a_file_becomes_notes_not_a_traceback(tmp_path: Path) -> None:
    root = tmp_path / ".gates"
    store, _ = new_store(root)

    def replace_with_file() -> None:
        shutil.rmtree(root)
        root.write_text("not a directory")

    with store.locked("mtest (test)"):
        store.begin_run(fresh=True)
        store.append(rec("a"))
        replace_with_file()
        store.append(rec("b"))
        store.write_bundle("b.txt", "diagnosis")
        store.write_json(QUARANTINE, {"version": 1})
        store.write_summary("# summary\n")
    assert root.read_text() == "not a directory"
    assert any("could not write" in note and "b.txt" in note for note in store.notes)
    assert any("run.jsonl could not be restored" in note for note in store.notes)


def test_the_lock_is_released_when_its_file_was_deleted(tmp_path: Path) -> None:
    root = tmp_path / ".gates"
    store, _ = new_store(root)
    with store.locked("mtest (test)"):
        shutil.rmtree(root)
    again, _ = new_store(root)
    with again.locked("mtest (again)"):
        assert again.paths.lock.read_text() == "mtest (again)"


# -- the cap on last-run/ ----------------------------------------------------------


def test_past_the_cap_a_bundle_is_a_stub_and_the_run_says_so_once(tmp_path: Path) -> None:
    store = Store(tmp_path / ".gates", lambda message: None, cap_bytes=10_000)
    store.begin_run(fresh=True)
    store.append(rec("a"))
    store.write_bundle("first.txt", "x" * 6_000)
    store.write_bundle("second.txt", "y" * 6_000)
    store.write_bundle("third.txt", "z" * 100)
    store.write_chunk_junit(0, "<testsuites>" + "j" * 6_000 + "</testsuites>")
    store.close_log()
    assert (store.paths.failures / "first.txt").read_text() == "x" * 6_000
    stub = (store.paths.failures / "second.txt").read_text()
    assert "reached its cap of" in stub and "6000 bytes not kept" in stub
    assert stub.endswith("y" * 2000 + "\n"), "the head of the bundle, capped"
    assert (store.paths.failures / "third.txt").read_text() == "z" * 100, "small ones still fit"
    assert not store.paths.chunk_junit(0).exists()
    store.write_bundle("fourth.txt", "test:    t.py::t\noutcome: failed\n" + "o" * 9_000)
    assert (
        "test:    t.py::t\noutcome: failed\n" in (store.paths.failures / "fourth.txt").read_text()
    )
    assert len(store.notes) == 1 and "reached its cap" in store.notes[0]
    assert store.read_records() == [rec("a")], "records are never capped"


def test_a_resumed_run_counts_what_last_run_already_holds(tmp_path: Path) -> None:
    store = Store(tmp_path / ".gates", lambda message: None, cap_bytes=10_000)
    store.begin_run(fresh=True)
    store.write_bundle("first.txt", "x" * 6_000)
    store.close_log()
    resumed = Store(tmp_path / ".gates", lambda message: None, cap_bytes=10_000)
    resumed.begin_run(fresh=False)
    resumed.write_bundle("second.txt", "y" * 6_000)
    resumed.close_log()
    assert "reached its cap" in (resumed.paths.failures / "second.txt").read_text()


def test_the_default_cap_is_a_named_quarter_gibibyte() -> None:
    assert LAST_RUN_CAP_BYTES == 256 * 1024 * 1024
    assert Store(Path("x"), print).cap_bytes == LAST_RUN_CAP_BYTES


def test_every_name_under_gates_comes_from_the_store(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    assert paths.durations == tmp_path / DURATIONS == tmp_path / "durations.json"
    assert paths.quarantine == tmp_path / QUARANTINE == tmp_path / "quarantine.json"
    assert paths.state == tmp_path / STATE == tmp_path / "state.json"
    assert paths.lock == tmp_path / "lock"
    assert paths.run_log == tmp_path / "last-run" / "run.jsonl"
    assert paths.chunk_junit(12) == tmp_path / "last-run" / "junit-0012.xml"
