"""Tests for supervisor.index: keys, invalidation rules, lookup/update, the JSON file."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import store
from supervisor.index import (
    EnvKey,
    FileKey,
    Index,
    Listing,
    Problem,
    chain_paths,
    collection_args,
    env_key,
    file_keys,
    fs_reader,
    hash_files,
    lookup,
    prune,
    update,
    with_deps,
)
from supervisor.model import Fingerprint, TestItem

A = "tests/test_a.py"
B = "tests/sub/test_b.py"
FP = Fingerprint(
    python="3.12.1",
    executable="/venv/bin/python",
    pytest="8.3.2",
    plugins=("pytest-timeout-2.3.1",),
    rootdir="/src/proj",
    platform="linux",
)
TREE: dict[str, bytes] = {
    "pyproject.toml": b"[tool.pytest.ini_options]\ntestpaths = ['tests']\n",
    "conftest.py": b"import pytest\n",
    "tests/conftest.py": b"@pytest.fixture\ndef db(): ...\n",
    "tests/sub/conftest.py": b"@pytest.fixture\ndef sub(): ...\n",
    A: b"def test_one(): pass\ndef test_two(): pass\n",
    B: b"def test_b(): pass\n",
    "src/pkg/core.py": b"NAMES = ['x', 'y']\n",
}
CONFTESTS = ("conftest.py", "tests/conftest.py", "tests/sub/conftest.py")


def items_of(file: str, *names: str, markers: tuple[str, ...] = ()) -> tuple[TestItem, ...]:
    return tuple(
        TestItem(test_id=f"{file}::{n}", file=file, line=i + 1, markers=markers)
        for i, n in enumerate(names)
    )


LISTINGS = {A: items_of(A, "test_one", "test_two"), B: items_of(B, "test_b")}


def env(tree: Mapping[str, bytes], *, fingerprint: Fingerprint = FP, **kw: Any) -> EnvKey:
    options: dict[str, Any] = {
        "inifile": "pyproject.toml",
        "args": ("-p", "no:cacheprovider"),
        "environ": {},
        "conftests": CONFTESTS,
    }
    options.update(kw)
    return env_key(fingerprint, reader=tree.get, **options)


def build(tree: Mapping[str, bytes], deps: Mapping[str, Sequence[str]] | None = None) -> Index:
    """The index after a run that collected every file of LISTINGS whole."""
    keys = file_keys(LISTINGS, tree.get, deps=deps)
    return update(Index(), env(tree), {f: Listing(keys[f], LISTINGS[f]) for f in LISTINGS})


def check(index: Index, tree: Mapping[str, bytes], files: Sequence[str] = (A, B), **kw: Any) -> (
    tuple[dict[str, tuple[TestItem, ...]], list[str]]
):  # fmt: skip
    """``lookup`` as the pipeline calls it: current keys, with the index's recorded deps."""
    keys = file_keys(files, tree.get, deps=index.deps())
    return lookup(index, env(tree, **kw), keys)


def edited(**changes: bytes | None) -> dict[str, bytes]:
    """TREE with files replaced (``None``: removed); keys are paths with ``/`` as ``__``."""
    tree = dict(TREE)
    for name, content in changes.items():
        path = name.replace("__", "/").replace("_DOT_", ".")
        if content is None:
            tree.pop(path, None)
        else:
            tree[path] = content
    return tree


# --- invalidation rules -------------------------------------------------------------


def test_an_unchanged_tree_is_all_known() -> None:
    known, stale = check(build(TREE), TREE)
    assert known == LISTINGS
    assert stale == []


def test_a_changed_file_is_stale_and_the_others_stay_known() -> None:
    tree = edited(tests__test_a_DOT_py=TREE[A] + b"def test_three(): pass\n")
    known, stale = check(build(TREE), tree)
    assert stale == [A]
    assert known == {B: LISTINGS[B]}


def test_a_new_file_is_new() -> None:
    new = "tests/test_new.py"
    tree = {**TREE, new: b"def test_n(): pass\n"}
    known, stale = check(build(TREE), tree, files=(A, new, B))
    assert stale == [new]
    assert list(known) == [A, B]


