"""``--container``: real mtest runs whose real pytest workers run in containers of a real engine.

The engine and the image come from the environment, as ``.ci/engine start``
sets it: ``DOCKER_HOST`` (the engine), ``MTEST_TEST_IMAGE`` (an image with
python3 and pytest), ``MTEST_TEST_TCP_HOST`` (the same engine over TCP).
Without them the tests skip, saying what is "not installed" (``REQUIRE_COMPONENTS=1``
turns that into a failure in CI).

What is checked: the same outcome per test in a container as on the host (a
hostile suite and the self-check's scenarios); the labels while a run is
going and the removal of every container of the run after a normal end, a
Ctrl-C and a SIGKILL of mtest (the watchdog); ``mtest cleanup`` removing only
dead runs' containers; a remote engine (``DOCKER_HOST``, ``--docker-host``);
``--image-tar``; the lock serialising two runs; one clear line for bad input;
the container counts in the metrics. Whatever waits, waits for a condition
(a file, a line of output, the engine's list), never for a time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    error_lines,
    finals,
    finish,
    mtest_env,
    records,
    run_mtest,
    run_processes,
    start_mtest,
    wait_for_file,
    write_suite,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

GUARD_S = 180.0
"""A hang guard for each mtest run and each wait, far above what a loaded machine needs."""
IMAGE = os.environ.get("MTEST_TEST_IMAGE", "")
TCP_HOST = os.environ.get("MTEST_TEST_TCP_HOST", "")
SELFCHECK = Path(__file__).resolve().parents[1] / "selfcheck_fixtures"
FAST = ["--timeout", "5", "--kill-grace", "2", "-j", "2"]
BLOCKED = ["--timeout", "600"]
"""For a test held on a barrier file: mtest must not call it hung while the test waits."""


# -- the engine ----------------------------------------------------------------------------


def docker(*args: str, host: str | None = None, check: bool = True) -> str:
    """The docker CLI on the engine of ``DOCKER_HOST`` (or ``host``): its stdout."""
    argv = ["docker", *(["--host", host] if host else []), *args]
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=GUARD_S
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def engine_missing() -> str | None:
    """Why the container tests cannot run here, or ``None``."""
    where = os.environ.get("DOCKER_HOST", "docker's default socket")
    if shutil.which("docker") is None:
        return f"container engine not installed: no `docker` on PATH (DOCKER_HOST={where})"
    try:
        version = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        version = subprocess.CompletedProcess([], 1, "", "no answer in 60s")
    if version.returncode != 0 or not version.stdout.strip():
        return f"container engine not installed or not reachable (DOCKER_HOST={where})"
    if not IMAGE:
        return "test image not installed: set MTEST_TEST_IMAGE (`. .ci/engine start` builds it)"
    if docker("image", "inspect", IMAGE, check=False) in ("", "[]\n"):
        return f"test image not installed: {IMAGE} is not on the engine (`. .ci/engine start`)"
    return None


@pytest.fixture(scope="module")
def engine_state() -> str | None:
    return engine_missing()


@pytest.fixture(autouse=True)
def engine(engine_state: str | None) -> None:
    if engine_state is not None:
        pytest.skip(engine_state)


def containers(*labels: str, host: str | None = None) -> list[str]:
    """The engine's containers (running or not) carrying every ``key=value`` of ``labels``."""
    filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
    return docker("ps", "-a", "-q", "--no-trunc", *filters, host=host).split()


def tcp_engine() -> str:
    """``MTEST_TEST_TCP_HOST``: the engine over TCP (a remote engine's URL)."""
    if not TCP_HOST:
        pytest.skip("remote engine not installed: set MTEST_TEST_TCP_HOST (`. .ci/engine start`)")
    return TCP_HOST


