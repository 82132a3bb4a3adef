"""``--sandbox``: real mtest runs whose real pytest children run under real bubblewrap.

The same suite gives the same outcome per test inside the sandbox as on the
host (pass, fail, segfault, hang, a hang that ignores SIGTERM); inside it a
loopback server outside is refused, a write outside the project fails
read-only unless the path is ``--sandbox-writable``, ``/tmp`` is private and
``tmp_path`` works; nothing outlives the run, even a SIGKILL of mtest.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    error_lines,
    finals,
    finish,
    run_mtest,
    run_processes,
    start_mtest,
    wait_for_file,
    write_suite,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="bubblewrap is Linux's"),
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
    pytest.mark.timeout(600),
]

GUARD_S = 120.0
"""A hang guard for each mtest run, far above what a loaded machine needs."""
OUTCOMES = {
    "test_outcomes.py": (
        "import faulthandler, os, signal, time\n\n\n"
        "def test_passes(tmp_path):\n"
        "    (tmp_path / 'f.txt').write_text('written under the private /tmp')\n"
        "    assert (tmp_path / 'f.txt').read_text().startswith('written')\n\n\n"
        "def test_fails():\n"
        "    assert 1 == 2\n\n\n"
        "def test_segfaults():\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n\n\n"
        "def test_hangs():\n"
        "    faulthandler.cancel_dump_traceback_later()  # stacks only on mtest's SIGUSR2\n"
        "    time.sleep(600)\n\n\n"
        "def test_hangs_ignoring_sigterm():\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    time.sleep(600)\n"
    ),
}


def outcomes(project: Path) -> dict[str, tuple[str, str]]:
    return {t: (r["outcome"], r["message"]) for t, r in finals(project / ".gates").items()}


def test_outcomes_inside_the_sandbox_are_the_local_ones(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", OUTCOMES)
    flags = ["--timeout", "3", "--kill-grace", "1"]
    local = run_mtest(flags, project, timeout=GUARD_S)
    local_outcomes = outcomes(project)
    boxed = run_mtest([*flags, "--sandbox"], project, timeout=GUARD_S)
    assert boxed.returncode == local.returncode == 1, boxed.stderr
    assert outcomes(project) == local_outcomes
    assert {t.rpartition("::")[2]: o for t, (o, _) in local_outcomes.items()} == {
        "test_passes": "passed",
        "test_fails": "failed",
        "test_segfaults": "crashed",
        "test_hangs": "hung",
        "test_hangs_ignoring_sigterm": "hung",
    }
    messages = {t.rpartition("::")[2]: m for t, (_, m) in outcomes(project).items()}
    assert "signal 11 (SIGSEGV)" in messages["test_segfaults"]
    assert "ended on SIGTERM" in messages["test_hangs"]
    assert "ignored SIGTERM; SIGKILL after 1s" in messages["test_hangs_ignoring_sigterm"]
    # The hung test's stacks come from pytest's process inside (SIGUSR2), not from bwrap.
    hung = finals(project / ".gates")["test_outcomes.py::test_hangs"]
    bundle = project / ".gates" / "last-run" / hung["bundle"]
    assert "in test_hangs" in bundle.read_text()


@pytest.fixture
def server() -> Iterator[int]:
    """A loopback TCP server outside any sandbox, accepting connections: its port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


NETWORK = {
    "test_net.py": (
        "import os, socket\n\n\n"
        "def test_reaches_the_server():\n"
        "    with socket.create_connection(('127.0.0.1', int(os.environ['PORT'])), timeout=30):\n"
        "        pass\n"
    ),
}


def test_a_loopback_server_outside_the_sandbox_is_refused(tmp_path: Path, server: int) -> None:
    project = write_suite(tmp_path / "p", NETWORK)
    env = {"PORT": str(server)}
    local = run_mtest([], project, env=env, timeout=GUARD_S)
    assert local.returncode == 0, local.stdout + local.stderr  # the server is reachable
    boxed = run_mtest(["--sandbox"], project, env=env, timeout=GUARD_S)
    assert boxed.returncode == 1, boxed.stderr
    record = finals(project / ".gates")["test_net.py::test_reaches_the_server"]
    assert record["outcome"] == "failed"  # the test's own failure, not a hang
    assert "ConnectionRefusedError" in record["message"] or "refused" in record["message"]


