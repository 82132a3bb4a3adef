"""Time plain pytest, ``mtest -j1``, ``mtest -j2`` and ``pytest-xdist -n 2`` on generated suites.

For each suite (see ``generate.py``) every tool runs ``--warmups`` times
(default 2; this lets mtest learn the tests' durations, as it does for its
users, and fills the bytecode caches), then ``--rounds`` more times; the order
of the tools rotates from round to round so that a burst of load from
elsewhere does not always hit the same tool. Each run's wall time is
``time.perf_counter`` around ``subprocess.run`` and its CPU time the process
tree's ``RUSAGE_CHILDREN``; the tables show the medians of the rounds (warm-ups
are not counted).

``--bytecode`` chooses the environment every tool runs in: ``inherit`` (this
process's environment, e.g. with ``PYTHONDONTWRITEBYTECODE=1``) or ``write``
(without ``PYTHONDONTWRITEBYTECODE`` and ``PYTHONPYCACHEPREFIX``, so that each
tool writes bytecode where it normally does: pytest in ``__pycache__``
directories, including rewritten plugin modules in site-packages, and mtest's
children in ``<gates>/cache/pycache``); ``inherit,write`` runs both, one after
the other. ``--cold N`` adds N runs of each mtest tool with a fresh gates
directory after the rounds: the first-run cost (no durations; in ``write``
mode also no bytecode cache).

Every run is checked, so that a fast but wrong run cannot look good: the exit
code must be 0; pytest's and xdist's summary must say that all the collected
tests passed; mtest's ``run.jsonl`` must hold exactly one ``passed`` record
for each test that ``pytest --collect-only`` lists, and nothing else.

    python bench/run.py                                 # all suites, 5 rounds
    python bench/run.py --suites tiny --bytecode inherit,write --cold 3
    python bench/run.py --suites tiny --rounds 3 --tools pytest,mtest-j2

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
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generate import SUITES, generate, parse_choices, parse_suites, spin_rate

HERE = Path(__file__).resolve().parent
TOOLS = ("pytest", "mtest-j1", "mtest-j2", "xdist-n2")
BASELINE = "pytest"
MODES = ("inherit", "write")
BYTECODE_VARS = ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
"""What ``--bytecode write`` removes from every tool's environment."""
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
    cache_files: int = 0
    cache_bytes: int = 0
    """Bytecode the tool left after the rounds: mtest's ``<gates>/cache/pycache``,
    pytest's and xdist's ``__pycache__`` directories in their copy of the suite."""
    cold_s: list[float] = field(default_factory=list)
    """mtest only, with ``--cold``: wall seconds of runs with a fresh gates directory."""
    cold_cpu_s: list[float] = field(default_factory=list)
    cold_load_1m: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.rounds_s)

    @property
    def median_cpu_s(self) -> float:
        return statistics.median(self.cpu_s)


@dataclass
class SuiteResult:
    suite: str
    mode: str
    """``--bytecode``: ``inherit`` or ``write``."""
    tests: int
    collect_only_s: list[float]
    site_rewritten_pyc: int
    """Files of pytest-rewritten bytecode (``*-pytest-*.pyc``) in site-packages before
    this suite's runs: plain pytest reads them even when it may not write any."""
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


def child_env(mode: str) -> dict[str, str]:
    """This environment, minus what would change what pytest runs.

    In ``write`` mode also minus ``BYTECODE_VARS``, for every tool alike.
    """
    env = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_XDIST_AUTO_NUM_WORKERS"):
        env.pop(name, None)
    if mode == "write":
        for name in BYTECODE_VARS:
            env.pop(name, None)
    return env


def timed(
    command: list[str], cwd: Path, mode: str
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds, CPU seconds of the process tree, and the finished command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=cwd,
        env=child_env(mode),
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


def collected_ids(suite_dir: Path, disabled: tuple[str, ...], mode: str) -> tuple[float, list[str]]:
    """``pytest --collect-only -q``: its wall time and the node ids it lists."""
    command = [*command_for(BASELINE, Path(), disabled), "--collect-only"]
    seconds, _, done = timed(command, suite_dir, mode)
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
    tool: str,
    suite_dir: Path,
    gates: Path,
    expected: list[str],
    disabled: tuple[str, ...],
    mode: str,
) -> tuple[float, float, float | None]:
    """One checked run: its wall time, CPU time and the time the tool printed."""
    command = command_for(tool, gates, disabled)
    seconds, cpu, done = timed(command, suite_dir, mode)
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
    cold: int = 0


