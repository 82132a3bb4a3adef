"""Pure: a run → one self-contained HTML page (``report.html``, ``--html PATH``).

``render(ReportData)`` returns the page: no network, no outside script or
style, inline SVG and a few lines of inline JavaScript (zoom, and a marker of
its own errors). Every piece of text that comes from a test (ids, messages,
tracebacks, reasons) goes through ``_e``: XML-unsafe characters become
visible escapes (``text.xml_text``), then ``html.escape`` with quotes, so no
input can open a tag, close the SVG or end an attribute. A Content Security
Policy allows only the page's own script (by its hash): even a tag that got
through could run nothing, and nothing is fetched.

The page stays bounded for any suite: the timeline draws a bar per chunk
up to ``CHUNK_BARS`` (then, per lane, ``BUCKETS`` aggregated columns) and a
bar per test up to ``TEST_BARS``; at most ``PROBLEMS_SHOWN`` problems are
listed (tracebacks for the first ``TRACEBACKS_SHOWN``), the rest counted.
"""

from __future__ import annotations

import base64
import hashlib
import html
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from supervisor.history import Entry
from supervisor.learn import Sample
from supervisor.model import Outcome, TestRecord, file_of
from supervisor.report import ORDER, is_problem
from supervisor.text import clip, xml_text
from supervisor.timeline import NO_WORKER, ChunkSpan, Death, TestSpan, Timeline

CHUNK_BARS = 4000
TEST_BARS = 3000
BUCKETS = 300
PROBLEMS_SHOWN = 300
TRACEBACKS_SHOWN = 100
SLOWEST = 20
TREND_RUNS = 60
ID_CHARS = 300
MESSAGE_CHARS = 2000
TRACEBACK_CHARS = 4096
_WIDTH = 1000.0
_LABEL = 80.0
_LANE = 22.0
X = Callable[[float], float]
"""Seconds from the run's start → the timeline's x coordinate."""
_GATING = frozenset(o.value for o in Outcome if o.gating)
_SEVERITY = {o.value: n for n, o in enumerate(reversed(ORDER))}
"""Outcome → how bad (a bar takes the worst of its tests' colours)."""


@dataclass(frozen=True, kw_only=True)
class QuarantineRow:
    test_id: str
    kind: str
    """``flaky`` or ``broken`` (``""``: watched, not yet either)."""
    state: str
    recent: tuple[str, ...]
    """``pass``/``fail``/``flaky`` of its recent runs, oldest first."""
    since: str = ""
    last_failure: str = ""


@dataclass(frozen=True, kw_only=True)
class ReportData:
    run_id: str
    started: str
    wall_s: float
    exit_code: int
    finals: Sequence[TestRecord]
    attempts: int = 0
    """Records written (every attempt), for the retries line."""
    outstanding: int = 0
    interrupted: bool = False
    tiers: tuple[int, ...] = ()
    budget_s: float | None = None
    shard: tuple[int, int] | None = None
    jobs: int = 1
    coverage: str | None = None
    """``87.54`` (percent, as the summary shows it) when measured."""
    timeline: Timeline = field(default_factory=Timeline)
    diagnoses: Mapping[str, str] = field(default_factory=dict)
    """Bundle path (``failures/….txt``) → the end of its traceback."""
    bundle_prefix: str = ""
    """What to put before a bundle path for a link relative to the page."""
    quarantine: Sequence[QuarantineRow] = ()
    samples: Mapping[str, Sequence[Sample]] = field(default_factory=dict)
    """Durations of earlier runs per test (``durations.json``), for the medians."""
    runs: Sequence[Entry] = ()
    """The history, oldest first (empty: no history file)."""


def _e(text: object) -> str:
    """Any text as HTML text or attribute value: nothing in it is markup."""
    return html.escape(xml_text(str(text)), quote=True)


def render(data: ReportData) -> str:
    """The whole page."""
    body = "".join((
        _header(data), _timeline(data.timeline), _problems(data), _slowest(data),
        _quarantine(data.quarantine), _trend(data.runs),
    ))  # fmt: skip
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    policy = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{digest}'"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>mtest run {_e(data.run_id)}</title><style>{_STYLE}</style></head>"
        f'<body><p id="js-status" data-state="no-script" hidden></p>{body}'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


# -- the header --------------------------------------------------------------------


