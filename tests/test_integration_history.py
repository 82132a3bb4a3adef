"""The run history with real mtest processes: what one-shot runs append, what a history
that cannot be written or holds corrupt lines does to a run, ``--history-keep``, and
``mtest history`` (table and ``--json``).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import finals, run_mtest, write_suite
from test_history import OBSTACLES, git, unwritable

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FAILING = {
    "test_a.py": "def test_ok():\n    pass\n\n\ndef test_broken():\n    assert False\n",
    "test_b.py": "import pytest\n\n\n@pytest.mark.skip\ndef test_later():\n    pass\n",
}
FIXED = {"test_a.py": "def test_ok():\n    pass\n\n\ndef test_broken():\n    pass\n"}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def run_id_of(project: Path) -> str:
    state = json.loads((project / ".gates" / "state.json").read_text())
    run_id: str = state["run_id"]
    return run_id


def test_two_runs_write_two_lines_with_their_counts_and_exit_codes(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", FAILING)
    first = run_mtest([], project)
    assert first.returncode == 1, first.stdout + first.stderr
    first_id = run_id_of(project)
    (project / "test_a.py").write_text(FIXED["test_a.py"])
    second = run_mtest(["--tier", "0-3"], project)
    assert second.returncode == 0, second.stdout + second.stderr

    one, two = lines(project / ".gates" / "history.jsonl")
    assert one["version"] == two["version"] == 1
    assert (one["run_id"], two["run_id"]) == (first_id, run_id_of(project))
    assert one["exit_code"] == 1 and two["exit_code"] == 0
    assert one["counts"] == {"passed": 1, "failed": 1, "skipped": 1}
    assert two["counts"] == {"passed": 2, "skipped": 1}
    assert one["failing"] == ["test_a.py::test_broken"] and one["failing_total"] == 1
    assert one["newly_failing"] is None  # nothing before it
    assert two["failing"] == [] and two["newly_failing"] == []
    assert two["newly_passing"] == ["test_a.py::test_broken"]
    assert one["pass_rate"] == 0.5 and two["pass_rate"] == 1.0
    assert one["started"] <= one["ended"] <= two["started"] <= two["ended"]
    assert two["selection"] == {"tiers": [0, 1, 2, 3], "budget_s": None}
    assert one["coverage_ratio"] is None, "no --cov"
    if sys.platform.startswith("linux"):  # read from /proc: the peak RSS of any worker
        assert isinstance(one["peak_rss_bytes"], int) and one["peak_rss_bytes"] > 0
    assert one["git_commit"] is None and one["git_dirty"] is None  # tmp_path: no repository
    assert one["slowest"]["test_id"] in finals(project / ".gates")


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_line_names_the_commit_and_whether_tracked_files_changed(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", FIXED)
    git(project, "init", "-q")
    git(project, "add", "pytest.ini", "test_a.py")
    git(project, "commit", "-qm", "the suite")
    sha = git(project, "rev-parse", "HEAD")
    assert run_mtest([], project).returncode == 0  # .gates/ is untracked: not a change
    (project / "test_a.py").write_text(FIXED["test_a.py"] + "\n# edited\n")
    assert run_mtest([], project).returncode == 0
    clean, dirty = lines(project / ".gates" / "history.jsonl")
    assert (clean["git_commit"], clean["git_dirty"]) == (sha, False)
    assert (dirty["git_commit"], dirty["git_dirty"]) == (sha, True)


@pytest.mark.parametrize("obstacle", OBSTACLES)
def test_a_history_that_cannot_be_written_is_a_warning_and_the_run_keeps_its_code(
    tmp_path: Path, obstacle: str
) -> None:
    project = write_suite(tmp_path / "p", FAILING)
    target = unwritable(project, obstacle)
    done = run_mtest(["--history", str(target)], project)

    assert done.returncode == 1, done.stdout + done.stderr
    assert set(finals(project / ".gates")) == {
        "test_a.py::test_ok", "test_a.py::test_broken", "test_b.py::test_later",
    }  # fmt: skip
    warnings = [ln for ln in done.stderr.splitlines() if "history" in ln]
    assert len(warnings) == 1, done.stderr
    assert warnings[0].startswith(f"mtest: warning: cannot write the history `{target}`: ")
    assert "Traceback" not in done.stderr


def test_corrupt_lines_are_survived_and_the_good_lines_kept(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", FIXED)
    history = project / "runs.jsonl"
    assert run_mtest(["--history", str(history)], project).returncode == 0
    good = history.read_bytes()
    history.write_bytes(good + b"this is not json\n" + good + b'{"version": 1, "run_id": "cut')
    shown = run_mtest(["history", "--history", str(history), "--json"], project)
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)) == 2
    assert f"`{history}`: skipped 2 corrupt line(s)" in shown.stderr

    done = run_mtest(["--history", str(history)], project)

    assert done.returncode == 0, done.stdout + done.stderr
    side = project / "runs.jsonl.corrupt"
    assert f"`{history}`: skipped 2 corrupt line(s); moved them to `{side}`" in done.stderr
    assert side.read_bytes() == b'this is not json\n{"version": 1, "run_id": "cut\n'
    kept = history.read_bytes().splitlines(keepends=True)
    assert kept[:2] == [good, good]
    assert len(kept) == 3 and lines(history)[2]["run_id"] == run_id_of(project)
    again = run_mtest(["history", "--history", str(history)], project)
    assert again.returncode == 0 and "corrupt" not in again.stderr


def test_history_keep_three_keeps_the_last_three(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", FIXED)
    ids = []
    for _ in range(5):
        assert run_mtest(["--history-keep", "3"], project).returncode == 0
        ids.append(run_id_of(project))
    assert [e["run_id"] for e in lines(project / ".gates" / "history.jsonl")] == ids[2:]


def test_mtest_history_prints_the_trend_and_json(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", FAILING)
    empty = run_mtest(["history"], project)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.strip() == (
        f"no runs in the history yet (`{project / '.gates' / 'history.jsonl'}`); "
        "every `mtest` run adds one"
    )
    assert json.loads(run_mtest(["history", "--json"], project).stdout) == []
    assert run_mtest([], project).returncode == 1
    first_id = run_id_of(project)
    (project / "test_a.py").write_text(FIXED["test_a.py"])
    assert run_mtest([], project).returncode == 0
    second_id = run_id_of(project)

    table = run_mtest(["history"], project)

    assert table.returncode == 0, table.stderr
    out = table.stdout.splitlines()
    header = next(ln for ln in out if ln.startswith("started (UTC)"))
    assert all(c in header for c in ("run", "exit", "pass rate", "new fail", "new pass"))
    row1 = next(ln for ln in out if first_id in ln and not ln.startswith(first_id))
    row2 = next(ln for ln in out if second_id in ln and not ln.startswith(second_id))
    assert "50.0%" in row1 and "100.0%" in row2
    assert f"{second_id}: newly passing: test_a.py::test_broken" in out
    as_json = json.loads(run_mtest(["history", "--json"], project).stdout)
    assert [e["run_id"] for e in as_json] == [first_id, second_id]
    assert [e["exit_code"] for e in as_json] == [1, 0]
    last = json.loads(run_mtest(["history", "--json", "--last", "1"], project).stdout)
    assert [e["run_id"] for e in last] == [second_id]


def test_views_and_listings_write_no_history_and_refuse_history_options(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", FIXED)
    history = project / ".gates" / "history.jsonl"
    assert run_mtest([], project).returncode == 0
    before = history.read_bytes()
    assert run_mtest(["--collect-only"], project).returncode == 0
    assert run_mtest(["--report"], project).returncode == 0
    assert run_mtest(["--quarantine"], project).returncode == 0
    checked = run_mtest(["--self-check"], project, timeout=240)  # its own run, in a temp dir
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert history.read_bytes() == before
    for args in (["--self-check"], ["--collect-only"], ["--report"]):
        refused = run_mtest([*args, "--history", "elsewhere.jsonl"], project)
        assert refused.returncode == 4, refused.stderr
        assert "--history is not used by this command" in refused.stderr
    assert not (project / "elsewhere.jsonl").exists()


def test_a_resumed_run_appends_to_the_history_of_the_run_it_continues(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", FIXED)
    history = tmp_path / "elsewhere" / "runs.jsonl"
    assert run_mtest(["--history", str(history)], project).returncode == 0
    # The run ended after its last record but before it was marked complete (a kill).
    state_path = project / ".gates" / "state.json"
    state = json.loads(state_path.read_text())
    state.update(complete=False, outstanding=[], exit_code=None)
    state_path.write_text(json.dumps(state))

    resumed = run_mtest(["--resume"], project)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    first, second = lines(history)
    assert first["run_id"] == second["run_id"] == state["run_id"]
    assert (first["resumed"], second["resumed"]) == (False, True)
    assert second["counts"] == {"passed": 2}
    assert not (project / ".gates" / "history.jsonl").exists()
