"""The HTML report at scale: render a synthetic 100k-test run, load it in Chromium.

    python bench/htmlreport.py [--tests 100000] [--rounds 5] [--jobs 8] [--out DIR]

Builds the records, the timeline (what ``timeline.Tracker`` would have
produced, fed through the tracker itself so its cost is measured too), failure
tracebacks, a quarantine and a history of 200 runs, as a real run of that
size would have them: 2% failing, 0.1% crashed, 0.05% hung, chunks of 20
tests on ``--jobs`` workers. Then, per round: the tracker's events, the
``timeline.jsonl`` lines, ``htmlreport.render`` and ``tracefile.trace_json``
(times in seconds), the page's size, and the wall time of
``chromium --headless --dump-dom`` on it (a cold browser each time: process
start, parse, layout, script; what "opens in Chromium" costs a user) and, for
comparison, of ``--dump-dom`` on an empty page (the browser's own start-up).
Prints one JSON object with every sample, the medians and the load average.
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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from supervisor import htmlreport, tracefile
from supervisor.history import Entry
from supervisor.learn import Sample
from supervisor.model import Outcome, TestRecord
from supervisor.result import Kind, RunEvent
from supervisor.timeline import Timeline, Tracker

PER_CHUNK = 20


def _outcome(n: int) -> Outcome:
    if n % 2000 == 7:
        return Outcome.HUNG
    if n % 1000 == 3:
        return Outcome.CRASHED
    if n % 50 == 0:
        return Outcome.FAILED
    return Outcome.SKIPPED if n % 97 == 0 else Outcome.PASSED


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def synthetic(tests: int, jobs: int) -> tuple[list[TestRecord], Timeline, float]:
    """Records and the timeline of a run of ``tests`` tests, through a real ``Tracker``;
    also the seconds the tracker took for its events."""
    clock = _Clock()
    tracker = Tracker(run_id="bench", started="2026-01-01T00:00:00.000Z", origin=0.0,
                      workers=jobs, clock=clock)  # fmt: skip
    free = [0.5] * jobs
    records: list[TestRecord] = []
    spent = 0.0
    for c in range(tests // PER_CHUNK):
        w = min(range(jobs), key=free.__getitem__)
        ids = [f"tests/pkg_{n // 1000:03d}/test_mod_{n // 100:04d}.py::TestCase::test_{n}[p{n % 9}]"
               for n in range(c * PER_CHUNK, (c + 1) * PER_CHUNK)]  # fmt: skip
        events: list[tuple[float, RunEvent]] = [
            (
                free[w],
                RunEvent(
                    kind=Kind.CHUNK_STARTED,
                    run_id="bench",
                    ts="",
                    worker=w,
                    chunk=c,
                    tests=tuple(ids),
                ),
            )
        ]
        t = free[w] + 0.2
        for k, test_id in enumerate(ids):
            n = c * PER_CHUNK + k
            outcome = _outcome(n)
            seconds = 3.0 if outcome is Outcome.HUNG else 0.002 + (n % 13) * 0.004
            record = TestRecord(
                run_id="bench", test_id=test_id, outcome=outcome, duration_s=seconds, tier=1,
                chunk=c, message="assert result == expected\n  where result = 41" * 3
                if outcome.gating else "",
                bundle=f"failures/b{n}.txt" if outcome.gating else None,
            )  # fmt: skip
            records.append(record)
            events.append((t, RunEvent(kind=Kind.TEST_STARTED, run_id="bench", ts="", worker=w,
                                       chunk=c, test_id=test_id)))  # fmt: skip
            t += seconds
            if outcome in (Outcome.HUNG, Outcome.CRASHED):
                events.append((t, RunEvent(kind=Kind.WORKER_DIED, run_id="bench", ts="",
                                           worker=w, chunk=c, test_id=test_id,
                                           reason="was killed by signal 11")))  # fmt: skip
            events.append((t, RunEvent(kind=Kind.TEST_FINISHED, run_id="bench", ts="",
                                       test_id=test_id, record=record)))  # fmt: skip
        free[w] = t
        began = time.perf_counter()
        for at, event in events:
            clock.now = at
            tracker(event)
        spent += time.perf_counter() - began
    clock.now = max(free)
    began = time.perf_counter()
    timeline = tracker.timeline()
    return records, timeline, spent + time.perf_counter() - began


def report_data(records: list[TestRecord], timeline: Timeline, jobs: int) -> htmlreport.ReportData:
    diagnoses = {
        r.bundle: "Traceback (most recent call last):\n" + '  File "x.py", line 1, in f\n' * 30
        for r in records if r.bundle
    }  # fmt: skip
    samples = {
        r.test_id: tuple(Sample(ts="", run_id=f"old{k}", outcome="passed",
                                duration_s=r.duration_s * (0.8 + 0.1 * k)) for k in range(5))
        for r in records
    }  # fmt: skip
    quarantine = [
        htmlreport.QuarantineRow(
            test_id=r.test_id,
            kind="flaky" if n % 2 else "broken",
            state="quarantined" if n % 2 else "watched",
            recent=("pass", "fail", "flaky", "pass", "fail"),
            last_failure=r.message,
        )
        for n, r in enumerate(r for r in records if r.outcome is Outcome.FAILED)
        if n < 200
    ]
    runs = [
        Entry(run_id=f"run{n}", started="", ended="2026-01-01T00:00:00Z", wall_s=300 + n % 40,
              exit_code=n % 3 and 1, pass_rate=0.97 + (n % 5) / 200, coverage_ratio=0.8)
        for n in range(200)
    ]  # fmt: skip
    return htmlreport.ReportData(
        run_id="bench", started="2026-01-01T00:00:00.000Z", wall_s=timeline.ended_s,
        exit_code=1, finals=records, attempts=len(records), jobs=jobs, coverage="80.00",
        timeline=timeline, diagnoses=diagnoses, quarantine=quarantine, samples=samples,
        runs=runs,
    )  # fmt: skip


def chromium_load(page: Path, *, report: bool = True) -> float:
    """Wall seconds of a cold headless Chromium dumping the page's DOM."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        began = time.perf_counter()
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--no-first-run", f"--user-data-dir={profile}",
             "--dump-dom", page.as_uri()],
            capture_output=True, text=True, errors="replace", check=False, timeout=300,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        took = time.perf_counter() - began
    if done.returncode != 0 or (report and 'data-state="ok"' not in done.stdout):
        raise SystemExit(f"chromium failed on {page}: {done.stderr[-500:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mtest-htmlbench-"))
    out.mkdir(parents=True, exist_ok=True)
    empty = out / "empty.html"
    empty.write_text("<!DOCTYPE html><title>empty</title>")
    load_before = os.getloadavg()[0]
    samples: dict[str, list[float]] = {
        k: []
        for k in (
            "tracker_s",
            "timeline_lines_s",
            "render_s",
            "trace_s",
            "chromium_s",
            "chromium_empty_s",
        )
    }
    size = trace_size = lines_size = 0
    for _ in range(args.rounds):
        records, timeline, tracked = synthetic(args.tests, args.jobs)
        samples["tracker_s"].append(tracked)
        began = time.perf_counter()
        lines = "".join(f"{line}\n" for line in timeline.to_lines())
        samples["timeline_lines_s"].append(time.perf_counter() - began)
        data = report_data(records, timeline, args.jobs)
        began = time.perf_counter()
        page = htmlreport.render(data)
        samples["render_s"].append(time.perf_counter() - began)
        began = time.perf_counter()
        trace = json.dumps(tracefile.trace_json(timeline))
        samples["trace_s"].append(time.perf_counter() - began)
        path = out / "report.html"
        path.write_text(page, encoding="utf-8")
        size, trace_size, lines_size = len(page.encode()), len(trace), len(lines)
        samples["chromium_s"].append(chromium_load(path))
        samples["chromium_empty_s"].append(chromium_load(empty, report=False))
    result: dict[str, Any] = {
        "tests": args.tests, "jobs": args.jobs, "rounds": args.rounds,
        "chunks": args.tests // PER_CHUNK, "html_bytes": size, "trace_bytes": trace_size,
        "timeline_bytes": lines_size, "cpus": os.cpu_count(),
        "load_before": load_before, "load_after": os.getloadavg()[0],
        "median": {k: round(statistics.median(v), 3) for k, v in samples.items()},
        "samples": {k: [round(x, 3) for x in v] for k, v in samples.items()},
        "page": str(out / "report.html"),
    }  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
