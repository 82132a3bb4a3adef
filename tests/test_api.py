"""The Python API (``supervisor.run``) and the event stream (``--events``), with real children.

``supervisor.run`` runs in this process, as a program embedding mtest would
call it; the children are real pytest processes that pass, fail and crash.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import records, run_mtest, write_suite

import supervisor
from supervisor.errors import MtestError
from supervisor.model import TestRecord
from supervisor.result import Kind, RunEvent

pytestmark = pytest.mark.integration

SUITE = {
    "test_a.py": "".join(f"def test_a{i}():\n    pass\n\n\n" for i in range(6)),
    "test_b.py": "def test_fails():\n    assert 1 == 2\n\n\n"
    + "".join(f"def test_b{i}():\n    pass\n\n\n" for i in range(4)),
    "test_c.py": "import os\n\n\n"
    + "".join(f"def test_c{i}():\n    pass\n\n\n" for i in range(3))
    + "def test_segfaults():\n    os.kill(os.getpid(), 11)\n\n\n"
    + "".join(f"def test_d{i}():\n    pass\n\n\n" for i in range(3)),
}
TOTAL = 6 + 5 + 7


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """mtest in this process sees the environment a user's program would give it."""
    for name in list(os.environ):
        if name.startswith(("PYTEST_", "MTEST_")):
            monkeypatch.delenv(name)


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("clean_env")
def test_run_calls_back_once_per_record_in_order_and_tells_every_event(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", SUITE)
    got: list[TestRecord] = []
    told: list[RunEvent] = []
    output = io.StringIO()

    # Each test starts once: no rerun alone of the failure (tests/test_integration_order.py).
    result = supervisor.run(
        ["-j", "2", "--no-isolate-failures"], cwd=project, on_record=got.append,
        on_event=told.append, output=output,
    )  # fmt: skip

    written = records(project / ".gates")
    assert [(r.test_id, r.attempt) for r in got] == [(r["test_id"], r["attempt"]) for r in written]
    assert len({r.test_id for r in got}) == TOTAL
    assert result.exit_code == 1
    assert result.counts == {"passed": TOTAL - 2, "failed": 1, "crashed": 1}
    assert {r.test_id for r in result.records} == {r.test_id for r in got}
    assert result.records_path is not None and result.records_path.exists()

    kinds = [e.kind for e in told]
    assert kinds[0] is Kind.RUN_STARTED and len(told[0].tests) == TOTAL
    assert kinds[-1] is Kind.RUN_FINISHED and told[-1].result == result
    finished = [e.record for e in told if e.kind is Kind.TEST_FINISHED]
    assert finished == got
    # Per worker, tests finish in the order they started, and each started once per run.
    for slot in {e.worker for e in told if e.worker is not None}:
        started = [e.test_id for e in told if e.kind is Kind.TEST_STARTED and e.worker == slot]
        ended = [e.test_id for e in told if e.kind is Kind.TEST_FINISHED
                 and e.record is not None and _slot_of(told, e.record.test_id) == slot]  # fmt: skip
        assert ended == started
    # A test starts only inside the chunk its worker was given last.
    given: dict[int | None, tuple[str, ...]] = {}
    for event in told:
        if event.kind is Kind.CHUNK_STARTED:
            given[event.worker] = event.tests
        elif event.kind is Kind.TEST_STARTED:
            assert event.test_id in given[event.worker]
    deaths = [e for e in told if e.kind is Kind.WORKER_DIED]
    assert [d.test_id for d in deaths] == ["test_c.py::test_segfaults"]
    assert "SIGSEGV" in deaths[0].reason


def _slot_of(told: list[RunEvent], test_id: str) -> int | None:
    starts = [e.worker for e in told if e.kind is Kind.TEST_STARTED and e.test_id == test_id]
    return starts[-1] if starts else None


@pytest.mark.timeout(300)
@pytest.mark.usefixtures("clean_env")
def test_a_callback_that_raises_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_a.py": SUITE["test_a.py"]})
    calls: list[str] = []

    def broken(record: TestRecord) -> None:
        calls.append(record.test_id)
        raise RuntimeError("the dashboard is down")

    output = io.StringIO()
    result = supervisor.run([], cwd=project, on_record=broken, output=output)

    assert result.exit_code == 0
    assert result.counts == {"passed": 6}
    assert len(records(project / ".gates")) == 6
    assert len(calls) == 1  # dropped after it raised
    assert "on_record raised RuntimeError: the dashboard is down" in output.getvalue()


@pytest.mark.usefixtures("clean_env")
def test_bad_input_raises_the_error_the_cli_would_print(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_a.py": SUITE["test_a.py"]})
    with pytest.raises(MtestError) as raised:
        supervisor.run(["--budget", "soon"], cwd=project, output=io.StringIO())
    assert raised.value.code == 4
    assert "`soon`" in raised.value.message
    assert not (project / ".gates" / "last-run").exists()


@pytest.mark.timeout(300)
def test_events_dash_streams_json_lines_on_stdout_and_the_console_on_stderr(
    tmp_path: Path,
) -> None:
    project = write_suite(tmp_path / "p", {"test_b.py": SUITE["test_b.py"]})
    result = run_mtest(["--events", "-"], project)
    assert result.returncode == 1, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(line["version"] == 1 for line in lines)
    kinds = [line["event"] for line in lines]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    finished = [line["record"] for line in lines if line["event"] == "test_finished"]
    assert [r["test_id"] for r in finished] == [r["test_id"] for r in records(project / ".gates")]
    assert lines[-1]["result"]["counts"] == {"failed": 1, "passed": 4}
    assert "mtest: 1 failed, 4 passed" in result.stderr


@pytest.mark.timeout(300)
def test_events_to_a_file_and_an_unwritable_one(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_a.py": SUITE["test_a.py"]})
    stream = tmp_path / "events.jsonl"
    ok = run_mtest(["--events", str(stream)], project)
    assert ok.returncode == 0, ok.stderr
    kinds: list[Any] = [json.loads(line)["event"] for line in stream.read_text().splitlines()]
    assert kinds.count("test_started") == kinds.count("test_finished") == 6

    refused = run_mtest(["--events", str(tmp_path)], project)  # a directory
    assert refused.returncode == 4
    assert f"cannot write --events `{tmp_path}`" in refused.stdout + refused.stderr