def _tree_size(paths: list[Path]) -> tuple[int, int]:
    """Files and bytes under ``paths`` (missing ones count as empty)."""
    files = size = 0
    for root in paths:
        for path in root.rglob("*") if root.is_dir() else ():
            if path.is_file():
                files += 1
                size += path.stat().st_size
    return files, size


def bytecode_cache(tool: str, suite_dir: Path, gates: Path) -> tuple[int, int]:
    """Files and bytes of the bytecode ``tool`` wrote for this suite.

    mtest's children write theirs (all of it: standard library, site-packages,
    rewritten tests) under ``<gates>/cache/pycache``; pytest and xdist write
    the suite's rewritten modules to ``__pycache__`` in the suite's directory
    (and plugin modules to site-packages, not counted here).
    """
    if tool.startswith("mtest"):
        return _tree_size([gates / "cache" / "pycache"])
    return _tree_size(list(suite_dir.rglob("__pycache__")))


def mtest_writes_bytecode(mode: str) -> bool:
    """Whether mtest's children should cache bytecode under ``<gates>/cache/pycache``."""
    return mode == "write" or not any(os.environ.get(name) for name in BYTECODE_VARS)


def check_mtest_cache(tool: str, mode: str, files: int) -> None:
    """mtest caches bytecode exactly when its environment allows it to: check which one ran."""
    expected = mtest_writes_bytecode(mode)
    if expected != (files > 0):
        raise BenchError(
            f"{tool} ({mode}): {files} file(s) in <gates>/cache/pycache, expected "
            + ("some" if expected else "none")
        )