def test_a_changed_conftest_in_the_files_directory_invalidates_that_directory_only() -> None:
    tree = edited(tests__sub__conftest_DOT_py=b"@pytest.fixture\ndef sub(): return 2\n")
    known, stale = check(build(TREE), tree)
    assert stale == [B]
    assert list(known) == [A]


def test_a_changed_conftest_in_a_parent_directory_invalidates_every_file_under_it() -> None:
    tree = edited(tests__conftest_DOT_py=b"@pytest.fixture\ndef db(): return 1\n")
    assert check(build(TREE), tree) == ({}, [A, B])


def test_a_changed_root_conftest_invalidates_every_file() -> None:
    tree = edited(conftest_DOT_py=b"import pytest  # changed\n")
    assert check(build(TREE), tree) == ({}, [A, B])


@pytest.mark.parametrize("path", ["tests/sub/conftest.py", "conftest.py"])
def test_a_conftest_that_appears_or_disappears_invalidates_the_files_under_it(path: str) -> None:
    without = {p: c for p, c in TREE.items() if p != path}
    index = build(without)
    assert check(index, without)[1] == []
    _, stale = check(index, TREE)
    assert stale == ([B] if path.startswith("tests/sub") else [A, B])
    assert check(build(TREE), without)[1] == stale


def test_a_session_wide_conftest_elsewhere_invalidates_everything() -> None:
    """A conftest whose hook pytest calls for the whole session (here one that adds a
    marker to every item) changes files outside its directory: it is in the env key."""
    other = "tests/other/conftest.py"
    tree = {**TREE, other: b"def pytest_collection_modifyitems(items): ...\n"}
    index = update(Index(), env(tree, conftests=(*CONFTESTS, other)), {})
    keys = file_keys(LISTINGS, tree.get)
    index = update(index, env(tree, conftests=(*CONFTESTS, other)), {
        f: Listing(keys[f], LISTINGS[f]) for f in LISTINGS
    })  # fmt: skip
    changed = {**tree, other: b"def pytest_collection_modifyitems(items): pass  # x\n"}
    assert check(index, tree, conftests=(*CONFTESTS, other))[1] == []
    assert check(index, changed, conftests=(*CONFTESTS, other)) == ({}, [A, B])
    # A conftest with only fixtures changes only the files under it.
    plain = {**tree, other: b"import pytest\n"}
    assert env(plain, conftests=(*CONFTESTS, other)) == env(TREE)


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("ini", {"tree": edited(pyproject_DOT_toml=b"[tool.pytest.ini_options]\n")}),
        ("ini", {"inifile": "pytest.ini", "tree": {**TREE, "pytest.ini": b"[pytest]\n"}}),
        ("plugins", {"fingerprint": dataclasses.replace(FP, plugins=("pytest-xdist-3.6",))}),
        ("plugins", {"fingerprint": dataclasses.replace(FP, plugins=())}),
        ("python", {"fingerprint": dataclasses.replace(FP, executable="/other/bin/python")}),
        ("python", {"fingerprint": dataclasses.replace(FP, python="3.13.0")}),
        ("pytest", {"fingerprint": dataclasses.replace(FP, pytest="8.4.0")}),
        ("rootdir", {"fingerprint": dataclasses.replace(FP, rootdir="/elsewhere")}),
        ("installed", {"installed": ("numpy-2.1.0",)}),
        ("args", {"args": ("-p", "no:cacheprovider", "-p", "myplugin")}),
        ("args", {"args": ("-p", "no:cacheprovider", "-k", "slow")}),
        ("args", {"args": ("-p", "no:cacheprovider", "-m", "not net")}),
        ("args", {"args": ("-p", "no:cacheprovider", "--import-mode=importlib")}),
        ("args", {"args": ("-p", "no:cacheprovider", "-o", "python_files=check_*.py")}),
        ("args", {"args": ("-p", "no:cacheprovider", "--confcutdir", "tests")}),
        ("environ", {"environ": {"PYTEST_ADDOPTS": "-p no:randomly"}}),
        ("environ", {"environ": {"PYTHONPATH": "src"}}),
    ],
)
def test_a_changed_environment_invalidates_every_file(what: str, change: dict[str, Any]) -> None:
    tree = change.pop("tree", TREE)
    index = build(TREE)
    assert check(index, tree, **change) == ({}, [A, B])
    assert env(tree, **change).changed(index.env) == (what,)