WRITES = {
    "test_write.py": (
        "import os\n"
        "from pathlib import Path\n\n\n"
        "def test_writes_outside_the_project():\n"
        "    Path(os.environ['OUTSIDE'], 'out.txt').write_text('from inside')\n"
    ),
}


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside the project and outside /tmp (which the sandbox replaces)."""
    path = Path(tempfile.mkdtemp(prefix="mtest-sandbox-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_writes_outside_the_project_fail_read_only_unless_named_writable(
    tmp_path: Path, outside: Path
) -> None:
    project = write_suite(tmp_path / "p", WRITES)
    env = {"OUTSIDE": str(outside)}
    refused = run_mtest(["--sandbox"], project, env=env, timeout=GUARD_S)
    assert refused.returncode == 1, refused.stderr
    record = finals(project / ".gates")["test_write.py::test_writes_outside_the_project"]
    assert record["outcome"] == "failed"
    assert "Read-only file system" in record["message"]
    assert not (outside / "out.txt").exists()
    allowed = run_mtest(
        ["--sandbox", "--sandbox-writable", str(outside)], project, env=env, timeout=GUARD_S
    )
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert (outside / "out.txt").read_text() == "from inside"


PRIVATE_TMP = {
    "test_tmp.py": (
        "import os\n\n\n"
        "def test_the_hosts_tmp_file_is_not_seen():\n"
        "    assert not os.path.exists(os.environ['SECRET'])\n"
    ),
}


def test_tmp_is_private(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", PRIVATE_TMP)
    fd, secret = tempfile.mkstemp(prefix="mtest-sandbox-secret-", dir="/tmp")
    os.close(fd)
    try:
        env = {"SECRET": secret}
        local = run_mtest([], project, env=env, timeout=GUARD_S)
        assert local.returncode == 1, local.stderr  # the host's /tmp has it
        boxed = run_mtest(["--sandbox"], project, env=env, timeout=GUARD_S)
        assert boxed.returncode == 0, boxed.stdout + boxed.stderr
        assert Path(secret).exists()
    finally:
        os.unlink(secret)


LEAKY = {
    "test_leak.py": (
        "import os, subprocess, sys, time\n"
        "from pathlib import Path\n\n\n"
        "def test_leaves_a_daemon():\n"
        "    code = 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "time.sleep(600)'\n"
        "    subprocess.Popen([sys.executable, '-c', code], start_new_session=True)\n\n\n"
        "def test_sleeps():\n"
        "    Path(os.environ['MARKS'], 'up').write_text(os.environ['MTEST_RUN_ID'])\n"
        "    time.sleep(600)\n"
    ),
}


def wait_until_gone(run_id: str) -> list[int]:
    deadline = time.monotonic() + GUARD_S
    while (alive := run_processes(run_id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def test_nothing_outlives_a_sandboxed_run_even_a_sigkill_of_mtest(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", LEAKY)
    marks = tmp_path / "marks"
    marks.mkdir()
    started = time.monotonic()
    proc = start_mtest(
        ["--sandbox", "--sandbox-writable", str(marks)], project, env={"MARKS": str(marks)}
    )
    run_id = wait_for_file(marks / "up", proc, timeout=GUARD_S)
    assert run_processes(run_id)  # the sandboxed workers (and the daemon) are up
    proc.send_signal(signal.SIGKILL)
    finish(proc, started, timeout=GUARD_S)
    assert wait_until_gone(run_id) == []


def test_a_finished_sandboxed_run_leaves_nothing(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_leak.py": LEAKY["test_leak.py"]})
    done = run_mtest(
        ["--sandbox", "-k", "daemon"], project, env={"MARKS": str(tmp_path)}, timeout=GUARD_S
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = finals(project / ".gates")["test_leak.py::test_leaves_a_daemon"]["run_id"]
    assert wait_until_gone(run_id) == []


def test_without_bwrap_the_run_stops_before_any_test_naming_the_package(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_ok.py": "def test_ok():\n    pass\n"})
    empty = tmp_path / "bin"
    empty.mkdir()
    done = run_mtest(["--sandbox"], project, env={"PATH": str(empty)}, timeout=GUARD_S)
    assert done.returncode == 4
    lines = error_lines(done.stderr)
    assert "bwrap" in lines[0] and "not on PATH" in lines[0]
    assert any("apt-get install bubblewrap" in line for line in lines)
    assert not (project / ".gates" / "last-run" / "run.jsonl").exists()


def test_bwrap_unable_to_make_namespaces_is_one_clear_line(tmp_path: Path) -> None:
    project = write_suite(tmp_path / "p", {"test_ok.py": "def test_ok():\n    pass\n"})
    fake = tmp_path / "bin"
    fake.mkdir()
    # A bwrap that fails as one does where user namespaces are off.
    (fake / "bwrap").write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"
    )
    (fake / "bwrap").chmod(0o755)
    path = f"{fake}{os.pathsep}{os.environ.get('PATH', '')}"
    done = run_mtest(["--sandbox"], project, env={"PATH": path}, timeout=GUARD_S)
    assert done.returncode == 4
    lines = error_lines(done.stderr)
    assert "cannot create the sandbox here" in lines[0]
    assert "No permissions to creating new namespace" in lines[0]
    assert not (project / ".gates" / "last-run" / "run.jsonl").exists()


def test_bwrap_is_really_what_runs_the_workers(tmp_path: Path) -> None:
    """Guards the tests above against passing vacuously: inside, the network is gone."""
    project = write_suite(
        tmp_path / "p",
        {
            "test_inside.py": (
                "import socket\n\n\n"
                "def test_only_loopback():\n"
                "    names = [name for _, name in socket.if_nameindex()]\n"
                "    assert names == ['lo']\n"
            )
        },
    )
    done = run_mtest(["--sandbox"], project, timeout=GUARD_S)
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_mtest([], project, timeout=GUARD_S).returncode == 1  # the host has more
