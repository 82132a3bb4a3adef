"""Interleaved timing rounds for ``real.py``: the tools, their checks, the samples.

A ``Tool`` is one command in one directory with the check its every run must
pass; a ``Scenario`` is the tools timed against each other. ``measure`` primes
the warm tools, runs the warm-ups, then the rounds, with the tools' order
rotating from round to round so that a burst of load from elsewhere does not
always hit the same tool.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from realsuites import summary_counts
from run import BenchError, _tail, timed

Check = Callable[[subprocess.CompletedProcess[str]], list[str]]
"""Raises ``BenchError`` for a wrong run; returns parity problems (reported, not fatal)."""


@dataclass(frozen=True)
class Tool:
    name: str
    command: tuple[str, ...]
    cwd: Path
    check: Check
    gates: Path | None = None
    fresh: bool = False
    """Remove ``gates`` before every run: a cold run."""
    prime: Tool | None = None
    """Run once, untimed, before the rounds: what makes a warm tool warm."""
    prepare: Callable[[], object] | None = None
    """Before every run (``resume``: make ``state.json`` unfinished again)."""
    self_cpu: Path | None = None
    """Where ``SELF_CPU`` writes mtest's own CPU seconds."""

    def shell(self) -> str:
        return f"(cd {shlex.quote(str(self.cwd))} && {shlex.join(self.command)})"


@dataclass
class Sample:
    wall_s: float
    cpu_s: float
    load_1m: float
    self_cpu_s: float | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class Timing:
    tool: str
    command: str
    samples: list[Sample] = field(default_factory=list)
    warmup_s: list[float] = field(default_factory=list)
    fresh: bool = False
    primed_with: str = ""


@dataclass
class Scenario:
    name: str
    tests: int
    baseline: str
    """The tool the ratios are taken against."""
    notes: list[str]
    tools: list[Tool]
    timings: dict[str, Timing] = field(default_factory=dict)
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)


def counts_check(expected: dict[str, int], exit_code: int) -> Check:
    def check(done: subprocess.CompletedProcess[str]) -> list[str]:
        got = summary_counts(done.stdout)
        if done.returncode != exit_code or got != expected:
            raise BenchError(
                f"`{' '.join(done.args)}` exited {done.returncode} with {got}, "
                f"expected {exit_code} with {expected}\n{_tail(done.stdout)}"
            )
        return []

    return check


def records_check(gates: Path, expected: Counter[str], exit_code: int, prefix: str = "") -> Check:
    """run.jsonl holds one record per test (ids starting with ``prefix``), outcomes ``expected``."""

    def check(done: subprocess.CompletedProcess[str]) -> list[str]:
        path = gates / "last-run" / "run.jsonl"
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        ids = [str(r["test_id"]) for r in records]
        got = Counter(str(r["outcome"]) for r in records)
        wrong = [i for i in ids if not i.startswith(prefix)]
        if done.returncode != exit_code or got != expected or len(set(ids)) != len(ids) or wrong:
            raise BenchError(
                f"`{' '.join(done.args)}` exited {done.returncode} (expected {exit_code}); "
                f"{path}: {dict(got)} in {len(ids)} records, expected {dict(expected)}, one per "
                f"test{f' in {prefix}' if prefix else ''}\n{_tail(done.stdout)}"
            )
        return []

    return check


def exit_check(exit_code: int) -> Check:
    return counts_check({}, exit_code)


def copy_suite(master: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(master, dest, ignore=shutil.ignore_patterns("__pycache__", ".gates"))
    return dest


def run_once(tool: Tool) -> Sample:
    if tool.fresh and tool.gates is not None:
        shutil.rmtree(tool.gates, ignore_errors=True)
    if tool.prepare is not None:
        try:
            tool.prepare()
        except (OSError, ValueError) as exc:
            raise BenchError(f"{tool.name}: cannot prepare the run: {exc}") from exc
    if tool.self_cpu is not None:
        tool.self_cpu.unlink(missing_ok=True)
    load = round(os.getloadavg()[0], 2)
    wall, cpu, done = timed(list(tool.command), tool.cwd, "inherit")
    problems = tool.check(done)
    own = None
    if tool.self_cpu is not None:
        try:
            own = float(tool.self_cpu.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BenchError(f"{tool.name}: mtest's own CPU not written: {exc}") from exc
    return Sample(wall, cpu, load, own, problems)


def measure(scenario: Scenario, rounds: int, warmups: int) -> None:
    """Prime, warm up, then time ``scenario``'s tools in interleaved rotating rounds."""
    scenario.load_before = [round(x, 2) for x in os.getloadavg()]
    for tool in scenario.tools:
        scenario.timings[tool.name] = Timing(
            tool.name,
            tool.shell(),
            fresh=tool.fresh,
            primed_with=tool.prime.shell() if tool.prime else "",
        )
        if tool.prime is not None:
            sample = run_once(tool.prime)
            print(f"  {scenario.name} {tool.prime.name}: {sample.wall_s:.2f}s", flush=True)
        for _ in range(warmups):
            scenario.timings[tool.name].warmup_s.append(run_once(tool).wall_s)
    names = [tool.name for tool in scenario.tools]
    by_name = {tool.name: tool for tool in scenario.tools}
    for index in range(rounds):
        shift = index % len(names)
        for name in (*names[shift:], *names[:shift]):
            sample = run_once(by_name[name])
            scenario.timings[name].samples.append(sample)
            own = "" if sample.self_cpu_s is None else f", mtest's own {sample.self_cpu_s:.2f}s"
            print(
                f"  {scenario.name} {name:<15} round {index + 1} {sample.wall_s:7.2f}s (cpu "
                f"{sample.cpu_s:.2f}s{own}, load {sample.load_1m:.2f})"
                + (f"; {len(sample.problems)} parity problem(s)" if sample.problems else ""),
                flush=True,
            )
    scenario.load_after = [round(x, 2) for x in os.getloadavg()]
