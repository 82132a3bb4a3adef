"""``mtest --cov`` against ``coverage run -m pytest`` + ``coverage report``: totals and times.

Scenarios (``--suites``, default all):

* real suites (``realsuites.py``: more-itertools, attrs, … downloaded by pip):
  ``coverage run --source=PKG -m pytest`` then ``coverage report`` (the
  reference total and time), ``mtest --cov=PKG`` with ``-j1`` and ``-j2`` (warm:
  one untimed run first), and plain ``mtest -j1`` for what ``--cov`` adds. Each
  tool runs in its own copy of the suite. Every mtest total must equal the
  reference within ``TOLERANCE`` points.
* ``tiny`` (``generate.py``: 6,400 sub-millisecond tests, most of them cases of
  one parametrized module): the same tools without ``--source``, plus plain
  pytest: what measuring costs per test on a big suite of tiny tests.
* ``saves``: what saving costs in a child, per test (``probecov.Saver``): a
  save after a test that ran new lines, the check after one that did not, and
  an unconditional ``Coverage.save()`` (what saving after every test would
  cost), on a generated package of 6,000 functions, in a fresh interpreter.

    python bench/covbench.py --suites more-itertools --rounds 1   # a quick check
    python bench/covbench.py                                       # everything, 3 rounds

Run it with an interpreter that has mtest, pytest and coverage.py installed.
The report goes to ``bench/results/coverage-<timestamp>.md`` (and ``.json``).
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import realsuites
from generate import generate, parse_choices
from run import HERE, BenchError, machine, positive, timed

TOLERANCE = 0.1
"""Points of coverage by which mtest's total may differ from ``coverage report``'s."""
SOURCES = {"more-itertools": "more_itertools", "attrs": "attr,attrs", "toolz": "toolz"}
SUITES = (*SOURCES, "tiny", "saves")
SAVES_FUNCTIONS = 6000
MTEST = [sys.executable, "-m", "supervisor", "-q"]


@dataclass
class Row:
    tool: str
    command: str
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    percent: list[float] = field(default_factory=list)


@dataclass
class Result:
    suite: str
    notes: list[str]
    rows: list[Row]
    problems: list[str] = field(default_factory=list)


def coverage_run(source: str | None) -> tuple[list[str], list[str]]:
    """The reference: ``coverage run -m pytest`` and ``coverage report``'s total."""
    run = [sys.executable, "-m", "coverage", "run"]
    run += [f"--source={source}"] if source else []
    run += ["-m", "pytest", "-q", "-p", "no:cacheprovider"]
    report = [sys.executable, "-m", "coverage", "report", "--format=total", "--precision=4"]
    return run, report


def tools(source: str | None, gates: Path) -> dict[str, list[list[str]]]:
    cov = [f"--cov={s}" for s in source.split(",")] if source else ["--cov"]
    return {
        "coverage run + report": list(coverage_run(source)),
        "mtest -j1 --cov": [[*MTEST, "-j", "1", *cov, "--gates-dir", str(gates / "j1cov")]],
        "mtest -j2 --cov": [[*MTEST, "-j", "2", *cov, "--gates-dir", str(gates / "j2cov")]],
        "mtest -j1": [[*MTEST, "-j", "1", "--gates-dir", str(gates / "j1")]],
    }


def total_of(tool: str, cwd: Path, gates: Path, stdout: str) -> float | None:
    if tool.startswith("coverage"):
        return float(stdout.strip().splitlines()[-1])
    if "--cov" not in tool:
        return None
    name = "j1cov" if "-j1" in tool else "j2cov"
    last = json.loads((gates / name / "coverage" / "last.json").read_text())
    return float(last["percent"])


def run_once(commands: list[list[str]], cwd: Path) -> tuple[float, float, str]:
    wall = cpu = 0.0
    out = ""
    for command in commands:
        seconds, used, done = timed(command, cwd, "inherit")
        if done.returncode not in (0, 1):
            raise BenchError(
                f"`{' '.join(command)}` exited {done.returncode}\n{done.stderr[-2000:]}"
            )
        wall, cpu, out = wall + seconds, cpu + used, done.stdout
    return wall, cpu, out


def measure(name: str, master: Path, work: Path, source: str | None, rounds: int) -> Result:
    gates = work / "gates" / name
    shutil.rmtree(gates, ignore_errors=True)
    plan = tools(source, gates)
    if source is None:
        plan = {
            "pytest": [[sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]],
            **plan,
        }
    dirs = {tool: work / "runs" / name / tool.replace(" ", "_") for tool in plan}
    for tool, cwd in dirs.items():
        shutil.rmtree(cwd, ignore_errors=True)
        shutil.copytree(master, cwd, ignore=shutil.ignore_patterns(".coverage*", ".gates"))
        if tool.startswith("mtest"):
            run_once(plan[tool], cwd)  # priming: mtest learns durations and its index
    rows = {tool: Row(tool, " && ".join(" ".join(c) for c in plan[tool])) for tool in plan}
    order = list(plan)
    for index in range(rounds):
        for tool in order[index % len(order) :] + order[: index % len(order)]:
            print(f"  {name} round {index + 1}: {tool}", flush=True)
            wall, cpu, out = run_once(plan[tool], dirs[tool])
            rows[tool].wall_s.append(wall)
            rows[tool].cpu_s.append(cpu)
            percent = total_of(tool, dirs[tool], gates, out)
            if percent is not None:
                rows[tool].percent.append(percent)
    reference = rows["coverage run + report"].percent
    problems = [
        f"{row.tool}: {p:.4f}% against coverage report's {r:.4f}%"
        for row in rows.values()
        if row.tool.startswith("mtest") and row.percent
        for p, r in zip(row.percent, reference, strict=False)
        if abs(p - r) > TOLERANCE
    ]
    return Result(name, [], list(rows.values()), problems)


