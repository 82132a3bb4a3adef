"""Soak: ``mtest service`` for many cycles — does anything leak between cycles?

Generates a 50-test suite (five modules; one test crashes its worker with
``os.abort()`` on every 10th cycle) and runs

    python -m supervisor service --every 0.2s --cycles 300 --metrics-port 0 --metrics-file m.prom

in it. The service is sampled from inside the suite: the first test of every
cycle reads its worker's parent — the service — from ``/proc/PID/status``
(``VmRSS``, ``Threads``) and ``/proc/PID/fd``, so every sample is taken at
the same point of a cycle, and cycle 20 is compared with cycle 300. While
it runs, ``/metrics`` is scraped every 10 cycles. After it exits: the
history holds one line per cycle (every 10th with its crash), no process of
any cycle is alive and no zombie is left, the metrics file adds up.

    python bench/soak.py [--cycles 300] [--every 0.2s] [--work DIR] [--out PATH]

Results: ``bench/results/soak-<timestamp>.json`` and ``.md``; the exit code
is 1 when a check failed (RSS or descriptors at the last cycle more than 10 %
above cycle 20, a cycle missing from the history, a process left behind).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

TESTS_PER_MODULE = 10
MODULES = ("a", "b", "c", "d", "e")
CRASH_EVERY = 10
COMPARE_AT = 20
TOLERANCE = 0.10
HANG_GUARD_S = 4 * 3600.0

SAMPLER = '''\
import os
from pathlib import Path


def test_sample_the_service():
    """Append this cycle's view of the service (the worker's parent) to samples.jsonl."""
    service = os.getppid()
    status = Path(f"/proc/{service}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    fds = len(os.listdir(f"/proc/{service}/fd"))
    line = {
        "run_id": os.environ["MTEST_RUN_ID"],
        "pid": service,
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": fds,
    }
    with open(os.environ["SOAK_SAMPLES"], "a") as out:
        out.write(__import__("json").dumps(line) + "\\n")
'''
CRASHER = """\
import os
import resource
from pathlib import Path


def test_crashes_every_{every}th_cycle():
    counter = Path(os.environ["SOAK_COUNTER"])
    cycle = int(counter.read_text() or "0") + 1 if counter.exists() else 1
    counter.write_text(str(cycle))
    if cycle % {every} == 0:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file per crash
        os.abort()
"""


def generate(root: Path) -> int:
    """The suite: 50 tests, the sampler first and the crasher last; returns the count."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    count = 0
    for module in MODULES:
        parts = []
        plain = TESTS_PER_MODULE - (module in ("a", "e"))
        if module == "a":
            parts.append(SAMPLER)
            count += 1
        for n in range(plain):
            parts.append(f"def test_{module}_{n}():\n    assert sum(range({n + 10})) >= 0\n")
            count += 1
        if module == "e":
            parts.append(CRASHER.format(every=CRASH_EVERY))
            count += 1
        (root / f"test_{module}.py").write_text("\n\n".join(parts))
    return count


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines()[: text.count("\n")] if line.strip()]


