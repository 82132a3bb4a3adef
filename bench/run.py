"""Time plain pytest, ``mtest -j1``, ``mtest -j2`` and ``pytest-xdist -n 2`` on generated suites.

For each suite (see ``generate.py``) every tool runs ``--warmups`` times
(default 1; this also lets mtest learn the tests' durations, as it does for its
users), then ``--rounds`` more times; the order of the tools rotates from round
to round so that a burst of load from elsewhere does not always hit the same
tool. Each run's wall time is ``time.perf_counter`` around ``subprocess.run``
and its CPU time the process tree's ``RUSAGE_CHILDREN``; the tables show the
medians of the rounds (warm-ups are not counted).

Every run is checked, so that a fast but wrong run cannot look good: the exit
code must be 0; pytest's and xdist's summary must say that all the collected
tests passed; mtest's ``run.jsonl`` must hold exactly one ``passed`` record
for each test that ``pytest --collect-only`` lists, and nothing else.

    python bench/run.py                                 # all suites, 3 rounds
    python bench/run.py --suites tiny --rounds 5 --tools pytest,mtest-j2

Standard library only; run it with the interpreter whose pytest, pytest-xdist
and mtest you want to measure (every command uses ``sys.executable``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generate import SUITES, generate, parse_suites, spin_rate

HERE = Path(__file__).resolve().parent
TOOLS = ("pytest", "mtest-j1", "mtest-j2", "xdist-n2")
BASELINE = "pytest"
COMMAND_TIMEOUT_S = 900.0
TARGETS = {"mtest-j1": 1.15, "mtest-j2": 0.75}
"""Issue 3's targets, on the tiny suite: at most this many times plain pytest's wall time."""
TARGET_SUITE = "tiny"
_SUMMARY_TIME = re.compile(r" in ([0-9.]+)s\b")


class BenchError(Exception):
    """A run failed or produced wrong results: the benchmark stops."""


@dataclass
class ToolResult:
    tool: str
    command: list[str]
    warmup_s: list[float]
    rounds_s: list[float]
    reported_s: list[float | None]
    """What the tool itself printed as its duration (``in 2.4s``), per round."""
    cpu_s: list[float] = field(default_factory=list)
    """User + system CPU seconds of the tool's whole process tree, per round."""
    load_1m: list[float] = field(default_factory=list)
    """The 1-minute load average just before each round: the machine is shared."""

    @property
    def median_s(self) -> float:
        return statistics.median(self.rounds_s)

    @property
    def median_cpu_s(self) -> float:
        return statistics.median(self.cpu_s)


@dataclass
class SuiteResult:
    suite: str
    tests: int
    collect_only_s: list[float]
    tools: dict[str, ToolResult] = field(default_factory=dict)

    def ratio(self, tool: str) -> float | None:
        if tool not in self.tools or BASELINE not in self.tools:
            return None
        return self.tools[tool].median_s / self.tools[BASELINE].median_s


def command_for(tool: str, gates: Path, disabled: tuple[str, ...] = ()) -> list[str]:
    """``tool``'s command; each ``disabled`` plugin gets ``-p no:NAME`` (after ``--`` for mtest)."""
    python = sys.executable
    off = [arg for name in disabled for arg in ("-p", f"no:{name}")]
    plain = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *off]
    # `python -m supervisor` is what the `mtest` console script runs, under this interpreter.
    mtest = [python, "-m", "supervisor", "-q"]
    after = ["--", *off] if off else []
    commands = {
        "pytest": plain,
        "mtest-j1": [*mtest, "-j", "1", "--gates-dir", str(gates), *after],
        "mtest-j2": [*mtest, "-j", "2", "--gates-dir", str(gates), *after],
        "xdist-n2": [*plain, "-n", "2"],
    }
    return commands[tool]


def child_env() -> dict[str, str]:
    """This environment, minus what would change what pytest runs."""
    env = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_XDIST_AUTO_NUM_WORKERS"):
        env.pop(name, None)
    return env


