"""Time issue 10's scenarios: real suites from the package index, and generated narrow runs.

Scenarios (``--suites``, default all):

* real suites (``realsuites.py``: pinned sdists of idna, toolz, six,
  more-itertools and attrs, downloaded by pip into the work directory): plain
  ``pytest -q``, ``pytest -n 2`` (xdist), ``mtest -j1``/``-j2`` warm (the
  gates directory of an earlier, untimed run) and cold (a fresh gates
  directory before every run). Every mtest run is compared test by test with
  plain pytest's reference run (``.ci/compare.py``'s logic): parity.
* ``tier0``: ``mtest --tier 0`` warm on 40 modules of ≈0.5 s import each,
  against ``pytest test_smoke.py``, the one file that holds the tier-0 tests.
* ``storm``: ``mtest -j2`` on 300 tests of which every third segfaults; the
  CPU of mtest's children (the process tree's CPU minus mtest's own) against
  plain pytest's CPU on the same tests without the crashes.
* ``resume``: ``mtest --resume`` when the 10,000-test run's ``state.json`` is
  unfinished with nothing outstanding, beside ``mtest --version`` (the floor:
  interpreter start and import).

Rounds are interleaved: each round runs every tool of a scenario once, the
order rotating from round to round. Wall time, the process tree's CPU time
(``run.timed``) and the 1-minute load average before each run are recorded;
the report gives medians and min–max, and every command with its directory.

    python bench/real.py --suites toolz --rounds 1 --warmups 0   # a quick check
    python bench/real.py                                         # everything, 5 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import realreport
import realsuites
import scenarios
from generate import parse_choices
from rounds import (
    Check,
    Scenario,
    Tool,
    copy_suite,
    counts_check,
    exit_check,
    measure,
    records_check,
)
from run import HERE, BenchError, command_for, machine, not_negative, positive

REAL_TOOLS = (
    "pytest",
    "xdist-n2",
    "mtest-j1-warm",
    "mtest-j2-warm",
    "mtest-j1-cold",
    "mtest-j2-cold",
)
SUITES = (*realsuites.REAL_SUITES, *scenarios.SCENARIOS)
MTEST = [sys.executable, "-m", "supervisor", "-q"]
SELF_CPU = HERE / "selfcpu.py"
"""Runs mtest in its own process and writes mtest's own CPU seconds at exit."""


def parity_check(base: realsuites.Baseline, gates: Path) -> Check:
    def check(done: subprocess.CompletedProcess[str]) -> list[str]:
        return realsuites.parity(base, gates / "last-run" / "run.jsonl", done.returncode)

    return check


def real_scenario(name: str, work: Path, tools: tuple[str, ...], install: bool) -> Scenario:
    """Fetch, install for and check suite ``name``; its tools, each in its own copy."""
    suite = realsuites.REAL_SUITES[name]
    print(f"{name}: {suite.requirement}", flush=True)
    versions = realsuites.ensure_requirements(suite, install=install)
    master = realsuites.fetch(suite, work / "downloads", work / "real")
    base = realsuites.baseline(suite, master, work / "junit" / f"{name}.xml")
    notes = [
        f"`{suite.requirement}` sdist, extracted to `{master}`; test requirements: "
        + (", ".join(f"{d} {v}" for d, v in versions.items()) or "none"),
        f"plain pytest (reference run, `--junit-xml`): exit {base.exit_code}, "
        + ", ".join(f"{n} {w}" for w, n in base.counts.items()),
        *(f"known failure `{t}`: {why}" for t, why in suite.known_failures.items()),
    ]
    made: list[Tool] = []
    for tool in tools:
        cwd = copy_suite(master, work / "runs" / name / tool)
        gates = work / "gates" / name / tool
        shutil.rmtree(gates, ignore_errors=True)
        if not tool.startswith("mtest"):
            command = command_for(tool, gates)
            made.append(Tool(tool, tuple(command), cwd, counts_check(base.counts, base.exit_code)))
            continue
        command = command_for(tool.rsplit("-", 1)[0], gates)
        check = parity_check(base, gates)
        if tool.endswith("-cold"):
            made.append(Tool(tool, tuple(command), cwd, check, gates, fresh=True))
        else:
            prime = Tool(f"{tool} (priming run)", tuple(command), cwd, check, gates)
            made.append(Tool(tool, tuple(command), cwd, check, gates, prime=prime))
    return Scenario(name, base.collected, "pytest", notes, made)