def test_output_options_and_paths_do_not_change_the_environment() -> None:
    noisy = ("-p", "no:cacheprovider", "-vv", "--tb", "short", "-rA", "-s", "tests/test_a.py",
             "--durations=5", "--junit-xml", "out.xml", "-q", "tests/sub::test_b")  # fmt: skip
    assert check(build(TREE), TREE, args=noisy) == (LISTINGS, [])


def test_collection_args_keeps_what_may_change_collection() -> None:
    args = ["-vk", "slow", "tests", "--runslow", "maybe-a-value", "-W", "error", "-q",
            "--tb=line", "--import-mode", "importlib", "-pxdist", "-rfE", "a.py::t"]  # fmt: skip
    assert collection_args(args) == (
        "-vk", "slow", "--runslow", "maybe-a-value", "-W", "error",
        "--import-mode", "importlib", "-pxdist",
    )  # fmt: skip


def test_a_removed_file_is_dropped_by_prune() -> None:
    index = prune(build(TREE), [B])
    assert set(index.files) == {B}
    assert check(index, TREE, files=(B,)) == ({B: LISTINGS[B]}, [])
    assert check(index, TREE)[1] == [A]


def test_a_renamed_test_file_is_new_and_the_old_name_is_gone() -> None:
    moved = "tests/test_a2.py"
    tree = {**edited(tests__test_a_DOT_py=None), moved: TREE[A]}
    index = prune(build(TREE), [moved, B])
    known, stale = check(index, tree, files=(moved, B))
    assert stale == [moved]
    assert known == {B: LISTINGS[B]}
    keys = file_keys([moved], tree.get)
    index = update(index, env(tree), {moved: Listing(keys[moved], items_of(moved, "test_one"))})
    assert check(index, tree, files=(moved, B))[0][moved] == items_of(moved, "test_one")


def test_a_renamed_test_replaces_the_files_listing() -> None:
    tree = edited(tests__test_a_DOT_py=b"def test_uno(): pass\n")
    index = build(TREE)
    assert check(index, tree)[1] == [A]
    keys = file_keys([A], tree.get)
    index = update(index, env(tree), {A: Listing(keys[A], items_of(A, "test_uno"))})
    known, stale = check(index, tree)
    assert (known[A], stale) == (items_of(A, "test_uno"), [])


def test_a_changed_or_removed_local_import_invalidates_the_files_that_imported_it() -> None:
    index = build(TREE, deps={A: ["src/pkg/core.py"]})
    assert index.deps() == {A: ("src/pkg/core.py",)}
    assert check(index, TREE)[1] == []
    assert check(index, edited(src__pkg__core_DOT_py=b"NAMES = ['x']\n"))[1] == [A]
    assert check(index, edited(src__pkg__core_DOT_py=None))[1] == [A]


def test_a_file_with_a_collection_problem_is_always_collected_again() -> None:
    keys = file_keys([A, B], TREE.get)
    index = update(Index(), env(TREE), {
        A: Listing(keys[A], (), Problem(error=True, message="ImportError: no module named x")),
        B: Listing(keys[B], (), Problem(error=False, message="no numpy")),
    })  # fmt: skip
    assert check(index, TREE) == ({}, [A, B])
    assert index.files[A].problem == Problem(error=True, message="ImportError: no module named x")


def test_an_update_in_another_environment_starts_from_empty() -> None:
    other = env(TREE, args=("-m", "fast"))
    keys = file_keys([B], TREE.get)
    index = update(build(TREE), other, {B: Listing(keys[B], LISTINGS[B])})
    assert index.env == other
    assert set(index.files) == {B}


def test_unreadable_and_outside_files_are_never_known() -> None:
    outside = "../other/test_x.py"
    tree = {**TREE, outside: b"def test_x(): pass\n"}
    keys = file_keys([outside, "tests/test_gone.py", A], tree.get)
    assert keys["tests/test_gone.py"].content is None
    listings = {f: Listing(k, items_of(f, "test_x")) for f, k in keys.items()}
    index = update(Index(), env(tree), listings)
    assert set(index.files) == {A}
    assert lookup(index, env(tree), keys)[1] == [outside, "tests/test_gone.py"]