def _header(data: ReportData) -> str:
    tally = Counter(r.outcome.value for r in data.finals)
    counts = "".join(
        f'<li class="count o-{o.value}" data-outcome="{o.value}">'
        f'<b class="n">{tally[o.value]}</b> {o.value}</li>'
        for o in ORDER if tally[o.value]
    )  # fmt: skip
    quarantined = sum(1 for r in data.finals if r.quarantined)
    verdict = "passed" if data.exit_code == 0 else "failed"
    facts = [
        ("exit code", f'<b id="exit-code">{data.exit_code}</b>'),
        ("wall", f'<span id="wall">{data.wall_s:.1f}s</span>'),
        ("started", _e(data.started)),
        ("workers", str(data.jobs)),
        ("tiers", _e(",".join(map(str, data.tiers)) or "all")),
        ("budget", "none" if data.budget_s is None else f"{data.budget_s:g}s"),
        ("shard", "none" if data.shard is None else f"{data.shard[0]}/{data.shard[1]}"),
    ]
    if data.coverage is not None:
        facts.append(("coverage", f'<span id="coverage">{_e(data.coverage)}%</span>'))
    if quarantined:
        facts.append(("quarantined", str(quarantined)))
    if data.outstanding:
        facts.append(("not run", str(data.outstanding)))
    if data.attempts > len(data.finals):
        facts.append(("retries", str(data.attempts - len(data.finals))))
    dl = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    return (
        f'<header class="{verdict}"><h1>mtest run <code>{_e(data.run_id)}</code> '
        f'<span class="verdict">{verdict}{" (interrupted)" if data.interrupted else ""}'
        f'</span></h1><ul id="counts">{counts or "<li>no tests ran</li>"}</ul>'
        f"<dl>{dl}</dl></header>"
    )


# -- the timeline ------------------------------------------------------------------


def _worst(outcomes: Sequence[str]) -> str:
    return max(outcomes, key=lambda o: _SEVERITY.get(o, -1), default="none") or "none"


def _timeline(tl: Timeline) -> str:
    lanes = tl.lanes()
    if not lanes:
        return '<section id="timeline"><h2>Timeline</h2><p>No worker ran a test.</p></section>'
    end = max(tl.ended_s, *(c.end_s for c in tl.chunks), *(t.end_s for t in tl.tests), 1e-6)
    scale = (_WIDTH - _LABEL - 10) / end

    def x(seconds: float) -> float:
        return round(_LABEL + max(0.0, seconds) * scale, 2)

    row = {worker: n + 1 for n, worker in enumerate(lanes)}  # row 0: collection
    height = (len(lanes) + 1) * _LANE + 24
    parts = [_axis(end, x, height)]
    if tl.collected_s is not None:
        parts.append(
            f'<rect class="collect" x="{x(0)}" y="4" width="{max(0.5, x(tl.collected_s) - x(0))}"'
            f' height="{_LANE - 8}"><title>collection: {tl.collected_s:.2f}s</title></rect>'
        )
    parts.append(f'<text class="label" x="4" y="{_LANE - 7}">collect</text>')
    by_chunk: dict[tuple[int, int], list[TestSpan]] = defaultdict(list)
    for t in tl.tests:
        by_chunk[(t.worker, t.chunk)].append(t)
    for worker in lanes:
        y = row[worker] * _LANE
        busy = sum(c.end_s - c.start_s for c in tl.chunks if c.worker == worker)
        parts.append(
            f'<g class="lane" data-worker="{worker}"><rect class="idle" x="{_LABEL}" y="{y + 3}" '
            f'width="{_WIDTH - _LABEL - 10}" height="{_LANE - 6}"><title>worker {worker}: busy '
            f"{busy:.1f}s of {end:.1f}s</title></rect>"
            f'<text class="label" x="4" y="{y + _LANE - 7}">worker {worker}</text></g>'
        )
    aggregated = len(tl.chunks) > CHUNK_BARS
    if aggregated:
        parts += _buckets(tl, lanes, row, end, x)
    else:
        parts += (_chunk_bar(c, by_chunk, row, x) for c in tl.chunks)
    drawn = [t for t in tl.tests if t.worker != NO_WORKER]
    if len(drawn) <= TEST_BARS:
        parts += (_test_bar(t, row, x) for t in drawn)
    parts += (_death_mark(d, row, x) for d in tl.deaths if d.worker in row)
    note = (
        f"{len(tl.chunks)} chunks drawn as {BUCKETS} columns per worker (darker: busier; "
        "red foot: the share of failing tests)"
        if aggregated else f"{len(tl.chunks)} chunk(s), one bar each"
    )  # fmt: skip
    if len(drawn) > TEST_BARS:
        note += f"; {len(drawn)} tests: hover a chunk for its tests"
    return (
        f'<section id="timeline"><h2>Timeline</h2><p class="note">{note}; grey: idle; '
        'marks: <span class="k-crashed">crash</span>, <span class="k-hung">hang</span>, '
        '<span class="k-killed">kill</span>. Zoom: <input id="zoom" type="range" min="1" '
        f'max="40" value="1"></p><div class="scroll"><svg id="timeline-svg" '
        f'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {height}" '
        f'width="100%" role="img" aria-label="run timeline">{"".join(parts)}</svg></div>'
        "</section>"
    )


