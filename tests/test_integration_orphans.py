"""``mtest orphans`` and ``mtest --include-orphans``, run as real ``mtest`` processes on
generated projects."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from conftest import run_mtest


def bench_orphans() -> ModuleType:
    """``bench/orphans.py``: the generated project with known orphans, and its check."""
    path = Path(__file__).resolve().parents[1] / "bench" / "orphans.py"
    spec = importlib.util.spec_from_file_location("bench_orphans", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_project_gives_the_known_answer(tmp_path: Path) -> None:
    bench = bench_orphans()
    root = bench.generate(tmp_path / "shop")
    assert bench.check(root) == []
    written = json.loads((root / ".gates" / "orphans.json").read_text(encoding="utf-8"))
    assert written["version"] == 1 and written["recursive"] is True  # the last one: --recursive
    assert {m["path"]: m["kind"] for m in written["modules"]} == bench.EXPECTED_RECURSIVE


def test_the_listing_and_its_bad_input(tmp_path: Path) -> None:
    root = bench_orphans().generate(tmp_path / "shop")
    done = run_mtest(["orphans"], root)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert "src/shop/broken.py (shop.broken): orphan" in out
    assert "  unsure: does not parse: line 1: invalid syntax" in out
    assert "src/shop/prices_copy.py (shop.prices_copy): redundant" in out
    assert "  same content as src/shop/prices.py" in out
    assert "2 more module(s) only these orphans import: --recursive lists them" in out
    assert "Traceback" not in done.stderr
    assert (
        "mtest orphans: 5 of 15 module(s) reached from 2 test file(s); "
        "3 orphan, 5 isolated, 2 redundant" in done.stdout + done.stderr
    )
    under = run_mtest(["orphans", "src/plugins"], root)
    assert under.returncode == 0, under.stderr
    assert under.stdout.splitlines()[0] == "src/plugins/unused.py (plugins.unused): orphan"
    assert not any(line.startswith("src/shop/") for line in under.stdout.splitlines())
    wrong = run_mtest(["orphans", "--last", "2"], root)
    assert wrong.returncode == 4 and "--last is not used by this command" in wrong.stderr
    run_flag = run_mtest(["--recursive"], root)
    assert run_flag.returncode == 4 and "--recursive is not used by this command" in run_flag.stderr


def test_a_dynamic_import_the_tests_reach_makes_the_answer_uncertain(tmp_path: Path) -> None:
    root = bench_orphans().generate(tmp_path / "shop")
    (root / "src" / "shop" / "prices.py").write_text(
        "import importlib\n\n\ndef price(n, how='decimal'):\n"
        "    importlib.import_module(how)\n    return n * 10\n",
        encoding="utf-8",
    )
    done = run_mtest(["orphans"], root)
    assert done.returncode == 0, done.stderr
    assert (
        "not certain: 1 module(s) the tests reach import dynamically (any orphan may be "
        "imported at runtime): src/shop/prices.py"
    ) in done.stdout.splitlines()
    assert "(not certain)" in done.stdout + done.stderr
    data = json.loads(run_mtest(["orphans", "--json"], root).stdout)
    assert data["unsure_reached"] == ["src/shop/prices.py"]
