"""The pytest plugin that mtest loads into every child (``-p``).

It is the supervisor's eyes inside the child. It

* writes a flushed JSONL event stream (``MTEST_EVENTS``): the collected tests,
  each test's start, and each test's end with the outcome decided from its
  phase reports — a killed child writes no JUnit XML, but the stream survives;
* runs the tests the supervisor names, chunk by chunk, from files of node ids
  read over a pipe (``MTEST_CONTROL_FD``) instead of thousands of command-line
  arguments, so the suite is collected once per child however many chunks it runs;
* turns ``KeyboardInterrupt`` and ``pytest.exit()`` raised inside a test into an
  ordinary failure of that test, so one test cannot end the session;
* registers faulthandler on ``SIGUSR2`` (``MTEST_STACKS``) so the supervisor can
  get every thread's stack before it kills a hung child, even when a C loop
  holds the GIL;
* dies with its supervisor (``PR_SET_PDEATHSIG`` where Linux has it, and a
  watcher thread everywhere).

It runs inside the project's interpreter, which may not have mtest installed:
it is loaded from its file path and imports only the standard library and pytest.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Generator, Iterable, Sequence
from typing import IO, Any

import pytest

# Captured output and tracebacks in the event stream are capped, keeping the
# head and the tail: a test that floods 150 MiB must not flood mtest too.
CAP_BYTES = 1024 * 1024
MESSAGE_CHARS = 500
# Markers that say how a test is built, not what kind of test it is.
STRUCTURAL_MARKERS = frozenset({"parametrize", "usefixtures", "filterwarnings"})
PARENT_POLL_S = 0.5
STACKS_SIGNAL = signal.SIGUSR2

_FAIL = "failed"
_PASS = "passed"
_SKIP = "skipped"


def cap_text(text: str, limit: int = CAP_BYTES) -> str:
    """Keep the head and tail of ``text`` within ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    half = max(1, limit // 2)
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... mtest cut {cut} characters ...]\n{text[-half:]}"


def first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()[:MESSAGE_CHARS]
    return ""


def outcome_of(phases: Sequence[tuple[str, str, bool]]) -> tuple[str, int]:
    """Decide a test's outcome from its phase reports.

    ``phases`` holds ``(when, outcome, wasxfail)`` for each setup/call/teardown
    report in order. Returns the outcome name and the index of the phase that
    decided it (its traceback is the test's story). A failed body wins over a
    teardown error; a failed setup or teardown alone is an ``error``.
    """
    decided = ("passed", -1)
    for index, (when, outcome, wasxfail) in enumerate(phases):
        if when == "call":
            if outcome == _FAIL:
                return "failed", index
            if outcome == _SKIP:
                decided = ("xfailed" if wasxfail else "skipped", index)
            elif wasxfail:
                decided = ("xpassed", index)
            else:
                decided = ("passed", index)
        elif outcome == _FAIL:
            return "error", index
        elif outcome == _SKIP and when == "setup":
            decided = ("xfailed" if wasxfail else "skipped", index)
    if not phases:
        return "error", -1
    return decided


def _message(report: pytest.TestReport, outcome: str) -> str:
    if outcome in ("skipped", "xfailed") or report.skipped:
        reason: str = getattr(report, "wasxfail", "")
        if reason:
            return first_line(reason)
        longrepr = report.longrepr
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            return first_line(str(longrepr[2]).removeprefix("Skipped: "))
        return first_line(report.longreprtext)
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if isinstance(message, str) and message:
        return first_line(message)
    lines = [line for line in report.longreprtext.splitlines() if line.strip()]
    return lines[-1].strip()[:MESSAGE_CHARS] if lines else ""


class EventWriter:
    """Append-only JSONL; ``flush=True`` for events the supervisor must see at once."""

    def __init__(self, path: str) -> None:
        self._file: IO[bytes] = open(path, "ab")  # noqa: SIM115 (lives as long as the child)

    def emit(self, event: dict[str, Any], *, flush: bool = False) -> None:
        self._file.write(json.dumps(event, ensure_ascii=True).encode() + b"\n")
        if flush:
            self._file.flush()

    def flush(self) -> None:
        self._file.flush()


