"""Unit tests for ``supervisor.orphans``: the classification over hand-made graphs and
graphs built from sources, its invariants (hypothesis), the listing, the JSON, and the
import-check file ``--include-orphans`` generates (run in a real interpreter)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import orphans
from supervisor.importgraph import Graph, Node, from_sources

ROOT = Path("/work/proj")


def hand(edges: Mapping[str, tuple[str, ...]], **extra: Node) -> Graph:
    """A graph from ``path → imported paths``; each file's digest is its own path."""
    nodes = {
        p: Node(path=p, name=p.removesuffix(".py").replace("/", "."), imports=frozenset(t),
                digest=f"d-{p}")
        for p, t in edges.items()
    }  # fmt: skip
    return Graph({**nodes, **extra})


def kinds(result: orphans.Result) -> dict[str, str]:
    return {e.path: e.kind for e in result.modules}


def test_orphan_isolated_and_reached() -> None:
    g = hand({
        "tests/test_a.py": ("pkg/core.py",),
        "pkg/core.py": ("pkg/util.py",),
        "pkg/util.py": (),
        "pkg/old.py": ("pkg/helper.py", "pkg/util.py"),
        "pkg/helper.py": ("pkg/deep.py",),
        "pkg/deep.py": (),
    })  # fmt: skip
    result = orphans.classify(g)
    assert kinds(result) == {"pkg/old.py": "orphan"}
    assert result.hidden == 2
    assert (result.project, result.tests, result.reached) == (5, 1, 2)
    assert result.counts == {"orphan": 1, "isolated": 2, "redundant": 0}
    full = orphans.classify(g, recursive=True)
    assert kinds(full) == {"pkg/old.py": "orphan", "pkg/helper.py": "isolated",
                           "pkg/deep.py": "isolated"}  # fmt: skip
    by_path = {e.path: e for e in full.modules}
    assert by_path["pkg/helper.py"].parents == ("pkg/old.py",)
    assert by_path["pkg/deep.py"].parents == ("pkg/helper.py",)
    assert by_path["pkg/deep.py"].via == ("pkg/old.py",)
    assert by_path["pkg/old.py"].parents == ()
    assert full.hidden == 0 and not full.unsure


def test_a_cycle_no_test_enters_is_listed_without_recursive() -> None:
    g = hand({"test_x.py": (), "a.py": ("b.py",), "b.py": ("a.py",)})
    result = orphans.classify(g)
    assert kinds(result) == {"a.py": "isolated", "b.py": "isolated"}
    assert all(e.via == () for e in result.modules)
    assert result.hidden == 0


def test_conftests_are_starts_and_not_listed() -> None:
    g = hand({
        "tests/conftest.py": ("pkg/fixtures.py",), "pkg/fixtures.py": (),
        "conftest.py": (), "pkg/lonely.py": (),
    })  # fmt: skip
    result = orphans.classify(g)
    assert kinds(result) == {"pkg/lonely.py": "orphan"}
    assert result.tests == 2


def test_scripts_entry_points_and_docs_are_not_modules() -> None:
    g = hand({
        "setup.py": ("pkg/version.py",), "noxfile.py": (), "docs/conf.py": (),
        "pkg/__main__.py": (), "pkg/version.py": (), "bench/run.py": (),
    })  # fmt: skip
    result = orphans.classify(g, recursive=True)
    # Imported by setup.py only: isolated (setup.py is not a module of the project).
    assert kinds(result) == {"pkg/version.py": "isolated", "bench/run.py": "orphan"}
    assert {e.path: e.parents for e in result.modules}["pkg/version.py"] == ("setup.py",)
    custom = orphans.classify(g, not_modules=("bench/*",))
    assert "bench/run.py" not in kinds(custom) and "setup.py" in kinds(custom)


def test_redundant_by_digest_and_by_reexport() -> None:
    same = "same-digest"
    g = hand(
        {"test_a.py": ("pkg/a.py",), "pkg/a.py": ()},
        **{
            "pkg/copy.py": Node(path="pkg/copy.py", name="pkg.copy", digest=same),
            "pkg/copy2.py": Node(path="pkg/copy2.py", name="pkg.copy2", digest=same),
            "pkg/api.py": Node(path="pkg/api.py", name="pkg.api", digest="x",
                               reexport_only=True, imports=frozenset({"pkg/a.py"}),
                               refs=frozenset({"pkg.a"})),
            "pkg/doc.py": Node(path="pkg/doc.py", name="pkg.doc", digest="y",
                               reexport_only=True),
            "pkg/empty.py": Node(path="pkg/empty.py", name="pkg.empty",
                                 digest=orphans.EMPTY_DIGEST),
            "pkg/empty2.py": Node(path="pkg/empty2.py", name="pkg.empty2",
                                  digest=orphans.EMPTY_DIGEST),
        },
    )  # fmt: skip
    result = orphans.classify(g)
    assert kinds(result) == {
        "pkg/copy.py": "redundant", "pkg/copy2.py": "redundant", "pkg/api.py": "redundant",
        "pkg/empty.py": "orphan", "pkg/empty2.py": "orphan", "pkg/doc.py": "orphan",
    }  # fmt: skip
    by_path = {e.path: e for e in result.modules}
    assert by_path["pkg/copy.py"].duplicates == ("pkg/copy2.py",)
    assert by_path["pkg/api.py"].reexport_only and by_path["pkg/api.py"].duplicates == ()


