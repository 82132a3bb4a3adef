"""Dogfood check: plain pytest and mtest must agree on every test and on the exit code.

Usage: compare.py PYTEST_JUNIT RUN_JSONL PYTEST_EXIT MTEST_EXIT
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from supervisor.junit import junit_key

# How mtest's outcomes read in pytest's JUnit XML.
AS_JUNIT = {
    "passed": "passed", "xpassed": "passed", "flaky": "passed",
    "failed": "failed", "hung": "failed", "crashed": "failed",
    "error": "error", "skipped": "skipped", "xfailed": "skipped",
}  # fmt: skip


def junit_outcomes(path: Path) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        key = (case.get("classname") or "", case.get("name") or "")
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                break
        if found.get(key) in ("failed", "error"):
            continue  # a call failure plus a teardown error: the failure stands
        found[key] = outcome
    return found


def main() -> int:
    junit_path, records_path, pytest_exit, mtest_exit = sys.argv[1:5]
    expected = junit_outcomes(Path(junit_path))
    finals: dict[str, str] = {}
    for line in Path(records_path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        finals[record["test_id"]] = record["outcome"]
    got = {junit_key(test_id): AS_JUNIT[outcome] for test_id, outcome in finals.items()}
    problems = [f"exit codes differ: pytest {pytest_exit}, mtest {mtest_exit}"]
    if pytest_exit == mtest_exit:
        problems.clear()
    for key in sorted(set(expected) | set(got)):
        if expected.get(key) != got.get(key):
            problems.append(f"{'::'.join(key)}: pytest {expected.get(key)}, mtest {got.get(key)}")
    for problem in problems:
        print(f"dogfood: {problem}", file=sys.stderr)
    print(f"dogfood: {len(got)} tests compared, {len(problems)} disagreement(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
