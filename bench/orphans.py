"""The orphan check of issue 13: a small generated project whose orphan, isolated and
redundant modules are known, a namespace package among them; ``mtest orphans --json``
(and ``--recursive``) must find exactly those.

    python bench/orphans.py            # in a temporary directory; exit 1 on any mismatch
    python bench/orphans.py --keep DIR # generate into DIR and leave it there

Run it with an interpreter that has mtest installed (``sys.executable -m supervisor``).
Prints one line per check and the result. ``tests/test_integration_orphans.py`` runs
the same generator and comparison.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PROJECT = {
    "pyproject.toml": '[project]\nname = "shop"\n',
    "pytest.ini": "[pytest]\n",
    "setup.py": "import shop.version\n",
    "docs/conf.py": "project = 'shop'\n",
    "src/shop/__init__.py": "from .cart import Cart\n\nVERSION = '1'\n",
    "src/shop/version.py": "NUMBER = 1\n",
    "src/shop/cart.py": "from .prices import price\n\n\nclass Cart:\n    total = price(2)\n",
    "src/shop/prices.py": "def price(n):\n    return n * 10\n",
    # The same content as prices.py: redundant.
    "src/shop/prices_copy.py": "def price(n):\n    return n * 10\n",
    # Only re-exports: redundant.
    "src/shop/api.py": "from .cart import Cart\nfrom .prices import price\n\n__all__ = ['Cart']\n",
    # Nothing imports it: an orphan, and what only it imports is isolated (--recursive).
    "src/shop/legacy.py": "from . import legacy_helpers\n\nOLD = legacy_helpers.deep.X\n",
    "src/shop/legacy_helpers.py": "from . import deep\n\nHELP = 1\n",
    "src/shop/deep.py": "X = 1\n",
    # A cycle no test enters: isolated, listed without --recursive.
    "src/shop/ring_a.py": "from . import ring_b\n\nA = 1\n",
    "src/shop/ring_b.py": "from . import ring_a\n\nB = 1\n",
    # Does not parse: an orphan the graph is unsure about.
    "src/shop/broken.py": "def broken(:\n",
    # A namespace package (no __init__.py): one module reached, one orphan.
    "src/plugins/loaded.py": "NAME = 'loaded'\n",
    "src/plugins/unused.py": "NAME = 'unused'\n",
    # Reached through the conftest only.
    "src/shop/fixtures.py": "CART = 1\n",
    "tests/conftest.py": "from shop import fixtures\n",
    "tests/test_shop.py": (
        "import plugins.loaded\nfrom shop import Cart\n\n\n"
        "def test_cart():\n    assert Cart.total == 20 and plugins.loaded.NAME\n"
    ),
}

EXPECTED = {
    "src/shop/version.py": "isolated",
    "src/shop/prices_copy.py": "redundant",
    "src/shop/api.py": "redundant",
    "src/shop/legacy.py": "orphan",
    "src/shop/ring_a.py": "isolated",
    "src/shop/ring_b.py": "isolated",
    "src/shop/broken.py": "orphan",
    "src/plugins/unused.py": "orphan",
}
"""The default listing: path → kind."""
EXPECTED_RECURSIVE = {
    **EXPECTED,
    "src/shop/legacy_helpers.py": "isolated",
    "src/shop/deep.py": "isolated",
}
"""``--recursive`` adds what only the orphan legacy.py imports."""
EXPECTED_PARENTS = {
    "src/shop/legacy_helpers.py": ["src/shop/legacy.py"],
    "src/shop/deep.py": ["src/shop/legacy_helpers.py"],
    "src/shop/ring_a.py": ["src/shop/ring_b.py"],
    # setup.py imports it, but setup.py is not a module of the project: isolated.
    "src/shop/version.py": ["setup.py"],
}
REACHED = 5
"""shop/__init__, cart, prices, fixtures (through the conftest) and plugins/loaded."""


def generate(root: Path) -> Path:
    for rel, text in PROJECT.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def mtest(root: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "orphans", "--json", *args],
        cwd=root, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"mtest orphans exited {done.returncode}: {done.stderr.strip()}")
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def check(root: Path) -> list[str]:
    """Every mismatch between mtest's answer and the known one (empty: none)."""
    problems: list[str] = []
    plain, full = mtest(root), mtest(root, "--recursive")
    for data, expected, what in ((plain, EXPECTED, "default"),
                                 (full, EXPECTED_RECURSIVE, "--recursive")):  # fmt: skip
        found = {m["path"]: m["kind"] for m in data["modules"]}
        if found != expected:
            problems.append(f"{what}: found {found}, expected {expected}")
    if plain["hidden"] != 2 or full["hidden"] != 0:
        problems.append(f"hidden: {plain['hidden']} and {full['hidden']}, expected 2 and 0")
    parents = {m["path"]: m["parents"] for m in full["modules"]}
    for path, want in EXPECTED_PARENTS.items():
        if parents.get(path) != want:
            problems.append(f"parents of {path}: {parents.get(path)}, expected {want}")
    project = len(PROJECT) - 6  # pyproject, pytest.ini, setup.py, docs/conf.py, 2 test files
    if plain["project_modules"] != project or plain["reached"] != REACHED:
        problems.append(
            f"counts: {plain['project_modules']} module(s), {plain['reached']} reached; "
            f"expected {project} and {REACHED}"
        )
    if plain["unsure_reached"]:
        problems.append(f"unsure modules reached: {plain['unsure_reached']}, expected none")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mtest-orphans-") as tmp:
        root = generate(Path(args.keep or tmp).resolve())
        problems = check(root)
    for problem in problems:
        print(f"MISMATCH {problem}")
    listed = len(EXPECTED_RECURSIVE)
    verdict = f"{len(problems)} mismatch(es)" if problems else "all found and classified"
    print(f"orphan check: {listed} known unreached module(s), {verdict}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
