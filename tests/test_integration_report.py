"""The HTML report, the trace and ``mtest slowest`` of a real mixed run.

One run of a suite that passes, fails, crashes, hangs, flakes (``--retries``),
holds a quarantined test and hostile ids (``<script>``, quotes, ``</svg>``),
on two workers. The report is opened in headless Chromium and checked from
the DOM it built; the trace is checked against ``run.jsonl``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import finals, records, run_mtest, write_suite

SUITE = {
    "test_mix.py": """
import os
import time
from pathlib import Path

import pytest

HOSTILE = [
    "<script>document.title='pwned'</script>",
    "<img src=x onerror=\\"document.body.appendChild(document.createElement('hr')).id='pwned'\\">",
    "a\\"b'c</svg><script>document.title='pwned'</script>",
]


def test_pass():
    time.sleep(0.05)


def test_fail():
    assert 1 == 2, "<script>document.title='pwned'</script> and </svg>"


def test_crash():
    os.abort()


@pytest.mark.parametrize("x", HOSTILE)
def test_hostile(x):
    pass


@pytest.mark.parametrize("x", HOSTILE[:1])
def test_hostile_fails(x):
    raise ValueError(x)


def test_flaky():
    marker = Path(__file__).parent / "flaky-marker"
    if not marker.exists():
        marker.write_text("failed once")
        raise AssertionError("fails the first time only")


def test_quarantined():
    assert False, "known broken, quarantined"
""",
    "test_slow.py": """
import time


def test_hang():
    time.sleep(600)


def test_slow():
    time.sleep(0.3)
