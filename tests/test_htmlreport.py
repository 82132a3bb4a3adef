"""``htmlreport.render``: escaping of hostile text, the parts of the page, its size bound."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.history import Entry
from supervisor.htmlreport import (
    BUCKETS,
    CHUNK_BARS,
    PROBLEMS_SHOWN,
    QuarantineRow,
    ReportData,
    render,
)
from supervisor.learn import Sample
from supervisor.model import Outcome, TestRecord
from supervisor.timeline import ChunkSpan, Death, TestSpan, Timeline

FRAGMENTS = (
    "<script>", "</script>", "<script src=x>", "</svg>", "<svg onload=alert(1)>", '"', "'",
    "</title>", "<!--", "-->", "]]>", "&", "&lt;", "<img src=x onerror=alert(1)>", "\n", "\x00",
    "\ud800", "</textarea>", "<style>", "javascript:",
)  # fmt: skip
hostile = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), min_size=1, max_size=12
).map("".join)
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "p", "header", "h1", "h2", "h3", "code",
    "span", "ul", "li", "b", "dl", "div", "dt", "dd", "section", "input", "svg", "line", "text",
    "rect", "g", "circle", "details", "summary", "pre", "a", "table", "tr", "th", "td", "i",
    "polyline", "script",
}  # fmt: skip


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.tags: list[str] = []
        self.attrs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.append(dict(attrs))


def _record(test_id: str, outcome: Outcome, *, message: str = "", seconds: float = 0.1,
            bundle: str | None = None, attempt: int = 1) -> TestRecord:  # fmt: skip
    return TestRecord(run_id="r1", test_id=test_id, outcome=outcome, duration_s=seconds, tier=1,
                      message=message, bundle=bundle, attempt=attempt)  # fmt: skip


def _data(text: str) -> ReportData:
    """A small run where ``text`` is in every place test-controlled text can go."""
    failing = _record(f"t.py::{text}", Outcome.FAILED, message=text, bundle="failures/x.txt")
    spans = (
        TestSpan(worker=0, chunk=0, start_s=0.1, end_s=0.5, outcome="failed", attempt=1,
                 duration_s=0.4, test_id=failing.test_id),
        TestSpan(worker=1, chunk=1, start_s=0.2, end_s=0.3, outcome="crashed", attempt=1,
                 duration_s=0.1, test_id=text),
    )  # fmt: skip
    timeline = Timeline(
        run_id=text, started="2026-01-01T00:00:00.000Z", workers=2, collected_s=0.05,
        ended_s=1.0, tests=spans,
        chunks=(ChunkSpan(worker=0, chunk=0, start_s=0.1, end_s=0.5, tests=1),
                ChunkSpan(worker=1, chunk=1, start_s=0.2, end_s=0.3, tests=1)),
        deaths=(Death(worker=1, chunk=1, at_s=0.3, test_id=text, reason=text),),
    )  # fmt: skip
    return ReportData(
        run_id=text, started=text, wall_s=1.0, exit_code=1, jobs=2,
        finals=(failing, _record(text, Outcome.CRASHED, message=text),
                _record("t.py::ok", Outcome.PASSED)),
        timeline=timeline, diagnoses={"failures/x.txt": text}, bundle_prefix="",
        quarantine=(QuarantineRow(test_id=text, kind="flaky", state="quarantined",
                                  recent=("pass", "fail", text), last_failure=text),),
        samples={failing.test_id: (Sample(ts="", run_id="r0", outcome="failed", duration_s=0.2),)},
        runs=(Entry(run_id=text, started="", ended="2026-01-01T00:00:00Z", wall_s=1.0,
                    exit_code=1, pass_rate=0.5),),
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(hostile)
def test_hostile_text_never_becomes_markup(text: str) -> None:
    page = render(_data(text))
    # The page's one script, and no other: an input `<script` is always escaped.
    assert len(re.findall("<script", page, flags=re.IGNORECASE)) == 1
    assert page.count("</svg>") == 2  # the timeline and the trend, nothing closed early
    parser = _Tags()
    parser.feed(page)
    assert set(parser.tags) <= ALLOWED_TAGS
    # No attribute from input: no event handler, no src, nothing unexpected.
    names = {name for attrs in parser.attrs for name in attrs}
    assert not {n for n in names if n.startswith("on")}
    assert "src" not in names
    page.encode("utf-8")  # lone surrogates were escaped


def test_the_page_has_its_parts() -> None:
    page = render(_data("ok"))
    assert 'data-outcome="failed"' in page and 'id="exit-code">1<' in page
    assert page.count('class="lane"') == 2
    assert page.count('class="bar chunk') == 2
    assert page.count('class="bar test') == 2
    assert 'class="mark k-crashed"' in page
    assert 'id="slowest-tests"' in page and 'id="trend-svg"' in page
    assert 'href="failures/x.txt"' in page
    # The script is allowed by its hash, nothing else is.
    assert "script-src 'sha256-" in page and "default-src 'none'" in page
    assert "0.20s" in page  # the earlier run's duration is the median


def test_deaths_are_told_apart() -> None:
    data = _data("x")
    hung = Death(worker=0, chunk=0, at_s=0.5, test_id="a", reason="SIGTERM (mtest killed it: hung)")
    asked = Death(worker=0, chunk=0, at_s=0.6, test_id="b", reason="SIGKILL (mtest killed it: rss)")
    timeline = Timeline(workers=1, ended_s=1.0, deaths=(hung, asked))
    page = render(ReportData(run_id="r", started="", wall_s=1, exit_code=1, finals=data.finals,
                             timeline=timeline))  # fmt: skip
    marks = re.findall(r'class="mark k-(\w+)"', page)
    assert marks == ["hung", "killed"]


def _huge(tests: int, *, jobs: int = 8, per_chunk: int = 25, failing_every: int = 50) -> ReportData:
    records, spans, chunks = [], [], []
    t = [0.0] * jobs
    for c in range(tests // per_chunk):
        w = c % jobs
        start = t[w]
        for k in range(per_chunk):
            n = c * per_chunk + k
            outcome = Outcome.FAILED if n % failing_every == 0 else Outcome.PASSED
            test_id = f"tests/test_{n // 100:04d}.py::test_case_{n}[param-{n % 7}]"
            bundle = f"failures/b{n}.txt" if outcome.gating else None
            records.append(_record(test_id, outcome, message="assert x == y" * 20, seconds=0.01,
                                   bundle=bundle))  # fmt: skip
            spans.append(TestSpan(worker=w, chunk=c, start_s=t[w], end_s=t[w] + 0.01,
                                  outcome=outcome.value, attempt=1, duration_s=0.01,
                                  test_id=test_id))  # fmt: skip
            t[w] += 0.01
        chunks.append(ChunkSpan(worker=w, chunk=c, start_s=start, end_s=t[w], tests=per_chunk))
    timeline = Timeline(workers=jobs, ended_s=max(t), tests=tuple(spans), chunks=tuple(chunks))
    diagnoses = {r.bundle: "Traceback\n" + "  frame\n" * 40 for r in records if r.bundle}
    return ReportData(run_id="big", started="", wall_s=max(t), exit_code=1, finals=records,
                      timeline=timeline, diagnoses=diagnoses, jobs=jobs)  # fmt: skip


def test_a_huge_run_stays_bounded_and_aggregated() -> None:
    data = _huge(100_000, per_chunk=20)
    page = render(data)
    assert len(page.encode()) < 5 * 1024 * 1024
    assert len(data.timeline.chunks) > CHUNK_BARS
    assert 'class="bar chunk' not in page and 'class="bar test' not in page
    assert page.count('class="bar agg') <= BUCKETS * 8
    assert page.count('<details class="problem') == PROBLEMS_SHOWN
    assert "… and 1700 more" in page


def test_a_middling_run_keeps_a_bar_per_chunk() -> None:
    data = _huge(2_000, per_chunk=10)
    page = render(data)
    assert page.count('class="bar chunk') == len(data.timeline.chunks) == 200
    assert page.count('class="bar test') == 2_000
