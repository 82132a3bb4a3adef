"""What ``--container`` costs, and whether it changes any outcome: worker start, runs, parity.

Against a real engine (the CLI's ``DOCKER_HOST``) and an image whose
``python3`` has pytest (``--image``, default ``$MTEST_TEST_IMAGE``):

* ``start``: ``--starts`` interleaved pairs of

  - ``python -c pass`` on the host against ``docker run --rm --init --network
    none IMAGE python3 -c pass`` (the engine's own start and removal, for
    reference), and
  - ``mtest -q -j 1`` on a suite of one passing test, with a fresh gates
    directory every time, on the host and with ``--container IMAGE``. A fresh
    gates directory makes ``durations.json``'s ``startup_s`` that run's own
    measurement of its one worker, unsmoothed: from the spawn of the worker's
    command (pytest's interpreter, or the ``docker run`` CLI) to its probe's
    ``hello``, on mtest's clock (``parse.start_costs``). The run's wall time is
    recorded too.

* ``run``: real suites (``realsuites.py``: the pinned sdists of six and toolz,
  ``pip download --no-deps --no-binary :all:`` at bench time), ``mtest -q -j
  2`` on the host against ``mtest -q -j 2 --container IMAGE`` in the same
  directory, each side with its own gates directory: one untimed priming run
  each, then ``--rounds`` rounds, the order alternating. Before every timed
  run, the side's durations and quarantine are restored from the host's
  priming run (its collection index from its own), so both sides plan from
  the same data: how
  mtest cuts a suite into chunks and orders them depends on the durations it
  learned, and an order-dependent test (six's ``test_lazy``) can fail under
  one plan and pass under another. Every run must exit 0 or 1 (a failing
  test is an outcome, compared below), leave no container of its run behind
  and report no container start failure, timeout or cleanup failure.

* parity: in every round (and the priming runs), the final record per test id
  of the container run's ``run.jsonl`` must equal the host run's (same ids,
  same outcome). Any difference is printed and the bench exits 1. The report
  also says in how many pairs both sides ran the same chunks in the same
  order (``children/*-chunk*.ids``), and lists every test that did not pass.

The host runs use a venv created at bench time from ``--base-python`` (default
this interpreter) with ``pytest==PYTEST`` (the image's pytest), passed to mtest
as ``--python``: both sides run the same pytest. Before timing, the bench
checks that neither interpreter has the suite's package installed and that it
imports from the suite's tree: the tests import the package from the unpacked
sdist, which mtest mounts in the container at the same path.

    DOCKER_HOST=... MTEST_TEST_IMAGE=mtest-test:bookworm \\
      python bench/containers.py --base-python /usr/bin/python3

Prints a Markdown table; writes ``bench/results/containers-<time>.json`` and
``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import realsuites
from generate import parse_choices
from rounds import copy_suite
from run import HERE, BenchError, _tail, machine, positive, timed

SUITES = ("six", "toolz")
MODULES = {"six": "six", "toolz": "toolz"}
"""The module each suite's tests import from its tree."""
PYTEST = "7.2.1"
"""The image's pytest (Debian bookworm's python3-pytest): the host venv gets the same."""
MTEST = [sys.executable, "-m", "supervisor", "-q"]
CHECK_TIMEOUT_S = 300.0
LOAD = "load 1m before each mtest run"
FINE = ("passed", "skipped", "xfailed")
CONTAINERS_LINE = re.compile(
    r"(\d+) container\(s\) started, (\d+) start failure\(s\), (\d+) timeout\(s\).*?"
    r"(\d+) cleanup failure\(s\)"
)
IMPORT_CHECK = """\
import importlib, importlib.util, json, sys
name = sys.argv[1]
here = sys.path.pop(0)
installed = importlib.util.find_spec(name)
sys.path.insert(0, here)
module = importlib.import_module(name)
print(json.dumps({"installed": installed and installed.origin, "imported": module.__file__}))
"""
"""Run with the suite's root as the cwd: where ``name`` is installed (without the cwd on
``sys.path``), and where it is imported from (with it, as pytest's rootdir insertion does)."""