def tier0_scenario(work: Path) -> Scenario:
    root = work / "generated" / "tier0"
    tests = scenarios.generate_scenario(work / "generated", "tier0")["tier0"]
    smoke = Counter({"passed": scenarios.SMOKE_TESTS})
    pytest = command_for("pytest", Path())
    made = [
        Tool(
            "pytest-file",
            (*pytest, scenarios.TIER0_FILE),
            copy_suite(root, work / "runs" / "tier0" / "pytest-file"),
            counts_check(dict(smoke), 0),
        ),
    ]
    # Both mtest tools share one suite copy and one gates directory, warmed by one full run.
    cwd = copy_suite(root, work / "runs" / "tier0" / "mtest")
    gates = work / "gates" / "tier0" / "mtest"
    shutil.rmtree(gates, ignore_errors=True)
    full = (*MTEST, "-j", "2", "--gates-dir", str(gates))
    every = records_check(gates, Counter({"passed": tests}), 0)
    prime: Tool | None = Tool("mtest-tier0 (priming run)", full, cwd, every, gates)
    check = records_check(gates, smoke, 0, prefix=scenarios.TIER0_FILE + "::")
    for jobs in ("1", "2"):
        command = (*MTEST, "--tier", "0", "-j", jobs, "--gates-dir", str(gates))
        made.append(Tool(f"mtest-tier0-j{jobs}", command, cwd, check, gates, prime=prime))
        prime = None
    notes = [
        f"{scenarios.TIER0_MODULES} modules of ≈{scenarios.TIER0_IMPORT_MS:g} ms import each, "
        f"{scenarios.SMOKE_TESTS} `smoke` (tier-0) tests in `{scenarios.TIER0_FILE}`",
        "both mtest tools are warm: they share one gates directory, filled by one full "
        f"untimed run (`{' '.join(full)}`)",
    ]
    return Scenario("tier0", tests, "pytest-file", notes, made)


def storm_scenario(work: Path) -> Scenario:
    counts = scenarios.generate_scenario(work / "generated", "storm")
    generated = work / "generated" / "storm"
    crashes = scenarios.storm_crashes()
    made = [
        Tool(
            "pytest-calm",
            tuple(command_for("pytest", Path())),
            copy_suite(generated / "calm", work / "runs" / "storm" / "pytest-calm"),
            counts_check({"passed": counts["calm"]}, 0),
        ),
    ]
    for which, expected, code in (
        ("storm", Counter({"passed": counts["storm"] - crashes, "crashed": crashes}), 1),
        ("calm", Counter({"passed": counts["calm"]}), 0),
    ):
        name = f"mtest-j2-{which}"
        cwd = copy_suite(generated / which, work / "runs" / "storm" / name)
        gates, own = work / "gates" / "storm" / name, work / "gates" / "storm" / f"{name}.cpu"
        command = (
            sys.executable,
            str(SELF_CPU),
            str(own),
            "-q",
            "-j",
            "2",
            "--gates-dir",
            str(gates),
        )
        check = records_check(gates, expected, code)
        made.append(Tool(name, command, cwd, check, gates, fresh=True, self_cpu=own))
    notes = [
        f"{counts['storm']} tests in {scenarios.STORM_MODULES} modules of "
        f"≈{scenarios.STORM_IMPORT_MS:g} ms import; in `storm` {crashes} of them segfault "
        "(`ctypes.string_at(0)`), in `calm` the same tests pass",
        "mtest runs through `bench/selfcpu.py OUT ...`, which runs mtest in its own process "
        "and writes mtest's own CPU at exit: children's CPU = the process "
        "tree's CPU − mtest's own; a fresh gates directory before every run",
    ]
    return Scenario("storm", counts["storm"], "pytest-calm", notes, made)