def _axis(end: float, x: X, height: float) -> str:
    ticks = []
    for n in range(6):
        t = end * n / 5
        ticks.append(
            f'<line class="tick" x1="{x(t)}" x2="{x(t)}" y1="0" y2="{height - 16}"/>'
            f'<text class="tick" x="{x(t)}" y="{height - 4}">{t:.1f}s</text>'
        )
    return "".join(ticks)


def _chunk_bar(
    c: ChunkSpan, by_chunk: Mapping[tuple[int, int], list[TestSpan]], row: Mapping[int, int],
    x: X,
) -> str:  # fmt: skip
    tests = [t for t in by_chunk.get((c.worker, c.chunk), ()) if c.start_s <= t.start_s <= c.end_s]
    worst = _worst([t.outcome for t in tests])
    slow = max(tests, key=lambda t: t.duration_s, default=None)
    tally = Counter(t.outcome for t in tests)
    what = ", ".join(f"{n} {o or 'unfinished'}" for o, n in tally.most_common())
    slowest = f"; slowest {_e(clip(slow.test_id, ID_CHARS))} {slow.duration_s:.2f}s" if slow else ""
    y = row[c.worker] * _LANE
    return (
        f'<rect class="bar chunk o-{worst}" data-worker="{c.worker}" data-chunk="{c.chunk}" '
        f'x="{x(c.start_s)}" y="{y + 3}" width="{max(0.5, x(c.end_s) - x(c.start_s))}" '
        f'height="{_LANE - 6}"><title>chunk {c.chunk} on worker {c.worker}: '
        f"{c.start_s:.2f}s to {c.end_s:.2f}s, {c.tests} test(s) planned ({what or 'none ran'})"
        f"{slowest}</title></rect>"
    )


def _test_bar(t: TestSpan, row: Mapping[int, int], x: X) -> str:
    y = row[t.worker] * _LANE
    return (
        f'<rect class="bar test o-{t.outcome or "none"}" x="{x(t.start_s)}" y="{y + 8}" '
        f'width="{max(0.3, x(t.end_s) - x(t.start_s))}" height="{_LANE - 16}">'
        f"<title>{_e(clip(t.test_id, ID_CHARS))}: {_e(t.outcome or 'unfinished')} in "
        f"{t.duration_s:.3f}s (attempt {t.attempt}, chunk {t.chunk})</title></rect>"
    )


def _death_kind(d: Death) -> str:
    if not d.killed:
        return "crashed"
    return "hung" if "hung" in d.reason or "timeout" in d.reason else "killed"


def _death_mark(d: Death, row: Mapping[int, int], x: X) -> str:
    y = row[d.worker] * _LANE
    at = x(d.at_s)
    who = f" running {_e(clip(d.test_id, ID_CHARS))}" if d.test_id else ""
    return (
        f'<g class="mark k-{_death_kind(d)}" data-worker="{d.worker}"><line x1="{at}" x2="{at}" '
        f'y1="{y}" y2="{y + _LANE}"/><circle cx="{at}" cy="{y + 4}" r="3.5"/>'
        f"<title>worker {d.worker} died at {d.at_s:.2f}s{who}: {_e(d.reason)}</title></g>"
    )


