"""Resource use with real children: each record's RSS, growth and CPU, the summary's
"may leak" list and peak, ``--max-rss`` (a test above it is ``crashed``, a worker
that would go above it is replaced between tests) and a SIGKILL mtest did not send.

Allocations stay modest (the machine is shared) and nothing depends on timing: a
test that must be caught above the limit holds its memory until it is killed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import finals, mtest_env, run_mtest, write_suite

MIB = 1024 * 1024
LINUX_PROC = Path("/proc/self/statm").exists()
needs_proc = pytest.mark.skipif(not LINUX_PROC, reason="the RSS checks need Linux /proc")

PIDS = """
import os
from pathlib import Path


def note_pid(name):
    with open(Path(__file__).with_name("pids.txt"), "a") as out:
        out.write(f"{name} {os.getpid()}\\n")
"""


def pids(project: Path) -> dict[str, int]:
    """Which process ran each test (the tests write ``name pid`` lines)."""
    lines = (project / "pids.txt").read_text().split("\n")
    return {name: int(pid) for name, pid in (line.split() for line in lines if line)}


@needs_proc
def test_a_test_that_keeps_200_mb_shows_its_growth_and_may_leak(tmp_path: Path) -> None:
    project = write_suite(
        tmp_path,
        {
            "test_mem.py": textwrap.dedent("""
                import time

                KEEP = []

                def test_small():
                    pass

                def test_keeps_200_mb():
                    KEEP.append(bytearray(200 * 1024 * 1024))

                def test_burns_cpu():
                    start = time.process_time()
                    while time.process_time() - start < 0.3:
                        pass

                def test_sleeps():
                    time.sleep(0.3)
            """)
        },
    )
    result = run_mtest(["-j", "1"], project, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    records = finals(project / ".gates")
    leak = records["test_mem.py::test_keeps_200_mb"]
    assert 195 * MIB <= leak["rss_growth_bytes"] <= 230 * MIB
    assert leak["rss_bytes"] >= 200 * MIB
    for record in records.values():
        assert record["rss_bytes"] > MIB and record["cpu_s"] >= 0.0
    assert abs(records["test_mem.py::test_small"]["rss_growth_bytes"]) < 16 * MIB
    # CPU seconds are the worker's own: a busy loop counts, a sleep does not.
    assert records["test_mem.py::test_burns_cpu"]["cpu_s"] >= 0.3
    sleeps = records["test_mem.py::test_sleeps"]
    assert sleeps["cpu_s"] < sleeps["duration_s"] / 2
    summary = (project / ".gates" / "last-run" / "summary.md").read_text()
    section = summary.split("## Resource use", 1)[1]
    peak_line = next(line for line in section.splitlines() if line.startswith("Peak RSS"))
    peak_mib = float(peak_line.split(": ")[1].split(" ")[0])
    assert peak_line.endswith("MiB.") and peak_mib >= 200
    leaks = [line for line in section.splitlines() if line.startswith("- ")]
    assert leaks[0].startswith("- `test_mem.py::test_keeps_200_mb`: +")
    assert not any("test_small" in line or "test_sleeps" in line for line in leaks)


@needs_proc
def test_the_api_result_carries_the_peak_rss(tmp_path: Path) -> None:
    project = write_suite(
        tmp_path,
        {
            "test_mem.py": (
                "KEEP = []\n\ndef test_keeps_100_mb():\n"
                "    KEEP.append(bytearray(100 * 1024 * 1024))\n"
            )
        },
    )
    script = (
        "import json, supervisor\n"
        "result = supervisor.run(['-q'], cwd='.')\n"
        "print(json.dumps([result.exit_code, result.peak_rss_bytes,"
        " [r.rss_growth_bytes for r in result.records]]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=project, env=mtest_env(), capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    code, peak, growths = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 0
    assert growths[0] >= 95 * MIB
    assert peak >= growths[0] + MIB  # what it kept, on top of the session it ran in


@needs_proc
def test_a_test_above_max_rss_is_crashed_and_the_rest_runs_in_a_fresh_worker(
    tmp_path: Path,
) -> None:
    project = write_suite(
        tmp_path,
        {
            "pidnote.py": PIDS,
            "test_hog.py": textwrap.dedent("""
                import time
                from pidnote import note_pid

                def test_a_before():
                    note_pid("before")

                def test_b_hog():
                    note_pid("hog")
                    hog = bytearray(300 * 1024 * 1024)
                    time.sleep(600)  # holds it: mtest sees it above the limit, whatever the load

                def test_c_after():
                    note_pid("after")

                def test_d_after_too():
                    note_pid("after_too")
            """),
        },
    )
    result = run_mtest(["--max-rss", "150M", "--timeout", "300"], project, timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr
    records = finals(project / ".gates")
    hog = records["test_hog.py::test_b_hog"]
    assert hog["outcome"] == "crashed"
    assert hog["message"].startswith("exceeded --max-rss (RSS ")
    assert hog["message"].endswith(" > 150 MiB); mtest killed its worker")
    assert hog["rss_bytes"] > 150 * MIB
    assert "CRASHED test_hog.py::test_b_hog - exceeded --max-rss" in result.stdout
    for name in ("test_a_before", "test_c_after", "test_d_after_too"):
        assert records[f"test_hog.py::{name}"]["outcome"] == "passed"
    ran = pids(project)
    assert ran["before"] == ran["hog"]
    assert ran["after"] == ran["after_too"] != ran["hog"]


@needs_proc
def test_a_steady_leak_under_max_rss_moves_to_fresh_workers_between_tests(
    tmp_path: Path,
) -> None:
    # Each leaking test keeps 70 MB: a worker that ran one is replaced before the next
    # (70 MB more would take it over 150 MB), so no test is ever above the limit.
    leaks = "\n".join(
        f"def test_leak_{n}():\n    KEEP.append(bytearray(70 * 1024 * 1024))\n"
        f"    note_pid('leak_{n}')\n"
        for n in range(1, 4)
    )
    project = write_suite(
        tmp_path,
        {
            "pidnote.py": PIDS,
            "test_leaks.py": (
                "from pidnote import note_pid\n\nKEEP = []\n\n"
                "def test_a_small():\n    note_pid('small_a')\n\n"
                "def test_b_small():\n    note_pid('small_b')\n\n" + leaks
            ),
        },
    )
    result = run_mtest(["-j", "1", "--max-rss", "150M"], project, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    records = finals(project / ".gates")
    assert {r["outcome"] for r in records.values()} == {"passed"}
    for n in range(1, 4):
        assert records[f"test_leaks.py::test_leak_{n}"]["rss_growth_bytes"] >= 65 * MIB
    ran = pids(project)
    # Small tests share their worker (and the first leak runs in it too) ...
    assert ran["small_a"] == ran["small_b"] == ran["leak_1"]
    # ... then each leak runs in a worker of its own.
    assert len({ran["leak_1"], ran["leak_2"], ran["leak_3"]}) == 3
    assert "worker(s) were replaced between tests for --max-rss 150 MiB" in result.stdout
    summary = (project / ".gates" / "last-run" / "summary.md").read_text()
    assert "were replaced between tests for --max-rss 150 MiB" in summary


def test_a_worker_sigkilled_by_someone_else_is_asked_about_memory(tmp_path: Path) -> None:
    project = write_suite(
        tmp_path,
        {
            "test_killed.py": textwrap.dedent("""
                import os
                import signal

                def test_a_killed():
                    os.kill(os.getpid(), signal.SIGKILL)

                def test_b_after():
                    pass
            """)
        },
    )
    result = run_mtest([], project, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    records = finals(project / ".gates")
    killed = records["test_killed.py::test_a_killed"]
    assert killed["outcome"] == "crashed"
    assert killed["message"].startswith(
        "the child was killed by SIGKILL — out of memory? (mtest sent no signal; "
    )
    assert killed["message"].endswith(" while this test was running")
    if LINUX_PROC:  # the RSS at its start (or mtest's sample) is known
        assert "its RSS was " in killed["message"]
        assert " MiB when last measured)" in killed["message"]
        assert killed["rss_bytes"] > MIB
    assert records["test_killed.py::test_b_after"]["outcome"] == "passed"