def real(name: str, work: Path, rounds: int) -> Result:
    suite = realsuites.REAL_SUITES[name]
    versions = realsuites.ensure_requirements(suite, install=True)
    master = realsuites.fetch(suite, work / "downloads", work / "real")
    result = measure(name, master, work, SOURCES[name], rounds)
    result.notes.append(
        f"`{suite.requirement}` sdist; --source/--cov `{SOURCES[name]}`; test requirements: "
        + (", ".join(f"{d} {v}" for d, v in versions.items()) or "none")
    )
    return result


def tiny(work: Path, rounds: int) -> Result:
    counts = generate(work / "generated", ("tiny",))
    result = measure("tiny", work / "generated" / "tiny", work, None, rounds)
    result.notes.append(f"generated `tiny` suite: {counts['tiny']} tests, no --source")
    return result


SAVES_PROGRAM = """\
import json, sys, time
sys.path.insert(0, sys.argv[1])
import coverage
from supervisor import probecov
cov = coverage.Coverage(data_file=sys.argv[2], data_suffix="bench", source=["benchpkg"])
cov.start()
import importlib
modules = [importlib.import_module(f"benchpkg.m{i}") for i in range(int(sys.argv[3]))]
funcs = [getattr(m, name) for m in modules for name in sorted(vars(m)) if name.startswith("f")]
saver = probecov.Saver(cov)
out = {}
for phase in ("new lines, saved", "no new lines, checked", "no new lines, saved anyway"):
    start = time.perf_counter()
    for f in funcs:
        f()
        if phase.endswith("anyway"):
            cov.save()
        else:
            saver.after_test()
    out[phase] = (time.perf_counter() - start) / len(funcs)
cov.stop()
out["saves"] = saver.saves
out["tests"] = saver.tests
print(json.dumps(out))
"""


def saves(work: Path) -> Result:
    """Per-test costs of ``probecov.Saver`` in a fresh interpreter (see ``SAVES_PROGRAM``)."""
    root = work / "saves"
    shutil.rmtree(root, ignore_errors=True)
    package = root / "benchpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    per_module = 200
    modules = SAVES_FUNCTIONS // per_module
    for m in range(modules):
        body = "".join(
            f"def f{m}_{i:03d}():\n    x = {i}\n    if x % 2:\n        return x\n    return -x\n\n"
            for i in range(per_module)
        )
        (package / f"m{m}.py").write_text(body)
    src = str(HERE.parent / "src")
    argv = [sys.executable, "-c", SAVES_PROGRAM, src, str(root / ".coverage"), str(modules)]
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise BenchError(f"saves: {done.stderr[-2000:]}")
    costs = json.loads(done.stdout.strip().splitlines()[-1])
    notes = [
        f"{SAVES_FUNCTIONS} functions of 4 lines in {modules} modules, `source=benchpkg`; "
        f"each 'test' calls one function; {costs['saves']} saves in {costs['tests']} checked tests",
        *(
            f"{phase}: {costs[phase] * 1000:.3f} ms per test"
            for phase in ("new lines, saved", "no new lines, checked", "no new lines, saved anyway")
        ),
    ]
    return Result("saves", notes, [])


def markdown(results: list[Result], meta: dict[str, object]) -> str:
    lines = ["# mtest --cov against coverage run -m pytest", "", f"Machine: `{meta}`", ""]
    for result in results:
        lines += [f"## {result.suite}", "", *(f"- {n}" for n in result.notes), ""]
        if result.rows:
            lines += ["| tool | wall s (median) | CPU s (median) | total % |", "|---|---|---|---|"]
            for row in result.rows:
                pct = ", ".join(f"{p:.4f}" for p in sorted(set(row.percent))) or "-"
                lines.append(
                    f"| {row.tool} | {statistics.median(row.wall_s):.2f} | "
                    f"{statistics.median(row.cpu_s):.2f} | {pct} |"
                )
            lines += ["", *(f"- `{row.tool}`: `{row.command}`" for row in result.rows), ""]
        verdict = result.problems or ["totals equal within 0.1 points" if result.rows else ""]
        lines += [*(f"- {v}" for v in verdict if v), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--suites", default=",".join(SUITES), help=f"of {','.join(SUITES)}")
    parser.add_argument("--rounds", type=positive, default=3, help="timed rounds (default 3)")
    parser.add_argument("--work", type=Path, help="downloads, suites, gates (default: temp)")
    args = parser.parse_args(argv)
    chosen = parse_choices(args.suites, SUITES, "suite")
    work = args.work or Path(tempfile.mkdtemp(prefix="mtest-covbench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    try:
        for name in chosen:
            print(f"{name}:", flush=True)
            if name == "saves":
                results.append(saves(work))
            elif name == "tiny":
                results.append(tiny(work, args.rounds))
            else:
                results.append(real(name, work, args.rounds))
    except BenchError as exc:
        print(f"covbench: {exc}", file=sys.stderr)
        return 1
    meta = machine()
    text = markdown(results, meta)
    out = HERE / "results" / f"coverage-{time.strftime('%Y%m%dT%H%M%S')}"
    out.parent.mkdir(exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    print(text)
    return 1 if any(r.problems for r in results) else 0


if __name__ == "__main__":
    os.environ.pop("PYTEST_ADDOPTS", None)
    sys.exit(main())
