"""What mtest remembers and splits across runs: quarantine, shards and merge, budgets, CI output.

Each test drives several real mtest runs over a small generated suite and
checks what the runs recorded, the exit codes, and the files left in .gates/.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import finals, records, run_mtest, write_suite
from junitparser import JUnitXml

from supervisor import learn
from supervisor.store import Store

pytestmark = pytest.mark.integration

FLIPS_AND_REGRESSES = {
    "test_q.py": (
        "import os\n\n\n"
        "def test_flips():\n"
        "    assert os.environ['FLIPS'] == 'P', 'fails on purpose'\n\n\n"
        "def test_regresses():\n"
        "    assert os.environ['REGRESSES'] == 'P', 'broken since run 6'\n\n\n"
        "def test_steady():\n"
        "    pass\n"
    )
}
FLIPS = "FPFFFPPPP"
REGRESSES = "PPPPPFFFF"


def test_quarantine_over_nine_runs_takes_the_flaky_test_and_never_the_regression(
    tmp_path: Path,
) -> None:
    """test_flips fails, passes, then fails twice: a flip, so it is quarantined after
    run 4 and its failure in run 5 does not gate. test_regresses passes, then fails
    every run from run 6: a regression, never quarantined, so every run from 6 on
    fails, however many failures it has (the old rule quarantined it after three)."""
    project = write_suite(tmp_path / "p", FLIPS_AND_REGRESSES)
    codes, flags, listing = [], [], ""
    for run, (flips, regresses) in enumerate(zip(FLIPS, REGRESSES, strict=True), start=1):
        result = run_mtest(["-q"], project, env={"FLIPS": flips, "REGRESSES": regresses})
        codes.append(result.returncode)
        ran = finals(project / ".gates")
        flags.append((ran["test_q.py::test_flips"]["quarantined"],
                      ran["test_q.py::test_regresses"]["quarantined"]))  # fmt: skip
        if run == 4:
            listing = run_mtest(["--quarantine"], project).stdout
    assert codes == [1, 0, 1, 1, 0, 1, 1, 1, 1]
    assert [flips for flips, _ in flags[:6]] == [False] * 4 + [True] * 2
    assert not any(regresses for _, regresses in flags)
    assert "quarantined (1):" in listing
    assert "test_q.py::test_flips" in listing and "fails on purpose" in listing
    state = json.loads((project / ".gates" / "quarantine.json").read_text())
    (regression,) = (e for e in state["entries"] if e["test_id"] == "test_q.py::test_regresses")
    assert (regression["state"], regression["recent"]) == ("watched", ["fail"] * 4)


def seed_durations(gates: Path, seconds: Callable[[str], float], fixed_s: float) -> None:
    """Replace every learned duration by ``seconds(test_id)`` and the fixed costs by
    ``fixed_s``, keeping each sample's outcome: the budget then packs by values the
    test chose, not by how busy the machine was during the learning run."""
    store = Store(gates, lambda message: None)
    learned = learn.Durations.from_json(store.read_json("durations.json"))
    tests = {
        test_id: tuple(dataclasses.replace(s, duration_s=seconds(test_id)) for s in samples)
        for test_id, samples in learned.tests.items()
    }
    seeded = learn.Durations(tests=tests, startup_s=fixed_s, collect_s=fixed_s)
    store.write_json("durations.json", seeded.to_json())


def seventy_seconds() -> dict[str, float]:
    """Seventy test ids and the duration each is said to take (a seeded mix)."""
    picks = random.Random(7)
    return {
        f"test_m{module}.py::test_{n}": picks.choice([0.01, 0.03, 0.06, 0.1, 0.15])
        for module in range(7)
        for n in range(10)
    }


def seventy_tests() -> dict[str, str]:
    files: dict[str, list[str]] = {}
    for test_id in seventy_seconds():
        name, _, function = test_id.partition("::")
        files.setdefault(name, []).append(f"def {function}():\n    pass\n")
    return {name: "\n\n".join(bodies) for name, bodies in files.items()}


def test_two_shards_split_seventy_tests_and_merge_back(tmp_path: Path) -> None:
    """Shards balance the learned durations; the test sets them (its tests are
    instant), so the balance is checked on those values, never on wall time."""
    project = write_suite(tmp_path / "p", seventy_tests())
    learned = run_mtest(["-q", "-j", "2"], project)
    assert learned.returncode == 0, learned.stdout + learned.stderr
    seconds = seventy_seconds()
    seed_durations(project / ".gates", seconds.__getitem__, fixed_s=0.5)
    # Each CI machine starts from the learned durations (a cache) in its own gates dir.
    durations = (project / ".gates" / "durations.json").read_text()
    shards = []
    for k in (1, 2):
        gates = tmp_path / f"shard{k}"
        gates.mkdir()
        (gates / "durations.json").write_text(durations)
        result = run_mtest(["-q", "--shard", f"{k}/2", "--gates-dir", str(gates)], project)
        assert result.returncode == 0, result.stdout + result.stderr
        shards.append(finals(gates))
    first, second = (set(shard) for shard in shards)
    assert not first & second, "disjoint"
    assert len(first | second) == 70, "complete"
    loads = [sum(seconds[test_id] for test_id in shard) for shard in (first, second)]
    assert max(loads) - min(loads) <= max(seconds.values()), loads

    merged_xml = tmp_path / "merged.xml"
    merged = run_mtest(
        ["--merge", str(tmp_path / "shard1"), str(tmp_path / "shard2"),
         "--gates-dir", str(tmp_path / "merged"), "--junit-xml", str(merged_xml)],
        project,
    )  # fmt: skip
    assert merged.returncode == 0, merged.stdout + merged.stderr
    xml = JUnitXml.fromfile(str(merged_xml))
    assert (xml.tests, xml.failures, xml.errors) == (70, 0, 0)
    assert len(records(tmp_path / "merged")) == 70


def test_github_actions_get_annotations_and_a_step_summary(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {})
    (project / "tests").mkdir()
    (project / "tests" / "test_g.py").write_text("def test_bad():\n    assert 0\n")
    summary = tmp_path / "step-summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    result = run_mtest(["-q"], project, env=env)
    assert result.returncode == 1
    assert "::error file=tests/test_g.py,line=1,title=" in result.stdout
    assert "tests/test_g.py::test_bad" in summary.read_text()


BUDGETED = {
    "test_smoke.py": (
        "import pytest\n\n\n"
        "@pytest.mark.smoke\n@pytest.mark.parametrize('n', range(3))\n"
        "def test_smoke(n):\n    pass\n"
    ),
    "test_work.py": (
        "import pytest\n\n\n"
        "@pytest.mark.parametrize('n', range(24))\ndef test_medium(n):\n    pass\n"
    ),
    "test_once.py": (
        "import os\nfrom pathlib import Path\n\n\n"
        "def test_failed_last_time():\n"
        "    flag = Path(os.environ['MARKS'], 'ran')\n"
        "    if not flag.exists():\n"
        "        flag.write_text('1')\n"
        "        assert False, 'first run fails'\n"
    ),
}
WORK = [f"test_work.py::test_medium[{n}]" for n in range(24)]


@pytest.mark.timeout(120)
def test_a_budget_runs_smoke_tests_and_recent_failures_first(tmp_path: Path) -> None:
    """The knapsack's choice, on durations the test controls (no wall-clock assertion).

    Smoke tests and the recent failure are the *most expensive* tests here (100 s
    each against 20 s for the others), so a knapsack that packed by tests per second
    alone would fill the budget with cheap tests and leave them out; priority puts
    them in first and the cheap tests fill what remains, in collection order. The
    budget is ten minutes and every test is instant, so the run ends long before it.
    """
    project = write_suite(tmp_path / "p", BUDGETED)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {"MARKS": str(marks)}
    learned = run_mtest(["-q"], project, env=env)
    assert learned.returncode == 1, "the learning run sees the one failure"
    seed_durations(
        project / ".gates", lambda test_id: 20.0 if test_id in WORK else 100.0, fixed_s=5.0
    )

    result = run_mtest(["--budget", "10m", "-j", "1"], project, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    ran = finals(project / ".gates")
    assert {f"test_smoke.py::test_smoke[{n}]" for n in range(3)} <= set(ran)
    assert ran["test_once.py::test_failed_last_time"]["outcome"] == "passed"
    packed = [t for t in WORK if t in ran]
    assert 1 <= len(packed) < len(WORK), "the cheap tests fill the rest, not everything"
    assert packed == WORK[: len(packed)], "equal estimates are taken in collection order"
    assert f"left out by budget: {len(WORK) - len(packed)} test(s)" in result.stdout


@pytest.mark.timeout(120)
def test_the_budget_stops_a_test_that_outruns_its_estimate(tmp_path: Path) -> None:
    """A test the budget admitted (estimate 0.05 s) that never ends is stopped at the
    budget's end, long before its 300 s timeout, and stays outstanding for --resume.

    Whether the machine is fast enough to start it before the budget runs out does
    not matter: either way it has no record and the run ends; only the hang guard
    (run_mtest's timeout) measures time.
    """
    project = write_suite(
        tmp_path / "p", {"test_block.py": "import time\n\n\ndef test_never_ends():\n"
                         "    time.sleep(3600)\n"}
    )  # fmt: skip
    result = run_mtest(["--budget", "8s", "--timeout", "300", "-q"], project, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_block.py::test_never_ends" not in finals(project / ".gates")
    state = json.loads((project / ".gates" / "state.json").read_text())
    assert "test_block.py::test_never_ends" in json.dumps(state)
