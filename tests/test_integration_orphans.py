"""``mtest orphans`` and ``mtest --include-orphans``, run as real ``mtest`` processes on
generated projects."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import finals, run_mtest


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


CHECKED = {
    "pytest.ini": "[pytest]\ntestpaths = tests\n",
    "pkg/__init__.py": "",
    "pkg/used.py": "VALUE = 1\n",
    "pkg/fine.py": "from . import used\n\nTWICE = used.VALUE * 2\n",
    "pkg/raises.py": "raise RuntimeError('boom at import')\n",
    "pkg/hangs.py": "import time\n\nwhile True:\n    time.sleep(0.05)\n",
    "pkg/kills.py": "import os\nimport signal\n\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "pkg/docs.py": 'def f():\n    """\n    >>> f()\n    2\n    """\n    return 1\n',
    "tests/test_used.py": "from pkg import used\n\n\ndef test_used():\n    assert used.VALUE\n",
}


def checked_project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    for rel, text in CHECKED.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def test_include_orphans_checks_each_import_in_a_worker(tmp_path: Path) -> None:
    root = checked_project(tmp_path)
    metrics = tmp_path / "metrics.prom"
    done = run_mtest(
        # -k selects the project's tests; the orphan checks run whatever it says.
        ["--include-orphans", "--timeout", "5", "--metrics-file", str(metrics), "-k", "used"],
        root, timeout=240,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    got = finals(root / ".gates")
    assert {t: r["outcome"] for t, r in got.items()} == {
        "tests/test_used.py::test_used": "passed",
        "orphan::pkg/fine.py": "passed",
        "orphan::pkg/docs.py": "passed",  # no --doctest-modules: only imported
        "orphan::pkg/raises.py": "failed",
        "orphan::pkg/hangs.py": "hung",
        "orphan::pkg/kills.py": "crashed",
    }
    assert "RuntimeError: boom at import" in got["orphan::pkg/raises.py"]["message"]
    bundle = (root / ".gates" / "last-run" / got["orphan::pkg/raises.py"]["bundle"]).read_text()
    assert "raise RuntimeError('boom at import')" in bundle
    assert ".gates/cache/orphans/mtest_orphan_checks.py::test_import_" in bundle  # reproduce
    assert "exceeded the 5s timeout" in got["orphan::pkg/hangs.py"]["message"]
    assert "SIGKILL" in got["orphan::pkg/kills.py"]["message"]
    out = done.stdout + done.stderr
    assert "mtest: Orphans: 5 checked, 3 failed" in out
    summary = (root / ".gates" / "last-run" / "summary.md").read_text(encoding="utf-8")
    assert "Orphans: 5 checked, 3 failed (`orphan::` records)." in summary
    listed = json.loads((root / ".gates" / "orphans.json").read_text(encoding="utf-8"))
    assert {m["path"] for m in listed["modules"]} == {
        "pkg/fine.py", "pkg/docs.py", "pkg/raises.py", "pkg/hangs.py", "pkg/kills.py",
    }  # fmt: skip
    exposition = metrics.read_text(encoding="utf-8")
    for outcome, count in (("passed", 2), ("failed", 1), ("hung", 1), ("crashed", 1)):
        assert f'mtest_last_run_orphans{{outcome="{outcome}"}} {count}' in exposition


def test_include_orphans_runs_doctests_with_doctest_modules(tmp_path: Path) -> None:
    root = checked_project(tmp_path)
    for rel in ("pkg/raises.py", "pkg/hangs.py", "pkg/kills.py"):
        (root / rel).unlink()
    done = run_mtest(["--include-orphans", "--", "--doctest-modules"], root, timeout=240)
    assert done.returncode == 1, done.stdout + done.stderr
    got = finals(root / ".gates")
    assert {t: r["outcome"] for t, r in got.items() if t.startswith("orphan::")} == {
        "orphan::pkg/fine.py": "passed",
        "orphan::pkg/docs.py": "passed",
        "orphan::pkg/docs.py::doctest": "failed",
    }
    assert got["orphan::pkg/docs.py::doctest"]["message"].startswith(
        "AssertionError: 1 of 1 doctest example(s) failed"
    )


def test_include_orphans_with_nothing_to_check_and_where_it_is_refused(tmp_path: Path) -> None:
    root = checked_project(tmp_path)
    for rel in ("pkg/fine.py", "pkg/raises.py", "pkg/hangs.py", "pkg/kills.py", "pkg/docs.py"):
        (root / rel).unlink()
    done = run_mtest(["--include-orphans"], root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--include-orphans: no orphan module to check" in done.stdout + done.stderr
    assert set(finals(root / ".gates")) == {"tests/test_used.py::test_used"}
    refused = run_mtest(["orphans", "--include-orphans"], root)
    assert refused.returncode == 4
    assert "--include-orphans is not used by this command" in refused.stderr


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("bwrap") is None,
    reason="bubblewrap (bwrap) is Linux's, and not installed here",
)
def test_include_orphans_checks_run_under_the_sandbox_too(tmp_path: Path) -> None:
    root = checked_project(tmp_path)
    for rel in ("pkg/hangs.py", "pkg/kills.py", "pkg/docs.py"):
        (root / rel).unlink()
    with socket.create_server(("127.0.0.1", 0)) as server:  # reachable outside the sandbox
        port = server.getsockname()[1]
        (root / "pkg" / "net.py").write_text(
            f"import socket\n\nsocket.create_connection(('127.0.0.1', {port}), timeout=5)\n",
            encoding="utf-8",
        )
        done = run_mtest(["--include-orphans", "--sandbox"], root, timeout=240)
    if "bubblewrap" in done.stderr and done.returncode == 4:
        pytest.skip(f"bubblewrap cannot run here: {done.stderr.strip()}")
    assert done.returncode == 1, done.stdout + done.stderr
    got = {t: r["outcome"] for t, r in finals(root / ".gates").items()}
    assert got == {
        "tests/test_used.py::test_used": "passed",
        "orphan::pkg/fine.py": "passed",
        "orphan::pkg/raises.py": "failed",
        "orphan::pkg/net.py": "failed",  # the sandbox has no network: the import raises
    }


def test_include_orphans_runs_in_the_first_shard_only(tmp_path: Path) -> None:
    root = checked_project(tmp_path)
    for rel in ("pkg/raises.py", "pkg/hangs.py", "pkg/kills.py", "pkg/docs.py"):
        (root / rel).unlink()
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # collect from the rootdir
    # Gates directories that are not hidden: the generated file is neither collected by
    # the next run nor listed as an orphan.
    for _ in range(2):
        first = run_mtest(["--include-orphans", "--shard", "1/2", "--gates-dir", "g1"], root)
        assert first.returncode in (0, 5), first.stdout + first.stderr
        got = finals(root / "g1")
        assert got["orphan::pkg/fine.py"]["outcome"] == "passed"
        assert not any(t.startswith("g1/") for t in got), got
    second = run_mtest(["--include-orphans", "--shard", "2/2", "--gates-dir", "g2"], root)
    assert second.returncode in (0, 5), second.stdout + second.stderr
    assert not any(t.startswith("orphan::") for t in finals(root / "g2"))
    listed = json.loads((root / "g1" / "orphans.json").read_text(encoding="utf-8"))
    assert [m["path"] for m in listed["modules"]] == ["pkg/fine.py"]


def test_events_name_the_checks_as_the_records_do(tmp_path: Path) -> None:
    root = checked_project(tmp_path)
    for rel in ("pkg/hangs.py", "pkg/kills.py", "pkg/docs.py"):
        (root / rel).unlink()
    done = run_mtest(["--include-orphans", "--events", "events.jsonl"], root, timeout=240)
    assert done.returncode == 1, done.stdout + done.stderr
    events = [json.loads(line) for line in (root / "events.jsonl").read_text().splitlines()]
    named = {e.get("test_id") for e in events if e.get("test_id")}
    named |= {t for e in events for t in e.get("tests", ())}
    assert {"orphan::pkg/fine.py", "orphan::pkg/raises.py"} <= named
    assert not any("mtest_orphan_checks" in t for t in named), named
    kinds = {(e["event"], e.get("test_id")) for e in events}
    assert ("test_started", "orphan::pkg/raises.py") in kinds
    assert ("test_finished", "orphan::pkg/raises.py") in kinds
    finished = [e for e in events if e["event"] == "run_finished"]
    assert finished[0]["result"]["orphans"] == {"passed": 1, "failed": 1}
