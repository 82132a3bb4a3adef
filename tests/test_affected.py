"""``affected``: which test files ``--changed`` selects, on hand-made graphs (and the pure
helpers of ``changes``).

The property that matters is that it never misses: every test file whose module (or a
``conftest.py`` above it) reaches a changed file through the graph is selected.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.affected import Changes, Decision, affected, area_of, starts
from supervisor.changes import is_noise, parse_name_status, rebased
from supervisor.importgraph import Graph, Node, from_sources

SOURCES = {
    "pyproject.toml": None,
    "src/pkg/__init__.py": "",
    "src/pkg/core.py": "def f():\n    return 1\n",
    "src/pkg/render.py": "from pkg import core\n",
    "src/pkg/other.py": "X = 1\n",
    "tests/conftest.py": "",
    "tests/unit/conftest.py": "from pkg import other\n",
    "tests/unit/test_core.py": "from pkg.core import f\n",
    "tests/unit/test_render.py": "import pkg.render\n",
    "tests/test_plain.py": "def test(): pass\n",
    "tests/integ/test_loader.py": "import importlib\nimportlib.import_module(NAME)\n",
    "tests/integ/test_cli.py": "import subprocess\n",
}
TESTS = frozenset(
    p for p in SOURCES if p.rpartition("/")[2].startswith("test_") and p.endswith(".py")
)


def graph() -> Graph:
    return from_sources(
        {p: s.encode() for p, s in SOURCES.items() if s is not None and p.endswith(".py")}
    )


def decide(changed: tuple[str, ...] = (), deleted: tuple[str, ...] = (),
           outside: tuple[str, ...] = ()) -> Decision:  # fmt: skip
    return affected(graph(), Changes(rev="HEAD", changed=changed, deleted=deleted,
                                     outside=outside), TESTS)  # fmt: skip


ALWAYS = {"tests/integ/test_loader.py", "tests/integ/test_cli.py"}
"""The unsure test and the one that starts subprocesses: chosen whenever anything changed."""


def test_nothing_changed_selects_nothing_and_says_so() -> None:
    decision = decide()
    assert decision.tests == frozenset() and not decision.everything
    assert decision.lines() == (
        "--changed: nothing changed since `HEAD`",
        f"--changed: 0 of {len(TESTS)} test file(s) selected",
    )


def test_a_changed_module_selects_the_tests_reaching_it() -> None:
    decision = decide(changed=("src/pkg/core.py",))
    # test_render reaches core through render; test_core imports it.
    assert decision.tests == {"tests/unit/test_core.py", "tests/unit/test_render.py", *ALWAYS}
    assert decision.reasons[0] == "--changed: 1 changed module(s), reached by 2 test file(s)"
    assert any("unsure" in r and "tests/integ/test_loader.py" in r for r in decision.reasons)
    assert any("subprocesses" in r and "test_cli.py" in r for r in decision.reasons)


def test_a_module_imported_by_a_conftest_selects_the_tests_under_it() -> None:
    decision = decide(changed=("src/pkg/other.py",))
    assert decision.tests == {"tests/unit/test_core.py", "tests/unit/test_render.py", *ALWAYS}


def test_a_changed_test_file_selects_itself() -> None:
    assert decide(changed=("tests/test_plain.py",)).tests == {"tests/test_plain.py", *ALWAYS}


def test_a_conftest_selects_every_test_under_its_directory() -> None:
    decision = decide(changed=("tests/unit/conftest.py",))
    assert decision.tests == {"tests/unit/test_core.py", "tests/unit/test_render.py", *ALWAYS}
    assert "--changed: `tests/unit/conftest.py` changed: all 2 test file(s) under tests/unit/" in (
        decision.reasons
    )
    deleted = decide(deleted=("tests/conftest.py",))
    assert deleted.tests == TESTS
    assert f"all {len(TESTS)} test file(s) under tests/" in deleted.reasons[0]


def test_a_root_conftest_and_configuration_select_everything() -> None:
    for changes in (
        {"changed": ("conftest.py",)}, {"changed": ("pyproject.toml",)},
        {"deleted": ("setup.cfg",)}, {"changed": ("tests/pytest.ini",)},
        {"changed": ("requirements.txt",)}, {"changed": ("setup.py",)},
    ):  # fmt: skip
        decision = decide(**changes)
        assert decision.everything and decision.tests == TESTS, changes
        assert decision.reasons[0].endswith(f": all {len(TESTS)} test file(s)")


def test_a_data_file_in_a_test_directory_selects_the_tests_there() -> None:
    decision = decide(changed=("tests/data/x.json",))
    under_tests = {t for t in TESTS if t.startswith("tests/")}
    assert decision.tests == under_tests
    assert decision.reasons == (
        f"--changed: `tests/data/x.json` changed (not Python): the {len(under_tests)} test "
        "file(s) under tests/ or reaching a module there",
    )


def test_a_data_file_in_a_package_selects_the_tests_reaching_the_package() -> None:
    # pkg/render.py may read templates/x.html: every test reaching a module of pkg runs.
    decision = decide(changed=("src/pkg/templates/x.html",))
    assert {"tests/unit/test_core.py", "tests/unit/test_render.py"} <= decision.tests
    assert "tests/test_plain.py" not in decision.tests
    assert not decision.everything


def test_a_data_file_where_no_module_is_selects_everything() -> None:
    decision = decide(changed=("data/table.csv",))
    assert decision.everything
    assert decision.reasons[0].startswith(
        "--changed: `data/table.csv` changed (not Python) where no module is (data/)"
    )
    assert decide(changed=("README.md",)).everything


def test_a_module_no_test_reaches_selects_everything() -> None:
    sources = {**{p: s for p, s in SOURCES.items() if s is not None}, "scripts/tool.py": ""}
    g = from_sources({p: s.encode() for p, s in sources.items() if p.endswith(".py")})
    decision = affected(g, Changes(rev="HEAD", changed=("scripts/tool.py",)), TESTS)
    assert decision.everything
    assert "no test reaches it through the imports" in decision.reasons[0]


def test_paths_the_graph_does_not_hold_or_outside_the_root_select_everything() -> None:
    assert decide(changed=("build/gen.py",)).everything
    outside = decide(outside=("other/x.py",))
    assert outside.everything and "outside the project root" in outside.reasons[0]


def test_a_deleted_module_selects_the_tests_of_its_importers() -> None:
    # render.py still says `from pkg import core`; core.py is gone from the graph.
    sources = {p: s for p, s in SOURCES.items() if s is not None and p != "src/pkg/core.py"}
    g = from_sources({p: s.encode() for p, s in sources.items() if p.endswith(".py")})
    decision = affected(g, Changes(rev="HEAD", deleted=("src/pkg/core.py",)), TESTS)
    assert {"tests/unit/test_core.py", "tests/unit/test_render.py"} <= decision.tests
    assert "tests/test_plain.py" not in decision.tests
    assert any("was deleted: the" in r for r in decision.reasons)


def test_a_deleted_module_nobody_imported_selects_everything_a_deleted_test_nothing() -> None:
    assert decide(deleted=("src/pkg/gone.py",)).everything
    assert decide(deleted=("tests/test_gone.py",)).tests == ALWAYS


def test_a_renamed_module_counts_both_sides() -> None:
    # git --no-renames gives the old path deleted and the new one added.
    decision = decide(changed=("src/pkg/core2.py",), deleted=("src/pkg/core.py",))
    assert decision.everything  # core2.py is not in this graph: it cannot be placed


def test_a_file_that_does_not_parse_is_unsure_and_its_tests_always_run() -> None:
    sources = {p: s for p, s in SOURCES.items() if s is not None and p.endswith(".py")}
    sources["src/pkg/other.py"] = "def broken(:\n"
    g = from_sources({p: s.encode() for p, s in sources.items()})
    decision = affected(g, Changes(rev="HEAD", changed=("tests/test_plain.py",)), TESTS)
    # The unit tests' conftest imports the unparsable module: they always run.
    assert {"tests/unit/test_core.py", "tests/unit/test_render.py"} <= decision.tests
    assert any("does not parse" in r for r in decision.reasons)


def test_many_reasons_are_capped() -> None:
    decision = decide(changed=tuple(f"tests/d{i}/conftest.py" for i in range(30)))
    assert len(decision.reasons) == 12
    assert decision.reasons[-1] == "--changed: … and 21 more reason(s)"  # 30 + 2 always


def test_helpers() -> None:
    assert area_of("src/pkg/templates/x.html") == "src/pkg"
    assert area_of("tests/data/x.json") == "tests"
    assert area_of("README.md") == ""
    assert starts("tests/unit/test_a.py") == [
        "conftest.py", "tests/conftest.py", "tests/unit/conftest.py", "tests/unit/test_a.py"
    ]  # fmt: skip
    assert is_noise("src/pkg/__pycache__/a.cpython-311.pyc")
    assert is_noise(".gates/last-run/run.jsonl", ".gates")
    assert is_noise(".github/workflows/ci.yml") and is_noise(".gitignore")
    assert is_noise("pkg.egg-info/PKG-INFO")
    assert not is_noise("tests/data/x.json") and not is_noise(".env")
    assert parse_name_status("M\0a.py\0D\0b.py\0A\0c d.py\0") == (["a.py", "c d.py"], ["b.py"])
    g = graph()
    assert g.reached_by(["src/pkg/core.py"]) >= {
        "src/pkg/render.py", "tests/unit/test_render.py", "tests/unit/test_core.py"
    }  # fmt: skip


# --- never misses: random graphs, random changes ---------------------------------------

DIRS = ("", "a", "a/b", "t", "t/u")


@st.composite
def graphs(draw: st.DrawFn) -> tuple[Graph, frozenset[str], frozenset[str]]:
    """A graph of modules, test files and conftests with random edges and unsure nodes,
    the collected test files, and the changed Python files."""
    names = draw(st.lists(st.sampled_from(["m1", "m2", "m3", "test_x", "test_y", "conftest"]),
                          min_size=1, max_size=6))  # fmt: skip
    paths = sorted({f"{d}/{n}.py".lstrip("/") for d in DIRS for n in names
                    if draw(st.booleans())})  # fmt: skip
    if not paths:
        paths = ["m1.py"]
    modules = {}
    for path in paths:
        imports = frozenset(draw(st.lists(st.sampled_from(paths), max_size=3))) - {path}
        unsure = ("line 1: exec(code)",) if draw(st.integers(0, 9)) == 0 else ()
        modules[path] = Node(path=path, name=path[:-3].replace("/", "."), imports=imports,
                             unsure=unsure)  # fmt: skip
    tests = frozenset(p for p in paths if p.rpartition("/")[2].startswith("test_"))
    changed = frozenset(draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)))
    return Graph(modules), tests, changed


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_every_test_reaching_a_change_is_selected(
    case: tuple[Graph, frozenset[str], frozenset[str]],
) -> None:
    g, tests, changed = case
    decision = affected(g, Changes(rev="HEAD", changed=tuple(sorted(changed))), tests)
    assert decision.tests <= tests
    for test in tests:
        reached = g.reaches(s for s in starts(test) if s in g.modules)
        if reached & changed:
            assert test in decision.tests, (test, sorted(changed))
        if reached & g.unsure_paths():
            assert test in decision.tests, (test, "unsure")


@settings(max_examples=200, deadline=None)
@given(graphs(), st.sampled_from(["x.json", "a/x.json", "t/u/x.json", "a/b/x.txt"]))
def test_a_data_file_selects_every_test_in_its_area(
    case: tuple[Graph, frozenset[str], frozenset[str]], data: str
) -> None:
    g, tests, _ = case
    decision = affected(g, Changes(rev="HEAD", changed=(data,)), tests)
    area = area_of(data)
    for test in tests:
        if not area or test.startswith(f"{area}/"):
            assert test in decision.tests
        reached = g.reaches(s for s in starts(test) if s in g.modules)
        if any(p.startswith(f"{area}/") for p in reached):
            assert test in decision.tests


def test_root_argument_names_the_rootdir_package() -> None:
    # A rootdir that is itself a package: deleted names resolve under its name.
    sources = {"__init__.py": b"", "tests/__init__.py": b"",
               "tests/test_a.py": b"from root.gone import x\n"}  # fmt: skip
    g = from_sources(sources, root=Path("/somewhere/root"))
    decision = affected(g, Changes(rev="HEAD", deleted=("gone.py",)), {"tests/test_a.py"},
                        root=Path("/somewhere/root"))  # fmt: skip
    assert decision.tests == {"tests/test_a.py"} and not decision.everything


def test_rebased_moves_paths_to_pytests_rootdir(tmp_path: Path) -> None:
    diff = Changes(rev="HEAD", changed=("sub/a.py", "b.py"), deleted=("sub/c.txt",))
    assert rebased(diff, tmp_path, tmp_path) is diff
    moved = rebased(diff, tmp_path, tmp_path / "sub")
    assert moved == Changes(rev="HEAD", changed=("a.py",), deleted=("c.txt",), outside=("b.py",))