def test_a_reached_copy_makes_the_unreached_one_redundant() -> None:
    g = hand(
        {"test_a.py": ("a.py",)},
        **{"a.py": Node(path="a.py", name="a", digest="d"),
           "b.py": Node(path="b.py", name="b", digest="d")},
    )  # fmt: skip
    assert kinds(orphans.classify(g)) == {"b.py": "redundant"}


def test_unsure_modules_the_tests_reach_are_named() -> None:
    g = hand(
        {"test_a.py": ("plugins.py",), "lonely.py": ()},
        **{"plugins.py": Node(path="plugins.py", name="plugins", digest="p",
                              unsure=("line 3: importlib.import_module(name)",))},
    )  # fmt: skip
    result = orphans.classify(g)
    assert result.unsure == ("plugins.py",)
    text = orphans.text_lines(result)
    assert text[-1] == (
        "not certain: 1 module(s) the tests reach import dynamically "
        "(any orphan may be imported at runtime): plugins.py"
    )
    assert orphans.summary_line(result).endswith("(not certain)")
    assert result.to_json()["unsure_reached"] == ["plugins.py"]


def test_from_sources_with_a_namespace_package_and_a_broken_file() -> None:
    files = {
        "src/pkg/__init__.py": "from . import core\n",
        "src/pkg/core.py": "X = 1\n",
        "src/pkg/broken.py": "def (:\n",
        "src/nsp/part.py": "import pkg.core\n\nVALUE = pkg.core.X\n",
        "tests/test_core.py": "import pkg\n",
    }
    g = from_sources({p: s.encode() for p, s in files.items()}, root=ROOT)
    result = orphans.classify(g)
    assert kinds(result) == {"src/pkg/broken.py": "orphan", "src/nsp/part.py": "orphan"}
    broken = next(e for e in result.modules if e.path == "src/pkg/broken.py")
    assert broken.unsure and broken.unsure[0].startswith("does not parse")
    assert next(e for e in result.modules if e.path == "src/nsp/part.py").name == "nsp.part"


def test_json_shape() -> None:
    g = hand({"test_a.py": (), "m.py": ()})
    data = orphans.classify(g).to_json()
    assert data["version"] == 1
    assert data["counts"] == {"orphan": 1, "isolated": 0, "redundant": 0}
    assert data["modules"] == [{
        "path": "m.py", "name": "m", "kind": "orphan", "parents": [], "duplicates": [],
        "reexport_only": False, "via": [], "unsure": [],
    }]  # fmt: skip


