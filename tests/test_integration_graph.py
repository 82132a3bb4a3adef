"""``mtest graph``: the import graph's debug view, run as a real ``mtest`` process."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_mtest, write_suite

PROJECT = {
    "pyproject.toml": '[project]\nname = "demo"\n',
    "src/demo/__init__.py": 'from .core import load\n__all__ = ["load"]\n',
    "src/demo/core.py": (
        "import importlib\n\ndef load(name):\n    return importlib.import_module(name)\n"
    ),
    "tests/test_core.py": (
        "from demo import core\n\ndef test_load():\n    assert core.load('json')\n"
    ),
}


def project(tmp_path: Path) -> Path:
    root = write_suite(tmp_path / "p", {})
    for rel, text in PROJECT.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def test_graph_prints_imports_and_unsure_reasons(tmp_path: Path) -> None:
    root = project(tmp_path)
    done = run_mtest(["graph"], root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:8] == [
        "src/demo/__init__.py (demo)",
        "  imports src/demo/core.py",
        "src/demo/core.py (demo.core)",
        "  imports src/demo/__init__.py",
        "  unsure: line 4: importlib.import_module(name) with a non-literal name",
        "tests/test_core.py (test_core)",
        "  imports src/demo/__init__.py",
        "  imports src/demo/core.py",
    ]
    assert "mtest graph: 3 module(s), 4 import(s), 1 unsure" in done.stdout + done.stderr
    cached = json.loads((root / ".gates" / "importgraph.json").read_text(encoding="utf-8"))
    assert cached["version"] == 1 and set(cached["modules"]) == {
        "src/demo/__init__.py", "src/demo/core.py", "tests/test_core.py",
    }  # fmt: skip


def test_graph_json_of_a_path_and_bad_input(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / ".gates").mkdir()
    (root / ".gates" / "importgraph.json").write_text("{not json", encoding="utf-8")
    done = run_mtest(["graph", "tests", "--json"], root)
    assert done.returncode == 0, done.stderr
    assert "importgraph.json`: it is not valid JSON (truncated?)" in done.stderr
    data = json.loads(done.stdout)
    assert data["version"] == 1
    assert data["modules"]["tests/test_core.py"]["imports"] == [
        "src/demo/__init__.py", "src/demo/core.py",
    ]  # fmt: skip
    assert list(data["modules"]) == ["tests/test_core.py"]

    missing = run_mtest(["graph", "nowhere"], root)
    assert missing.returncode == 4
    assert "mtest: error: no Python file of the project under `nowhere`" in missing.stderr
    assert "Traceback" not in missing.stderr
    wrong = run_mtest(["graph", "--last", "2"], root)
    assert wrong.returncode == 4 and "--last is not used by this command" in wrong.stderr