def test_update_refuses_items_of_another_file() -> None:
    keys = file_keys([A], TREE.get)
    with pytest.raises(ValueError, match="not a test of"):
        update(Index(), env(TREE), {A: Listing(keys[A], LISTINGS[B])})


def test_chain_paths_lists_the_rootdir_then_each_directory_down_to_the_files() -> None:
    assert chain_paths("tests/sub/test_b.py")[::2] == CONFTESTS
    assert chain_paths("test_top.py") == ("conftest.py", "__init__.py")


def test_an_init_py_that_appears_invalidates_the_files_under_it() -> None:
    tree = {**TREE, "tests/sub/__init__.py": b""}
    assert check(build(TREE), tree)[1] == [B]


def test_hash_files_reads_each_path_once() -> None:
    reads: list[str] = []

    def reader(path: str) -> bytes | None:
        reads.append(path)
        return TREE.get(path)

    hashes = hash_files(["conftest.py", "nope.py", "conftest.py"], reader)
    assert reads == ["conftest.py", "nope.py"]
    assert hashes["nope.py"] is None
    assert hashes["conftest.py"] != hash_files(["tests/conftest.py"], reader)["tests/conftest.py"]


def test_fs_reader_reads_real_files(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_bytes(b"x = 1\n")
    read = fs_reader(tmp_path)
    assert read("tests/test_x.py") == b"x = 1\n"
    assert read("tests") is None
    assert read("missing.py") is None
    assert read(str(tmp_path / "tests" / "test_x.py")) == b"x = 1\n"


# --- the file ---------------------------------------------------------------------------


def test_round_trip_keeps_everything() -> None:
    odd = TestItem(test_id=A, file=A, line=None, markers=("slow", "tier0"), timeout=2.5)
    keys = file_keys([A, B], TREE.get, deps={A: ["src/pkg/core.py", "missing.py"]})
    index = update(Index(), env(TREE), {
        A: Listing(keys[A], (*LISTINGS[A], odd)),
        B: Listing(keys[B], (), Problem(error=False, message="skipped: no db")),
    })  # fmt: skip
    text = json.dumps(index.to_json(), sort_keys=True)  # as the store writes it
    assert Index.from_json(json.loads(text)) == index
    assert lookup(Index.from_json(json.loads(text)), env(TREE), keys)[1] == [B]


def test_an_index_written_by_the_store_reads_back_all_known(tmp_path: Path) -> None:
    gates = store.Store(tmp_path, pytest.fail)
    gates.write_json(store.INDEX, build(TREE).to_json())
    loaded = gates.load(store.INDEX, Index.from_json)
    assert check(loaded, TREE) == (LISTINGS, [])
    assert Index.from_json(Index().to_json()) == Index()


def test_the_file_stays_compact_at_100k_tests() -> None:
    files = {f"tests/test_{n:04d}.py": f"def test_{n}(): pass\n".encode() for n in range(1000)}
    keys = file_keys(files, files.get)
    listings = {
        f: Listing(keys[f], tuple(
            TestItem(test_id=f"{f}::test_case[{i}-param]", file=f, line=10 + i)
            for i in range(100)
        ))
        for f in files
    }  # fmt: skip
    index = update(Index(), env(TREE), listings)
    size = len(json.dumps(index.to_json(), separators=(",", ":")))
    assert size < 4_500_000, size  # ~40 bytes per test, plus ~110 per file
    assert Index.from_json(json.loads(json.dumps(index.to_json()))) == index


def write_index(tmp_path: Path, text: str) -> tuple[Index | None, list[str]]:
    (tmp_path / store.INDEX).write_text(text)
    warnings: list[str] = []
    loaded = store.Store(tmp_path, warnings.append).load(store.INDEX, Index.from_json)
    return loaded, warnings


def good_json() -> dict[str, Any]:
    keys = file_keys([A], TREE.get, deps={A: ["src/pkg/core.py"]})
    return update(Index(), env(TREE), {A: Listing(keys[A], LISTINGS[A])}).to_json()


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],
        lambda text: "",
        lambda text: text.replace('"version":1', '"version":2'),
        lambda text: text.replace('"deps":[0]', '"deps":[7]'),
        lambda text: text.replace('"paths":["src/pkg/core.py"]', '"paths":{}'),
        lambda text: text.replace('"line":1', '"line":"1"').replace(",1,[]", ',"1",[]'),
        lambda text: text.replace('"test_one",1,[],null', '"test_one",1,[],-1'),
        lambda text: text.replace('"problem":null', '"problem":"boom"'),
        lambda text: text.replace('"files":{', '"files":{"x.py":[],'),
        lambda text: text.replace('"env":{', '"env":{"bad":1,'),
    ],
)
def test_a_damaged_file_is_absent_with_one_warning(tmp_path: Path, damage: Any) -> None:
    text = json.dumps(good_json(), separators=(",", ":"))
    assert write_index(tmp_path, text) == (Index.from_json(json.loads(text)), [])
    loaded, warnings = write_index(tmp_path, damage(text))
    assert loaded is None
    assert len(warnings) == 1
    assert "index.json" in warnings[0]