""",
}
QUARANTINED = "test_mix.py::test_quarantined"
CONSOLE_TROUBLE = re.compile(r"Uncaught|Refused to|:CONSOLE[:(]")
"""What Chromium logs (``--enable-logging=stderr``) for a script error, a blocked
script or resource, or any console message."""


def _quarantine_file(gates: Path) -> None:
    gates.mkdir(parents=True, exist_ok=True)
    entry = {
        "test_id": QUARANTINED, "state": "quarantined", "recent": ["fail", "pass", "fail"],
        "consecutive_passes": 0, "since": "2026-01-01T00:00:00.000Z",
        "last_failure": "known broken", "failure_runs": ["r1", "r2"], "absent_runs": 0,
    }  # fmt: skip
    (gates / "quarantine.json").write_text(json.dumps({"version": 1, "entries": [entry]}))


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = write_suite(tmp_path_factory.mktemp("report"), SUITE)
    _quarantine_file(root / ".gates")
    done = run_mtest(
        ["-j", "2", "--timeout", "3", "--kill-grace", "1", "--retries", "1",
         "--trace", "trace.json", "--html", "out/report.html", "--durations", "3"],
        root, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    return root, done.stdout


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def _dump_dom(page: Path) -> tuple[str, str]:
    """The DOM Chromium built (after the page's script ran) and its log."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, errors="replace", timeout=180, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


class _Dom(HTMLParser):
    """The elements of the dumped DOM: tag, attributes and their own text (enough to check)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        self._open: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        self.texts.append("")
        if tag not in ("meta", "br", "hr", "img", "input", "link"):
            self._open.append(len(self.elements) - 1)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        self.texts.append("")

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self.elements[self._open.pop()][0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._open:
            self.texts[self._open[-1]] += data

    @property
    def title(self) -> str:
        return next(self.texts[n] for n, (tag, _) in enumerate(self.elements) if tag == "title")

    def next(self, tag: str, after: int) -> int:
        return next(n for n in range(after, len(self.elements)) if self.elements[n][0] == tag)

    def having(self, tag: str, cls: str | None = None, **attrs: str) -> list[int]:
        return [
            n for n, (t, a) in enumerate(self.elements)
            if t == tag and (cls is None or cls in a.get("class", "").split())
            and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]  # fmt: skip


def _timeline_rows(root: Path) -> tuple[dict[str, Any], list[list[Any]]]:
    lines = (root / ".gates" / "last-run" / "timeline.jsonl").read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def test_the_run_recorded_every_kind_of_outcome(mixed_run: tuple[Path, str]) -> None:
    root, stdout = mixed_run
    outcomes = {test_id: r["outcome"] for test_id, r in finals(root / ".gates").items()}
    assert outcomes["test_mix.py::test_crash"] == "crashed"
    assert outcomes["test_slow.py::test_hang"] == "hung"
    assert outcomes["test_mix.py::test_flaky"] == "flaky"
    assert outcomes["test_mix.py::test_fail"] == "failed"
    assert finals(root / ".gates")[QUARANTINED]["quarantined"] is True
    # --durations 3: pytest's block, the slowest first.
    block = stdout[stdout.index("slowest 3 durations") :].splitlines()
    assert "test_slow.py::test_hang" in block[1]
    assert block[1].split()[1] == "hung"


def test_the_report_renders_in_chromium(mixed_run: tuple[Path, str]) -> None:
    root, _ = mixed_run
    page = root / ".gates" / "last-run" / "report.html"
    dom_text, log = _dump_dom(page)
    dom = _Dom()
    dom.feed(dom_text)
    run = records(root / ".gates")
    final = finals(root / ".gates")
    # The counts, per outcome, as the records say.
    expected = Counter(r["outcome"] for r in final.values())
    # Each count is the <b class="n"> right inside its <li>.
    shown = {
        dom.elements[n][1]["data-outcome"]: int(dom.texts[n + 1]) for n in dom.having("li", "count")
    }
    assert shown == dict(expected)
    # One lane per worker slot (-j 2), one bar per chunk the pool started.
    header, rows = _timeline_rows(root)
    assert header["workers"] == 2
    assert sorted(dom.elements[n][1]["data-worker"] for n in dom.having("g", "lane")) == ["0", "1"]
    chunks = [r for r in rows if r[0] == "chunk"]
    assert len(dom.having("rect", "chunk")) == len(chunks) >= 3
    # The crash and the hang are marked on their worker's lane.
    assert dom.having("g", "k-crashed") and dom.having("g", "k-hung")
    # Nothing from a test id or message ran: the title is the page's, no element it
    # would have added exists, and the page's own script ran without an error.
    assert dom.title == f"mtest run {run[0]['run_id']}"
    assert "pwned" not in dom.title
    assert not [e for e in dom.elements if e[1].get("id") == "pwned"]
    status = dom.elements[dom.having("p", id="js-status")[0]][1]
    assert status["data-state"] == "ok"
    assert not CONSOLE_TROUBLE.search(log), log[-3000:]
    # The hostile ids are shown as text, whole.
    assert "<script>document.title='pwned'</script>" in "".join(dom.texts)
    # The problems list the failures with a link to their bundle, which exists.
    links = [dom.elements[n][1]["href"] for n in dom.having("a", "bundle")]
    assert links and all((page.parent / link).is_file() for link in links)
    assert dom.having("details", "problem", data_outcome="crashed")
    rows_of = {dom.texts[dom.next("code", n)]: dom.texts[n + 1 : n + 3]
               for n in dom.having("tr", data_kind="flaky")}  # fmt: skip
    assert rows_of[QUARANTINED] == ["flaky", "quarantined"]


def test_html_elsewhere_links_back_to_the_bundles(mixed_run: tuple[Path, str]) -> None:
    root, _ = mixed_run
    page = root / "out" / "report.html"
    dom = _Dom()
    dom.feed(page.read_text(encoding="utf-8"))
    links = [dom.elements[n][1]["href"] for n in dom.having("a", "bundle")]
    assert links and all((page.parent / link).resolve().is_file() for link in links)


def test_the_trace_follows_the_trace_event_format(mixed_run: tuple[Path, str]) -> None:
    root, _ = mixed_run
    trace = json.loads((root / "trace.json").read_text())
    events = trace["traceEvents"]
    assert all({"ph", "pid", "tid", "name"} <= e.keys() for e in events)
    assert all("ts" in e for e in events if e["ph"] != "M")
    threads = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert {threads[t] for t in threads if t != 0} == {"worker 0", "worker 1"}
    assert {e["pid"] for e in events} == {1}
    slices = [e for e in events if e["ph"] == "X"]
    assert any(e["cat"] == "collection" for e in slices)
    # One complete event per test attempt, as long as run.jsonl says (to the µs).
    tests = [e for e in slices if e["cat"].startswith("test,")]
    attempts = records(root / ".gates")
    ran = [r for r in attempts if "::" in r["test_id"]]
    assert len(tests) == len(ran)
    by_attempt = {(e["name"], e["args"]["attempt"]): e for e in tests}
    for record in ran:
        event = by_attempt[(record["test_id"], record["attempt"])]
        assert abs(event["dur"] - record["duration_s"] * 1e6) <= 1
        assert event["tid"] in (1, 2)
        assert event["args"]["outcome"] == record["outcome"]
    # A chunk encloses its tests (viewers nest them), and deaths are instants.
    chunks = [e for e in slices if e["cat"] == "chunk"]
    for t in tests:
        assert any(
            c["tid"] == t["tid"] and c["ts"] <= t["ts"] and t["ts"] + t["dur"] <= c["ts"] + c["dur"]
            for c in chunks
        ), t["name"]
    instants = [e for e in events if e["ph"] == "i"]
    assert {e["name"] for e in instants} == {"crashed", "killed"}
    assert all(e["s"] == "t" for e in instants)


def test_slowest_reads_the_last_run(mixed_run: tuple[Path, str]) -> None:
    root, _ = mixed_run
    done = run_mtest(["slowest", "2", "--json"], root)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["test_id"] for r in rows] == ["test_slow.py::test_hang", "test_slow.py::test_slow"]
    assert rows[0]["duration_s"] >= rows[1]["duration_s"]
    text = run_mtest(["slowest"], root)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert lines[0].startswith("the ") and "slowest of" in lines[0]
    assert "test_slow.py::test_hang" in lines[1]


def test_report_names_the_html_page(mixed_run: tuple[Path, str]) -> None:
    root, _ = mixed_run
    done = run_mtest(["--report"], root)
    assert done.returncode == 1
    assert f"the HTML report is {root / '.gates' / 'last-run' / 'report.html'}" in done.stdout


def test_slowest_without_a_run_says_so(tmp_path: Path) -> None:
    done = run_mtest(["slowest"], write_suite(tmp_path, {}))
    assert done.returncode == 4
    assert "no run to read" in done.stderr


def test_chromium_check_is_not_vacuous(tmp_path: Path) -> None:
    """The DOM check sees a script that does run, and the log check sees its error."""
    page = tmp_path / "p.html"
    page.write_text("<title>before</title><script>document.title='after';undefinedFn()</script>")
    dom_text, log = _dump_dom(page)
    dom = _Dom()
    dom.feed(dom_text)
    assert dom.title == "after"
    assert CONSOLE_TROUBLE.search(log)


def test_a_resume_with_nothing_left_writes_its_report(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_ok.py": "def test_one():\n    pass\n"})
    gates = project / ".gates"
    assert run_mtest([], project).returncode == 0
    # Killed after its last record, before its end: no report yet, state incomplete.
    (gates / "last-run" / "report.html").unlink()
    (gates / "last-run" / "timeline.jsonl").unlink()
    state = json.loads((gates / "state.json").read_text())
    state.update(complete=False, outstanding=[], exit_code=None)
    (gates / "state.json").write_text(json.dumps(state))

    resumed = run_mtest(["--resume"], project)

    assert resumed.returncode == 0, resumed.stderr
    assert "nothing left to run" in resumed.stdout
    page = (gates / "last-run" / "report.html").read_text(encoding="utf-8")
    assert 'data-outcome="passed"><b class="n">1</b>' in page
    header, rows = _timeline_rows(project)
    assert header["run_id"] == state["run_id"] and rows == []
