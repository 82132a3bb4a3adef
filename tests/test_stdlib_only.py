"""The supervisor must run when the project under test is broken: standard library only.

Every module of ``src/supervisor`` may import the standard library and
``supervisor`` itself; only the probe (loaded into pytest children) may
import pytest.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import supervisor

PACKAGE = Path(supervisor.__file__).resolve().parent
ALLOWED_EXTRA = {"probe.py": {"pytest"}, "probelazy.py": {"pytest"}, "probecov.py": {"coverage"}}
CHILD_SIDE = ("probe.py", "probelazy.py", "probedeps.py", "probeio.py", "probecov.py")
"""Loaded into the children from their files, beside one another."""


def top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


MODULES = sorted(PACKAGE.glob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_module_imports_only_the_standard_library(path: Path) -> None:
    allowed = set(sys.stdlib_module_names) | {"supervisor", "__future__"}
    allowed |= ALLOWED_EXTRA.get(path.name, set())
    assert top_level_imports(path) - allowed == set()


def test_the_check_sees_imports() -> None:
    # Guard against a check that passes because it reads nothing.
    assert len(MODULES) > 10
    assert "pytest" in top_level_imports(PACKAGE / "probe.py")
    assert {"subprocess", "selectors"} <= top_level_imports(
        PACKAGE / "drive.py"
    ) | top_level_imports(PACKAGE / "worker.py")


def test_the_probe_needs_nothing_of_mtest_in_the_child() -> None:
    # The child's interpreter may not have mtest installed: the probe is loaded
    # from its file and must not import the rest of the package.
    for name in CHILD_SIDE:
        assert "supervisor" not in top_level_imports(PACKAGE / name), name