def _buckets(
    tl: Timeline, lanes: Sequence[int], row: Mapping[int, int], end: float, x: X
) -> list[str]:
    """Huge runs: per lane, ``BUCKETS`` columns, each as dark as the lane was busy,
    with a red foot as tall as the share of its tests that failed, errored, hung or
    crashed (a few failures among thousands of tests must not paint a lane red)."""
    width = end / BUCKETS
    busy: dict[tuple[int, int], float] = defaultdict(float)
    ran: Counter[tuple[int, int]] = Counter()
    bad: Counter[tuple[int, int]] = Counter()
    for c in tl.chunks:
        first, last = int(c.start_s / width), min(BUCKETS - 1, int(c.end_s / width))
        for b in range(first, last + 1):
            lo, hi = max(c.start_s, b * width), min(c.end_s, (b + 1) * width)
            busy[(c.worker, b)] += max(0.0, hi - lo)
    for t in tl.tests:
        key = (t.worker, min(BUCKETS - 1, int(t.start_s / width)))
        ran[key] += 1
        if t.outcome in _GATING:
            bad[key] += 1
    out = []
    for (worker, b), seconds in sorted(busy.items()):
        if worker not in row:
            continue
        share = min(1.0, seconds / width)
        y, left = row[worker] * _LANE, x(b * width)
        wide = max(0.5, x((b + 1) * width) - left)
        failing = bad[(worker, b)] / ran[(worker, b)] if ran[(worker, b)] else 0.0
        out.append(
            f'<rect class="bar agg o-passed" data-worker="{worker}" x="{left}" y="{y + 3}" '
            f'width="{wide}" height="{_LANE - 6}" opacity="{0.25 + 0.75 * share:.2f}"><title>'
            f"worker {worker}, {b * width:.1f}s to {(b + 1) * width:.1f}s: busy {share:.0%}, "
            f"{ran[(worker, b)]} test(s), {bad[(worker, b)]} failing</title></rect>"
        )
        if failing:
            tall = max(2.0, (_LANE - 6) * failing)
            out.append(
                f'<rect class="agg-fail o-failed" x="{left}" y="{y + _LANE - 3 - tall:.1f}" '
                f'width="{wide}" height="{tall:.1f}"/>'
            )
    return out


# -- problems ----------------------------------------------------------------------


def shown_problems(finals: Iterable[TestRecord]) -> list[TestRecord]:
    """The problems in the order the page lists them: by outcome, then id."""
    return sorted(
        (r for r in finals if is_problem(r)), key=lambda r: (ORDER.index(r.outcome), r.test_id)
    )


def _problems(data: ReportData) -> str:
    problems = shown_problems(data.finals)
    if not problems:
        return '<section id="problems"><h2>Problems</h2><p>None.</p></section>'
    items = []
    for n, r in enumerate(problems[:PROBLEMS_SHOWN]):
        tags = " (quarantined)" if r.quarantined else ""
        tags += f" (attempt {r.attempt})" if r.attempt > 1 else ""
        message = (
            f'<pre class="message">{_e(clip(r.message, MESSAGE_CHARS))}</pre>' if r.message else ""
        )
        trace = data.diagnoses.get(r.bundle or "", "") if n < TRACEBACKS_SHOWN else ""
        trace_html = f'<pre class="traceback">{_e(trace[-TRACEBACK_CHARS:])}</pre>' if trace else ""
        link = (
            f'<a class="bundle" href="{_e(data.bundle_prefix + r.bundle)}">{_e(r.bundle)}</a>'
            if r.bundle else ""
        )  # fmt: skip
        items.append(
            f'<details class="problem o-{r.outcome.value}" data-outcome="{r.outcome.value}"'
            f"{' open' if n < 10 else ''}><summary><b>{r.outcome.value}</b>{tags} "
            f"<code>{_e(clip(r.test_id, ID_CHARS))}</code></summary>{message}{trace_html}{link}"
            "</details>"
        )
    more = len(problems) - PROBLEMS_SHOWN
    rest = f'<p class="note">… and {more} more: run.jsonl has them all.</p>' if more > 0 else ""
    return (
        f'<section id="problems"><h2>Problems ({len(problems)})</h2>{"".join(items)}{rest}'
        "</section>"
    )


# -- slowest -----------------------------------------------------------------------


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f}s" if values else "–"


