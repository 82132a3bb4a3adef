"""Dogfood check: plain pytest and mtest must agree on every test and on the exit code.

Usage: compare.py PYTEST_JUNIT RUN_JSONL PYTEST_EXIT MTEST_EXIT

A test that only one of the two ran is a disagreement, and so is a run.jsonl
that mtest never wrote. Prints how many tests each side saw and every
disagreement; exits 1 if there is any.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from supervisor.junit import junit_key

Key = tuple[str, str]

# How mtest's outcomes read in pytest's JUnit XML.
AS_JUNIT = {
    "passed": "passed", "xpassed": "passed", "flaky": "passed",
    "failed": "failed", "hung": "failed", "crashed": "failed",
    "error": "error", "skipped": "skipped", "xfailed": "skipped",
}  # fmt: skip


def junit_outcomes(path: Path) -> dict[Key, str]:
    found: dict[Key, str] = {}
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


def mtest_outcomes(path: Path) -> dict[Key, str]:
    """Each test's last record in run.jsonl, as pytest's JUnit XML would show it."""
    finals: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            finals[record["test_id"]] = record["outcome"]
    return {
        junit_key(test_id): AS_JUNIT.get(outcome, outcome) for test_id, outcome in finals.items()
    }


def disagreements(
    pytest_side: Mapping[Key, str], mtest_side: Mapping[Key, str], pytest_exit: str, mtest_exit: str
) -> list[str]:
    """Every way the two runs differ: the exit code, then each test (missing on one side counts)."""
    problems = []
    if pytest_exit != mtest_exit:
        problems.append(f"exit codes differ: pytest {pytest_exit}, mtest {mtest_exit}")
    for key in sorted(set(pytest_side) | set(mtest_side)):
        ours, theirs = pytest_side.get(key, "absent"), mtest_side.get(key, "absent")
        if ours != theirs:
            problems.append(f"{'::'.join(key)}: pytest {ours}, mtest {theirs}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    junit_path, records_path, pytest_exit, mtest_exit = argv
    pytest_side = junit_outcomes(Path(junit_path))
    if not Path(records_path).is_file():
        print(f"dogfood: mtest (exit {mtest_exit}) wrote no {records_path}", file=sys.stderr)
        return 1
    mtest_side = mtest_outcomes(Path(records_path))
    problems = disagreements(pytest_side, mtest_side, pytest_exit, mtest_exit)
    for problem in problems:
        print(f"dogfood: {problem}", file=sys.stderr)
    print(
        f"dogfood: pytest ran {len(pytest_side)} tests (exit {pytest_exit}), "
        f"mtest ran {len(mtest_side)} (exit {mtest_exit}); {len(problems)} disagreement(s)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
