"""Tests for supervisor.collecting and probedeps: what a lazy run collects, and keys after."""

from __future__ import annotations

from supervisor import collecting, events, index, parse
from supervisor.model import Fingerprint, Outcome, TestItem, TestResult
from supervisor.probedeps import Deps, _resolve, imported_names

HELLO = events.Hello(pid=1, python="3.12.1", executable="/v/bin/python", pytest="8.3.2",
                     plugins=("pytest-8.3.2",), rootdir="/r", inifile=None)  # fmt: skip


def _items(file: str, *names: str) -> tuple[TestItem, ...]:
    return tuple(TestItem(test_id=f"{file}::{n}", file=file) for n in names)


def _tree(files: dict[str, bytes]) -> index.Reader:
    return files.get


def test_look_up_splits_the_walk_into_known_and_stale_files() -> None:
    tree = {"t/test_a.py": b"a", "t/test_b.py": b"b"}
    walk = events.Files(pid=1, files=("t/test_a.py", "t/test_b.py"))
    first = collecting.look_up(index.Index(), HELLO, walk, args=(), environ={}, reader=_tree(tree))
    assert first.known == {} and first.stale == ["t/test_a.py", "t/test_b.py"]
    listings = {f: events.FileListing(file=f, items=_items(f, "test_x")) for f in ("t/test_a.py",)}
    stored = collecting.updated(index.Index(), first, listings, (), reader=_tree(tree))

    tree["t/test_b.py"] = b"b2"
    second = collecting.look_up(stored, HELLO, walk, args=(), environ={}, reader=_tree(tree))
    assert second.known == {"t/test_a.py": _items("t/test_a.py", "test_x")}
    assert second.stale == ["t/test_b.py"]
    assert second.env_changed == ()
    other = collecting.look_up(
        stored, HELLO, walk, args=("-k", "x"), environ={}, reader=_tree(tree)
    )
    assert other.known == {} and other.env_changed == ("args",)


def test_updated_keeps_problems_forgets_blamed_files_and_prunes_on_whole_suites() -> None:
    tree = {"a.py": b"a", "b.py": b"b", "c.py": b"c", "d.py": b"d"}
    walk = events.Files(pid=1, files=tuple(tree))
    found = collecting.look_up(index.Index(), HELLO, walk, args=(), environ={},
                               reader=_tree(tree))  # fmt: skip
    listings = {
        "a.py": events.FileListing(file="a.py", items=_items("a.py", "t"), deps=("h.py",)),
        "b.py": events.FileListing(file="b.py", items=()),
        "c.py": events.FileListing(file="c.py", items=_items("zzz.py", "t")),  # not its own
        "d.py": events.FileListing(file="d.py", items=_items("d.py", "t")),
    }
    problem = TestResult(test_id="b.py", outcome=Outcome.ERROR, duration_s=0.0, message="boom")
    new = collecting.updated(
        index.Index(), found, listings, [problem], reader=_tree(tree), blamed=["d.py"],
        existing=["a.py", "b.py", "c.py", "d.py"],
    )  # fmt: skip
    assert sorted(new.files) == ["a.py", "b.py"]
    assert new.files["a.py"].key.deps == ("h.py",)
    assert new.files["b.py"].problem == index.Problem(error=True, message="boom")
    pruned = collecting.updated(new, found, {}, (), reader=_tree(tree), existing=["a.py"])
    assert sorted(pruned.files) == ["a.py"]
    narrow = collecting.updated(new, found, {}, (), reader=_tree(tree), existing=None)
    assert sorted(narrow.files) == ["a.py", "b.py"], "a narrow run does not know what is gone"


def test_spread_balances_bytes_and_keeps_walk_order_within_a_batch() -> None:
    files = ["a.py", "b.py", "c.py", "d.py"]
    sizes = {"a.py": 10, "b.py": 100, "c.py": 10, "d.py": 80}
    batches = collecting.spread(files, sizes, 2)
    assert sorted(batches) == [("a.py", "c.py", "d.py"), ("b.py",)], "100 bytes each"
    assert collecting.spread(files, sizes, 9) == [("b.py",), ("d.py",), ("a.py",), ("c.py",)]
    assert collecting.spread([], sizes, 2) == []
    assert collecting.spread(files, sizes, 0) == []


