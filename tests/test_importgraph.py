"""Tests for ``supervisor.importgraph`` and ``supervisor.importscan``: every import form,
the module map, unsure modules, re-export detection, the cache, ``reaches``/``importers``.

Most graphs are built from sources in memory (``from_sources``); the cache and
``project_files`` tests use real files under ``tmp_path``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor import importgraph, store
from supervisor.importgraph import Graph, Node, build, current, from_sources, module_map
from supervisor.importscan import parse

ROOT = Path("/work/proj")


def graph(files: Mapping[str, str], **kwargs: object) -> Graph:
    return from_sources({p: s.encode() for p, s in files.items()}, root=ROOT, **kwargs)  # type: ignore[arg-type]


def edges(files: Mapping[str, str], path: str) -> set[str]:
    return set(graph(files).modules[path].imports)


PKG = {
    "a/__init__.py": "",
    "a/b/__init__.py": "",
    "a/b/c.py": "",
    "a/b/d.py": "",
    "a/x.py": "",
}


# --- import forms -------------------------------------------------------------------


def test_import_dotted_runs_every_package_on_the_way() -> None:
    files = {**PKG, "main.py": "import a.b.c\n"}
    assert edges(files, "main.py") == {"a/__init__.py", "a/b/__init__.py", "a/b/c.py"}


def test_import_as_is_the_same_edge() -> None:
    files = {**PKG, "main.py": "import a.b as c\n"}
    assert edges(files, "main.py") == {"a/__init__.py", "a/b/__init__.py"}


def test_from_import_of_a_submodule_and_of_a_name() -> None:
    files = {**PKG, "main.py": "from a.b import c\n", "other.py": "from a.b import CONSTANT\n"}
    assert edges(files, "main.py") == {"a/__init__.py", "a/b/__init__.py", "a/b/c.py"}
    assert edges(files, "other.py") == {"a/__init__.py", "a/b/__init__.py"}


def test_relative_imports_in_a_module_and_in_a_package() -> None:
    files = {
        **PKG,
        "a/b/c.py": "from . import d\nfrom .. import x\n",
        "a/b/__init__.py": "from .d import thing\nfrom ..x import other\n",
    }
    assert edges(files, "a/b/c.py") == {"a/__init__.py", "a/b/__init__.py", "a/b/d.py", "a/x.py"}
    assert edges(files, "a/b/__init__.py") == {"a/__init__.py", "a/b/d.py", "a/x.py"}


def test_relative_anchor_depends_on_is_package() -> None:
    as_module = parse("from . import m\nfrom ..up import n\n", module="p.q.r", is_package=False)
    as_package = parse("from . import m\nfrom ..up import n\n", module="p.q.r", is_package=True)
    assert {"p.q.m", "p.up.n"} <= as_module.refs
    assert {"p.q.r.m", "p.q.up.n"} <= as_package.refs
    assert "p.q.r.m" not in as_module.refs


def test_star_import_of_a_module_and_of_a_package_with_all() -> None:
    files = {
        **PKG,
        "a/b/__init__.py": "__all__ = ['c', 'helper']\n",
        "main.py": "from a.b import *\n",
        "mod.py": "from a.x import *\n",
    }
    assert edges(files, "main.py") == {"a/__init__.py", "a/b/__init__.py", "a/b/c.py"}
    assert edges(files, "mod.py") == {"a/__init__.py", "a/x.py"}


def test_star_import_follows_all_as_the_body_builds_it() -> None:
    files = {
        **PKG,
        "a/b/__init__.py": "__all__ = []\n__all__ += ['c']\n__all__.extend(['zz'])\n",
        "a/__init__.py": "from .b import __all__ as _b\n__all__ = ['x'] + _b\n",
        "main.py": "from a.b import *\n",
        "other.py": "from a import *\n",
    }
    assert parse(files["a/b/__init__.py"], module="a.b", is_package=True).exports == ("c", "zz")
    assert edges(files, "main.py") == {"a/__init__.py", "a/b/__init__.py", "a/b/c.py"}
    # a non-literal __all__ may name any submodule: every direct one is an edge
    assert edges(files, "other.py") == {"a/__init__.py", "a/b/__init__.py", "a/x.py"}


def test_imports_anywhere_count() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from a import x\n"
        "try:\n    import a.b.c\nexcept ImportError:\n    pass\n"
        "def f():\n    from a.b import d\n"
        "class K:\n    def m(self):\n        import a.b\n"
    )
    assert edges({**PKG, "main.py": source}, "main.py") == {
        "a/__init__.py", "a/x.py", "a/b/__init__.py", "a/b/c.py", "a/b/d.py",
    }  # fmt: skip


def test_literal_dynamic_imports() -> None:
    source = (
        "import importlib\nfrom importlib import import_module\n"
        "importlib.import_module('a.b.c')\n"
        "import_module('.d', package='a.b')\n"
        "__import__('a.x')\n"
        "__import__('a.b', fromlist=['d'])\n"
        "__import__('a', globals(), locals(), None, 0)\n"
    )
    assert edges({**PKG, "main.py": source}, "main.py") == {
        "a/__init__.py", "a/b/__init__.py", "a/b/c.py", "a/b/d.py", "a/x.py",
    }  # fmt: skip


def test_dynamic_import_relative_to_dunder_name() -> None:
    files = {
        **PKG,
        "a/b/__init__.py": "import importlib\nimportlib.import_module('.c', __name__)\n",
    }
    assert edges(files, "a/b/__init__.py") == {"a/__init__.py", "a/b/c.py"}
    parsed = parse("import_module('..x', __package__)\n", module="a.b.c", is_package=False)
    assert "a.x" in parsed.refs and not parsed.unsure
    relative = parse(
        "__import__('d', globals(), None, ['e'], 1)\n", module="a.b.c", is_package=False
    )
    assert {"a.b.d", "a.b.d.e"} <= relative.refs and not relative.unsure


def test_strings_pytest_and_mock_import() -> None:
    source = (
        "import pytest\nfrom unittest import mock\n"
        "pytest_plugins = ['a.b.c']\n"
        "pytest.importorskip('a.x')\n"
        "@mock.patch('a.b.d.helper')\ndef test_one(m): pass\n"
    )
    assert edges({**PKG, "test_main.py": source}, "test_main.py") == {
        "a/__init__.py", "a/b/__init__.py", "a/b/c.py", "a/b/d.py", "a/x.py",
    }  # fmt: skip


def test_submodules_used_through_an_imported_package_are_edges() -> None:
    source = (
        "import a\nfrom a import b as bb\nimport a.b as ab\n"
        "def f():\n    return a.x.f(), bb.c.g(), ab.d\n"
    )
    assert edges({**PKG, "main.py": source}, "main.py") == {
        "a/__init__.py", "a/b/__init__.py", "a/x.py", "a/b/c.py", "a/b/d.py",
    }  # fmt: skip
    unbound = "a = object()\nprint(a.x, a.b.c)\nimport os\nos.path.join('a', 'b')\n"
    assert edges({**PKG, "other.py": unbound}, "other.py") == set()


def test_imports_of_outside_modules_give_no_edge() -> None:
    source = "import os, json\nfrom collections import abc\nimport pytest\nfrom a import nope\n"
    assert edges({**PKG, "main.py": source}, "main.py") == {"a/__init__.py"}


def test_a_module_imports_its_own_packages() -> None:
    assert edges(PKG, "a/b/c.py") == {"a/__init__.py", "a/b/__init__.py"}
    assert edges(PKG, "a/__init__.py") == set()


# --- unsure -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import importlib\nname = 'x'\nimportlib.import_module(name)\n",
         "line 3: importlib.import_module(name) with a non-literal name"),
        ("m = __import__(f'p{1}')\n",
         "line 1: __import__(f'p{1}') with a non-literal name, fromlist or level"),
        ("m = __import__('p', fromlist=names)\n",
         "line 1: __import__('p', fromlist=names) with a non-literal name, fromlist or level"),
        ("m = __import__('p', globals(), None, [], lvl)\n",
         "line 1: __import__('p', globals(), None, [], lvl) with a non-literal name, fromlist "
         "or level"),
        ("exec('import a')\n", "line 1: exec() runs code that may import anything"),
        ("x = eval(code)\n", "line 1: eval() runs code that may import anything"),
        ("import importlib.util\nspec = importlib.util.spec_from_file_location('m', 'm.py')\n",
         "line 2: importlib.util.spec_from_file_location('m', 'm.py') loads code by file path"),
        ("import sys\nsys.path.insert(0, 'lib')\n",
         "line 2: sys.path.insert(0, 'lib') changes where imports are found"),
        ("import sys\nsys.path = ['lib']\n",
         "line 2: `sys.path = ['lib']` changes where imports are found"),
        ("import sys\nsys.path[:0] = ['lib']\n",
         "line 2: `sys.path[:0] = ['lib']` changes where imports are found"),
        ("import sys\nsys.path += ['lib']\n",
         "line 2: `sys.path += ['lib']` changes where imports are found"),
        ("from ... import x\n", "line 1: relative import ... above the top-level package"),
        ("import pkgutil\n__path__ = pkgutil.extend_path(__path__, __name__)\n",
         "line 2: `__path__ = pkgutil.extend_path(__path__, __name__)` changes where "
         "imports are found"),
        ("import sys\nsys.meta_path.insert(0, Finder())\n",
         "line 2: sys.meta_path.insert(0, Finder()) changes where imports are found"),
        ("import site\nsite.addsitedir('vendor')\n",
         "line 2: site.addsitedir('vendor') changes where imports are found"),
        ("import_module('.x')\n",
         "line 1: import_module('.x'): a relative name without a literal package"),
        ("pytest_plugins = PLUGINS\n",
         "line 1: pytest_plugins is not a literal string or list of strings"),
        ("def f(:\n", "does not parse: line 1: invalid syntax"),
    ],
)  # fmt: skip
def test_what_cannot_be_resolved_is_unsure(source: str, expected: str) -> None:
    parsed = parse(source, module="p.m", is_package=False)
    assert parsed.unsure == (expected,)


def test_method_calls_named_like_builtins_are_not_unsure() -> None:
    source = (
        "model.eval()\ncursor.exec('x')\nsetattr(obj, 'a.b', 1)\nsys.path.count(1)\n"
        "class B:\n    def f(self):\n        return self.load_module('m')\n"
    )
    assert parse(source, module="m", is_package=False).unsure == ()


def test_parsing_prints_no_warning_of_the_users_code() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parsed = parse(
            'import re\nPATTERN = "\\d+"\nassert (1, "x")\n', module="m", is_package=False
        )
    assert parsed.refs == {"re"} and not parsed.unsure


def test_unreadable_and_undecodable_files_are_unsure() -> None:
    g = from_sources({"gone.py": None, "latin.py": b"# coding: nope\nx = 1\n", "ok.py": b""})
    assert g.modules["gone.py"].unsure == ("cannot be read",)
    assert g.modules["latin.py"].unsure[0].startswith("does not parse: cannot decode it")
    assert g.unsure_paths() == {"gone.py", "latin.py"}


def test_a_file_that_does_not_parse_has_no_edges_and_says_why() -> None:
    node = graph({**PKG, "bad.py": "import a.x\nif:\n"}).modules["bad.py"]
    assert node.imports == frozenset()
    assert node.unsure == ("does not parse: line 2: invalid syntax",)


def test_an_encoding_cookie_is_honoured() -> None:
    g = from_sources(
        {
            "a/__init__.py": b"",
            "m.py": "# -*- coding: latin-1 -*-\nimport a\ns = 'é'\n".encode("latin-1"),
        }
    )
    assert g.modules["m.py"].imports == {"a/__init__.py"} and not g.modules["m.py"].unsure


# --- re-exports ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("", True),
        ('"""Doc."""\nfrom .core import f\nimport a.b as c\n'
         '__all__ = ["f"]\n__all__ += ["c"]\npass\n', True),
        ("from .core import *\n__all__: list[str] = []\n", True),
        ("from .core import f\nx = 1\n", False),
        ("from .core import f\ndef g(): pass\n", False),
        ("from .core import f\nif f:\n    pass\n", False),
        ("def f(:\n", False),
    ],
)  # fmt: skip
def test_reexport_only(source: str, expected: bool) -> None:
    assert parse(source, module="p", is_package=True).reexport_only is expected


# --- the module map ---------------------------------------------------------------------------


def test_src_layout_names() -> None:
    names = module_map(
        ROOT, [ROOT / "src/pkg/__init__.py", ROOT / "src/pkg/core.py", ROOT / "setup.py"]
    )
    assert names.name("src/pkg/core.py") == "pkg.core"
    assert names.paths("pkg.core") == {"src/pkg/core.py"}
    assert names.paths("src.pkg.core") == {"src/pkg/core.py"}
    assert names.paths("pkg") == {"src/pkg/__init__.py"}
    assert names.name("setup.py") == "setup"


def test_namespace_packages() -> None:
    files = {
        "src/ns/one/__init__.py": "",
        "src/ns/one/core.py": "from ns.two import util\nfrom ns import two\n",
        "src/ns/two/util.py": "from . import other\n",
        "src/ns/two/other.py": "",
        "tests/test_ns.py": "import ns.one.core\nfrom ns.two import util\n",
    }
    g = graph(files)
    assert g.modules["src/ns/one/core.py"].imports == {
        "src/ns/one/__init__.py",
        "src/ns/two/util.py",
    }
    assert g.modules["src/ns/two/util.py"].imports == {"src/ns/two/other.py"}
    assert g.modules["tests/test_ns.py"].imports == {
        "src/ns/one/__init__.py", "src/ns/one/core.py", "src/ns/two/util.py",
    }  # fmt: skip
    assert g.modules["src/ns/two/util.py"].name == "ns.two.util"


def test_same_named_files_in_two_packages_never_collide() -> None:
    files = {
        "app/__init__.py": "",
        "app/utils.py": "",
        "lib/__init__.py": "",
        "lib/utils.py": "",
        "app/main.py": "from . import utils\nfrom lib import utils as lib_utils\n",
        "lib/main.py": "from .utils import f\n",
    }
    g = graph(files)
    assert g.modules["app/main.py"].imports == {
        "app/__init__.py",
        "app/utils.py",
        "lib/__init__.py",
        "lib/utils.py",
    }
    assert g.modules["lib/main.py"].imports == {"lib/__init__.py", "lib/utils.py"}
    assert (
        g.modules["app/utils.py"].name == "app.utils"
        and g.modules["lib/utils.py"].name == "lib.utils"
    )


def test_test_directories_without_init_are_on_sys_path() -> None:
    files = {
        "tests/conftest.py": "from helpers import make\n",
        "tests/helpers.py": "",
        "tests/unit/test_a.py": "import helpers\nimport unit_helpers\n",
        "tests/unit/unit_helpers.py": "",
    }
    g = graph(files)
    assert g.modules["tests/unit/test_a.py"].name == "test_a"
    assert g.modules["tests/unit/test_a.py"].imports == {
        "tests/helpers.py",
        "tests/unit/unit_helpers.py",
    }
    assert g.modules["tests/conftest.py"].imports == {"tests/helpers.py"}


def test_test_packages_are_named_from_the_first_directory_without_init() -> None:
    files = {
        "tests/__init__.py": "",
        "tests/unit/__init__.py": "",
        "tests/unit/test_a.py": "from . import helpers\nfrom tests import shared\n",
        "tests/unit/helpers.py": "",
        "tests/shared.py": "",
    }
    g = graph(files)
    assert g.modules["tests/unit/test_a.py"].name == "tests.unit.test_a"
    assert g.modules["tests/unit/test_a.py"].imports == {
        "tests/__init__.py", "tests/unit/__init__.py", "tests/unit/helpers.py", "tests/shared.py",
    }  # fmt: skip


def test_a_rootdir_that_is_a_package_names_tests_from_above() -> None:
    files = {"__init__.py": "", "core.py": "", "test_core.py": "from . import core\n"}
    g = graph(files)
    assert g.modules["test_core.py"].name == "proj.test_core"
    assert g.modules["test_core.py"].imports == {"__init__.py", "core.py"}


def test_test_file_patterns_can_be_given() -> None:
    files = {"checks/check_a.py": "import helpers\n", "checks/helpers.py": ""}
    sources = {p: s.encode() for p, s in files.items()}
    assert from_sources(sources).modules["checks/check_a.py"].imports == frozenset()
    custom = from_sources(sources, test_files=("check_*.py",))
    assert custom.modules["checks/check_a.py"].imports == {"checks/helpers.py"}
    assert module_map(ROOT, [ROOT / p for p in files], test_files=("check_*.py",)).paths(
        "helpers"
    ) == {"checks/helpers.py"}


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("import from.abc*()\n\t:_'\"#\\=1,[]"))))
def test_parse_never_raises(source: str) -> None:
    parsed = parse(source, module="p.q", is_package=False)
    assert all(reason.startswith(("line ", "does not parse")) for reason in parsed.unsure)
    assert all(name and not name.startswith(".") for name in parsed.refs)


def test_a_name_two_files_answer_to_gives_an_edge_to_each() -> None:
    files = {
        "tests/unit/test_a.py": "import helpers\n",
        "tests/unit/helpers.py": "",
        "tests/integration/test_b.py": "",
        "tests/integration/helpers.py": "",
    }
    assert edges(files, "tests/unit/test_a.py") == {
        "tests/unit/helpers.py",
        "tests/integration/helpers.py",
    }


# --- reaches, importers, JSON ---------------------------------------------------------------


def chain() -> Graph:
    return graph(
        {
            **PKG,
            "a/b/c.py": "from . import d\n",
            "test_c.py": "import a.b.c\n",
            "a/x.py": "exec('')\n",
        }
    )


def test_reaches_is_the_transitive_closure_with_the_starts() -> None:
    g = chain()
    assert g.reaches(["test_c.py"]) == {
        "test_c.py",
        "a/__init__.py",
        "a/b/__init__.py",
        "a/b/c.py",
        "a/b/d.py",
    }
    assert g.reaches(["a/x.py"]) == {"a/x.py", "a/__init__.py"}
    assert g.reaches([]) == frozenset()
    assert g.reaches(["not/there.py"]) == {"not/there.py"}


def test_importers_are_the_reverse_edges() -> None:
    g = chain()
    assert g.importers("a/b/d.py") == {"a/b/c.py"}
    assert g.importers("a/b/c.py") == {"test_c.py"}
    assert g.importers("a/__init__.py") == {
        "a/b/__init__.py",
        "a/b/c.py",
        "a/b/d.py",
        "a/x.py",
        "test_c.py",
    }
    assert g.importers("test_c.py") == frozenset()
    assert g.unsure_paths() == {"a/x.py"}


def test_reached_by_is_reaches_backwards() -> None:
    g = chain()
    assert g.reached_by(["a/b/d.py"]) == {"a/b/d.py", "a/b/c.py", "test_c.py"}
    assert g.reached_by(["test_c.py"]) == {"test_c.py"}
    assert g.reached_by([]) == frozenset()
    for start in g.modules:
        assert g.reached_by([start]) == {p for p in g.modules if start in g.reaches([p])}


def test_json_round_trip() -> None:
    g = graph({**PKG, "a/b/__init__.py": "__all__ = ['c']\nfrom .c import *\n", "bad.py": "if:\n"})
    data = json.loads(json.dumps(g.to_json()))
    assert data["version"] == 1
    assert Graph.from_json(data) == g


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"version": 2, "modules": {}},
        {"version": 1},
        {"version": 1, "modules": {"a.py": {"name": 3}}},
        {"version": 1, "modules": {"a.py": {"name": "a", "digest": "", "reexport_only": False}}},
    ],
)
def test_from_json_rejects_what_it_cannot_read(data: object) -> None:
    with pytest.raises(ValueError):
        Graph.from_json(data)


# --- generated package trees ---------------------------------------------------------------

SEGMENT = st.sampled_from(["a", "b", "c"])


@st.composite
def trees(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, set[str]]]:
    """A package tree with random absolute and relative imports, and the edges each file
    must get, computed from paths (not names)."""
    leaves = draw(
        st.sets(st.lists(SEGMENT, min_size=1, max_size=3).map(tuple), min_size=2, max_size=8)
    )
    packages = {leaf[:i] for leaf in leaves for i in range(1, len(leaf))}
    namespace = draw(st.sets(st.sampled_from(sorted(packages)))) if packages else set()
    prefix = draw(st.sampled_from(["", "src/"]))
    modules = sorted((leaves - packages) | (packages - namespace))

    def file(mod: tuple[str, ...]) -> str:
        return prefix + "/".join(mod) + ("/__init__.py" if mod in packages else ".py")

    def runs(mod: tuple[str, ...]) -> set[str]:  # importing mod runs these files
        return {file(mod[:i]) for i in range(1, len(mod) + 1) if mod[:i] in modules}

    sources: dict[str, str] = {}
    expected: dict[str, set[str]] = {}
    for mod in modules:
        here = mod if mod in packages else mod[:-1]  # the package relative imports start from
        lines = ["import os", "from typing import TYPE_CHECKING"]
        wanted = runs(mod[:-1]) if mod[:-1] else set()
        for target in draw(st.lists(st.sampled_from(modules), max_size=4)):
            common = 0
            while common < min(len(here), len(target)) and here[common] == target[common]:
                common += 1
            forms = ["import", "dynamic", "star"] + (["from"] if len(target) > 1 else [])
            if common and len(target) > common:
                forms += ["relative", "relative", "relative-dynamic"]
            form = draw(st.sampled_from(forms))
            if form == "import":
                lines.append(f"import {'.'.join(target)}")
            elif form == "dynamic":
                lines.append(f"__import__('importlib').import_module('{'.'.join(target)}')")
            elif form == "star":
                lines.append(f"from {'.'.join(target)} import *")
            elif form == "relative-dynamic":
                dots = "." * (len(here) - common + 1)
                lines.append(f"import_module('{dots}{'.'.join(target[common:])}', __package__)")
            elif form == "from":
                lines.append(f"from {'.'.join(target[:-1])} import {target[-1]}")
            else:
                dots = "." * (len(here) - common + 1)
                lines.append(f"from {dots}{'.'.join(target[common:-1])} import {target[-1]}")
            wanted |= runs(target)
        sources[file(mod)] = "\n".join(lines) + "\n"
        expected[file(mod)] = wanted - {file(mod)}
    return sources, expected


@settings(max_examples=150, deadline=None)
@given(trees())
def test_generated_trees_get_exactly_the_expected_edges(
    tree: tuple[dict[str, str], dict[str, set[str]]],
) -> None:
    sources, expected = tree
    g = graph(sources)
    assert {p: set(n.imports) for p, n in g.modules.items()} == expected
    assert g.unsure_paths() == frozenset()
    for path in g.modules:
        assert g.reached_by([path]) == {p for p in g.modules if path in g.reaches([p])}


# --- building from disk, the cache ------------------------------------------------------------


def write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


def counting_parse(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    parsed: list[str] = []
    real = importgraph.parse

    def spy(source: str, *, module: str, is_package: bool) -> importgraph.Parsed:
        parsed.append(module)
        return real(source, module=module, is_package=is_package)

    monkeypatch.setattr(importgraph, "parse", spy)
    return parsed


def test_only_changed_files_are_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, {**PKG, "a/b/c.py": "from a import y\n", "test_c.py": "import a.b.c\n"})
    first = build(tmp_path, importgraph.project_files(tmp_path))
    parsed = counting_parse(monkeypatch)
    write(tmp_path, {"a/b/d.py": "import a.x\n", "a/y.py": ""})
    second = build(tmp_path, importgraph.project_files(tmp_path), cached=first.modules)
    assert sorted(parsed) == ["a.b.d", "a.y"]
    assert second.modules["a/b/d.py"].imports == {"a/__init__.py", "a/b/__init__.py", "a/x.py"}
    # a/b/c.py was not parsed again, yet its `from a import y` now finds the new file
    assert "a/y.py" in second.modules["a/b/c.py"].imports
    assert second == build(tmp_path, importgraph.project_files(tmp_path))


def test_a_file_whose_name_changed_is_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, {"tests/test_a.py": "from . import helpers\n", "tests/helpers.py": ""})
    first = build(tmp_path, importgraph.project_files(tmp_path))
    assert first.modules["tests/test_a.py"].unsure  # no package: `from .` fails
    parsed = counting_parse(monkeypatch)
    write(tmp_path, {"tests/__init__.py": ""})
    second = build(tmp_path, importgraph.project_files(tmp_path), cached=first.modules)
    assert "tests.test_a" in parsed
    assert second.modules["tests/test_a.py"].imports == {"tests/__init__.py", "tests/helpers.py"}


def test_current_caches_under_gates_and_survives_a_corrupt_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, gates = tmp_path / "proj", tmp_path / "gates"
    write(project, {**PKG, "test_x.py": "import a.x\n"})
    warnings: list[str] = []
    first = current(project, store.Store(gates, warnings.append))
    cache = gates / store.IMPORT_GRAPH
    assert Graph.from_json(json.loads(cache.read_text())) == first
    parsed = counting_parse(monkeypatch)
    assert current(project, store.Store(gates, warnings.append)) == first
    assert parsed == [] and warnings == []
    cache.write_text('{"version": 1, "modules": {"a.py": ', encoding="utf-8")
    assert current(project, store.Store(gates, warnings.append)) == first
    assert len(parsed) == len(first.modules)
    assert warnings == [f"ignoring `{cache}`: it is not valid JSON (truncated?)"]
    assert Graph.from_json(json.loads(cache.read_text())) == first
    cache.write_text('{"version": 1, "modules": {"a.py": {"name": 3}}}', encoding="utf-8")
    assert current(project, store.Store(gates, warnings.append)) == first
    assert warnings[1:] == [
        f"ignoring `{cache}`: importgraph.json: `a.py`: `name`, `digest` or `reexport_only` "
        "has the wrong type"
    ]


def test_project_files_skips_what_is_not_the_project(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "src/pkg/__init__.py": "", "tests/test_a.py": "", "setup.py": "",
            ".gates/x.py": "", ".git/hooks/h.py": "", ".tox/env/m.py": "", "build/lib/m.py": "",
            "dist/m.py": "", "pkg.egg-info/m.py": "", "node_modules/m.py": "",
            "src/pkg/__pycache__/m.py": "", "venv/lib/site.py": "", "venv/pyvenv.cfg": "",
            "notes.txt": "",
        },
    )  # fmt: skip
    found = [p.relative_to(tmp_path).as_posix() for p in importgraph.project_files(tmp_path)]
    assert found == ["setup.py", "src/pkg/__init__.py", "tests/test_a.py"]


def test_files_outside_the_root_are_left_out(tmp_path: Path) -> None:
    write(tmp_path, {"proj/m.py": "", "elsewhere.py": ""})
    g = build(tmp_path / "proj", [tmp_path / "proj/m.py", tmp_path / "elsewhere.py", Path("m.py")])
    assert set(g.modules) == {"m.py"}
    assert isinstance(g.modules["m.py"], Node)
