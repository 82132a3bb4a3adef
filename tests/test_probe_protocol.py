"""The probe → driver protocol, with real pytest children driven as the pool drives them.

Each test writes a small project, starts pytest with the probe exactly as
``worker`` does (the bootstrap, ``-p``, the control pipe and the variables),
sends ``run`` commands over the pipe and reads the event stream the child
left. Nothing here waits for time to pass: a test that needs something to
happen first waits for it to be observable.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from supervisor import events, parse, worker
from supervisor.childfiles import ChildFiles
from supervisor.probeio import Control, error_line, exit_status_of, rearm_needed

CHILD_LIMIT_S = 120.0
# The interpreter of the children; point it at another environment to check the
# probe against another pytest (e.g. 7.2 with pluggy 1.0, as Debian bookworm has).
CHILD_PYTHON = os.environ.get("PROBE_TEST_PYTHON", sys.executable)


@dataclass(frozen=True, kw_only=True)
class Child:
    returncode: int
    output: str
    raw: bytes
    stacks: str

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.raw.splitlines() if line.strip()]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["e"] == kind]

    @property
    def pid(self) -> int:
        (hello,) = self.of("hello")
        pid = hello["pid"]
        assert isinstance(pid, int)
        return pid


def project(root: Path, files: Mapping[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\n")
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


def run_child(
    root: Path,
    chunks: Sequence[Sequence[str]],
    *,
    env: Mapping[str, str] | None = None,
    before: Sequence[str] = (),
) -> Child:
    """Run ``chunks`` of node ids in one child, then ``exit``; ``before`` is sent first.

    The child gets the control pipe's write end too (``HARNESS_CONTROL_W``), so
    a test can send the probe a command while it runs, as the driver would.
    """
    files = root / ".child"
    files.mkdir(exist_ok=True)
    events_path, stacks_path = files / "events.jsonl", files / "stacks.txt"
    events_path.write_bytes(b"")
    stacks_path.write_bytes(b"")
    commands = list(before)
    for index, ids in enumerate(chunks):
        ids_path = files / f"chunk{index}.ids"
        ids_path.write_text("".join(f"{test_id}\n" for test_id in ids))
        commands.append(f"run {index} {ids_path}")
    commands.append("exit")
    control_read, control_write = os.pipe()
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MTEST_"))}
    child_env.update(env or {})
    child_env.update(
        MTEST_EVENTS=str(events_path),
        MTEST_STACKS=str(stacks_path),
        MTEST_CONTROL_FD=str(control_read),
        MTEST_PARENT_PID=str(os.getpid()),
        HARNESS_CONTROL_W=str(control_write),
    )
    argv = [CHILD_PYTHON, "-c", worker.BOOTSTRAP, str(worker.PROBE_PATH), "-p"]
    argv += [worker.PROBE_MODULE, "-p", "no:cacheprovider", "-q"]
    with subprocess.Popen(
        argv,
        cwd=root,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        pass_fds=(control_read, control_write),
        start_new_session=True,
    ) as proc:
        os.close(control_read)
        try:
            os.write(control_write, "".join(f"{c}\n" for c in commands).encode())
            output, _ = proc.communicate(timeout=CHILD_LIMIT_S)
        finally:
            os.close(control_write)
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
    return Child(
        returncode=proc.returncode,
        output=output.decode(errors="replace"),
        raw=events_path.read_bytes(),
        stacks=stacks_path.read_text(errors="replace"),
    )


def ran(child: Child) -> list[str]:
    return [event["id"] for event in child.of("end")]


def outcomes(child: Child) -> dict[str, str]:
    return {event["id"]: event["outcome"] for event in child.of("end")}


# -- pid and forked copies ---------------------------------------------------------

FORKS = """\
    import ctypes, os, sys
    import pytest

    def fork(how):
        return os.fork() if how == "os" else ctypes.CDLL(None).fork()

    @pytest.fixture
    def torn_down(tmp_path_factory):
        yield
        # Only the worker tears down: a copy must not undo what the worker still uses.
        with open(os.environ["TEARDOWNS"], "a") as log:
            log.write(f"{os.getpid()}\\n")

    def test_before():
        pass

    def test_forks(how, torn_down):
        pid = fork(how)
        if pid:  # the worker: the copy must leave as soon as it is back in pytest's hands
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0

    def test_copy_exits_with_its_status(how):
        pid = fork(how)
        if pid == 0:
            sys.exit(3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 3

    def test_after():
        pass
"""


@pytest.mark.parametrize("how", ["os", "libc"])
def test_a_forked_copy_that_returns_into_pytest_is_silent_and_leaves(
    tmp_path: Path, how: str
) -> None:
    """``libc``: a fork that skips Python's at-fork hooks is caught by its pid."""
    conftest = f"import pytest\n@pytest.fixture\ndef how():\n    return {how!r}\n"
    root = project(tmp_path / "suite", {"test_fork.py": FORKS, "conftest.py": conftest})
    teardowns = tmp_path / "teardowns.txt"
    first = ["test_before", "test_forks", "test_copy_exits_with_its_status"]
    chunks = [[f"test_fork.py::{name}" for name in first], ["test_fork.py::test_after"]]
    child = run_child(root, chunks, env={"TEARDOWNS": str(teardowns)})
    assert ran(child) == [*chunks[0], *chunks[1]], child.output
    assert set(outcomes(child).values()) == {"passed"}, child.raw.decode()
    assert [event["chunk"] for event in child.of("done")] == [0, 1]
    assert {event["pid"] for event in child.events} == {child.pid}
    assert teardowns.read_text().split() == [str(child.pid)]


# -- stacks without a signal -----------------------------------------------------

WAITS_FOR_ITS_STACKS = """\
    import os, signal, time
    import pytest

    def wait_for_stacks():
        # Not hung: it returns once faulthandler has written its stacks.
        deadline = time.monotonic() + 60
        while os.path.getsize(os.environ["MTEST_STACKS"]) == 0:
            assert time.monotonic() < deadline, "no stacks written"
            time.sleep(0.01)

    @pytest.mark.timeout(0.2)
    def test_marked():
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        wait_for_stacks()

    def test_unmarked():
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        wait_for_stacks()
"""


@pytest.mark.parametrize(
    ("test", "env"),
    [("test_marked", {}), ("test_unmarked", {"MTEST_TIMEOUT": "0.2"})],
)
def test_a_test_past_its_limit_has_its_stacks_written_without_a_signal(
    tmp_path: Path, test: str, env: dict[str, str]
) -> None:
    root = project(tmp_path, {"test_slow.py": WAITS_FOR_ITS_STACKS})
    child = run_child(root, [[f"test_slow.py::{test}"]], env=env)
    assert outcomes(child) == {f"test_slow.py::{test}": "passed"}, child.output
    assert "Timeout" in child.stacks
    assert f"in {test}" in child.stacks
    assert "wait_for_stacks" in child.stacks


@pytest.mark.parametrize(
    ("armed", "limit", "now", "needed"),
    [
        pytest.param(None, 5.0, 0.0, True, id="nothing-armed"),
        pytest.param((0.0, 5.0), 5.0, 0.05, False, id="same-limit-fires-slightly-early"),
        pytest.param((0.0, 5.0), 5.0, 0.2, True, id="would-fire-too-early"),
        pytest.param((0.0, 5.0), 7.0, 0.0, True, id="another-limit"),
        pytest.param((0.0, 600.0), 600.0, 0.9, False, id="long-limit-keeps-a-second"),
        pytest.param((0.0, 600.0), 600.0, 1.5, True, id="never-more-than-a-second-early"),
    ],
)
def test_a_stack_timer_is_kept_only_while_it_fires_at_most_slightly_early(
    armed: tuple[float, float] | None, limit: float, now: float, needed: bool
) -> None:
    assert rearm_needed(armed, limit, now) is needed


# -- threads -------------------------------------------------------------------------

THREADS = """\
    import threading

    release = threading.Event()

    def test_leaves_a_thread():
        threading.Thread(target=release.wait, name="lingerer").start()
        threading.Thread(target=release.wait, name="daemonic", daemon=True).start()

    def test_innocent():
        pass

    def test_releases_it():
        release.set()
        for thread in threading.enumerate():
            if thread.name == "lingerer":
                thread.join()
"""


def test_a_test_that_leaves_a_non_daemon_thread_running_is_named_once(tmp_path: Path) -> None:
    root = project(tmp_path, {"test_threads.py": THREADS})
    ids = ["test_leaves_a_thread", "test_innocent", "test_releases_it"]
    child = run_child(root, [[f"test_threads.py::{name}" for name in ids]])
    assert child.returncode == 0, child.output
    threads = [(event["id"], event["names"]) for event in child.of("threads")]
    assert threads == [("test_threads.py::test_leaves_a_thread", ["lingerer"])]


# -- the end of the session -----------------------------------------------------------

PASSES = "def test_ok():\n    pass\n"
SESSION_ENDS = {
    "sessionfinish": "def pytest_sessionfinish(session):\n    raise RuntimeError('hook broke')\n",
    "exitstatus": "def pytest_sessionfinish(session):\n    session.exitstatus = 3\n",
    # What pytest-cov's --cov-fail-under does when coverage is too low.
    "testsfailed": """\
        import pytest

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtestloop(session):
            yield
            session.testsfailed += 1
    """,
}


@pytest.mark.parametrize("case", sorted(SESSION_ENDS))
def test_a_failure_at_session_end_is_one_session_error(tmp_path: Path, case: str) -> None:
    root = project(tmp_path, {"test_ok.py": PASSES, "conftest.py": SESSION_ENDS[case]})
    child = run_child(root, [["test_ok.py::test_ok"]])
    assert outcomes(child) == {"test_ok.py::test_ok": "passed"}
    errors = child.of("session_error")
    assert len(errors) == 1, child.raw.decode()
    (error,) = errors
    if case == "sessionfinish":
        assert error["where"] == "sessionfinish"
        assert error["message"] == "RuntimeError: hook broke"
        assert "raise RuntimeError('hook broke')" in error["longrepr"]
    else:
        assert error["where"] == "exitstatus"
        status = 3 if case == "exitstatus" else 1
        assert f"exit status is {status}" in error["message"]
    assert child.returncode != 0


def test_a_passing_session_has_no_session_error(tmp_path: Path) -> None:
    root = project(tmp_path, {"test_ok.py": PASSES, "test_no.py": "def test_no():\n    1/0\n"})
    child = run_child(root, [["test_ok.py::test_ok", "test_no.py::test_no"]])
    assert outcomes(child) == {"test_ok.py::test_ok": "passed", "test_no.py::test_no": "failed"}
    assert child.of("session_error") == []


SHARED_FIXTURES = """\
    import os
    import pytest

    @pytest.fixture(scope="session")
    def session_wide():
        yield
        raise RuntimeError("session teardown broke")

    @pytest.fixture(scope="module")
    def module_wide():
        yield
        raise RuntimeError("module teardown broke")

    def send(command):
        os.write(int(os.environ["HARNESS_CONTROL_W"]), f"{command}\\n".encode())

    def pytest_runtest_logreport(report):
        # After the test's teardown ran: the stop is read before the next test starts.
        if report.when == "teardown" and report.nodeid.endswith("test_stop_after_teardown"):
            send("stop")
"""
SHARING_TESTS = """\
    from conftest import send

    def test_session_a(session_wide):
        pass

    def test_session_b(session_wide):
        pass

    def test_stops(module_wide):
        send("stop")

    def test_stop_after_teardown(module_wide):
        pass

    def test_module_b(module_wide):
        pass

    def test_last():
        pass
"""


def share(*names: str) -> list[str]:
    return [f"test_share.py::{name}" for name in names]


def test_a_session_fixture_teardown_error_lands_on_the_last_test_of_each_chunk(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, {"conftest.py": SHARED_FIXTURES, "test_share.py": SHARING_TESTS})
    chunks = [share("test_session_a", "test_session_b"), share("test_last", "test_session_a")]
    child = run_child(root, chunks)
    assert outcomes(child) == {
        "test_share.py::test_session_a": "error",
        "test_share.py::test_session_b": "error",
        "test_share.py::test_last": "passed",
    }
    errors = [e for e in child.of("end") if e["outcome"] == "error"]
    assert [e["id"] for e in errors] == share("test_session_b", "test_session_a")
    assert {(e["when"], e["message"]) for e in errors} == {
        ("teardown", "RuntimeError: session teardown broke")
    }
    assert child.of("session_error") == []


# -- stop --------------------------------------------------------------------------------


def test_stop_ends_the_chunk_after_the_test_in_flight(tmp_path: Path) -> None:
    """Its fixtures are torn down with it (their error is its own); the next chunk runs."""
    root = project(tmp_path, {"conftest.py": SHARED_FIXTURES, "test_share.py": SHARING_TESTS})
    child = run_child(root, [share("test_stops", "test_module_b", "test_last"), share("test_last")])
    assert ran(child) == share("test_stops", "test_last"), child.output
    assert [event["chunk"] for event in child.of("done")] == [0, 1]
    (stopped,) = child.of("end")[:1]
    assert (stopped["outcome"], stopped["when"]) == ("error", "teardown")
    assert stopped["message"] == "RuntimeError: module teardown broke"
    assert child.of("session_error") == []


def test_stop_read_between_tests_tears_down_what_is_left_as_a_session_error(
    tmp_path: Path,
) -> None:
    root = project(tmp_path, {"conftest.py": SHARED_FIXTURES, "test_share.py": SHARING_TESTS})
    chunks = [share("test_stop_after_teardown", "test_module_b"), share("test_module_b")]
    child = run_child(root, chunks)
    assert outcomes(child) == {
        "test_share.py::test_stop_after_teardown": "passed",
        "test_share.py::test_module_b": "error",  # its own chunk's module teardown
    }
    (error,) = child.of("session_error")
    assert (error["where"], error["message"]) == ("teardown", "RuntimeError: module teardown broke")
    assert "module teardown broke" in error["longrepr"]
    assert [event["chunk"] for event in child.of("done")] == [0, 1]


def test_a_stop_read_while_no_chunk_runs_is_stale(tmp_path: Path) -> None:
    root = project(tmp_path, {"test_ok.py": PASSES})
    child = run_child(root, [["test_ok.py::test_ok"]], before=["stop"])
    assert ran(child) == ["test_ok.py::test_ok"]


def test_control_keeps_commands_in_order_and_takes_stop_out_of_line() -> None:
    read, write = os.pipe()
    try:
        control = Control(read)
        assert not control.stop_requested()
        os.write(write, b"stop\nrun 0 a.ids\nru")
        assert control.next_command() == "run 0 a.ids"  # the stop before it was stale
        control.start_chunk()
        os.write(write, b"n 1 b.ids\nstop\n")
        assert control.stop_requested()
        assert control.stop_requested()  # until the next chunk starts
        control.start_chunk()
        assert not control.stop_requested()
        assert control.next_command() == "run 1 b.ids"
        os.close(write)
        write = -1
        assert control.next_command() is None
        assert control.stop_requested()  # the supervisor is gone
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


# -- the test's clock ------------------------------------------------------------------

PATCHES_THE_CLOCK = """\
    import os, time

    def test_patches_the_clock():
        time.monotonic = lambda: 0.0
        time.time = lambda: 0.0
        time.sleep = lambda seconds: None
        os.getpid = lambda: 1

    def test_after():
        pass
"""


def test_leaked_patches_of_the_clock_or_pid_do_not_reach_the_probe(tmp_path: Path) -> None:
    root = project(tmp_path, {"test_clock.py": PATCHES_THE_CLOCK})
    ids = ["test_clock.py::test_patches_the_clock", "test_clock.py::test_after"]
    child = run_child(root, [ids])
    assert ran(child) == ids
    stamps = [event["t"] for event in child.events if "t" in event]
    assert len(stamps) == 6  # hello, collected, and each test's start and end
    assert all(stamp > 0 for stamp in stamps)
    assert stamps == sorted(stamps)


# -- messages ----------------------------------------------------------------------------

MESSAGES = """\
    def test_no_fixture(nope):
        pass

    def test_hostile_text():
        raise AssertionError("lone \\ud800 nul \\x00 clear \\x1b[2J end")
"""


def test_messages_name_what_went_wrong_and_survive_any_text(tmp_path: Path) -> None:
    root = project(tmp_path, {"test_text.py": MESSAGES})
    child = run_child(root, [["test_text.py::test_no_fixture", "test_text.py::test_hostile_text"]])
    assert child.raw.isascii()
    decoded, used = parse.decode_events(child.raw)
    assert used == len(child.raw)
    ends = {event.test_id: event for event in decoded if isinstance(event, events.End)}
    assert ends["test_text.py::test_no_fixture"].message == "fixture 'nope' not found"
    assert ends["test_text.py::test_no_fixture"].outcome == "error"
    hostile = ends["test_text.py::test_hostile_text"]
    assert hostile.message == "AssertionError: lone \ud800 nul \x00 clear \x1b[2J end"
    assert hostile.outcome == "failed"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("file x.py, line 3\n  def test(nope):\nE       fixture 'nope' not found\n"
         ">       available fixtures: a, b\n>       use 'pytest --fixtures'\n\nx.py:3",
         "fixture 'nope' not found"),
        ("E   ValueError: first\nE   second\n", "ValueError: first"),
        ("no marked line\nthe last one\n\n", "the last one"),
        ("", ""),
    ],
)  # fmt: skip
def test_error_line_is_the_first_E_line_else_the_last(text: str, expected: str) -> None:
    assert error_line(text) == expected


