"""What ``--sandbox`` costs: a worker's start under bubblewrap, and a whole small run.

* ``start``: ``python -c pass`` alone and under ``bwrap`` with mtest's sandbox
  options (``launcher.bwrap_args``), ``--starts`` interleaved pairs: the
  sandbox's own start, per worker.
* ``run``: ``mtest -jN`` (N in ``--jobs``, default 1) on a generated suite of
  200 passing tests in ten files, with and without ``--sandbox``, ``--rounds``
  interleaved rounds after one untimed warm-up each; every run must exit 0
  with 200 ``passed`` records. The workers a run started are counted from its
  ``children/*.out.txt``, so the difference per worker can be read off.

Medians throughout; the machine is shared, so each pair runs back to back.

    python bench/sandbox.py                      # 5 rounds, 20 start pairs
    python bench/sandbox.py --rounds 3 --jobs 1,2

Run it with an interpreter that has mtest and pytest installed, on a machine
with ``bwrap``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from supervisor import launcher

TESTS_PER_FILE = 20
FILES = 10
MTEST = [sys.executable, "-m", "supervisor", "-q"]


def write_suite(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    for f in range(FILES):
        body = "".join(
            f"def test_{t}():\n    assert {t} + 1 > {t}\n\n\n" for t in range(TESTS_PER_FILE)
        )
        (root / f"test_m{f:02d}.py").write_text(body)
    return root


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}\n{done.stdout}{done.stderr}")
    return elapsed


def checked_run(argv: list[str], suite: Path) -> tuple[float, int]:
    """One mtest run: its wall time and the workers it started; all 200 tests passed."""
    elapsed = timed(argv, suite)
    last = suite / ".gates" / "last-run"
    records = [json.loads(line) for line in (last / "run.jsonl").read_text().splitlines()]
    passed = sum(r["outcome"] == "passed" for r in records)
    if passed != FILES * TESTS_PER_FILE or len(records) != passed:
        raise SystemExit(f"{argv}: {passed} passed of {len(records)} records")
    return elapsed, len(list((last / "children").glob("*.out.txt")))


def bench_start(pairs: int, work: Path) -> dict[str, float]:
    box = launcher.sandbox_for(
        own=[work], writable=[], project=[work], python=sys.executable, env=os.environ
    )
    plain = [sys.executable, "-c", "pass"]
    boxed = launcher.command(box, plain, cwd=work)
    times: dict[str, list[float]] = {"python": [], "bwrap + python": []}
    for _ in range(pairs):
        times["python"].append(timed(plain, work))
        times["bwrap + python"].append(timed(boxed, work))
    return {name: statistics.median(t) for name, t in times.items()}


def bench_runs(rounds: int, jobs: list[int], work: Path) -> list[tuple[str, float, float]]:
    rows = []
    for n in jobs:
        suites = {kind: write_suite(work / f"suite-j{n}-{kind}") for kind in ("local", "sandbox")}
        argv = {
            "local": [*MTEST, f"-j{n}"],
            "sandbox": [*MTEST, f"-j{n}", "--sandbox"],
        }
        for kind, suite in suites.items():
            checked_run(argv[kind], suite)  # warm-up: bytecode, durations
        walls: dict[str, list[float]] = {"local": [], "sandbox": []}
        workers: dict[str, list[int]] = {"local": [], "sandbox": []}
        for r in range(rounds):
            order = ("local", "sandbox") if r % 2 == 0 else ("sandbox", "local")
            for kind in order:
                wall, started = checked_run(argv[kind], suites[kind])
                walls[kind].append(wall)
                workers[kind].append(started)
        for kind in ("local", "sandbox"):
            rows.append(
                (f"mtest -j{n}" + (" --sandbox" if kind == "sandbox" else ""),
                 statistics.median(walls[kind]), statistics.median(workers[kind]))
            )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--jobs", default="1")
    args = parser.parse_args()
    if shutil.which("bwrap") is None:
        raise SystemExit(f"bwrap is not on PATH: {launcher.INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="mtest-sandbox-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        start = bench_start(args.starts, work)
        rows = bench_runs(args.rounds, [int(j) for j in args.jobs.split(",")], work)
    print(f"| start ({args.starts} interleaved pairs) | median |\n|---|---|")
    for name, seconds in start.items():
        print(f"| `{name}` | {seconds * 1000:.0f} ms |")
    print(f"\n| run (200 tests, {args.rounds} interleaved rounds) | median wall | workers |")
    print("|---|---|---|")
    for name, wall, workers in rows:
        print(f"| `{name}` | {wall:.2f} s | {workers:g} |")


if __name__ == "__main__":
    main()