def _slowest(data: ReportData) -> str:
    timed = [r for r in data.finals if r.outcome is not Outcome.SKIPPED and "::" in r.test_id]
    tests = sorted(timed, key=lambda r: r.duration_s, reverse=True)[:SLOWEST]
    past = data.samples

    def earlier(test_id: str) -> list[float]:
        return [s.duration_s for s in past.get(test_id, ()) if s.run_id != data.run_id]

    rows = "".join(
        f'<tr><td class="num">{r.duration_s:.2f}s</td><td class="num">'
        f'{_median(earlier(r.test_id))}</td><td class="o-{r.outcome.value}">'
        f"{r.outcome.value}</td><td><code>{_e(clip(r.test_id, ID_CHARS))}</code></td></tr>"
        for r in tests
    )
    files: dict[str, float] = defaultdict(float)
    members: dict[str, list[str]] = defaultdict(list)
    for r in timed:
        files[file_of(r.test_id)] += r.duration_s
        members[file_of(r.test_id)].append(r.test_id)
    top = sorted(files.items(), key=lambda kv: kv[1], reverse=True)[:SLOWEST]
    file_rows = []
    for name, seconds in top:
        per_run: dict[str, float] = defaultdict(float)
        for test_id in members[name]:
            for s in past.get(test_id, ()):
                if s.run_id != data.run_id:
                    per_run[s.run_id] += s.duration_s
        file_rows.append(
            f'<tr><td class="num">{seconds:.2f}s</td><td class="num">'
            f'{_median(list(per_run.values()))}</td><td class="num">{len(members[name])}</td>'
            f"<td><code>{_e(clip(name, ID_CHARS))}</code></td></tr>"
        )
    return (
        f'<section id="slowest"><h2>Slowest</h2><p class="note">Median: of the earlier runs '
        f"in durations.json (up to 5).</p><h3>The {SLOWEST} slowest tests</h3>"
        '<table id="slowest-tests"><tr><th>this run</th><th>median</th><th>outcome</th>'
        f"<th>test</th></tr>{rows}</table><h3>The {SLOWEST} slowest files</h3>"
        '<table id="slowest-files"><tr><th>this run</th><th>median</th><th>tests</th>'
        f"<th>file</th></tr>{''.join(file_rows)}</table></section>"
    )


# -- quarantine and trend ------------------------------------------------------------


def _quarantine(rows: Sequence[QuarantineRow]) -> str:
    if not rows:
        return ""
    out = []
    for q in sorted(rows, key=lambda q: (q.kind != "flaky", q.test_id))[:PROBLEMS_SHOWN]:
        strip = "".join(f'<i class="v-{_e(v)}" title="{_e(v)}"></i>' for v in q.recent)
        out.append(
            f'<tr data-kind="{_e(q.kind)}"><td>{_e(q.kind or "watched")}</td><td>{_e(q.state)}'
            f'</td><td class="strip">{strip}</td><td><code>{_e(clip(q.test_id, ID_CHARS))}'
            f"</code></td><td>{_e(clip(q.last_failure, 300))}</td></tr>"
        )
    return (
        f'<section id="quarantine"><h2>Quarantine ({len(rows)})</h2><p class="note">flaky: it '
        "failed and passed again (quarantined tests do not gate); broken: failing since it "
        "first failed (it still gates). Strip: recent runs, oldest first.</p><table><tr>"
        "<th>kind</th><th>state</th><th>recent</th><th>test</th><th>last failure</th></tr>"
        f"{''.join(out)}</table></section>"
    )


