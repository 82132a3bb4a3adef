"""The report of ``real.py``: a markdown table per scenario, issue 10's targets, every command."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rounds import Sample, Scenario, Timing


@dataclass(frozen=True)
class Target:
    """``tool``'s median ``metric`` ≤ ``limit`` × ``against``'s (seconds without ``against``)."""

    scenario: str
    tool: str
    metric: str
    """``wall``, ``cpu`` or ``children_cpu`` (CPU minus mtest's own)."""
    against: str
    limit: float
    strict: bool = False
    """``<`` instead of ``≤``: "faster than"."""


TARGETS = (
    *(Target(s, "mtest-j1-warm", "wall", "pytest", 1.05) for s in ("idna", "toolz", "six")),
    Target("idna", "mtest-j2-warm", "wall", "pytest", 0.60),
    Target("toolz", "mtest-j2-warm", "wall", "pytest", 0.85),
    Target("six", "mtest-j2-warm", "wall", "pytest", 1.05),
    *(
        Target(s, tool, "wall", "xdist-n2", 1.0, strict=True)
        for s in ("idna", "toolz", "six", "more-itertools", "attrs")
        for tool in ("mtest-j1-warm", "mtest-j2-warm")
    ),
    Target("idna", "mtest-j2-cold", "wall", "pytest", 0.75),
    Target("toolz", "mtest-j2-cold", "wall", "pytest", 0.95),
    *(Target(s, "mtest-j2-warm", "cpu", "pytest", 1.2) for s in ("idna", "toolz")),
    *(Target("tier0", f"mtest-tier0-j{j}", "wall", "pytest-file", 1.3) for j in (1, 2)),
    Target("storm", "mtest-j2-storm", "children_cpu", "pytest-calm", 2.0),
    Target("resume", "mtest-resume", "wall", "", 0.5),
)


def value(sample: Sample, metric: str) -> float:
    if metric == "wall":
        return sample.wall_s
    if metric == "children_cpu" and sample.self_cpu_s is not None:
        return sample.cpu_s - sample.self_cpu_s
    return sample.cpu_s


def median(timing: Timing, metric: str) -> float:
    return statistics.median(value(s, metric) for s in timing.samples)


def _spread(timing: Timing, metric: str) -> str:
    values = [value(s, metric) for s in timing.samples]
    return f"{min(values):.2f}–{max(values):.2f}"


def verdicts(scenario: Scenario) -> list[str]:
    lines: list[str] = []
    for t in TARGETS:
        if t.scenario != scenario.name or t.tool not in scenario.timings:
            continue
        got = median(scenario.timings[t.tool], t.metric)
        if t.against:
            if t.against not in scenario.timings:
                continue
            base = median(scenario.timings[t.against], "cpu" if "cpu" in t.metric else "wall")
            ratio, what = got / base, f"{t.against}'s {'CPU' if 'cpu' in t.metric else 'wall'}"
            shown = f"{ratio:.2f}× ({got:.2f}s / {base:.2f}s)"
        else:
            ratio, what, shown = got, "", f"{got:.2f}s"
        met = ratio < t.limit if t.strict else ratio <= t.limit
        sign = "<" if t.strict else "≤"
        bound = f"{t.limit:g}× {what}" if t.against else f"{t.limit:g} s"
        lines.append(
            f"{t.tool} {t.metric.replace('_', ' ')} {sign} {bound}: "
            f"{'met' if met else 'MISSED'}, {shown}"
        )
    return lines


def parity_line(scenario: Scenario) -> str:
    runs = [(n, s) for n, t in scenario.timings.items() if n.startswith("mtest") for s in t.samples]
    bad = [(n, s) for n, s in runs if s.problems]
    if not bad:
        return f"parity with plain pytest: exact in all {len(runs)} timed mtest run(s)"
    name, sample = bad[0]
    shown = "; ".join(sample.problems[:5])
    return (
        f"parity with plain pytest: **{len(bad)} of {len(runs)} mtest run(s) differ**; "
        f"{name}: {len(sample.problems)} difference(s), e.g. {shown}"
    )


def table(scenario: Scenario) -> list[str]:
    storm = any(s.self_cpu_s is not None for t in scenario.timings.values() for s in t.samples)
    base = scenario.timings[scenario.baseline]
    head = "| tool | runs | wall median | wall min–max | CPU median | CPU min–max | "
    head += "children's CPU | " if storm else ""
    head += f"wall / {scenario.baseline} | CPU / {scenario.baseline} | load 1m |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, t in scenario.timings.items():
        cells = [
            name,
            str(len(t.samples)),
            f"{median(t, 'wall'):.2f}s",
            _spread(t, "wall"),
            f"{median(t, 'cpu'):.2f}s",
            _spread(t, "cpu"),
        ]
        if storm:
            cells.append(f"{median(t, 'children_cpu'):.2f}s")
        cells += [
            f"{median(t, 'wall') / median(base, 'wall'):.2f}×",
            f"{median(t, 'cpu') / median(base, 'cpu'):.2f}×",
            _spread_load(t),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _spread_load(timing: Timing) -> str:
    loads = [s.load_1m for s in timing.samples]
    return f"{min(loads):.1f}–{max(loads):.1f}"


def scenario_section(scenario: Scenario) -> list[str]:
    out = [
        f"## {scenario.name}: {scenario.tests} tests",
        "",
        *(f"- {note}" for note in scenario.notes),
        f"- load average (1, 5, 15 min) {scenario.load_before} before, "
        f"{scenario.load_after} after; the table's load is the 1-minute one before each run",
        "",
        *table(scenario),
        "",
        *(f"- target: {line}" for line in verdicts(scenario)),
    ]
    if scenario.baseline == "pytest":
        out.append(f"- {parity_line(scenario)}")
    out += ["", "Commands (each run checked: exit code, counts or records, parity):", ""]
    for name, t in scenario.timings.items():
        extra = "; a fresh gates directory before every run" if t.fresh else ""
        if t.primed_with == t.command:
            extra += "; warm: one untimed run of the same command before the rounds"
        elif t.primed_with:
            extra += f"; warm: one untimed run of `{t.primed_with}` before the rounds"
        out.append(f"- {name}: `{t.command}`{extra}")
    return [*out, ""]


def markdown(scenarios: list[Scenario], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    out = [
        f"# Real-suite benchmark {meta['started']}",
        "",
        f"`{' '.join(meta['argv'])}`: {meta['rounds']} interleaved round(s) after "
        f"{meta['warmups']} warm-up(s); work directory `{meta['work']}`.",
        "",
        f"{m['usable_cpus']} usable CPU(s), {m['processor']}, Python {m['python']}, "
        f"pytest {m['pytest']}, pytest-xdist {m['xdist']}, mtest {m['mtest']} "
        f"({m['mtest_source']['path']} {m['mtest_source']['commit']}"
        f"{', uncommitted changes' if m['mtest_source']['dirty'] == 'yes' else ''}); "
        f"plugins: {', '.join(m['pytest_plugins']) or 'none'}; load average "
        f"{meta['loadavg_before']} before, {meta['loadavg_after']} after.",
        "",
    ]
    loads = [s.load_1m for sc in scenarios for t in sc.timings.values() for s in t.samples]
    if loads and max(loads) > m["usable_cpus"]:
        out += [
            f"**Taken under load: the 1-minute load average reached {max(loads):.1f} on "
            f"{m['usable_cpus']} CPU(s) during the runs. These are not measurements; "
            "measure on a quiet machine.**",
            "",
        ]
    for scenario in scenarios:
        out += scenario_section(scenario)
    return "\n".join(out)
