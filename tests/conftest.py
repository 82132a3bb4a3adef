"""Shared helpers for the integration tests: run mtest as a real process, read its records.

mtest always runs as ``python -m supervisor`` in a child process, in its own
session (so a test timeout can kill whatever it left behind), with the outer
pytest's and any outer mtest's variables removed from its environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REQUIRE_COMPONENTS = os.environ.get("REQUIRE_COMPONENTS") == "1"
"""Set by ``.ci/run``: a test skipped because a component "is not installed" fails instead
(CI installs every component; a developer's machine may lack some, and skips)."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Any:  # a TestReport; Any keeps pytest's private types out
    report = yield
    if REQUIRE_COMPONENTS and report.skipped and "not installed" in str(report.longrepr):
        report.outcome = "failed"
        report.longrepr = f"REQUIRE_COMPONENTS=1 and a component is missing: {report.longrepr}"
    return report


@dataclass(frozen=True, kw_only=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float


def mtest_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for an mtest child: ours, minus pytest's and an outer mtest's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "MTEST_")) and k != "NO_COLOR"
    }
    env.update(extra or {})
    return env


def start_mtest(
    args: Sequence[str], cwd: Path, *, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``python -m supervisor ARGS`` in ``cwd`` without waiting for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "supervisor", *args],
        cwd=cwd,
        env=mtest_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], started: float, timeout: float) -> Completed:
    """Wait for ``proc``; on timeout kill its whole session and fail loudly."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        tail = f"{out[-2000:]}\n{err[-2000:]}"
        raise AssertionError(f"mtest did not finish in {timeout}s\n{tail}") from None
    return Completed(
        returncode=proc.returncode, stdout=out, stderr=err, elapsed=time.monotonic() - started
    )


def run_mtest(
    args: Sequence[str],
    cwd: Path,
    *,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> Completed:
    """Run mtest to completion and return what it did."""
    started = time.monotonic()
    return finish(start_mtest(args, cwd, env=env), started, timeout)


def write_suite(root: Path, files: Mapping[str, str]) -> Path:
    """A small pytest project: ``files`` plus a ``pytest.ini`` that pins the rootdir."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text("[pytest]\nmarkers =\n    smoke: tier 0\n")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def records(gates_dir: Path) -> list[dict[str, Any]]:
    """Every complete line of ``last-run/run.jsonl``, parsed."""
    text = (gates_dir / "last-run" / "run.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def finals(gates_dir: Path) -> dict[str, dict[str, Any]]:
    """The last record of each test: its result in that run."""
    return {r["test_id"]: r for r in records(gates_dir)}


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _is_zombie(pid: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone already
    return stat.rpartition(")")[2].split()[0] == "Z"


def run_processes(run_id: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries ``MTEST_RUN_ID=run_id``."""
    needle = f"MTEST_RUN_ID={run_id}".encode()
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ and not _is_zombie(entry.name):
            alive.append(int(entry.name))
    return alive


def wait_for_file(path: Path, proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """Wait until a test has written ``path`` (it is running); its text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"mtest ended early ({proc.returncode})\n{out}\n{err}")
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")