class Probe:
    """The plugin instance: one per child, holding the child's event stream."""

    def __init__(self, config: pytest.Config, events: EventWriter, control_fd: int) -> None:
        self.config = config
        self.events = events
        self.control = os.fdopen(control_fd, "rb")
        self.notify_fd = int(os.environ.get("MTEST_NOTIFY_FD", "-1"))
        self.reports: list[pytest.TestReport] = []
        self.reruns: list[pytest.TestReport] = []
        self.collecting: set[str] = set()

    # -- collection ---------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        if isinstance(collector, pytest.File):
            self.collecting.add(collector.nodeid)
            self.events.emit({"e": "cstart", "file": collector.nodeid}, flush=True)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.nodeid in self.collecting:
            self.collecting.discard(report.nodeid)
            self.events.emit({"e": "cend", "file": report.nodeid})
        if report.failed or report.skipped:
            outcome = "error" if report.failed else "skipped"
            text = report.longreprtext
            if report.skipped and isinstance(report.longrepr, tuple):
                text = str(report.longrepr[2]).removeprefix("Skipped: ")
            message = first_line(text)
            if report.failed:
                lines = [line for line in text.splitlines() if line.startswith("E ")]
                message = lines[-1][1:].strip()[:MESSAGE_CHARS] if lines else message
            self.events.emit(
                {
                    "e": "collect_problem",
                    "id": report.nodeid,
                    "outcome": outcome,
                    "message": message,
                    "longrepr": cap_text(text),
                },
                flush=True,
            )

    def _announce(self, session: pytest.Session) -> None:
        """List the collected tests. Called from the run loop, not from
        ``pytest_collection_finish``: pytest calls that one in a ``finally``, so it
        also fires when a ``pytest_collection_modifyitems`` raised and the
        session is about to end with an internal error."""
        event: dict[str, Any] = {"e": "collected", "count": len(session.items)}
        if os.environ.get("MTEST_LISTING", "full") == "full":
            event["items"] = [self._describe(item) for item in session.items]
        event["t"] = time.monotonic()
        self.events.emit(event, flush=True)
        self._notify()

    def _describe(self, item: pytest.Item) -> list[Any]:
        markers: list[str] = []
        for mark in item.iter_markers():
            if mark.name not in STRUCTURAL_MARKERS and mark.name not in markers:
                markers.append(mark.name)
        line = item.location[1]
        timeout: float | None = None
        limit = item.get_closest_marker("timeout")
        if limit is not None:
            value = limit.args[0] if limit.args else limit.kwargs.get("timeout")
            if isinstance(value, int | float) and value > 0:
                timeout = float(value)
        return [item.nodeid, None if line is None else line + 1, markers, timeout]

    # -- running ------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        """Run the chunks the supervisor sends until it says ``exit`` (or goes away)."""
        self._announce(session)
        by_id = {item.nodeid: item for item in session.items}
        for command in self._commands():
            parts = command.split(" ", 2)
            if parts[0] != "run" or len(parts) != 3:
                break
            chunk, ids_path = parts[1], parts[2]
            with open(ids_path, encoding="utf-8") as handle:
                ids = [line.rstrip("\n") for line in handle if line.strip()]
            unknown = [test_id for test_id in ids if test_id not in by_id]
            if unknown:
                self.events.emit({"e": "unknown", "ids": unknown}, flush=True)
            self._run_chunk([by_id[test_id] for test_id in ids if test_id in by_id])
            self.events.emit({"e": "done", "chunk": int(chunk)}, flush=True)
            self._notify()
        return True

    def _commands(self) -> Iterable[str]:
        while True:
            line = self.control.readline()
            if not line:  # the supervisor is gone
                return
            yield line.decode("utf-8").rstrip("\n")

    def _run_chunk(self, items: list[pytest.Item]) -> None:
        for index, item in enumerate(items):
            nextitem = items[index + 1] if index + 1 < len(items) else None
            self.reports, self.reruns = [], []
            self.events.emit({"e": "start", "id": item.nodeid, "t": time.monotonic()}, flush=True)
            try:
                item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            except BaseException as exc:
                self._end(item, escaped=exc)
                self.events.flush()
                # Fixtures may be half set up: let a fresh child run the rest.
                os._exit(70)
            self._end(item)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if type(report).__name__ == "SubtestReport":
            return  # the parent test's own report decides
        # pytest-rerunfailures reports "rerun", an outcome pytest's types do not list.
        if str(report.outcome) == "rerun":
            self.reruns.append(report)
            return
        self.reports.append(report)

    def _end(self, item: pytest.Item, escaped: BaseException | None = None) -> None:
        # ``wasxfail`` is present (possibly empty) exactly when the test was xfail-marked.
        phases = [(r.when or "", r.outcome, hasattr(r, "wasxfail")) for r in self.reports]
        outcome, index = outcome_of(phases)
        event: dict[str, Any] = {
            "e": "end",
            "id": item.nodeid,
            "outcome": outcome,
            "duration": sum(r.duration for r in self.reports),
            "t": time.monotonic(),
        }
        if escaped is not None:
            event["outcome"] = "error" if outcome == "passed" else outcome
            event["message"] = f"{type(escaped).__name__} escaped the test protocol: {escaped}"
        elif outcome == "passed" and self.reruns:
            # Failed, then passed when pytest-rerunfailures ran it again.
            first = self.reruns[0]
            event["outcome"] = "flaky"
            event["message"] = (
                f"passed after {len(self.reruns)} rerun(s): {_message(first, 'failed')}"
            )
            event["longrepr"] = cap_text("\n\n".join(r.longreprtext for r in self.reruns))
        elif outcome != "passed" and index >= 0:
            report = self.reports[index]
            event["message"] = _message(report, outcome)
            event["when"] = report.when
            if outcome not in ("skipped", "xfailed", "xpassed"):
                event["longrepr"] = cap_text(
                    "\n\n".join(f"[{r.when}]\n{r.longreprtext}" for r in self.reports if r.failed)
                )
                event["sections"] = [[t, cap_text(c)] for t, c in self.reports[-1].sections]
        self.events.emit(event)

    # -- turning session-ending exceptions into test failures -----------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        return (yield from _contained())

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        return (yield from _contained())

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        return (yield from _contained())

    def _notify(self) -> None:
        if self.notify_fd < 0:
            return
        # The supervisor may be busy or gone; it also polls the stream.
        with contextlib.suppress(OSError):
            os.write(self.notify_fd, b"!")