def test_workers_for_spreads_a_first_run_and_keeps_a_few_changes_in_one_worker() -> None:
    assert collecting.workers_for([], jobs=4, cold=True) == 0
    assert collecting.workers_for(["a", "b"], jobs=4, cold=True) == 2
    assert collecting.workers_for(["a", "b"], jobs=4, cold=False) == 1
    assert collecting.workers_for(list("abcdef"), jobs=4, cold=False) == 4


def test_fingerprint_of_a_hello() -> None:
    fp = parse.fingerprint_of(HELLO)
    assert isinstance(fp, Fingerprint) and fp.pytest == "8.3.2" and fp.rootdir == "/r"


def test_imported_names_resolve_relative_imports_and_submodules() -> None:
    source = b"import a.b\nfrom . import sib\nfrom ..up import x, y\nfrom m import *\n"
    names = imported_names(source, "pkg.tests")
    assert names == ["a", "a.b", "pkg", "pkg.tests", "pkg.tests.sib", "pkg.up", "pkg.up.x",
                     "pkg.up.y", "m"]  # fmt: skip
    assert imported_names(b"def broken(:\n", "") == []
    assert _resolve("m", 3, "pkg") is None, "above the top-level package"


def test_deps_follow_imports_of_local_modules_only(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "proj"
    (root / "venv").mkdir(parents=True)
    (root / "helper.py").write_text("import data\nimport json\n")
    (root / "data.py").write_text("CASES = [1]\n")
    (root / "test_x.py").write_text("import helper\n")
    (root / "venv" / "vendored.py").write_text("")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.syspath_prepend(str(root / "venv"))
    import importlib

    deps = Deps(str(root), outside=(str(root / "venv") + "/",))
    before = deps.snapshot()
    module = importlib.import_module("test_x")
    importlib.import_module("vendored")
    try:
        assert deps.of(module, before) == ["data.py", "helper.py"]
        # Imported earlier (not new now): still found through the import statements.
        assert deps.of(module, deps.snapshot()) == ["data.py", "helper.py"]
    finally:
        import sys

        for name in ("test_x", "helper", "data", "vendored"):
            sys.modules.pop(name, None)


def test_import_costs_go_to_the_first_test_of_each_file_not_yet_imported() -> None:
    items = (*_items("a.py", "t1", "t2"), *_items("b.py", "t1"))
    estimates = {"a.py::t1": 0.1, "a.py::t2": 0.1, "b.py::t1": 0.2}
    result = collecting.with_import_costs(estimates, items, {"a.py": 2.0, "c.py": 9.0})
    assert result == {"a.py::t1": 2.1, "a.py::t2": 0.1, "b.py::t1": 0.2}
    assert estimates["a.py::t1"] == 0.1, "the input is not changed"


def test_collection_seconds_survive_the_index_file_and_only_known_files_cost() -> None:
    tree = {"a.py": b"a", "b.py": b"b"}
    walk = events.Files(pid=1, files=("a.py", "b.py"))
    first = collecting.look_up(index.Index(), HELLO, walk, args=(), environ={}, reader=_tree(tree))
    listings = {
        "a.py": events.FileListing(file="a.py", items=_items("a.py", "t"), collect_s=1.5),
        "b.py": events.FileListing(file="b.py", items=_items("b.py", "t"), collect_s=0.5),
    }
    stored = collecting.updated(index.Index(), first, listings, (), reader=_tree(tree))
    again = index.Index.from_json(stored.to_json())
    assert again.costs() == {"a.py": 1.5, "b.py": 0.5}
    tree["b.py"] = b"changed"
    found = collecting.look_up(again, HELLO, walk, args=(), environ={}, reader=_tree(tree))
    assert found.costs == {"a.py": 1.5}, "a stale file is collected before the plan"