def resume_scenario(work: Path) -> Scenario:
    tests = scenarios.generate_scenario(work / "generated", "resume")["resume"]
    cwd = copy_suite(work / "generated" / "resume", work / "runs" / "resume" / "mtest-resume")
    gates = work / "gates" / "resume" / "mtest-resume"
    shutil.rmtree(gates, ignore_errors=True)
    every = records_check(gates, Counter({"passed": tests}), 0)
    prime = Tool(
        "mtest-resume (priming run)",
        (*MTEST, "-j", "2", "--gates-dir", str(gates)),
        cwd,
        every,
        gates,
    )
    made = [
        Tool(
            "mtest-version", (sys.executable, "-m", "supervisor", "--version"), cwd, exit_check(0)
        ),
        Tool(
            "mtest-resume",
            (*MTEST, "--resume", "--gates-dir", str(gates)),
            cwd,
            every,
            gates,
            prime=prime,
            prepare=lambda: scenarios.unfinish_state(gates),
        ),
    ]
    notes = [
        f"{tests} tests; one full untimed run (`{' '.join(prime.command)}`), then before every "
        "timed `--resume` its `state.json` is made an interrupted run with nothing outstanding "
        "(`complete: false`, `outstanding: []`, `exit_code: 2`; bench/scenarios.py "
        "`unfinish_state`); the run must add no record to `run.jsonl`",
        "`mtest --version` is the floor: the interpreter's start and mtest's import",
    ]
    return Scenario("resume", tests, "mtest-version", notes, made)


def build(name: str, work: Path, tools: tuple[str, ...], install: bool) -> Scenario:
    if name in realsuites.REAL_SUITES:
        return real_scenario(name, work, tools, install)
    makers = {"tier0": tier0_scenario, "storm": storm_scenario, "resume": resume_scenario}
    return makers[name](work)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--suites",
        type=lambda t: parse_choices(t, SUITES, "suite"),
        default=SUITES,
        help=",".join(SUITES),
    )
    parser.add_argument(
        "--tools",
        type=lambda t: parse_choices(t, REAL_TOOLS, "tool"),
        default=REAL_TOOLS,
        help="for the real suites: " + ",".join(REAL_TOOLS),
    )
    parser.add_argument("--rounds", type=positive, default=5, help="timed rounds (default 5)")
    parser.add_argument(
        "--warmups",
        type=not_negative,
        default=1,
        help="untimed runs of each tool after its priming run (default 1)",
    )
    parser.add_argument("--work", type=Path, help="downloads, suites, gates (default: a temp dir)")
    parser.add_argument(
        "--out", type=Path, help="JSON result (default bench/results/real-<time>.json)"
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="fail instead of pip-installing what a suite's tests need",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.strftime("%Y%m%dT%H%M%S")
    out: Path = args.out or HERE / "results" / f"real-{started}.json"
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="mtest-real-"))
    meta = {
        "started": started,
        "argv": [sys.executable, *sys.argv],
        "rounds": args.rounds,
        "warmups": args.warmups,
        "work": str(work),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    done: list[Scenario] = []
    try:
        for name in args.suites:
            scenario = build(name, work, args.tools, not args.no_install)
            measure(scenario, args.rounds, args.warmups)
            done.append(scenario)
    except BenchError as exc:
        print(f"error: {exc}\n(work directory left in {work})", file=sys.stderr)
        return 1
    meta.update(machine=machine(), loadavg_after=[round(x, 2) for x in os.getloadavg()])
    report = realreport.markdown(done, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {**meta, "scenarios": [_as_json(s) for s in done]}
    out.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(report, encoding="utf-8")
    print(f"\n{report}\nwrote {out} and {out.with_suffix('.md')} (work directory: {work})")
    parity_failed = any(s.problems for sc in done for t in sc.timings.values() for s in t.samples)
    return 1 if parity_failed else 0


def _as_json(scenario: Scenario) -> dict[str, object]:
    return {
        "name": scenario.name,
        "tests": scenario.tests,
        "baseline": scenario.baseline,
        "notes": scenario.notes,
        "load_before": scenario.load_before,
        "load_after": scenario.load_after,
        "timings": {name: asdict(t) for name, t in scenario.timings.items()},
        "targets": realreport.verdicts(scenario),
    }


if __name__ == "__main__":
    sys.exit(main())