def test_the_probes_own_module_needs_nothing_but_the_standard_library() -> None:
    """The child loads ``probeio`` from its file: it may import neither mtest nor pytest."""
    tree = ast.parse(Path(worker.PROBE_PATH).with_name("probeio.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "json" in imported
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (None, 0),
        (SystemExit(), 0),
        (SystemExit(3), 3),
        (SystemExit("message"), 1),
        (ValueError("boom"), 1),
    ],
)
def test_a_copy_leaves_with_the_status_the_interpreter_would_give(
    error: BaseException | None, status: int
) -> None:
    assert exit_status_of(error) == status


def test_every_variable_the_child_side_reads_is_a_protocol_variable_a_child_never_inherits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # mtest's own suite runs mtest inside mtest's workers: an inherited MTEST_LAZY
    # once made an inner eager child wait for a walk that never came.
    src = Path(worker.__file__).parent
    read: set[str] = set()
    for name in ("probe.py", "probelazy.py", "probeio.py"):
        tree = ast.parse((src / name).read_text())
        read |= {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("MTEST_")
        }
    assert read, "the probe reads its settings from MTEST_* variables"
    assert read <= worker.PROTOCOL_VARS, sorted(read - worker.PROTOCOL_VARS)
    files = ChildFiles(
        events_path=Path("e"), output_path=Path("o"), stacks_path=Path("s"),
        events_fd=-1, output_fd=-1, stacks_fd=-1,
    )  # fmt: skip
    launch = worker.Launch(
        python=sys.executable, args=(), cwd=Path("."), base=Path("b"),
        cache_dir=Path("c"), env={"MTEST_WORKER": "3"},
    )  # fmt: skip
    inherited = {"MTEST_LAZY": "1", "MTEST_LISTING": "x", "MTEST_TIMEOUT": "9"}
    for name, value in inherited.items():
        monkeypatch.setenv(name, value)
    env = worker._child_env(launch, files, control_fd=5, notify_fd=6)
    assert not set(inherited) & set(env)
    assert env["MTEST_WORKER"] == "3" and env["MTEST_CONTROL_FD"] == "5"