def live_processes(run_ids: set[str], service: int) -> list[tuple[int, str]]:
    """Processes of any cycle (``MTEST_RUN_ID``) or below the service, with their state."""
    found = []
    needles = {f"MTEST_RUN_ID={r}".encode() for r in run_ids}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
            environ = set((entry / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        state, ppid = stat[0], int(stat[1])
        if needles & environ or ppid == service:
            found.append((int(entry.name), state))
    return found


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=60) as answer:
        text = answer.read().decode()
    return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def run(cycles: int, every: str, work: Path) -> dict[str, Any]:
    suite = work / "suite"
    tests = generate(suite)
    samples, counter = work / "samples.jsonl", work / "counter"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MTEST_", "PYTEST_"))}
    env.update(SOAK_SAMPLES=str(samples), SOAK_COUNTER=str(counter))
    args = [
        sys.executable, "-m", "supervisor", "service", "--every", every, "--cycles", str(cycles),
        "--metrics-port", "0", "--metrics-file", "m.prom", "-q",
    ]  # fmt: skip
    load_before, began = loadavg(), time.monotonic()
    proc = subprocess.Popen(
        args, cwd=suite, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    match = re.search(r"metrics on (http://\S+/metrics)", first)
    if not match:
        proc.kill()
        raise SystemExit(f"no metrics address: {first!r} {proc.stderr.read()}")
    url = match.group(1)
    tail: list[str] = []
    readers = [
        threading.Thread(target=lambda s=s: tail.extend(s), daemon=True)
        for s in (proc.stdout, proc.stderr)
    ]
    for reader in readers:
        reader.start()
    history = suite / ".gates" / "history.jsonl"
    scrapes, loads, seen = [], [], 0
    while proc.poll() is None and time.monotonic() - began < HANG_GUARD_S:
        done = len(lines(history))
        if done >= seen + 10:
            seen = done - done % 10
            loads.append((done, loadavg()))
            try:
                scrapes.append((done, scrape(url)))
            except OSError as exc:  # the service may have just ended
                scrapes.append((done, {"error": str(exc)}))  # type: ignore[dict-item]
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    code = proc.wait()
    for reader in readers:
        reader.join(timeout=10)
    wall = time.monotonic() - began
    load_after = loadavg()
    time.sleep(1.0)  # anything left behind would show now
    history_lines = lines(history)
    run_ids = {line["run_id"] for line in history_lines}
    left = live_processes(run_ids, proc.pid)
    by_run = {s["run_id"]: s for s in lines(samples)}
    order = [line["run_id"] for line in history_lines]
    sampled = [by_run.get(r) for r in order]
    prom = parse_metrics((suite / "m.prom").read_text()) if (suite / "m.prom").exists() else {}
    return {
        "cycles": cycles, "every": every, "tests": tests, "exit_code": code, "wall_s": wall,
        "load_before": load_before, "load_after": load_after, "loads": loads,
        "history": history_lines, "samples": sampled, "left_behind": left,
        "scrapes": scrapes, "metrics_file": prom, "output_tail": tail[-20:],
    }  # fmt: skip


def checks(data: dict[str, Any]) -> list[tuple[str, bool, str]]:
    cycles, out = data["cycles"], []
    history, samples = data["history"], data["samples"]
    out.append(("the service exited 0", data["exit_code"] == 0, str(data["exit_code"])))
    ids = len({h["run_id"] for h in history})
    out.append(("one history line per cycle", len(history) == cycles == ids,
                f"{len(history)} lines, {ids} run ids"))  # fmt: skip
    crashes = [i + 1 for i, h in enumerate(history) if h.get("counts", {}).get("crashed")]
    expected = list(range(CRASH_EVERY, cycles + 1, CRASH_EVERY))
    out.append(("every 10th cycle has its crash, no other", crashes == expected,
                f"{len(crashes)} cycles with a crash"))  # fmt: skip
    clean = all(
        h.get("counts") == ({"passed": data["tests"] - 1, "crashed": 1}
                            if (i + 1) % CRASH_EVERY == 0 else {"passed": data["tests"]})
        for i, h in enumerate(history)
    )  # fmt: skip
    out.append(("every cycle accounts for all 50 tests", clean, ""))
    out.append(("no process left, no zombie", not data["left_behind"], str(data["left_behind"])))
    if len(samples) >= cycles and samples[COMPARE_AT - 1] and samples[cycles - 1]:
        a, b = samples[COMPARE_AT - 1], samples[cycles - 1]
        for key in ("rss_kb", "fds", "threads"):
            ok = b[key] <= a[key] * (1 + TOLERANCE)
            label = f"{key} at cycle {cycles} within 10 % of cycle {COMPARE_AT}"
            out.append((label, ok, f"{a[key]} → {b[key]}"))
    else:
        out.append(("samples at cycles 20 and 300", False, "missing"))
    prom = data["metrics_file"]
    passed = prom.get('mtest_runs_total{result="passed"}')
    failed = prom.get('mtest_runs_total{result="failed"}')
    out.append(("metrics file: runs by result add up",
                passed == cycles - len(expected) and failed == len(expected),
                f"passed {passed}, failed {failed}"))  # fmt: skip
    out.append(("no service fault", prom.get("mtest_service_faults_total") == 0,
                str(prom.get("mtest_service_faults_total"))))  # fmt: skip
    return out


def report(data: dict[str, Any], results: list[tuple[str, bool, str]]) -> str:
    samples = [s for s in data["samples"] if s]
    rows = ["| cycle | RSS (KiB) | open fds | threads |", "|---:|---:|---:|---:|"]
    for cycle in sorted({1, 10, COMPARE_AT, 50, 100, 150, 200, 250, data["cycles"]}):
        if cycle <= len(data["samples"]) and data["samples"][cycle - 1]:
            s = data["samples"][cycle - 1]
            rows.append(f"| {cycle} | {s['rss_kb']} | {s['fds']} | {s['threads']} |")
    rss = [s["rss_kb"] for s in samples]
    walls = sorted(h.get("wall_s", 0.0) for h in data["history"])
    prom = data["metrics_file"]
    lines = [
        f"# Soak: {data['cycles']} cycles of a {data['tests']}-test suite "
        f"at --every {data['every']}",
        "",
        f"- wall {data['wall_s']:.0f} s; cycle wall median "
        f"{walls[len(walls) // 2] if walls else 0:.2f} s",
        f"- /proc/loadavg before: `{data['load_before']}`; after: `{data['load_after']}`",
        f"- RSS over all cycles: min {min(rss, default=0)} KiB, max {max(rss, default=0)} KiB",
        f"- starts skipped (the cycles outlast --every): {prom.get('mtest_cycles_skipped_total')}",
        "",
        *rows,
        "",
        "| check | result | detail |",
        "|---|---|---|",
        *(f"| {name} | {'ok' if ok else 'FAILED'} | {detail} |" for name, ok, detail in results),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--every", default="0.2s")
    parser.add_argument("--work", type=Path, help="keep the suite and its .gates here")
    parser.add_argument("--out", type=Path, help="results path without suffix")
    ns = parser.parse_args()
    if ns.cycles < COMPARE_AT:
        parser.error(f"--cycles must be at least {COMPARE_AT}")
    with tempfile.TemporaryDirectory(prefix="mtest-soak-") as tmp:
        work = ns.work or Path(tmp)
        data = run(ns.cycles, ns.every, work)
    results = checks(data)
    text = report(data, results)
    out = ns.out or Path(__file__).parent / "results" / time.strftime("soak-%Y%m%dT%H%M%S")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**data, "checks": results}, indent=1))
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