class InterruptedByTest(Exception):
    """A test raised ``KeyboardInterrupt`` or called ``pytest.exit()``: that test fails."""


# Shown as "InterruptedByTest: ..." in tracebacks, not under the probe's private module name.
InterruptedByTest.__module__ = "builtins"


def _contained() -> Generator[None, None, None]:
    try:
        yield
    except KeyboardInterrupt as exc:
        raise InterruptedByTest("KeyboardInterrupt raised inside the test") from exc
    except pytest.exit.Exception as exc:
        raise InterruptedByTest(f"pytest.exit() called inside the test: {exc}") from exc


# -- process hygiene ------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Exit this child's whole process group when the supervisor disappears."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(70)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent:
                try:
                    os.killpg(os.getpgrp(), signal.SIGKILL)
                finally:
                    os._exit(70)

    threading.Thread(target=watch, name="mtest-parent-watch", daemon=True).start()


def _neutralize_plugins(config: pytest.Config) -> None:
    """mtest owns parallelism and timeouts: keep xdist and pytest-timeout from acting.

    Their options stay parsed (``addopts = -n auto --timeout 10`` remain valid),
    but xdist runs no workers and pytest-timeout's hooks are gone.
    """
    if config.pluginmanager.hasplugin("xdist"):
        config.option.numprocesses = 0
        config.option.dist = "no"
        config.option.tx = []
    # A --junitxml in addopts would have every child overwrite one file, and
    # pytest's junitxml costs ~25% on suites of sub-millisecond tests; mtest
    # writes JUnit XML itself (``--junit-xml`` and last-run/junit-NNNN.xml).
    config.option.xmlpath = None
    timeout_plugin = config.pluginmanager.get_plugin("timeout")
    if timeout_plugin is not None:
        config.pluginmanager.unregister(timeout_plugin)
    config.addinivalue_line("markers", "timeout(seconds): per-test limit, enforced by mtest")


def _plugin_versions(config: pytest.Config) -> list[str]:
    return sorted(
        {
            f"{dist.project_name}-{dist.version}"
            for _, dist in config.pluginmanager.list_plugin_distinfo()
        }
    )


def _ini_timeout(config: pytest.Config) -> float | None:
    """pytest-timeout's ``--timeout`` or the project's ``timeout`` ini, when set.

    The raw ini value is read too: without pytest-timeout installed the key is
    unknown to pytest, but the project still said how long a test may take.
    """
    for source in ("option", "ini", "raw"):
        try:
            if source == "option":
                value = config.getoption("timeout")
            elif source == "ini":
                value = config.getini("timeout")
            else:
                value = config.inicfg.get("timeout")
        except (ValueError, KeyError, AttributeError):
            continue
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if seconds > 0:
            return seconds
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    events_path = os.environ.get("MTEST_EVENTS")
    control = os.environ.get("MTEST_CONTROL_FD")
    if not events_path or control is None:
        return  # loaded outside mtest: do nothing
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.environ.get("MTEST_PARENT_PID")
    if parent:
        _die_with_parent(int(parent))
    stacks_path = os.environ.get("MTEST_STACKS")
    if stacks_path:
        stacks = open(stacks_path, "w")  # noqa: SIM115 (faulthandler keeps using it)
        faulthandler.register(STACKS_SIGNAL, file=stacks, all_threads=True, chain=False)
        config.stash[_STACKS_KEY] = stacks
    _neutralize_plugins(config)
    events = EventWriter(events_path)
    events.emit(
        {
            "e": "hello",
            "pid": os.getpid(),
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "pytest": pytest.__version__,
            "plugins": _plugin_versions(config),
            "rootdir": str(config.rootpath),
            "timeout": _ini_timeout(config),
            "t": time.monotonic(),
        },
        flush=True,
    )
    probe = Probe(config, events, int(control))
    os.set_inheritable(int(control), False)
    config.pluginmanager.register(probe, "mtest-probe-instance")


_STACKS_KEY = pytest.StashKey[IO[str]]()