def test_the_index_lives_in_the_gates_directory() -> None:
    assert store.Paths(Path("/g")).index == Path("/g/index.json")


# --- properties ---------------------------------------------------------------------------

names = st.text(st.characters(codec="ascii", exclude_characters="\x00"), min_size=1, max_size=12)
files_st = st.lists(names.map(lambda n: f"tests/d{len(n) % 3}/test_{n}.py"), max_size=5)


@st.composite
def listings(draw: st.DrawFn) -> tuple[dict[str, bytes], dict[str, tuple[TestItem, ...]]]:
    files = draw(files_st)
    tree = {f: draw(st.binary(max_size=20)) for f in files}
    tree |= {p: draw(st.binary(max_size=5)) for p in draw(st.sets(st.sampled_from(CONFTESTS)))}
    items = {
        f: tuple(
            TestItem(test_id=f"{f}::{n}", file=f, line=draw(st.none() | st.integers(1, 999)),
                     markers=tuple(draw(st.lists(names, max_size=2))),
                     timeout=draw(st.none() | st.floats(0.5, 60)))
            for n in dict.fromkeys(draw(st.lists(names, max_size=4)))
        )
        for f in files
    }  # fmt: skip
    return tree, items


@settings(max_examples=60, deadline=None)
@given(old=listings(), new=listings())
def test_after_an_update_lookup_returns_exactly_that_listing(
    old: tuple[dict[str, bytes], dict[str, tuple[TestItem, ...]]],
    new: tuple[dict[str, bytes], dict[str, tuple[TestItem, ...]]],
) -> None:
    """Whatever was indexed before, a file updated with its current key is known with
    exactly its new listing, and the index survives its JSON round trip."""
    old_tree, old_items = old
    tree, items = new
    env_old, env_new = env(old_tree), env(tree)
    index = update(Index(), env_old, {
        f: Listing(k, old_items[f]) for f, k in file_keys(old_items, old_tree.get).items()
    })  # fmt: skip
    keys = file_keys(items, tree.get)
    index = update(index, env_new, {f: Listing(keys[f], items[f]) for f in items})
    index = Index.from_json(json.loads(json.dumps(index.to_json(), sort_keys=True)))
    known, stale = lookup(index, env_new, keys)
    assert known == items
    assert stale == []
    others = [f for f in old_items if f not in items]
    assert lookup(index, env_new, file_keys(others, old_tree.get))[0].keys() <= set(others)


def test_file_keys_differ_when_only_the_conftest_chain_differs() -> None:
    keys = file_keys([A], TREE.get)
    moved = file_keys([A], {**TREE, "tests/conftest.py": b""}.get)
    assert keys[A].content == moved[A].content
    assert keys[A].chain != moved[A].chain
    assert keys[A] != moved[A]
    assert isinstance(keys[A], FileKey)


def test_with_deps_adds_the_reported_imports_to_a_key_taken_before_collecting() -> None:
    before = file_keys([A], TREE.get)[A]
    after = with_deps(before, ["src/pkg/core.py"], TREE.get)
    assert after == file_keys([A], TREE.get, deps={A: ["src/pkg/core.py"]})[A]
    assert with_deps(before, [], TREE.get) == before
    tree = {**TREE, A: b"edited while it was collected\n"}
    index = update(Index(), env(TREE), {A: Listing(after, LISTINGS[A])})
    assert check(index, tree, files=[A])[1] == [A]