def wait_until(what: str, condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (polled), failing after ``GUARD_S`` with ``what``."""
    deadline = time.monotonic() + GUARD_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {GUARD_S:g}s: {what}")
        time.sleep(0.1)


def container_counts(gates: Path) -> dict[str, int]:
    """The summary's "## Containers" line, as numbers."""
    summary = (gates / "last-run" / "summary.md").read_text()
    found = re.search(
        r"(\d+) container\(s\) started, (\d+) start failure\(s\), (\d+) timeout\(s\) "
        r"\(killed after the grace\), (\d+) cleanup failure\(s\)",
        summary,
    )
    assert found, summary
    keys = ("started", "start_failures", "timeouts", "cleanup_failures")
    return dict(zip(keys, map(int, found.groups()), strict=True))


def outcomes(gates: Path) -> dict[str, str]:
    return {t: r["outcome"] for t, r in finals(gates).items()}


def run_id_of(gates: Path) -> str:
    (run_id,) = {r["run_id"] for r in records(gates)}
    return str(run_id)


def start_time(pid: int) -> str:
    """Field 22 of ``/proc/<pid>/stat``: the process's start, in clock ticks since boot."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[19]


def contained(args: Sequence[str] = ()) -> list[str]:
    return ["--container", IMAGE, *args]


INSIDE = (
    "import os\n\n\n"
    "def test_runs_in_a_container():\n"
    "    assert os.path.exists('/.dockerenv')  # docker makes it in every container\n"
)
"""Guards the tests against passing vacuously: on the host, this test fails."""


# -- outcome parity ------------------------------------------------------------------------

HOSTILE = {
    "test_hostile.py": (
        "import ctypes, faulthandler, os, signal, subprocess, sys, time\n"
        "import pytest\n\n\n"
        "@pytest.fixture\n"
        "def broken():\n"
        "    raise RuntimeError('the fixture breaks')\n\n\n"
        "def test_passes():\n"
        "    pass\n\n\n"
        "def test_fails():\n"
        "    assert 1 == 2\n\n\n"
        "def test_errors_in_a_fixture(broken):\n"
        "    pass\n\n\n"
        "def test_skips():\n"
        "    pytest.skip('not here')\n\n\n"
        "@pytest.mark.xfail(strict=True)\n"
        "def test_xfails():\n"
        "    assert 1 == 2\n\n\n"
        "def test_segfaults():\n"
        "    ctypes.string_at(0)\n\n\n"
        "def test_hangs():\n"
        "    faulthandler.cancel_dump_traceback_later()  # stacks only on mtest's SIGUSR2\n"
        "    time.sleep(600)\n\n\n"
        "def test_hangs_ignoring_sigterm():\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    time.sleep(600)\n\n\n"
        "def test_os_exit_0():\n"
        "    os._exit(0)\n\n\n"
        "def test_leaves_a_grandchild():\n"
        "    code = 'import time; time.sleep(600)'\n"
        "    subprocess.Popen([sys.executable, '-c', code], start_new_session=True)\n"
    ),
}
HOSTILE_OUTCOMES = {
    "test_passes": "passed",
    "test_fails": "failed",
    "test_errors_in_a_fixture": "error",
    "test_skips": "skipped",
    "test_xfails": "xfailed",
    "test_segfaults": "crashed",
    "test_hangs": "hung",
    "test_hangs_ignoring_sigterm": "hung",
    "test_os_exit_0": "crashed",
    "test_leaves_a_grandchild": "passed",
}


def test_outcomes_in_a_container_are_the_hosts(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", HOSTILE)
    gates = project / ".gates"
    host = run_mtest(FAST, project, timeout=GUARD_S)
    on_host = outcomes(gates)
    boxed = run_mtest(contained(FAST), project, timeout=GUARD_S)
    assert boxed.returncode == host.returncode == 1, boxed.stdout + boxed.stderr
    assert outcomes(gates) == on_host
    assert {t.rpartition("::")[2]: o for t, o in on_host.items()} == HOSTILE_OUTCOMES
    messages = {t.rpartition("::")[2]: r["message"] for t, r in finals(gates).items()}
    assert "signal 11 (SIGSEGV)" in messages["test_segfaults"]
    assert "os._exit" in messages["test_os_exit_0"]
    assert "ignored SIGTERM; SIGKILL after 2s" in messages["test_hangs_ignoring_sigterm"]
    # The hung test's stacks: SIGUSR2, relayed by the CLI and the container's init to pytest.
    bundle = gates / "last-run" / finals(gates)["test_hostile.py::test_hangs"]["bundle"]
    assert "in test_hangs" in bundle.read_text()
    counts = container_counts(gates)
    assert counts["started"] >= 1 and counts["timeouts"] >= 1, counts
    assert counts["start_failures"] == counts["cleanup_failures"] == 0, counts
    run_id = run_id_of(gates)
    assert containers(f"mtest.run={run_id}") == []
    assert run_processes(run_id) == []  # the grandchild too


# -- the self-check's scenarios ------------------------------------------------------------

SELFCHECK_FLAGS = ["--timeout", "2", "--kill-grace", "1", "-j", "3", "-q", "--no-isolate-failures"]
"""What ``mtest --self-check`` runs its scenarios with (``selfcheck._check_config``)."""
PARENT_SIGNAL = "test_parent_signal.py::test_sends_sigterm_to_its_parent"
"""The scenario whose test sends SIGTERM to its parent. On the host that is mtest, which
notes it and goes on; in a container it is mtest's init (``containers.INIT``), which
ignores signals sent from inside the container (it passes on only the engine's, which
come from outside): the test passes in both."""


def selfcheck_outcomes(suite: Path, args: Sequence[str]) -> tuple[int, dict[str, str]]:
    gates = suite / ".gates"
    pids = suite / "pids.txt"  # the scenarios' pid file, inside the mounted project
    env = {"MTEST_SELFCHECK_PIDS": str(pids)}
    done = run_mtest([*args, *SELFCHECK_FLAGS, "--gates-dir", str(gates)], suite, env=env,
                     timeout=GUARD_S)  # fmt: skip
    assert len(records(gates)) == len(finals(gates)), "a test has more than one record"
    return done.returncode, outcomes(gates)


def test_the_selfcheck_scenarios_have_the_hosts_outcomes_in_a_container(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    shutil.copytree(SELFCHECK, suite, ignore=shutil.ignore_patterns("__pycache__", ".gates"))
    expected = json.loads((SELFCHECK / "expected.json").read_text())
    wanted = {t: o for s in expected["scenarios"] for t, o in s["outcomes"].items()}
    host_code, on_host = selfcheck_outcomes(suite, [])
    assert (host_code, on_host) == (1, wanted)
    boxed_code, boxed = selfcheck_outcomes(suite, contained())
    assert boxed_code == 1
    assert set(boxed) == set(on_host)
    differ = {t: (on_host[t], boxed[t]) for t in on_host if boxed[t] != on_host[t]}
    assert differ == {}  # every scenario, the parent signal's too
    assert boxed[PARENT_SIGNAL] == "passed"
    assert boxed["test_parent_signal.py::test_runs_after_the_signal"] == "passed"
    assert containers(f"mtest.run={run_id_of(suite / '.gates')}") == []


# -- labels while running, removal after the end, Ctrl-C, SIGKILL --------------------------

BARRIER = {
    "test_barrier.py": (
        "import os, time\n"
        "from pathlib import Path\n\n"
        "HERE = Path(__file__).parent\n\n\n"
        "def test_waits_for_the_barrier():\n"
        "    (HERE / 'up').write_text(os.environ['MTEST_RUN_ID'])\n"
        "    while not (HERE / 'go').exists():\n"
        "        time.sleep(0.05)\n"
        "    assert os.path.exists('/.dockerenv')\n"
    ),
}
"""One test that says it runs (its run id in ``up``) and waits for ``go`` to appear;
both files are in the project, which the container mounts at the same path."""


def test_containers_carry_the_labels_while_running_and_are_gone_after(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", BARRIER)
    started = time.monotonic()
    proc = start_mtest(contained(BLOCKED), project)
    run_id = wait_for_file(project / "up", proc, timeout=GUARD_S)
    labels = ("mtest.run", "mtest.host", "mtest.start")
    rows = docker(
        "ps", "--no-trunc", "--filter", f"label=mtest.pid={proc.pid}",
        "--format", "\t".join(["{{.Names}}", *(f'{{{{.Label "{k}"}}}}' for k in labels)]),
    ).splitlines()  # fmt: skip
    assert rows, f"no running container labelled mtest.pid={proc.pid}"
    for row in rows:
        name, *values = row.split("\t")
        assert name.startswith(f"mtest-{run_id}-"), row
        assert values == [run_id, socket.gethostname(), start_time(proc.pid)], row
    # The labels say the run is alive: `mtest cleanup` leaves its containers alone.
    swept = run_mtest(["cleanup"], tmp_path, timeout=GUARD_S)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert len(containers(f"mtest.run={run_id}")) == len(rows)
    (project / "go").touch()
    done = finish(proc, started, timeout=GUARD_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert outcomes(project / ".gates") == {"test_barrier.py::test_waits_for_the_barrier": "passed"}
    assert containers(f"mtest.run={run_id}") == []
    assert containers(f"mtest.pid={proc.pid}") == []


def test_ctrl_c_removes_the_runs_containers(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", BARRIER)
    started = time.monotonic()
    proc = start_mtest(contained(BLOCKED), project)
    run_id = wait_for_file(project / "up", proc, timeout=GUARD_S)
    assert containers(f"mtest.run={run_id}")
    proc.send_signal(signal.SIGINT)
    done = finish(proc, started, timeout=GUARD_S)
    assert done.returncode == 2, done.stdout + done.stderr
    assert containers(f"mtest.run={run_id}") == []
    wait_until(f"no process of run {run_id} is left", lambda: not run_processes(run_id))


@pytest.mark.parametrize("where", ["DOCKER_HOST", "--docker-host"])
def test_the_watchdog_removes_the_containers_of_a_sigkilled_mtest(
    tmp_path: Path, where: str
) -> None:
    """With ``--docker-host`` (and ``DOCKER_HOST`` naming no engine) the watchdog must use
    the run's engine, not its own environment's."""
    project = write_suite(tmp_path / "p", BARRIER)
    args, env, host = contained(BLOCKED), {}, None
    if where == "--docker-host":
        host = tcp_engine()
        args += ["--docker-host", host]
        env = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    started = time.monotonic()
    proc = start_mtest(args, project, env=env)
    run_id = wait_for_file(project / "up", proc, timeout=GUARD_S)
    assert containers(f"mtest.run={run_id}", host=host)
    proc.send_signal(signal.SIGKILL)
    finish(proc, started, timeout=GUARD_S)
    wait_until(
        f"no container of run {run_id}", lambda: not containers(f"mtest.run={run_id}", host=host)
    )
    wait_until(f"no process of run {run_id} is left", lambda: not run_processes(run_id))


# -- mtest cleanup -------------------------------------------------------------------------


@pytest.fixture
def dead_process() -> tuple[int, str]:
    """The pid and start time of a process that has ended."""
    proc = subprocess.Popen(["sleep", "600"])
    start = start_time(proc.pid)
    proc.kill()
    proc.wait()
    return proc.pid, start


@pytest.fixture
def mine() -> Iterator[str]:
    """A label for the containers a test makes itself; they are removed at the end."""
    label = f"mtest-ctests.case={uuid.uuid4().hex}"
    yield label
    left = containers(label)
    if left:
        docker("rm", "-f", *left, check=False)


def make_container(mine: str, labels: Mapping[str, str]) -> str:
    """A sleeping container with ``labels`` (and ``mine``): its name."""
    name = f"mtest-ctests-{uuid.uuid4().hex[:12]}"
    flags = [f"--label={k}={v}" for k, v in labels.items()]
    docker("run", "-d", "--init", "--network", "none", "--name", name, f"--label={mine}",
           *flags, IMAGE, "sleep", "600")  # fmt: skip
    return name


def names(*labels: str) -> set[str]:
    filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
    return {n.lstrip("/") for n in docker("ps", "-a", *filters, "--format", "{{.Names}}").split()}


def run_labels(
    run: str, pid: int, *, host: str | None = None, start: str | None = None
) -> dict[str, str]:
    """mtest's labels for a container of run ``run`` whose supervisor was ``pid``."""
    labels = {"mtest.run": run, "mtest.pid": str(pid), "mtest.host": host or socket.gethostname()}
    return labels | ({"mtest.start": start} if start is not None else {})


def test_cleanup_removes_only_the_containers_of_dead_runs(
    tmp_path: Path, mine: str, dead_process: tuple[int, str]
) -> None:
    dead_pid, dead_start = dead_process
    me, tag = os.getpid(), uuid.uuid4().hex[:8]
    dead = [
        make_container(mine, run_labels(f"ctests-dead-{tag}", dead_pid, start=dead_start)),
        make_container(mine, run_labels(f"ctests-dead-no-start-{tag}", dead_pid)),
        # Our pid, but another process's start time: the pid was reused, the run is dead.
        make_container(
            mine, run_labels(f"ctests-reused-{tag}", me, start=str(int(start_time(me)) + 1))
        ),
    ]
    kept = [
        make_container(mine, run_labels(f"ctests-alive-{tag}", me, start=start_time(me))),
        make_container(mine, run_labels(f"ctests-alive-no-start-{tag}", me)),
        make_container(
            mine, run_labels(f"ctests-elsewhere-{tag}", dead_pid, host="not-this-host.invalid")
        ),
        make_container(mine, {}),  # no mtest label at all
    ]
    assert names(mine) == {*dead, *kept}
    done = run_mtest(["cleanup", "--retries", "1"], tmp_path, timeout=GUARD_S)
    assert done.returncode == 0, done.stdout + done.stderr
    # Only what the engine shows is asserted of the dead: a concurrent `mtest cleanup` (another
    # test's, under a parallel runner) may be the one that removed them.
    assert names(mine) == set(kept)
    assert re.search(r"^mtest cleanup: \d+ removed, 0 could not be removed", done.stdout, re.M)
    assert not any(name in done.stdout for name in kept), done.stdout


def test_cleanup_uses_the_engine_and_runtime_it_is_given(
    tmp_path: Path, mine: str, dead_process: tuple[int, str]
) -> None:
    """``mtest cleanup --container-runtime docker --docker-host URL``: that engine, whatever
    ``DOCKER_HOST`` says."""
    host = tcp_engine()
    pid, start = dead_process
    dead = make_container(mine, run_labels(f"ctests-dead-{uuid.uuid4().hex[:8]}", pid, start=start))
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    args = ["cleanup", "--container-runtime", "docker", "--docker-host", host]
    done = run_mtest(args, tmp_path, env=env, timeout=GUARD_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert names(mine) == set(), dead


# -- a remote engine -----------------------------------------------------------------------


def test_a_remote_engine_through_docker_host_and_the_flag(tmp_path: Path) -> None:
    tcp_host = tcp_engine()
    project = write_suite(tmp_path / "p", {"test_inside.py": INSIDE})
    gates = project / ".gates"
    ways: list[tuple[list[str], dict[str, str]]] = [
        ([], {"DOCKER_HOST": tcp_host}),
        (["--docker-host", tcp_host], {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}),
    ]
    for flags, env in ways:
        done = run_mtest(contained(flags), project, env=env, timeout=GUARD_S)
        assert done.returncode == 0, f"{flags} {env}\n{done.stdout}{done.stderr}"
        assert outcomes(gates) == {"test_inside.py::test_runs_in_a_container": "passed"}
        assert container_counts(gates)["started"] >= 1
        assert containers(f"mtest.run={run_id_of(gates)}", host=tcp_host) == []


# -- --image-tar ---------------------------------------------------------------------------


@pytest.fixture
def saved_image(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A unique name for the test image, saved to a tarball and then removed from the engine."""
    name = f"mtest-ctests-{uuid.uuid4().hex[:12]}:saved"
    tar = tmp_path / "image.tar"
    docker("tag", IMAGE, name)
    try:
        docker("save", "-o", str(tar), name)
        docker("rmi", name)  # only the tag: the image stays under its own name
        yield name, tar
    finally:
        docker("rmi", name, check=False)
        tar.unlink(missing_ok=True)


def test_image_tar_loads_a_missing_image(tmp_path: Path, saved_image: tuple[str, Path]) -> None:
    name, tar = saved_image
    project = write_suite(tmp_path / "p", {"test_inside.py": INSIDE})
    assert not docker("images", "-q", name).strip()  # missing until mtest loads it
    done = run_mtest(["--container", name, "--image-tar", str(tar)], project, timeout=GUARD_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"loaded image {name} from {tar}" in done.stdout
    assert docker("images", "-q", name).strip()
    assert outcomes(project / ".gates") == {"test_inside.py::test_runs_in_a_container": "passed"}


# -- the container lock --------------------------------------------------------------------


def start_to_files(args: Sequence[str], cwd: Path, out: Path) -> subprocess.Popen[bytes]:
    """mtest with its stdout and stderr in ``out`` (readable while it runs)."""
    with out.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "supervisor", *args], cwd=cwd, env=mtest_env(),
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def ended(proc: subprocess.Popen[Any], out: Path) -> int:
    try:
        return proc.wait(timeout=GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"mtest did not finish\n{out.read_text()}") from None


def test_the_lock_serialises_two_runs_of_one_project(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", BARRIER)
    lock = ["--container-lock", str(tmp_path / "engine.lock")]
    a_out, b_out = tmp_path / "a.txt", tmp_path / "b.txt"
    a = start_to_files(contained([*BLOCKED, *lock]), project, a_out)
    try:
        wait_until(
            "run A's test is running", lambda: (project / "up").exists() or a.poll() is not None
        )
        a_run = (project / "up").read_text()
        assert a_run and a.poll() is None, a_out.read_text()
        gates_b = ["--gates-dir", str(tmp_path / "gates-b")]
        b = start_to_files(contained([*BLOCKED, *lock, *gates_b]), project, b_out)
        waiting = f"waiting for the container lock {tmp_path / 'engine.lock'} (held by pid {a.pid}"
        wait_until("run B waits for the lock", lambda: waiting in b_out.read_text())
        assert b.poll() is None, b_out.read_text()
        assert containers(f"mtest.pid={b.pid}") == []  # B has no container while A holds it
        assert containers(f"mtest.run={a_run}")
    finally:
        (project / "go").touch()
    assert ended(a, a_out) == 0, a_out.read_text()
    assert ended(b, b_out) == 0, b_out.read_text()
    test_id = "test_barrier.py::test_waits_for_the_barrier"
    assert outcomes(project / ".gates") == {test_id: "passed"}
    assert outcomes(tmp_path / "gates-b") == {test_id: "passed"}
    assert run_id_of(tmp_path / "gates-b") != a_run
    assert containers(f"mtest.pid={a.pid}") == containers(f"mtest.pid={b.pid}") == []


# -- bad input -----------------------------------------------------------------------------

BAD_INPUT = {
    "unknown runtime": ([IMAGE, "--container-runtime", "rkt"], "`rkt`"),
    "unreachable engine": ([IMAGE, "--docker-host", "tcp://127.0.0.1:1"], "tcp://127.0.0.1:1"),
    "missing image": (["mtest-ctests-missing:{tag}"], "mtest-ctests-missing:{tag}"),
    "junk image tar": (["mtest-ctests-missing:{tag}", "--image-tar", "{junk}"], "`{junk}`"),
    "container and sandbox": ([IMAGE, "--sandbox"], "--sandbox"),
    "image tar without a container": (["--image-tar", "{junk}"], "--image-tar"),
}
"""Each case: what follows ``--container`` (none in the last case), and what the error names."""
ENGINE_ERRORS = ("unknown runtime", "unreachable engine", "missing image", "junk image tar")


def bad_args(case: str, tmp_path: Path) -> tuple[list[str], str]:
    """The arguments of a ``BAD_INPUT`` case (a junk tarball made), and the value to name."""
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not an image tarball\n" * 64)
    values = {"tag": uuid.uuid4().hex[:12], "junk": str(junk)}
    words, named = BAD_INPUT[case]
    args = [word.format(**values) for word in words]
    if case != "image tar without a container":
        args.insert(0, "--container")
    return args, named.format(**values)


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_clear_line_and_leaves_no_container(tmp_path: Path, case: str) -> None:
    args, named = bad_args(case, tmp_path)
    project = write_suite(tmp_path / "p", {"test_inside.py": INSIDE})
    started = time.monotonic()
    proc = start_mtest(args, project)
    done = finish(proc, started, timeout=GUARD_S)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = error_lines(done.stdout) + error_lines(done.stderr)
    assert len(lines) == 1, lines
    assert lines[0].startswith("mtest: error: ") and named in lines[0], lines
    assert containers(f"mtest.pid={proc.pid}") == []


def test_an_engine_error_leaves_the_last_runs_records(tmp_path: Path) -> None:
    """As ``--sandbox``'s usage errors do (docs/isolation.md): exit 4 before any test, and
    ``.gates/last-run`` is still the previous run's."""
    project = write_suite(tmp_path / "p", {"test_inside.py": INSIDE})
    gates, kept = project / ".gates", tmp_path / "gates-of-the-last-run"
    assert run_mtest(contained(), project, timeout=GUARD_S).returncode == 0
    shutil.copytree(gates, kept)
    files = ("run.jsonl", "summary.md")
    wiped = []
    for case in ENGINE_ERRORS:
        shutil.rmtree(gates)
        shutil.copytree(kept, gates)
        args, _ = bad_args(case, tmp_path)
        assert run_mtest(args, project, timeout=GUARD_S).returncode == 4
        last_run, before = gates / "last-run", kept / "last-run"
        if any(not (last_run / f).is_file() for f in files) or any(
            (last_run / f).read_bytes() != (before / f).read_bytes() for f in files
        ):
            wiped.append(case)
    assert wiped == [], f"these errors emptied the last run's records: {wiped}"


# -- metrics -------------------------------------------------------------------------------


def test_the_metrics_count_the_containers_started(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_inside.py": INSIDE})
    prom = tmp_path / "m.prom"
    done = run_mtest(contained(["--metrics-file", str(prom)]), project, timeout=GUARD_S)
    assert done.returncode == 0, done.stdout + done.stderr
    samples = dict(
        line.rsplit(" ", 1)
        for line in prom.read_text().splitlines()
        if line.startswith("mtest_last_run_containers{")
    )
    assert float(samples['mtest_last_run_containers{event="started"}']) >= 1, samples
    assert float(samples['mtest_last_run_containers{event="start_failures"}']) == 0, samples
