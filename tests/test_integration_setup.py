"""Once-per-run setup and teardown, with real processes: a TCP server shared by the workers.

The setup starts ``server.py`` in the background: a real TCP server on a free
port of 127.0.0.1, which writes ``DB_PORT=<port>`` to ``$MTEST_ENV_FILE`` and
its pid to ``server.pid``. The tests connect to ``os.environ["DB_PORT"]``; the
teardown stops the server by its pid. Every scenario ends by checking that no
process of the run (``MTEST_RUN_ID``) is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    finish,
    records,
    run_mtest,
    run_processes,
    start_mtest,
    wait_for_file,
    write_suite,
)  # fmt: skip

from supervisor.text import markdown_text

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PY = shlex.quote(sys.executable)
SERVER = """\
import os, socket, sys
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(16)
with open("server.pid", "w") as f:
    f.write(str(os.getpid()))
with open(os.environ["MTEST_ENV_FILE"], "a") as f:
    f.write(f"# written by server.py\\nDB_PORT={server.getsockname()[1]}\\n")
while True:
    conn, _ = server.accept()
    conn.sendall(f"{os.getpid()}\\n".encode())
    conn.close()
"""
# The setup returns once the server has written its port (the --setup-timeout is
# the hang guard); the teardown stops it by its pid and says so.
SETUP = (
    f"{PY} server.py > server.log 2>&1 & "
    'until grep -q DB_PORT "$MTEST_ENV_FILE"; do sleep 0.05; done; echo server up'
)
TEARDOWN = 'kill "$(cat server.pid)" && echo "stopped $DB_PORT" > teardown.txt'
CLIENT = """\
import os, socket, time
from pathlib import Path

import pytest