@dataclass
class Run:
    """One mtest run: its wall time and what it recorded."""

    wall_s: float
    exit_code: int
    run_id: str
    finals: dict[str, str]
    """Test id → the outcome of its last record."""
    workers: int
    """``children/*.out.txt``: the workers the run started."""
    containers: list[int] = field(default_factory=list)
    """The summary's started, start failures, timeouts, cleanup failures (container runs)."""
    startup_s: float | None = None
    load_1m: float = 0.0
    plan: list[str] = field(default_factory=list)
    """``plan_of``: which chunks each worker ran, in order."""


def run_cmd(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``argv``, checked: exit 0 or ``BenchError`` with its output."""
    done = subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"`{' '.join(argv)}` exited {done.returncode}:\n{_tail(done.stderr)}")
    return done


def docker(*args: str) -> str:
    return run_cmd(["docker", *args]).stdout.strip()


def make_venv(base: str, dest: Path) -> Path:
    """A venv from ``base`` with ``pytest==PYTEST``: the host side's interpreter."""
    python = dest / "bin" / "python"
    if not python.exists():
        print(f"  $ {base} -m venv {dest} && pip install pytest=={PYTEST}", flush=True)
        run_cmd([base, "-m", "venv", str(dest)])
        run_cmd([str(python), "-m", "pip", "install", "-q", f"pytest=={PYTEST}"])
    return python


def versions(argv: Sequence[str]) -> str:
    code = (
        "import sys, pytest; print(f'Python {sys.version.split()[0]}, pytest {pytest.__version__}')"
    )
    return run_cmd([*argv, "-c", code]).stdout.strip()


def check_imports(name: str, root: Path, python: Path, image: str) -> dict[str, Any]:
    """The suite's package is installed in neither interpreter and imports from ``root``."""
    module = MODULES[name]
    mount = f"{root}:{root}:ro"
    sides = {
        "host": [str(python), "-c", IMPORT_CHECK, module],
        "container": ["docker", "run", "--rm", "--init", "--network", "none", "--volume", mount,
                      "--workdir", str(root), image, "python3", "-c", IMPORT_CHECK, module],
    }  # fmt: skip
    seen: dict[str, Any] = {}
    for side, argv in sides.items():
        found = json.loads(run_cmd(argv, cwd=root).stdout)
        if found["installed"] is not None or not Path(found["imported"]).is_relative_to(root):
            raise BenchError(
                f"{name} ({side}): {module} is installed at {found['installed']} or imports "
                f"from {found['imported']}, not from {root}: the runs would not test the tree"
            )
        seen[side] = found
    return seen


def plan_of(last: Path) -> list[str]:
    """The run's chunks as its workers ran them: ``NNNN-chunkCCCC: tests, first test``."""
    return [
        f"{ids.name.removesuffix('.ids')}: {len(lines)}, {lines[0] if lines else ''}"
        for ids in sorted(last.glob("children/*-chunk*.ids"))
        for lines in [ids.read_text().splitlines()]
    ]


def mtest_run(argv: Sequence[str], cwd: Path, gates: Path, *, contained: bool) -> Run:
    """One checked mtest run: exit 0 or 1 (tests failed), one final record per test, and
    every container started removed again."""
    load = round(os.getloadavg()[0], 2)
    wall, _, done = timed(list(argv), cwd, "inherit")
    last = gates / "last-run"
    if done.returncode not in (0, 1):
        raise BenchError(
            f"`{' '.join(argv)}` (in {cwd}) exited {done.returncode}\n"
            f"{_tail(done.stdout)}\n{_tail(done.stderr)}"
        )
    records = [json.loads(line) for line in (last / "run.jsonl").read_text().splitlines()]
    finals = {str(r["test_id"]): str(r["outcome"]) for r in records}
    run_id = str(records[0]["run_id"]) if records else ""
    result = Run(wall, done.returncode, run_id, finals, len(list(last.glob("children/*.out.txt"))))
    result.load_1m = load
    result.plan = plan_of(last)
    durations = json.loads((gates / "durations.json").read_text())
    result.startup_s = durations.get("startup_s")
    if contained:
        found = CONTAINERS_LINE.search((last / "summary.md").read_text())
        if found is None:
            raise BenchError(f"{last / 'summary.md'} has no containers line")
        result.containers = [int(n) for n in found.groups()]
        left = docker("ps", "-aq", "--filter", f"label=mtest.run={run_id}")
        started, *failures = result.containers
        if left or any(failures) or started != result.workers:
            raise BenchError(
                f"run {run_id}: containers started/failed/timed out/not removed "
                f"{result.containers}, {result.workers} workers, left in the engine: {left!r}"
            )
    return result


def stats(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench_start(pairs: int, image: str, python: Path, work: Path) -> dict[str, dict[str, Any]]:
    suite = work / "one-test"
    suite.mkdir(parents=True, exist_ok=True)
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "test_one.py").write_text("def test_one():\n    assert True\n")
    bare = {
        "python -c pass (host venv)": [str(python), "-c", "pass"],
        "docker run --rm --init --network none IMAGE python3 -c pass": [
            "docker", "run", "--rm", "--init", "--network", "none", image, "python3", "-c", "pass",
        ],
    }  # fmt: skip
    walls: dict[str, list[float]] = {name: [] for name in bare}
    hello: dict[str, list[float]] = {"host": [], "container": []}
    one: dict[str, list[float]] = {"host": [], "container": []}
    loads: list[float] = []
    sides = {"host": ["--python", str(python)], "container": ["--container", image]}
    for index in range(pairs):
        order = list(bare) if index % 2 == 0 else list(reversed(bare))
        for name in order:
            wall, _, done = timed(bare[name], work, "inherit")
            if done.returncode != 0:
                raise BenchError(f"{bare[name]} exited {done.returncode}: {_tail(done.stderr)}")
            walls[name].append(wall)
        for side in sides if index % 2 == 0 else reversed(sides):
            gates = work / "one-gates" / side
            shutil.rmtree(gates, ignore_errors=True)  # fresh: startup_s is this run's own
            argv = [*MTEST, "-j", "1", "--gates-dir", str(gates), *sides[side]]
            got = mtest_run(argv, suite, gates, contained=side == "container")
            passed = {"test_one.py::test_one": "passed"}
            if got.exit_code != 0 or got.finals != passed or got.startup_s is None:
                raise BenchError(f"{argv}: {got.finals}, startup_s {got.startup_s}")
            hello[side].append(got.startup_s)
            one[side].append(got.wall_s)
            loads.append(got.load_1m)
        print(
            f"  start pair {index + 1}/{pairs}: hello host {hello['host'][-1]:.3f}s, "
            f"container {hello['container'][-1]:.3f}s",
            flush=True,
        )
    out: dict[str, dict[str, Any]] = {}
    for name, values in walls.items():
        out[name] = {**stats(values), "samples": values}
    for side in sides:
        out[f"mtest -j 1 spawn → hello ({side})"] = {**stats(hello[side]), "samples": hello[side]}
        out[f"mtest -j 1 one-test run, wall ({side})"] = {**stats(one[side]), "samples": one[side]}
    out[LOAD] = {**stats(loads), "samples": loads}
    return out


def differences(host: dict[str, str], contained: dict[str, str]) -> list[str]:
    """Every test id whose final outcome differs (or that only one run has)."""
    ids = sorted(set(host) | set(contained))
    return [
        f"{i}: host {host.get(i, 'absent')}, container {contained.get(i, 'absent')}"
        for i in ids
        if host.get(i) != contained.get(i)
    ]


@dataclass
class SuiteResult:
    name: str
    requirement: str
    imports: dict[str, Any]
    tests: int
    commands: dict[str, str]
    runs: dict[str, list[Run]] = field(default_factory=dict)
    compared: int = 0
    """Test ids compared, summed over the compared pairs of runs."""
    pairs: int = 0
    same_plans: int = 0
    """Pairs of runs whose workers ran the same chunks in the same order."""
    diffs: list[str] = field(default_factory=list)


SHARED = ("durations.json", "quarantine.json")
"""What mtest plans a run from: restored before every timed run of both sides from the
host's priming run, so that both sides plan alike and the rounds do not drift apart."""
OWN = ("index.json",)
"""Restored from the side's own priming run: the collection index is valid only for the
interpreter that made it (the host venv's python, or the image's python3)."""


def snapshot(gates: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in (*SHARED, *OWN):
        if (gates / name).exists():
            shutil.copy2(gates / name, dest / name)


def restore(shared: Path, own: Path, gates: Path) -> None:
    for source, names in ((shared, SHARED), (own, OWN)):
        for name in names:
            (gates / name).unlink(missing_ok=True)
            if (source / name).exists():
                shutil.copy2(source / name, gates / name)


def bench_suite(
    name: str, image: str, python: Path, work: Path, rounds: int, jobs: int
) -> SuiteResult:
    suite = realsuites.REAL_SUITES[name]
    print(f"{name}: {suite.requirement}", flush=True)
    master = realsuites.fetch(suite, work / "downloads", work / "real")
    imports = check_imports(name, master, python, image)
    sides = {"host": ["--python", str(python)], "container": ["--container", image]}
    cwd = copy_suite(master, work / "runs" / name)
    argv: dict[str, list[str]] = {}
    gates: dict[str, Path] = {}
    for side, extra in sides.items():
        gates[side] = work / "gates" / name / side
        shutil.rmtree(gates[side], ignore_errors=True)
        argv[side] = [*MTEST, "-j", str(jobs), "--gates-dir", str(gates[side]), *extra]
    result = SuiteResult(
        name,
        suite.requirement,
        imports,
        0,
        {side: f"(cd {cwd} && {' '.join(argv[side])})" for side in sides},
        {side: [] for side in sides},
    )
    knowledge = work / "knowledge" / name
    for index in range(rounds + 1):  # round 0: the untimed priming runs
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        got: dict[str, Run] = {}
        for side in order:
            if index > 0:
                restore(knowledge / "host", knowledge / side, gates[side])
            got[side] = mtest_run(argv[side], cwd, gates[side], contained=side == "container")
            if index == 0:
                snapshot(gates[side], knowledge / side)
        result.same_plans += got["host"].plan == got["container"].plan
        diffs = differences(got["host"].finals, got["container"].finals)
        result.diffs += [f"round {index}: {d}" for d in diffs]
        result.compared += len(got["host"].finals)
        result.pairs += 1
        result.tests = len(got["host"].finals)
        label = "priming" if index == 0 else f"round {index}"
        print(
            f"  {name} {label}: host {got['host'].wall_s:.2f}s (exit {got['host'].exit_code}), "
            f"container {got['container'].wall_s:.2f}s (exit {got['container'].exit_code}), "
            f"{len(diffs)} difference(s)"
            + ("" if got["host"].plan == got["container"].plan else ", different plans"),
            flush=True,
        )
        if index > 0:
            for side in sides:
                result.runs[side].append(got[side])
    return result


def spread(runs: Sequence[Run]) -> str:
    """Median wall time and min–max."""
    walls = [r.wall_s for r in runs]
    return f"{statistics.median(walls):.2f} s ({min(walls):.2f}–{max(walls):.2f})"


def loaded(start: dict[str, dict[str, Any]], suites: list[SuiteResult]) -> float:
    """The highest 1-minute load average seen before a timed run."""
    loads = [float(start[LOAD]["max"])]
    loads += [r.load_1m for s in suites for runs in s.runs.values() for r in runs]
    return max(loads)


def markdown(
    start: dict[str, dict[str, Any]], suites: list[SuiteResult], meta: dict[str, Any]
) -> str:
    lines = [
        f"# mtest --container: start, runs, parity ({meta['started']})",
        "",
        f"Image `{meta['image']}` (its python3: {meta['image_versions']}), engine "
        f"{meta['engine']}; host side `{meta['host_python']}` ({meta['host_versions']}), "
        f"a venv from `{meta['base_python']}`. Load average before "
        f"{meta['loadavg_before']}, after {meta['loadavg_after']}; 1-minute load before the "
        f"start pairs' mtest runs {start[LOAD]['min']:.1f}–{start[LOAD]['max']:.1f}.",
        "",
        f"| start ({meta['starts']} interleaved pairs) | median | min–max |",
        "|---|---|---|",
    ]
    for name, s in start.items():
        if name == LOAD:
            continue
        lines.append(
            f"| {name} | {s['median'] * 1000:.0f} ms | "
            f"{s['min'] * 1000:.0f}–{s['max'] * 1000:.0f} ms |"
        )
    lines += [
        "",
        f"| suite (`mtest -j {meta['jobs']}`, {meta['rounds']} alternating rounds) | tests | "
        "host: median (min–max) | `--container` | ratio of medians | median of the rounds' "
        "ratios | workers (host / container) | load 1m | parity |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in suites:
        host, box = (statistics.median(x.wall_s for x in r.runs[k]) for k in ("host", "container"))
        runs = [x.load_1m for v in r.runs.values() for x in v]
        paired = statistics.median(
            b.wall_s / h.wall_s for h, b in zip(r.runs["host"], r.runs["container"], strict=True)
        )
        workers = "/".join(
            f"{statistics.median(run.workers for run in r.runs[side]):g}"
            for side in ("host", "container")
        )
        parity = (
            f"{r.compared} of {r.compared} equal ({r.pairs} pairs"
            if not r.diffs
            else f"**{len(r.diffs)} difference(s)** in {r.compared} ({r.pairs} pairs"
        ) + f"; same plan in {r.same_plans})"
        lines.append(
            f"| {r.requirement} | {r.tests} | {spread(r.runs['host'])} | "
            f"{spread(r.runs['container'])} | {box / host:.2f}× | {paired:.2f}× | {workers} | "
            f"{min(runs):.1f}–{max(runs):.1f} | {parity} |"
        )
    cpus = int(meta["machine"]["usable_cpus"])
    if (peak := loaded(start, suites)) > cpus:
        lines += [
            "",
            f"**Not a measurement: a run started at a 1-minute load average of "
            f"{peak:.1f}, above the {cpus} usable CPUs (other work on the machine).**",
        ]
    for r in suites:
        bad = Counter(
            f"{test_id} {outcome} ({side})"
            for side, runs in r.runs.items()
            for run in runs
            for test_id, outcome in run.finals.items()
            if outcome not in FINE
        )
        if bad:
            lines += ["", f"`{r.name}`: tests that did not pass in a timed run (runs):"]
            lines += [f"- {what}: {n}" for what, n in sorted(bad.items())]
    for r in suites:
        lines += ["", f"`{r.name}`: " + "; ".join(f"{s}: `{c}`" for s, c in r.commands.items())]
        lines += [f"- {d}" for d in r.diffs]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--image",
        default=os.environ.get("MTEST_TEST_IMAGE"),
        help="with python3 and pytest (default $MTEST_TEST_IMAGE)",
    )
    parser.add_argument(
        "--suites", type=lambda t: parse_choices(t, SUITES, "suite"), default=SUITES
    )
    parser.add_argument("--starts", type=positive, default=20, help="start pairs (default 20)")
    parser.add_argument("--rounds", type=positive, default=5, help="run rounds (default 5)")
    parser.add_argument("--jobs", type=positive, default=2, help="mtest -j (default 2)")
    parser.add_argument(
        "--base-python", default=sys.executable, help="the interpreter the host venv is made from"
    )
    parser.add_argument("--work", type=Path, help="downloads, venv, suites (default: temp dir)")
    parser.add_argument("--out", type=Path, help="default bench/results/containers-<time>.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.image:
        raise SystemExit("no image: pass --image or set MTEST_TEST_IMAGE")
    started = time.strftime("%Y%m%dT%H%M%S")
    out: Path = args.out or HERE / "results" / f"containers-{started}.json"
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="mtest-cbench-"))
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        engine = docker("version", "--format", "{{.Server.Version}}")
        python = make_venv(args.base_python, work / "venv")
        meta: dict[str, Any] = {
            "started": started,
            "argv": [sys.executable, *sys.argv],
            "image": args.image,
            "image_id": docker("image", "inspect", "--format", "{{.Id}}", args.image),
            "image_versions": versions(
                ["docker", "run", "--rm", "--network", "none", args.image, "python3"]
            ),
            "engine": f"docker {engine} at {os.environ.get('DOCKER_HOST', 'the default host')}",
            "base_python": args.base_python,
            "host_python": str(python),
            "host_versions": versions([str(python)]),
            "starts": args.starts,
            "rounds": args.rounds,
            "jobs": args.jobs,
            "work": str(work),
            "loadavg_before": load_before,
        }
        start = bench_start(args.starts, args.image, python, work)
        suites = [
            bench_suite(name, args.image, python, work, args.rounds, args.jobs)
            for name in args.suites
        ]
    except (BenchError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}\n(work directory left in {work})", file=sys.stderr)
        return 1
    meta.update(machine=machine(), loadavg_after=[round(x, 2) for x in os.getloadavg()])
    report = markdown(start, suites, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {**meta, "start": start, "suites": [asdict(s) for s in suites]}
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(report, encoding="utf-8")
    print(f"\n{report}\nwrote {out} and {out.with_suffix('.md')} (work directory: {work})")
    return 1 if any(s.diffs for s in suites) else 0


if __name__ == "__main__":
    sys.exit(main())