PATHS = [f"m{i}.py" for i in range(7)] + ["test_a.py", "test_b.py"]


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    edges = {
        p: tuple(draw(st.lists(st.sampled_from(PATHS), max_size=3, unique=True))) for p in PATHS
    }
    digests = {p: draw(st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"])) for p in PATHS}
    return Graph({
        p: Node(path=p, name=p[:-3], imports=frozenset(edges[p]) - {p}, digest=digests[p],
                reexport_only=draw(st.booleans()) and p.startswith("m0"),
                refs=frozenset({"x"}))
        for p in PATHS
    })  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(graphs(), st.booleans())
def test_invariants(g: Graph, recursive: bool) -> None:
    result = orphans.classify(g, recursive=recursive)
    reached = g.reaches([p for p in PATHS if p.startswith("test_")])
    unreached = {p for p in PATHS if not p.startswith("test_") and p not in reached}
    listed = {e.path for e in result.modules}
    assert listed <= unreached
    assert len(listed) + result.hidden == len(unreached) == sum(result.counts.values())
    assert result.reached == len(PATHS) - 2 - len(unreached)
    if recursive:
        assert listed == unreached
    for entry in result.modules:
        assert set(entry.parents) == set(g.importers(entry.path))
        assert not set(entry.parents) & reached  # a reached importer would reach it
        if entry.kind == "orphan":
            assert not entry.parents
        if entry.kind == "isolated":
            assert entry.parents
        if entry.kind == "redundant":
            assert entry.duplicates or entry.reexport_only
        for root in entry.via:
            assert entry.path in g.reaches([root])


# --- the import-check file ----------------------------------------------------------


def test_check_ids_map_the_generated_node_ids() -> None:
    checks = [orphans.Check(path="src/pkg/a.py", name="pkg.a", doctests=True),
              orphans.Check(path="b.py", name="b")]  # fmt: skip
    assert orphans.check_ids(checks, ".gates/cache/orphans/mtest_orphan_checks.py") == {
        ".gates/cache/orphans/mtest_orphan_checks.py::test_import_0": "orphan::src/pkg/a.py",
        ".gates/cache/orphans/mtest_orphan_checks.py::test_doctest_0":
            "orphan::src/pkg/a.py::doctest",
        ".gates/cache/orphans/mtest_orphan_checks.py::test_import_1": "orphan::b.py",
    }  # fmt: skip


def test_the_check_file_imports_by_path_with_relative_imports(tmp_path: Path) -> None:
    files = {
        "src/pkg/__init__.py": "",
        "src/pkg/base.py": "VALUE = 41\n",
        "src/pkg/mod.py": (
            'from .base import VALUE\n\ndef f():\n    """\n    >>> f()\n    42\n    """\n'
            "    return VALUE + 1\n"
        ),
        "src/pkg/bad.py": "raise RuntimeError('boom at import')\n",
        "nsp/part.py": "import pkg.base\n",
        "src/pkg/sub/__init__.py": "from ..base import VALUE\n",
    }  # fmt: skip
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    checks = [
        orphans.Check(path="src/pkg/mod.py", name="pkg.mod", doctests=True),
        orphans.Check(path="src/pkg/bad.py", name="pkg.bad"),
        orphans.Check(path="nsp/part.py", name="nsp.part"),
        orphans.Check(path="src/pkg/sub/__init__.py", name="pkg.sub"),
    ]
    script = tmp_path / "check.py"
    script.write_text(
        orphans.check_file(tmp_path.as_posix(), checks)
        + "\n\nfor t in ('import_0', 'doctest_0', 'import_2', 'import_3', 'import_1'):\n"
        "    try:\n        globals()['test_' + t]()\n"
        "    except Exception as exc:\n        print(t, 'raised', type(exc).__name__, exc)\n"
        "    else:\n        print(t, 'ok')\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True,
        cwd=tmp_path / "nsp",
    )  # fmt: skip
    assert done.stdout.splitlines() == [
        "import_0 ok", "doctest_0 ok", "import_2 ok", "import_3 ok",
        "import_1 raised RuntimeError boom at import",
    ]  # fmt: skip


def test_without_selection_drops_k_m_and_deselect_only() -> None:
    drop = orphans.without_selection
    assert drop(["-k", "slow", "-v", "-m", "smoke and not db"]) == ("-v",)
    assert drop(["-kslow", "-vk", "x", "-rxs", "--tb", "short", "-p", "no:cov"]) == (
        "-v", "-rxs", "--tb", "short", "-p", "no:cov",
    )  # fmt: skip
    assert drop(["--deselect", "tests/a.py::t", "--deselect=b", "--doctest-modules", "x.py"]) == (
        "--doctest-modules", "x.py",
    )  # fmt: skip
    assert drop(["-W", "error", "-", "--color=yes", "-vm", "slow"]) == (
        "-W", "error", "-", "--color=yes", "-v",
    )  # fmt: skip


def test_a_visible_gates_directory_is_not_the_projects() -> None:
    root = Path("/work/proj")
    assert orphans.not_modules_for(root, root / ".gates")[-1] == ".gates/*"
    assert orphans.not_modules_for(root, root / "gates")[-1] == "gates/*"
    assert orphans.not_modules_for(root, Path("/elsewhere/g")) == orphans.NOT_MODULES
    g = hand({"test_a.py": (), "gates/cache/orphans/mtest_orphan_checks.py": (), "m.py": ()})
    found = orphans.classify(g, not_modules=orphans.not_modules_for(root, root / "gates"))
    assert kinds(found) == {"m.py": "orphan"}


# --- the counts: summary line and metrics --------------------------------------------


def test_orphans_line_counts_what_neither_passed_nor_skipped() -> None:
    from supervisor import report

    counts = {"passed": 2, "skipped": 1, "failed": 1, "hung": 1, "crashed": 1, "error": 1}
    assert report.orphans_line(counts) == "Orphans: 7 checked, 4 failed"
    assert report.orphans_line({}) == "Orphans: 0 checked, 0 failed"


def test_metrics_give_the_orphan_counts_only_when_checked() -> None:
    from supervisor import metrics
    from supervisor.result import RunResult

    base = RunResult(exit_code=1, run_id="r", started="2026-01-01T00:00:00.000Z",
                     ended="2026-01-01T00:00:01.000Z", wall_s=1.0)  # fmt: skip
    checked = metrics.render(
        metrics.Snapshot.fresh(0.0).after(
            dataclasses.replace(base, orphans={"passed": 2, "hung": 1})
        )
    )
    assert 'mtest_last_run_orphans{outcome="passed"} 2' in checked.splitlines()
    assert 'mtest_last_run_orphans{outcome="hung"} 1' in checked.splitlines()
    plain = metrics.render(metrics.Snapshot.fresh(0.0).after(base))
    assert "mtest_last_run_orphans" not in plain