def site_rewritten_pyc() -> int:
    """Files of pytest-rewritten bytecode in this interpreter's site-packages."""
    roots = {Path(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    return sum(1 for root in roots if root.is_dir() for _ in root.rglob("*-pytest-*.pyc"))


def bench_suite(suite: str, master: Path, work: Path, plan: Plan, mode: str) -> SuiteResult:
    """Warm up and time every tool on one suite, in one ``--bytecode`` mode.

    Each tool runs in its own copy of the suite (without the ``__pycache__``
    that the listing may have written into the master), so that no tool reads
    bytecode or caches another left in the suite's directory.
    """
    tools, disabled = plan.tools, plan.disabled
    rewritten = site_rewritten_pyc()
    _, ids = collected_ids(master, disabled, mode)  # untimed: it is the listing's warm-up
    result = SuiteResult(
        suite=suite, mode=mode, tests=len(ids), collect_only_s=[], site_rewritten_pyc=rewritten
    )
    dirs = {tool: work / "runs" / mode / suite / tool for tool in tools}
    gates = {tool: work / "gates" / mode / f"{suite}-{tool}" for tool in tools}
    label = f"{suite:<10} {mode:<7}"
    for tool in tools:
        for stale in (dirs[tool], gates[tool]):  # from an earlier run with the same --work
            shutil.rmtree(stale, ignore_errors=True)
        shutil.copytree(master, dirs[tool], ignore=shutil.ignore_patterns("__pycache__"))
        result.tools[tool] = ToolResult(
            tool=tool,
            command=command_for(tool, gates[tool], disabled),
            warmup_s=[],
            rounds_s=[],
            reported_s=[],
        )
        for _ in range(plan.warmups):
            warmup, _, _ = run_tool(tool, dirs[tool], gates[tool], ids, disabled, mode)
            result.tools[tool].warmup_s.append(warmup)
            print(f"  {label} {tool:<9} warm-up {warmup:7.2f}s", flush=True)
    for index in range(plan.rounds):
        shift = index % len(tools)
        for tool in (*tools[shift:], *tools[:shift]):
            load = os.getloadavg()[0]
            seconds, cpu, reported = run_tool(tool, dirs[tool], gates[tool], ids, disabled, mode)
            entry = result.tools[tool]
            entry.rounds_s.append(seconds)
            entry.cpu_s.append(cpu)
            entry.reported_s.append(reported)
            entry.load_1m.append(round(load, 2))
            print(
                f"  {label} {tool:<9} round {index + 1} {seconds:7.2f}s"
                f" (cpu {cpu:6.2f}s, load {load:4.2f})",
                flush=True,
            )
        result.collect_only_s.append(collected_ids(master, disabled, mode)[0])
    for tool in tools:
        entry = result.tools[tool]
        entry.cache_files, entry.cache_bytes = bytecode_cache(tool, dirs[tool], gates[tool])
        if tool.startswith("mtest"):
            check_mtest_cache(tool, mode, entry.cache_files)
    cold_tools = [tool for tool in tools if tool.startswith("mtest")]
    for index in range(plan.cold if cold_tools else 0):
        shift = index % len(cold_tools)
        for tool in (*cold_tools[shift:], *cold_tools[:shift]):
            fresh = work / "gates" / mode / f"{suite}-{tool}-cold"
            shutil.rmtree(fresh, ignore_errors=True)
            load = os.getloadavg()[0]
            seconds, cpu, _ = run_tool(tool, dirs[tool], fresh, ids, disabled, mode)
            entry = result.tools[tool]
            entry.cold_s.append(seconds)
            entry.cold_cpu_s.append(cpu)
            entry.cold_load_1m.append(round(load, 2))
            check_mtest_cache(tool, mode, bytecode_cache(tool, dirs[tool], fresh)[0])
            print(
                f"  {label} {tool:<9} fresh gates {index + 1} {seconds:7.2f}s"
                f" (cpu {cpu:6.2f}s, load {load:4.2f})",
                flush=True,
            )
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
        **{name: os.environ.get(name, "") for name in BYTECODE_VARS},
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
            where = f"pytest on {suite.suite}, bytecode {suite.mode}"
            if ratio <= limit:
                lines.append(f"{tool} ≤ {limit:.2f}× {where}: MET ({ratio:.2f}×)")
            else:
                over = (ratio / limit - 1) * 100
                lines.append(
                    f"{tool} ≤ {limit:.2f}× {where}: MISSED "
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


MODE_TEXT = {
    "inherit": "as inherited",
    "write": "without " + " and ".join(BYTECODE_VARS) + ": every tool writes bytecode",
}


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"


def _cold_table(results: list[SuiteResult]) -> list[str]:
    """mtest's runs with a fresh gates directory against its warm rounds."""
    rows = [
        "| suite | bytecode | tool | warm (rounds) | fresh gates | difference | CPU warm | "
        "CPU fresh | bytecode cache |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in results:
        for r in s.tools.values():
            if not r.cold_s:
                continue
            warm, cold = r.median_s, statistics.median(r.cold_s)
            cache = f"{r.cache_files} files, {_mb(r.cache_bytes)}" if r.cache_files else "none"
            rows.append(
                f"| {s.suite} | {s.mode} | {r.tool} | {warm:.2f}s | {cold:.2f}s | "
                f"{cold - warm:+.2f}s | {r.median_cpu_s:.2f}s | "
                f"{statistics.median(r.cold_cpu_s):.2f}s | {cache} |"
            )
    return rows if len(rows) > 2 else []


def _mode_table(results: list[SuiteResult], tools: tuple[str, ...]) -> list[str]:
    """The same suite and tool in both modes: write / inherit, wall and CPU."""
    by_key = {(s.suite, s.mode): s for s in results}
    rows = [
        "| suite | tool | inherit | write | write / inherit | CPU inherit | CPU write |",
        "|---|---|---|---|---|---|---|",
    ]
    for (suite, mode), s in by_key.items():
        other = by_key.get((suite, "write"))
        if mode != "inherit" or other is None:
            continue
        for t in tools:
            if t in s.tools and t in other.tools:
                a, b = s.tools[t], other.tools[t]
                rows.append(
                    f"| {suite} | {t} | {a.median_s:.2f}s | {b.median_s:.2f}s | "
                    f"{b.median_s / a.median_s:.2f}× | {a.median_cpu_s:.2f}s | "
                    f"{b.median_cpu_s:.2f}s |"
                )
    return rows if len(rows) > 2 else []


def markdown(results: list[SuiteResult], tools: tuple[str, ...], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    env = ", ".join(f"{name}={m[name] or '(unset)'}" for name in BYTECODE_VARS)
    out = [
        f"# Benchmark {meta['started']}",
        "",
        f"{m['usable_cpus']} usable CPU(s), Python {m['python']}, pytest {m['pytest']}, "
        f"pytest-xdist {m['xdist']}, mtest {m['mtest']} ({_source(m['mtest_source'])}); "
        "load average "
        f"{meta['loadavg_before']} before, {meta['loadavg_after']} after. "
        f"Installed pytest plugins: {', '.join(m['pytest_plugins']) or 'none'}; "
        f"disabled with `-p no:`: {', '.join(meta['disabled_plugins']) or 'none'}. "
        f"Inherited environment: {env}.",
    ]
    for mode in meta["bytecode"]:
        part = [s for s in results if s.mode == mode]
        rewritten = ", ".join(f"{s.suite} {s.site_rewritten_pyc}" for s in part)
        out += [
            "",
            f"## Bytecode: {mode} ({MODE_TEXT[mode]})",
            "",
            f"Wall time, median of {meta['rounds']} round(s) after {meta['warmups']} "
            "warm-up(s) (collect-only: `pytest --collect-only -q`):",
            "",
            *_table(part, tools, cpu=False),
            "",
            *(f"- {line}" for line in verdicts(part)),
            "",
            "CPU time (user + system, whole process tree), median of the same rounds:",
            "",
            *_table(part, tools, cpu=True),
            "",
            "Pytest-rewritten `.pyc` files in site-packages before each suite "
            f"(plain pytest reads them in either mode): {rewritten}.",
        ]
    both = _mode_table(results, tools)
    if both:
        out += ["", "## write / inherit", "", *both]
    cold = _cold_table(results)
    if cold:
        out += [
            "",
            "## First run: fresh gates directory (no durations; no bytecode cache)",
            "",
            *cold,
        ]
    out += [
        "",
        "## Every run",
        "",
        "wall s / CPU s @ 1-minute load average before it; (warm-ups' wall s);"
        " the duration the tool printed; bytecode left in the tool's cache:",
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
                cache = f"{r.cache_files} files, {_mb(r.cache_bytes)}"
                line = f"- {s.suite} {s.mode} {t}: ({warm}) {rounds}; printed {printed}; {cache}"
                if r.cold_s:
                    fresh = ", ".join(
                        f"{w:.2f}/{c:.2f}@{load:.1f}"
                        for w, c, load in zip(r.cold_s, r.cold_cpu_s, r.cold_load_1m, strict=True)
                    )
                    line += f"; fresh gates {fresh}"
                out.append(line)
    return "\n".join(out) + "\n"


def parse_tools(text: str) -> tuple[str, ...]:
    return parse_choices(text, TOOLS, "tool")


def parse_modes(text: str) -> tuple[str, ...]:
    return parse_choices(text, MODES, "mode")


def not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("expected 0 or more")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected 1 or more")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--suites", type=parse_suites, default=SUITES, help="default: all")
    parser.add_argument("--tools", type=parse_tools, default=TOOLS, help=",".join(TOOLS))
    parser.add_argument("--rounds", type=positive, default=5, help="timed rounds (default 5)")
    parser.add_argument(
        "--warmups",
        type=positive,
        default=2,
        help="untimed runs first (default 2); they fill the bytecode caches and mtest's "
        "durations (it keeps 5 per test)",
    )
    parser.add_argument(
        "--bytecode",
        type=parse_modes,
        default=("inherit",),
        help="inherit: the environment as it is; write: every tool without "
        + " and ".join(BYTECODE_VARS)
        + "; inherit,write: both, one after the other (default inherit)",
    )
    parser.add_argument(
        "--cold",
        type=not_negative,
        default=0,
        metavar="N",
        help="after the rounds, N runs of each mtest tool with a fresh gates directory",
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
        "bytecode": list(args.bytecode),
        "cold": args.cold,
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
        plan = Plan(args.tools, args.rounds, args.warmups, disabled, args.cold)
        # One mode after the other: in write mode plain pytest and xdist add rewritten
        # plugin bytecode to site-packages, which inherit mode would then read.
        for mode in args.bytecode:
            for suite in args.suites:
                print(f"{suite}: {counts[suite]} tests, bytecode {mode}", flush=True)
                master = work / "suites" / suite
                result = bench_suite(suite, master, work, plan, mode)
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
                        "median_cold_s": statistics.median(r.cold_s) if r.cold_s else None,
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