def timed(command: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds, CPU seconds of the process tree, and the finished command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=cwd,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def require_success(command: list[str], done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode != 0:
        raise BenchError(
            f"`{' '.join(command)}` exited {done.returncode}\n"
            f"--- stdout (tail)\n{_tail(done.stdout)}\n--- stderr (tail)\n{_tail(done.stderr)}"
        )


def collected_ids(suite_dir: Path, disabled: tuple[str, ...]) -> tuple[float, list[str]]:
    """``pytest --collect-only -q``: its wall time and the node ids it lists."""
    command = [*command_for(BASELINE, Path(), disabled), "--collect-only"]
    seconds, _, done = timed(command, suite_dir)
    require_success(command, done)
    ids = [line for line in done.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    match = re.search(r"(\d+) tests? collected", done.stdout)
    if match is None or int(match.group(1)) != len(ids) or len(set(ids)) != len(ids):
        raise BenchError(f"cannot read the collected tests in {suite_dir}:\n{_tail(done.stdout)}")
    return seconds, ids


def check_pytest_summary(tool: str, stdout: str, expected: int) -> None:
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (\w+)", last)}
    if counts.get("passed") != expected or set(counts) - {"passed", "warning", "warnings"}:
        raise BenchError(f"{tool}: expected {expected} passed, got: {last!r}")


def check_mtest_records(tool: str, gates: Path, expected: list[str]) -> None:
    path = gates / "last-run" / "run.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BenchError(f"{tool}: cannot read {path}: {exc}") from exc
    records = [json.loads(line) for line in lines if line.strip()]
    ids = [str(r.get("test_id")) for r in records]
    problems: list[str] = []
    if len(records) != len(expected):
        problems.append(f"{len(records)} records for {len(expected)} collected tests")
    if len(set(ids)) != len(ids):
        problems.append(f"{len(ids) - len(set(ids))} duplicate record(s)")
    missing, extra = set(expected) - set(ids), set(ids) - set(expected)
    if missing or extra:
        problems.append(f"{len(missing)} test(s) without a record, {len(extra)} unknown record(s)")
    failing = [r for r in records if r.get("outcome") != "passed"]
    if failing:
        problems.append(f"{len(failing)} record(s) not passed, e.g. {failing[0]}")
    if problems:
        raise BenchError(f"{tool}: wrong run.jsonl ({path}): " + "; ".join(problems))


def run_tool(
    tool: str, suite_dir: Path, gates: Path, expected: list[str], disabled: tuple[str, ...]
) -> tuple[float, float, float | None]:
    """One checked run: its wall time, CPU time and the time the tool printed."""
    command = command_for(tool, gates, disabled)
    seconds, cpu, done = timed(command, suite_dir)
    require_success(command, done)
    if tool.startswith("mtest"):
        check_mtest_records(tool, gates, expected)
    else:
        check_pytest_summary(tool, done.stdout, len(expected))
    lines = done.stdout.strip().splitlines()
    match = _SUMMARY_TIME.search(lines[-1]) if lines else None
    return seconds, cpu, float(match.group(1)) if match else None


@dataclass(frozen=True)
class Plan:
    tools: tuple[str, ...]
    rounds: int
    warmups: int
    disabled: tuple[str, ...]


def bench_suite(suite: str, master: Path, work: Path, plan: Plan) -> SuiteResult:
    """Warm up and time every tool on one suite.

    Each tool runs in its own copy of the suite, so that no tool reads bytecode
    or caches another left in the suite's directory.
    """
    tools, disabled = plan.tools, plan.disabled
    _, ids = collected_ids(master, disabled)  # untimed: it is the listing's warm-up
    result = SuiteResult(suite=suite, tests=len(ids), collect_only_s=[])
    dirs = {tool: work / "runs" / suite / tool for tool in tools}
    gates = {tool: work / "gates" / f"{suite}-{tool}" for tool in tools}
    for tool in tools:
        for stale in (dirs[tool], gates[tool]):  # from an earlier run with the same --work
            shutil.rmtree(stale, ignore_errors=True)
        shutil.copytree(master, dirs[tool])
        result.tools[tool] = ToolResult(
            tool=tool,
            command=command_for(tool, gates[tool], disabled),
            warmup_s=[],
            rounds_s=[],
            reported_s=[],
        )
        for _ in range(plan.warmups):
            warmup, _, _ = run_tool(tool, dirs[tool], gates[tool], ids, disabled)
            result.tools[tool].warmup_s.append(warmup)
            print(f"  {suite:<10} {tool:<9} warm-up {warmup:7.2f}s", flush=True)
    for index in range(plan.rounds):
        shift = index % len(tools)
        for tool in (*tools[shift:], *tools[:shift]):
            load = os.getloadavg()[0]
            seconds, cpu, reported = run_tool(tool, dirs[tool], gates[tool], ids, disabled)
            entry = result.tools[tool]
            entry.rounds_s.append(seconds)
            entry.cpu_s.append(cpu)
            entry.reported_s.append(reported)
            entry.load_1m.append(round(load, 2))
            print(
                f"  {suite:<10} {tool:<9} round {index + 1} {seconds:7.2f}s"
                f" (cpu {cpu:6.2f}s, load {load:4.2f})",
                flush=True,
            )
        result.collect_only_s.append(collected_ids(master, disabled)[0])
    return result


def _version(module: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module} as m; print(m.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else "not installed"


def _plugins() -> list[str]:
    """The pytest plugins installed for this interpreter (``pytest11`` entry points)."""
    code = (
        "import importlib.metadata as m\n"
        "for ep in m.entry_points(group='pytest11'):\n"
        "    print(f'{ep.name} ({ep.dist.name} {ep.dist.version})' if ep.dist else ep.name)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return sorted(set(done.stdout.split("\n")) - {""})


def _mtest_source() -> dict[str, str]:
    """Where the measured mtest is imported from and, in a git checkout, its commit."""
    code = "import os, supervisor; print(os.path.dirname(os.path.abspath(supervisor.__file__)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    where = done.stdout.strip()
    info = {"path": where or "not importable", "commit": "", "dirty": ""}
    if where and shutil.which("git"):
        git = ["git", "-C", where]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        if head.returncode == 0:
            info["commit"] = head.stdout.strip()
            status = subprocess.run(
                [*git, "status", "--porcelain", "--", "."], capture_output=True, text=True
            )
            info["dirty"] = "yes" if status.stdout.strip() else "no"
    return info


def machine() -> dict[str, Any]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "usable_cpus": cpus,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "pytest": _version("pytest"),
        "xdist": _version("xdist"),
        "mtest": _version("supervisor"),
        "mtest_source": _mtest_source(),
        "pytest_plugins": _plugins(),
        "spin_iterations_per_ms": round(spin_rate() / 1000.0),
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
    }


def _fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def verdicts(results: list[SuiteResult]) -> list[str]:
    lines: list[str] = []
    for suite in results:
        if suite.suite != TARGET_SUITE:
            continue
        for tool, limit in TARGETS.items():
            ratio = suite.ratio(tool)
            if ratio is None:
                continue
            if ratio <= limit:
                lines.append(f"{tool} ≤ {limit:.2f}× pytest on {suite.suite}: MET ({ratio:.2f}×)")
            else:
                over = (ratio / limit - 1) * 100
                lines.append(
                    f"{tool} ≤ {limit:.2f}× pytest on {suite.suite}: MISSED "
                    f"({ratio:.2f}×, {over:.0f}% over the target)"
                )
    return lines


def _source(info: dict[str, str]) -> str:
    if not info["commit"]:
        return info["path"]
    dirty = ", uncommitted changes" if info["dirty"] == "yes" else ""
    return f"{info['path']} at {info['commit']}{dirty}"


def _table(results: list[SuiteResult], tools: tuple[str, ...], *, cpu: bool) -> list[str]:
    def value(s: SuiteResult, t: str) -> float:
        return s.tools[t].median_cpu_s if cpu else s.tools[t].median_s

    def ratio(s: SuiteResult, t: str) -> float | None:
        if t not in s.tools or BASELINE not in s.tools:
            return None
        return value(s, t) / value(s, BASELINE)

    head = "| suite | tests | " + ("" if cpu else "collect-only | ") + " | ".join(tools) + " | "
    head += " | ".join(f"{t}/pytest" for t in tools if t != BASELINE) + " |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in results:
        cells = [s.suite, str(s.tests)]
        if not cpu:
            cells.append(f"{statistics.median(s.collect_only_s):.2f}s")
        cells += [f"{value(s, t):.2f}s" if t in s.tools else "—" for t in tools]
        cells += [_fmt_ratio(ratio(s, t)) for t in tools if t != BASELINE]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def markdown(results: list[SuiteResult], tools: tuple[str, ...], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    out = [
        f"# Benchmark {meta['started']}",
        "",
        f"{m['usable_cpus']} usable CPU(s), Python {m['python']}, pytest {m['pytest']}, "
        f"pytest-xdist {m['xdist']}, mtest {m['mtest']} ({_source(m['mtest_source'])}); "
        "load average "
        f"{meta['loadavg_before']} before, {meta['loadavg_after']} after. "
        f"Installed pytest plugins: {', '.join(m['pytest_plugins']) or 'none'}; "
        f"disabled with `-p no:`: {', '.join(meta['disabled_plugins']) or 'none'}. "
        f"PYTHONDONTWRITEBYTECODE={m['PYTHONDONTWRITEBYTECODE'] or '(unset)'}.",
        "",
        f"Wall time, median of {meta['rounds']} round(s) after {meta['warmups']} warm-up(s) "
        "(collect-only: `pytest --collect-only -q`):",
        "",
        *_table(results, tools, cpu=False),
        "",
        *(f"- {line}" for line in verdicts(results)),
        "",
        "CPU time (user + system, whole process tree), median of the same rounds:",
        "",
        *_table(results, tools, cpu=True),
        "",
        "Every round: wall s / CPU s @ 1-minute load average before it; (warm-ups' wall s);"
        " the duration the tool printed:",
        "",
    ]
    for s in results:
        for t in tools:
            if t in s.tools:
                r = s.tools[t]
                rounds = ", ".join(
                    f"{w:.2f}/{c:.2f}@{load:.1f}"
                    for w, c, load in zip(r.rounds_s, r.cpu_s, r.load_1m, strict=True)
                )
                printed = ", ".join("?" if x is None else f"{x:.2f}" for x in r.reported_s)
                warm = ", ".join(f"{x:.2f}" for x in r.warmup_s)
                out.append(f"- {s.suite} {t}: ({warm}) {rounds}; printed {printed}")
    return "\n".join(out) + "\n"


def parse_tools(text: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in names if t not in TOOLS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown tool(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(TOOLS)}"
        )
    return tuple(t for t in TOOLS if t in names)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected 1 or more")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--suites", type=parse_suites, default=SUITES, help="default: all")
    parser.add_argument("--tools", type=parse_tools, default=TOOLS, help=",".join(TOOLS))
    parser.add_argument("--rounds", type=positive, default=3, help="timed rounds (default 3)")
    parser.add_argument(
        "--warmups",
        type=positive,
        default=1,
        help="untimed runs first (default 1); mtest keeps 10 durations per test",
    )
    parser.add_argument("--out", type=Path, help="JSON result (default bench/results/<time>.json)")
    parser.add_argument("--work", type=Path, help="where to generate suites (default: a temp dir)")
    parser.add_argument(
        "--disable-plugin",
        action="append",
        default=[],
        metavar="NAME",
        help="pass `-p no:NAME` to every tool (repeatable), e.g. an unrelated installed plugin",
    )
    args = parser.parse_args(argv)
    started = time.strftime("%Y%m%dT%H%M%S")
    out: Path = args.out or HERE / "results" / f"{started}.json"
    if BASELINE not in args.tools:
        print(f"note: without {BASELINE} there are no ratios", file=sys.stderr)
    disabled = tuple(args.disable_plugin)
    meta: dict[str, Any] = {
        "started": started,
        "rounds": args.rounds,
        "warmups": args.warmups,
        "disabled_plugins": list(disabled),
        "machine": machine(),
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    if "xdist-n2" in args.tools and meta["machine"]["xdist"] == "not installed":
        print(
            "error: pytest-xdist is not installed; leave out xdist-n2 with --tools", file=sys.stderr
        )
        return 2
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="mtest-bench-"))
    results: list[SuiteResult] = []
    try:
        counts = generate(work / "suites", args.suites)
        for suite in args.suites:
            print(f"{suite}: {counts[suite]} tests", flush=True)
            master = work / "suites" / suite
            plan = Plan(args.tools, args.rounds, args.warmups, disabled)
            result = bench_suite(suite, master, work, plan)
            if result.tests != counts[suite]:
                raise BenchError(
                    f"{suite}: pytest collected {result.tests}, generated {counts[suite]}"
                )
            results.append(result)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"(suites and mtest state left in {work})", file=sys.stderr)
        return 1
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report = markdown(results, args.tools, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {
        **meta,
        "suites": [
            {
                **{k: v for k, v in asdict(s).items() if k != "tools"},
                "tools": {
                    t: {
                        **asdict(r),
                        "median_s": r.median_s,
                        "median_cpu_s": r.median_cpu_s,
                        "ratio_to_pytest": s.ratio(t),
                    }
                    for t, r in s.tools.items()
                },
            }
            for s in results
        ],
        "verdicts": verdicts(results),
    }
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(report, encoding="utf-8")
    print()
    print(report)
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