@pytest.mark.parametrize("n", range(10))
def test_{name}(n):
    worker = os.environ["MTEST_WORKER"]
    with socket.create_connection(("127.0.0.1", int(os.environ["DB_PORT"])), timeout=60) as c:
        Path(f"server.{{worker}}").write_text(c.recv(32).decode().strip())
    # The tests run in two workers at once: each waits for the other worker to connect.
    deadline = time.monotonic() + 50
    while len(list(Path().glob("server.[0-9]*"))) < 2:
        assert time.monotonic() < deadline, "no other worker connected"
        time.sleep(0.05)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _none_left(run_id: str, *pids: int) -> bool:
    """Whether nothing of the run (nor ``pids``) is alive, waiting up to 60 s (a hang guard)."""
    deadline = time.monotonic() + 60
    while run_processes(run_id) or any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A suite of two tests that need the server; whatever ``server.pid`` names dies after."""
    root = write_suite(
        tmp_path / "p",
        {
            "server.py": SERVER,
            "test_a.py": CLIENT.format(name="a"),
            "test_b.py": CLIENT.format(name="b"),
        },
    )
    yield root
    pid_file = root / "server.pid"
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _run_id(root: Path) -> str:
    ids = {str(r["run_id"]) for r in records(root / ".gates")}
    assert len(ids) == 1, ids
    return ids.pop()


def _outcomes(root: Path) -> dict[str, str]:
    return {r["test_id"]: r["outcome"] for r in records(root / ".gates")}


def test_two_workers_share_the_server_the_setup_started(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        f"[tool.mtest]\nsetup = {json.dumps(SETUP)}\nteardown = {json.dumps(TEARDOWN)}\n"
        'setup_timeout = "2m"\n'
    )
    result = run_mtest(["-j2"], project, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert set(_outcomes(project).values()) == {"passed"} and len(_outcomes(project)) == 20
    server = int((project / "server.pid").read_text())
    # Both workers reached the one server the setup started, with its port.
    assert [(project / f"server.{w}").read_text() for w in "01"] == [str(server)] * 2
    env_file = project / ".gates" / "last-run" / "setup.env"
    port = env_file.read_text().split("DB_PORT=")[1].strip()
    assert (project / "teardown.txt").read_text() == f"stopped {port}\n"
    failures = project / ".gates" / "last-run" / "failures"
    assert (failures / "setup-output.txt").read_text() == "server up\n"
    assert _none_left(_run_id(project), server)
    summary = (project / ".gates" / "last-run" / "summary.md").read_text()
    assert "and set 1 variable(s)" in summary and "- teardown \\`kill" in summary, summary


def test_the_flags_win_over_the_table(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.mtest]\nsetup = "exit 1"\n')
    result = run_mtest(["-j2", "--setup", SETUP, "--teardown", TEARDOWN], project, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "teardown.txt").exists()


def test_a_failing_setup_ends_the_run_before_any_test(project: Path) -> None:
    setup = f"echo $MTEST_RUN_ID > run-id; {SETUP}; echo giving up >&2; exit 7"
    result = run_mtest(["-j2", "--setup", setup, "--teardown", "touch td"], project, timeout=240)
    assert result.returncode == 3, result.stdout + result.stderr
    output = project / ".gates" / "last-run" / "failures" / "setup-output.txt"
    error = [line for line in result.stderr.splitlines() if line.startswith("mtest: error:")]
    assert error == [
        f"mtest: error: the setup `{setup}` exited with status 7: no test ran (its output: "
        f"{output}) (hint: fix the command (--setup or [tool.mtest] setup); it runs in "
        f"`{project}` under /bin/sh -c)"
    ], result.stderr
    assert output.read_text() == "server up\ngiving up\n"
    assert records(project / ".gates") == []
    assert not (project / ".gates" / "state.json").exists()
    assert not list(project.glob("server.[0-9]")) and not (project / "td").exists()
    # The server the setup had started dies with it.
    run_id = (project / "run-id").read_text().strip()
    assert _none_left(run_id, int((project / "server.pid").read_text()))


def test_a_hanging_setup_is_killed_after_its_timeout(project: Path) -> None:
    ignores = f"{PY} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'"  # noqa: E501
    setup = f"echo $MTEST_RUN_ID > run-id; {ignores} & echo $! > hung.pid; wait"
    args = ["--setup", setup, "--setup-timeout", "1s", "--kill-grace", "0.5"]
    result = run_mtest(args, project, timeout=240)
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"the setup `{setup}` did not finish within --setup-timeout 1s and was killed" in (
        result.stderr
    )
    assert records(project / ".gates") == []
    run_id = (project / "run-id").read_text().strip()
    assert _none_left(run_id, int((project / "hung.pid").read_text()))


def test_the_teardown_runs_after_failures_and_its_failure_is_a_warning(project: Path) -> None:
    (project / "test_b.py").write_text("def test_b():\n    assert False\n")
    (project / "test_a.py").write_text("def test_a():\n    pass\n")
    teardown = f"{TEARDOWN}; echo teardown failed >&2; exit 4"
    result = run_mtest(["--setup", SETUP, "--teardown", teardown], project, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output  # the tests' exit code, not the teardown's
    assert _outcomes(project) == {"test_a.py::test_a": "passed", "test_b.py::test_b": "failed"}
    assert (project / "teardown.txt").exists()
    saved = project / ".gates" / "last-run" / "failures" / "teardown-output.txt"
    assert saved.read_text() == "teardown failed\n"
    warning = f"warning: the teardown `{teardown}` exited with status 4 (its output: {saved})"
    assert warning in output
    summary = (project / ".gates" / "last-run" / "summary.md").read_text()
    assert markdown_text(warning) in summary, summary
    assert _none_left(_run_id(project), int((project / "server.pid").read_text()))


def test_the_teardown_runs_after_ctrl_c_and_resume_sets_up_again(project: Path) -> None:
    """SIGINT to mtest while a test blocks: the teardown runs, nothing is left; ``--resume``
    runs the setup and the teardown again for the tests still to run."""
    (project / "test_a.py").write_text(
        "import os, time\nfrom pathlib import Path\n\n"
        "def test_a():\n"
        '    Path("a.port").write_text(os.environ["DB_PORT"])\n'
        '    while Path("block").exists():\n'
        "        time.sleep(0.05)\n"
    )
    (project / "test_b.py").unlink()
    (project / "block").write_text("")
    setup = f"echo setup >> log; {SETUP}"
    teardown = f"echo teardown >> log; {TEARDOWN}"
    proc = start_mtest(["--setup", setup, "--teardown", teardown], project)
    started = time.monotonic()
    wait_for_file(project / "a.port", proc, timeout=120)
    first_server = int((project / "server.pid").read_text())
    os.kill(proc.pid, signal.SIGINT)
    result = finish(proc, started, timeout=240)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (project / "log").read_text() == "setup\nteardown\n"
    assert (project / "teardown.txt").exists()
    state = json.loads((project / ".gates" / "state.json").read_text())
    assert _none_left(state["run_id"], first_server)

    (project / "block").unlink()
    resumed = run_mtest(["--resume"], project, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (project / "log").read_text() == "setup\nteardown\nsetup\nteardown\n"
    assert int((project / "server.pid").read_text()) != first_server
    assert _none_left(state["run_id"], int((project / "server.pid").read_text()))


def test_ctrl_c_during_the_setup_stops_it_and_runs_no_test(project: Path) -> None:
    setup = "echo $MTEST_RUN_ID > run-id; sleep 600 & echo $! > sleeper.pid; wait"
    proc = start_mtest(["--setup", setup, "--teardown", "touch td"], project)
    started = time.monotonic()
    wait_for_file(project / "sleeper.pid", proc, timeout=120)
    os.kill(proc.pid, signal.SIGINT)
    result = finish(proc, started, timeout=240)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"interrupted during the setup `{setup}`: no test ran" in result.stderr
    assert records(project / ".gates") == [] and not (project / "td").exists()
    run_id = (project / "run-id").read_text().strip()
    assert _none_left(run_id, int((project / "sleeper.pid").read_text()))


def test_sigkill_of_mtest_during_the_setup_leaves_nothing_running(project: Path) -> None:
    """The watchdog starts before the setup: the setup's shell and the service it
    started in the background die with the run, though mtest could do nothing."""
    setup = "echo $MTEST_RUN_ID > run-id; sleep 600 & echo $! > sleeper.pid; wait"
    proc = start_mtest(["--setup", setup], project)
    wait_for_file(project / "sleeper.pid", proc, timeout=120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    run_id = (project / "run-id").read_text().strip()
    assert _none_left(run_id, int((project / "sleeper.pid").read_text()))
    assert records(project / ".gates") == []


def test_a_setup_leaving_a_process_without_teardown_has_it_killed(project: Path) -> None:
    (project / "test_b.py").unlink()
    (project / "test_a.py").write_text("def test_a():\n    pass\n")
    result = run_mtest(["--setup", SETUP], project, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "1 process(es) the setup started were still running after the run: killed" in output
    assert _none_left(_run_id(project), int((project / "server.pid").read_text()))


def test_collect_only_runs_no_setup(project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.mtest]\nsetup = "touch set-up"\n')
    result = run_mtest(["--collect-only"], project, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_a.py::test_a[0]" in result.stdout
    assert not (project / "set-up").exists()