def _trend(entries: Sequence[Entry]) -> str:
    runs = list(entries)[-TREND_RUNS:]
    if not runs:
        return ""
    w, h, pad = 1000.0, 200.0, 30.0
    step = (w - 2 * pad) / max(1, len(runs) - 1)
    longest = max((e.wall_s for e in runs), default=1.0) or 1.0

    def line(values: list[float | None], cls: str) -> str:
        points = " ".join(
            f"{pad + n * step:.1f},{h - pad - v * (h - 2 * pad):.1f}"
            for n, v in enumerate(values) if v is not None
        )  # fmt: skip
        return f'<polyline class="{cls}" points="{points}"/>' if points else ""

    series = [
        line([e.pass_rate for e in runs], "pass-rate"),
        line([e.wall_s / longest for e in runs], "wall"),
        line([e.coverage_ratio for e in runs], "coverage"),
    ]
    dots = "".join(
        f'<circle class="run" cx="{pad + n * step:.1f}" cy="{h - pad / 2}" r="3"><title>'
        f"{_e(e.run_id)}: exit {e.exit_code}, pass rate "
        f"{'–' if e.pass_rate is None else f'{e.pass_rate:.1%}'}, {e.wall_s:.1f}s"
        f"{'' if e.coverage_ratio is None else f', coverage {e.coverage_ratio:.1%}'}</title>"
        "</circle>"
        for n, e in enumerate(runs)
    )
    return (
        f'<section id="trend"><h2>Trend (last {len(runs)} runs)</h2><p class="note">'
        '<span class="k-pass-rate">pass rate</span> and <span class="k-coverage">coverage'
        f'</span> 0–100%, <span class="k-wall">wall</span> up to {longest:.1f}s.</p>'
        f'<svg id="trend-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" '
        f'width="100%"><rect class="frame" x="{pad}" y="{pad}" width="{w - 2 * pad}" '
        f'height="{h - 2 * pad}"/>{"".join(series)}{dots}</svg></section>'
    )


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1280px;padding:0 16px;color:#222}
header{border-bottom:3px solid #2a2;margin-bottom:8px}header.failed{border-color:#c22}
h1{font-size:20px}.verdict{font-size:14px;padding:2px 8px;border-radius:4px;background:#2a2;
color:#fff}header.failed .verdict{background:#c22}
#counts{list-style:none;padding:0;display:flex;gap:12px;flex-wrap:wrap}
.count{padding:2px 8px;border-radius:4px;background:#eee}.count b{font-size:18px}
dl{display:flex;gap:18px;flex-wrap:wrap}dt{color:#666;font-size:12px}dd{margin:0}
.note{color:#666;font-size:12px}.scroll{overflow-x:auto;border:1px solid #ddd}
svg text{font-size:10px;fill:#444}svg text.tick{text-anchor:middle;fill:#888}
line.tick{stroke:#eee}rect.idle{fill:#f3f3f3}rect.collect{fill:#99c}
rect.chunk{stroke:#fff;stroke-width:.3}rect.test{opacity:.85}
.mark line{stroke-width:1.5}.mark circle{stroke:none}
.o-passed{fill:#5a5}.o-flaky{fill:#e90}.o-failed,.o-error{fill:#d33}.o-hung{fill:#a3c}
.o-crashed{fill:#700}.o-skipped,.o-xfailed,.o-xpassed{fill:#aaa}.o-none{fill:#bbb}
.k-crashed line{stroke:#700}.k-crashed circle{fill:#700}.k-hung line{stroke:#a3c}
.k-hung circle{fill:#a3c}.k-killed line{stroke:#000}.k-killed circle{fill:#000}
span.k-crashed{color:#700}span.k-hung{color:#a3c}span.k-killed{color:#000}
details.problem{border-left:4px solid #d33;margin:6px 0;padding:2px 8px;background:#fafafa}
details.o-flaky{border-color:#e90}details.o-hung{border-color:#a3c}
details.o-crashed{border-color:#700}
pre{white-space:pre-wrap;word-break:break-all;background:#f4f4f4;padding:6px;margin:4px 0;
max-height:300px;overflow:auto}code{word-break:break-all}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:2px 6px;
text-align:left;vertical-align:top}td.num{text-align:right;white-space:nowrap}
td.o-failed,td.o-error,td.o-crashed,td.o-hung{color:#c22}
.strip i{display:inline-block;width:9px;height:14px;margin-right:1px;background:#ccc}
.strip i.v-pass{background:#5a5}.strip i.v-fail{background:#d33}.strip i.v-flaky{background:#e90}
polyline{fill:none;stroke-width:2}.pass-rate{stroke:#2a2}.wall{stroke:#36c}
.coverage{stroke:#e90}rect.frame{fill:none;stroke:#ddd}circle.run{fill:#999}
span.k-pass-rate{color:#2a2}span.k-wall{color:#36c}span.k-coverage{color:#e90}
"""

_SCRIPT = """(function(){
var s=document.getElementById('js-status');
window.addEventListener('error',function(e){s.dataset.state='error';s.hidden=false;
s.textContent='script error: '+e.message;});
var z=document.getElementById('zoom'),g=document.getElementById('timeline-svg');
if(z&&g){z.addEventListener('input',function(){g.setAttribute('width',(z.value*100)+'%');});}
if(s.dataset.state!=='error'){s.dataset.state='ok';}
})();"""
