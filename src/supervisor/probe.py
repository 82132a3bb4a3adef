"""The pytest plugin that mtest loads into every child (``-p``).

It is the supervisor's eyes inside the child. It

* writes a flushed JSONL event stream (``MTEST_EVENTS``): the collected tests,
  each test's start, and each test's end with the outcome decided from its
  phase reports — a killed child writes no JUnit XML, but the stream survives;
* runs the tests the supervisor names, chunk by chunk, from files of node ids
  read over a pipe (``MTEST_CONTROL_FD``) instead of thousands of command-line
  arguments, so the suite is collected once per child however many chunks it runs;
  between tests it reads that pipe without waiting, so a ``stop`` ends the chunk
  after the test in flight;
* speaks only from the worker process itself: every event carries the sender's
  pid, and a copy made by ``os.fork()`` inside a test writes nothing, reads no
  command and leaves as soon as it returns into the run loop;
* says which test left a non-daemon thread running, and reports failures at
  session end that no test's report carries (``session_error``);
* measures each test's resource use for its ``end``: the worker's RSS after it and
  its growth during it, and the CPU seconds it took; under ``--max-rss``
  (``MTEST_MAX_RSS``) a test that leaves the worker above the limit ends the chunk,
  as a ``stop`` would, and ``done`` asks mtest to replace the worker;
* turns ``KeyboardInterrupt`` and ``pytest.exit()`` raised inside a test into an
  ordinary failure of that test, so one test cannot end the session;
* registers faulthandler on ``SIGUSR2`` (``MTEST_STACKS``) so the supervisor can
  get every thread's stack before it kills a hung child, even when a C loop
  holds the GIL, and arms ``faulthandler.dump_traceback_later`` for each test's
  limit, which needs no signal (a test may have replaced the SIGUSR2 handler);
* dies with its supervisor (``PR_SET_PDEATHSIG`` where Linux has it, and a
  watcher thread everywhere).

It runs inside the project's interpreter, which may not have mtest installed:
it is loaded from its file path and imports only the standard library, pytest
and ``probeio`` (loaded from the file beside it): the event stream, the control
pipe, the stack timer and the text helpers, which need no pytest.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any

import pytest


def _load_beside(name: str) -> ModuleType:
    """The module ``name`` from this file's directory, without the ``supervisor`` package."""
    qualified = f"_mtest_{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    spec = importlib.util.spec_from_file_location(qualified, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module  # dataclasses and typing look the module up
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from . import probecov, probedeps, probeio, probelazy
else:
    probeio = _load_beside("probeio")
    probedeps = _load_beside("probedeps")
    probelazy = _load_beside("probelazy")
    probecov = _load_beside("probecov")

# Kept under their old names for those who import them from here.
MESSAGE_CHARS = probeio.MESSAGE_CHARS
cap_text = probeio.cap_text
first_line = probeio.first_line
outcome_of = probeio.outcome_of

# Markers that say how a test is built, not what kind of test it is.
STRUCTURAL_MARKERS = frozenset({"parametrize", "usefixtures", "filterwarnings"})
STACKS_SIGNAL = signal.SIGUSR2
# pytest's exit statuses that say nothing beyond the tests' own reports.
QUIET_EXIT_STATUSES = frozenset({0, 5})  # OK, NO_TESTS_COLLECTED


def _subtest(report: pytest.TestReport) -> str:
    """How pytest names a subtest: its message and parameters, ``(i=1)``."""
    context = getattr(report, "context", None)
    msg = getattr(context, "msg", None)
    kwargs = getattr(context, "kwargs", None) or {}
    parts = [f"[{msg}]"] if msg else []
    if kwargs:
        parts.append("(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")")
    return " ".join(parts) or "(<subtest>)"


def _message(report: pytest.TestReport, outcome: str) -> str:
    if outcome in ("skipped", "xfailed") or report.skipped:
        reason: str = getattr(report, "wasxfail", "")
        if reason:
            return probeio.first_line(reason)
        longrepr = report.longrepr
        if isinstance(longrepr, tuple) and len(longrepr) == 3:
            return probeio.first_line(str(longrepr[2]).removeprefix("Skipped: "))
        return probeio.first_line(report.longreprtext)
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if isinstance(message, str) and message:
        return probeio.first_line(message)
    return probeio.error_line(report.longreprtext)


def marker_timeout(item: pytest.Item) -> float | None:
    """The test's ``@pytest.mark.timeout(seconds)``, when it has a positive one."""
    limit = item.get_closest_marker("timeout")
    if limit is None:
        return None
    value = limit.args[0] if limit.args else limit.kwargs.get("timeout")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


class Probe:
    """The plugin instance: one per child, holding the child's event stream."""

    def __init__(
        self,
        config: pytest.Config,
        events: probeio.EventWriter,
        control_fd: int,
        stacks: IO[str] | None,
    ) -> None:
        self.config = config
        self.events = events
        self.pid = events.pid
        self.control = probeio.Control(control_fd)
        self.notify_fd = int(os.environ.get("MTEST_NOTIFY_FD", "-1"))
        self.stack_timer = probeio.StackTimer(stacks) if stacks is not None else None
        self.timeout = probeio.env_timeout()
        self.reports: list[pytest.TestReport] = []
        self.reruns: list[pytest.TestReport] = []
        self.subfailures: list[pytest.TestReport] = []
        """Failed subtests (``unittest`` ``subTest``, the ``subtests`` fixture) of the test."""
        self.collecting: set[str] = set()
        # Lazy mode (``MTEST_LAZY=1``, ``probelazy``): the session walks the suite's
        # directories and lists its test files without importing them; a file is
        # collected when the supervisor names it or a chunk reaches one of its tests.
        self.lazy: probelazy.Lazy | None = None
        if os.environ.get("MTEST_LAZY") == "1":
            self.lazy = probelazy.Lazy(
                config, events, deps_module=probedeps, clock=probeio.monotonic,
                describe=self._describe, notify=self._notify, guard=self._leave_if_copy,
            )  # fmt: skip
        self.by_id: dict[str, pytest.Item] = {}
        # --cov: the measurement the bootstrap started, saved after each test.
        self.coverage = probecov.saver() if os.environ.get(probecov.ENV) else None
        # Resource use: each test's RSS and CPU are measured as it starts and ends.
        self.max_rss = probeio.env_size("MTEST_MAX_RSS")
        self.over_rss = False
        """Above ``--max-rss`` after a test: chunks end at once; mtest replaces the worker."""
        self.rss_before: int | None = None
        self.cpu_before = 0.0
        self.failures = 0
        self.interrupted = False
        os.register_at_fork(after_in_child=self._in_forked_copy)

    def _in_forked_copy(self) -> None:
        """A test forked this process: the copy must not speak for the worker."""
        self.events.silence()
        probeio.to_devnull(self.control.fd)
        self.control.closed = True
        if self.notify_fd >= 0:
            probeio.to_devnull(self.notify_fd)
            self.notify_fd = -1

    def _leave_if_copy(self, outcome: Any = None) -> None:
        """A forked copy back in pytest's hands runs nothing more, not even a teardown.

        ``outcome`` is the phase's: a copy that called ``sys.exit(3)`` ends with 3.
        """
        if probeio.getpid() != self.pid:
            error = outcome.excinfo[1] if outcome is not None and outcome.excinfo else None
            os._exit(probeio.exit_status_of(error))

    # -- collection ---------------------------------------------------------

    def _defers(self, collector: pytest.Collector) -> bool:
        return self.lazy is not None and self.lazy.defers(collector)

    @pytest.hookimpl(tryfirst=True)
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Any:
        return self.lazy.defer(collector) if self.lazy and self.lazy.defers(collector) else None

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makeitem(
        self, collector: pytest.Collector, name: str, obj: object
    ) -> list[Any] | None:
        return None if self.lazy is None else self.lazy.makeitem(collector, name, obj)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collectstart(self, collector: pytest.Collector) -> None:
        if isinstance(collector, pytest.File) and not self._defers(collector):
            self.collecting.add(collector.nodeid)
            self.events.emit({"e": "cstart", "file": collector.nodeid}, flush=True)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.nodeid in self.collecting:
            self.collecting.discard(report.nodeid)
            self.events.emit({"e": "cend", "file": report.nodeid})
        if report.failed:
            self.failures += 1
        if report.failed or report.skipped:
            outcome = "error" if report.failed else "skipped"
            text = report.longreprtext
            if report.skipped and isinstance(report.longrepr, tuple):
                text = str(report.longrepr[2]).removeprefix("Skipped: ")
            message = probeio.first_line(text)
            if report.failed:
                lines = [line for line in text.splitlines() if line.startswith("E ")]
                message = lines[-1][1:].strip()[: probeio.MESSAGE_CHARS] if lines else message
            self.events.emit(
                {
                    "e": "collect_problem",
                    "id": report.nodeid,
                    "outcome": outcome,
                    "message": message,
                    "longrepr": probeio.cap_text(text),
                },
                flush=True,
            )

    def _announce(self, session: pytest.Session) -> None:
        """List the collected tests. Called from the run loop, not from
        ``pytest_collection_finish``: pytest calls that one in a ``finally``, so it
        also fires when a ``pytest_collection_modifyitems`` raised and the
        session is about to end with an internal error."""
        if self.lazy is not None:
            self.lazy.announce()
            return
        event: dict[str, Any] = {"e": "collected", "count": len(session.items)}
        if os.environ.get("MTEST_LISTING", "full") == "full":
            event["items"] = [self._describe(item) for item in session.items]
        event["t"] = probeio.monotonic()
        self.events.emit(event, flush=True)
        self._notify()

    def _describe(self, item: pytest.Item) -> list[Any]:
        markers: list[str] = []
        for mark in item.iter_markers():
            if mark.name not in STRUCTURAL_MARKERS and mark.name not in markers:
                markers.append(mark.name)
        line = item.location[1]
        return [item.nodeid, None if line is None else line + 1, markers, marker_timeout(item)]

    # -- running ------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        """Run the chunks the supervisor sends until it says ``exit`` (or goes away)."""
        self._announce(session)
        by_id = self.by_id
        by_id.update((item.nodeid, item) for item in session.items)
        while (command := self.control.next_command()) is not None:
            self._leave_if_copy()
            parts = command.split(" ", 2)
            if parts[0] in ("collect", "scope") and len(parts) == 2 and self.lazy is not None:
                lines = _read_lines(parts[1])
                if parts[0] == "scope":
                    self.lazy.set_scope(lines)
                else:
                    self.lazy.collect(session, lines, by_id)
                continue
            if parts[0] != "run" or len(parts) != 3:
                break
            chunk, ids_path = parts[1], parts[2]
            ids = _read_lines(ids_path)
            if self.lazy is not None:  # files are collected as the chunk reaches them
                self._run_chunk(session, self.lazy.resolve(session, ids, by_id, self._unknown))
            else:
                unknown = [test_id for test_id in ids if test_id not in by_id]
                if unknown:
                    self.events.emit({"e": "unknown", "ids": unknown}, flush=True)
                self._run_chunk(session, iter([by_id[i] for i in ids if i in by_id]))
            done: dict[str, Any] = {"e": "done", "chunk": int(chunk)}
            if self.over_rss:
                done["over_rss"] = True
            self.events.emit(done, flush=True)
            self._notify()
        self._leave_if_copy()
        return True

    def _unknown(self, test_id: str, partial: bool) -> None:
        """A chunk named a test this lazy child could not find (``partial``: in a file it
        collected only in part: an error, never a test the index had wrong)."""
        event: dict[str, Any] = {"e": "unknown", "ids": [test_id]}
        if partial:
            event["partial"] = True
        self.events.emit(event, flush=True)

    def _run_chunk(self, session: pytest.Session, items: Iterator[pytest.Item]) -> None:
        self.control.start_chunk()
        try:
            self._run_tests(session, items)
        finally:
            if self.stack_timer is not None:
                self.stack_timer.cancel()  # an idle child between chunks is not hung

    def _run_tests(self, session: pytest.Session, items: Iterator[pytest.Item]) -> None:
        item = next(items, None)
        while item is not None:
            if self.control.stop_requested() or self.over_rss:
                self._teardown_rest(session)
                return
            nextitem = next(items, None)  # lazy: may import the next file, before the start
            self.reports, self.reruns, self.subfailures = [], [], []
            threads = set(threading.enumerate())
            now = probeio.monotonic()
            start: dict[str, Any] = {"e": "start", "id": item.nodeid, "t": now}
            self.rss_before, self.cpu_before = probeio.rss_bytes(), probeio.cpu_seconds()
            if self.rss_before is not None:
                start["rss"] = self.rss_before
            self.events.emit(start, flush=True)
            if self.stack_timer is not None:
                self.stack_timer.test_starts(marker_timeout(item) or self.timeout, now)
            try:
                item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            except BaseException as exc:
                self._leave_if_copy()
                self._end(item, escaped=exc)
                self.events.flush()
                if self.coverage is not None:
                    self.coverage.after_test()
                # Fixtures may be half set up: let a fresh child run the rest.
                os._exit(70)
            self._leave_if_copy()
            self._end(item)
            self._report_threads(item, threads)
            if self.coverage is not None:
                self.coverage.after_test()  # a crash later loses at most the next test
            item = nextitem

    def _report_threads(self, item: pytest.Item, before: set[threading.Thread]) -> None:
        names = [
            thread.name
            for thread in threading.enumerate()
            if thread not in before and not thread.daemon and thread.is_alive()
        ]
        if names:
            self.events.emit({"e": "threads", "id": item.nodeid, "names": names})

    def _teardown_rest(self, session: pytest.Session) -> None:
        """Tear down what a stopped chunk left set up (the fixtures its next test shared)."""
        state = getattr(session, "_setupstate", None)
        if state is None:
            return
        try:
            state.teardown_exact(None)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # pytest.fail() in a finalizer is a BaseException
            self._session_error("teardown", exc)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and not hasattr(report, "wasxfail"):
            self.failures += 1
        if type(report).__name__ == "SubtestReport":
            # A failed unittest subTest leaves its test's own call report passed.
            if report.failed and not hasattr(report, "wasxfail"):
                self.subfailures.append(report)
            return
        # pytest-rerunfailures reports "rerun", an outcome pytest's types do not list.
        if str(report.outcome) == "rerun":
            self.reruns.append(report)
            return
        self.reports.append(report)

    def _end(self, item: pytest.Item, escaped: BaseException | None = None) -> None:
        usage = self._usage()
        # ``wasxfail`` is present (possibly empty) exactly when the test was xfail-marked.
        phases = [(r.when or "", r.outcome, hasattr(r, "wasxfail")) for r in self.reports]
        outcome, index = probeio.outcome_of(phases)
        event: dict[str, Any] = {
            "e": "end",
            "id": item.nodeid,
            "outcome": outcome,
            "duration": sum(r.duration for r in self.reports),
            "t": probeio.monotonic(),
            **usage,
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
            event["longrepr"] = probeio.cap_text("\n\n".join(r.longreprtext for r in self.reruns))
        elif outcome == "passed" and self.subfailures:
            first = self.subfailures[0]
            event["outcome"] = "failed"
            event["when"] = "call"
            event["message"] = (
                f"{len(self.subfailures)} subtest(s) failed, first {_subtest(first)}: "
                f"{_message(first, 'failed')}"
            )
            event["longrepr"] = probeio.cap_text(
                "\n\n".join(f"[{_subtest(r)}]\n{r.longreprtext}" for r in self.subfailures)
            )
        elif outcome != "passed" and index >= 0:
            report = self.reports[index]
            event["message"] = _message(report, outcome)
            event["when"] = report.when
            if outcome not in ("skipped", "xfailed", "xpassed"):
                event["longrepr"] = probeio.cap_text(
                    "\n\n".join(f"[{r.when}]\n{r.longreprtext}" for r in self.reports if r.failed)
                )
                event["sections"] = [[t, probeio.cap_text(c)] for t, c in self.reports[-1].sections]
        self.events.emit(event)

    def _usage(self) -> dict[str, Any]:
        """The test's resource use for its ``end``: the worker's RSS now, its growth since
        the test's start, the CPU seconds (``process_time``) the test used."""
        usage: dict[str, Any] = {"cpu": round(probeio.cpu_seconds() - self.cpu_before, 6)}
        rss = probeio.rss_bytes()
        if rss is not None:
            usage["rss"] = rss
            if self.rss_before is not None:
                usage["rss_growth"] = rss - self.rss_before
            self._check_max_rss(rss)
        return usage

    def _check_max_rss(self, rss: int | None) -> bool:
        """Whether this worker is to be replaced for ``--max-rss`` (``probeio.over_max_rss``;
        for good, once it is)."""
        growth = None if rss is None or self.rss_before is None else rss - self.rss_before
        if probeio.over_max_rss(rss, growth, self.max_rss):
            self.over_rss = True
        return self.over_rss

    # -- turning session-ending exceptions into test failures -----------------
    # Old-style wrappers: pluggy 1.0 (Debian bookworm's, with pytest 7.2) has no
    # ``wrapper=True``.

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, None]:
        outcome = yield
        self._leave_if_copy(outcome)
        _contain(outcome)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, None]:
        outcome = yield
        self._leave_if_copy(outcome)
        _contain(outcome)

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_teardown(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, Any, None]:
        self._leave_if_copy()
        outcome = yield
        self._leave_if_copy(outcome)
        if nextitem is not None and (self.control.stop_requested() or self._over_limit_now()):
            # The chunk ends with this test: tear down everything now, so that a
            # shared fixture's error lands in this test's report as it would
            # for the last test of any chunk.
            try:
                item.session._setupstate.teardown_exact(None)
            except BaseException as exc:  # becomes this phase's outcome, as pytest's own would
                if outcome.excinfo is None:
                    _force_exception(outcome, exc)
        _contain(outcome)

    def _over_limit_now(self) -> bool:
        """Under ``--max-rss``, as a test's teardown ends: is the worker to be replaced?"""
        if self.max_rss is None or self.over_rss:
            return self.over_rss
        return self._check_max_rss(probeio.rss_bytes())

    # -- the end of the session -----------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self) -> None:
        self.interrupted = True

    # The innermost wrapper: pluggy 1.0 skips the outer wrappers' ends when the
    # terminal reporter's wrapper re-raises an error of an inner hook.
    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, Any, None]:
        """Report what fails at session end and no test's report carries."""
        self._teardown_rest(session)
        outcome = yield
        if outcome.excinfo is not None:
            self._session_error("sessionfinish", outcome.excinfo[1])
            return
        status = int(session.exitstatus)
        if status not in QUIET_EXIT_STATUSES and not self.failures and not self.interrupted:
            message = (
                f"pytest's exit status is {status} ({_status_name(status)}) though no test "
                "failed in this child: a plugin or conftest set it (e.g. --cov-fail-under); "
                "its output says why"
            )
            self._emit_session_error("exitstatus", message, "")

    def _session_error(self, where: str, exc: BaseException) -> None:
        message = probeio.error_line(f"E   {type(exc).__name__}: {exc}")
        self._emit_session_error(where, message, probeio.cap_text(probeio.format_error(exc)))

    def _emit_session_error(self, where: str, message: str, longrepr: str) -> None:
        event = {"e": "session_error", "where": where, "message": message, "longrepr": longrepr}
        self.events.emit(event, flush=True)
        self._notify()

    def _notify(self) -> None:
        if self.notify_fd < 0:
            return
        # The supervisor may be busy or gone; it also polls the stream.
        with contextlib.suppress(OSError):
            os.write(self.notify_fd, b"!")


def _read_lines(path: str) -> list[str]:
    """The non-empty lines of a file of node ids or paths the supervisor wrote."""
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def _status_name(status: int) -> str:
    try:
        return pytest.ExitCode(status).name
    except ValueError:
        return "set by a plugin"


class InterruptedByTest(Exception):
    """A test raised ``KeyboardInterrupt`` or called ``pytest.exit()``: that test fails."""


# Shown as "InterruptedByTest: ..." in tracebacks, not under the probe's private module name.
InterruptedByTest.__module__ = "builtins"


def _contain(outcome: Any) -> None:
    """Turn a ``KeyboardInterrupt`` or ``pytest.exit()`` from a test phase into its failure."""
    error = outcome.excinfo[1] if outcome.excinfo is not None else None
    if isinstance(error, KeyboardInterrupt):
        text = "KeyboardInterrupt raised inside the test"
    elif isinstance(error, pytest.exit.Exception):
        text = f"pytest.exit() called inside the test: {error}"
    else:
        return
    try:
        raise InterruptedByTest(text) from error
    except InterruptedByTest as replacement:
        _force_exception(outcome, replacement)


def _force_exception(outcome: Any, exc: BaseException) -> None:
    """Make a hook's outcome raise ``exc`` (pluggy >= 1.1 has ``force_exception``)."""
    if hasattr(outcome, "force_exception"):
        outcome.force_exception(exc)
    else:  # pluggy 1.0
        outcome._excinfo = (type(exc), exc, exc.__traceback__)


# -- process hygiene ------------------------------------------------------------


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


@pytest.hookimpl(hookwrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None, Any, None]:
    """Under mtest's ``--cov``, pytest-cov measures nothing in the child (a ``--cov`` in the
    project's ``addopts``): a second measurement would pause mtest's, and each child's
    report would be one chunk's. This wrapper runs before pytest-cov's own hook."""
    if os.environ.get("MTEST_EVENTS") and os.environ.get(probecov.ENV):
        options = early_config.known_args_namespace
        if getattr(options, "cov_source", None):
            options.cov_source = None
    yield


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
        probeio.die_with_parent(int(parent))
    stacks_path = os.environ.get("MTEST_STACKS")
    if stacks_path:
        stacks = open(stacks_path, "w")  # noqa: SIM115 (faulthandler keeps using it)
        faulthandler.register(STACKS_SIGNAL, file=stacks, all_threads=True, chain=False)
        config.stash[_STACKS_KEY] = stacks
    _neutralize_plugins(config)
    events = probeio.EventWriter(events_path)
    events.emit(
        {
            "e": "hello",
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "pytest": pytest.__version__,
            "plugins": _plugin_versions(config),
            "rootdir": str(config.rootpath),
            "inifile": None if config.inipath is None else str(config.inipath),
            "timeout": _ini_timeout(config),
            "t": probeio.monotonic(),
        },
        flush=True,
    )
    probe = Probe(config, events, int(control), config.stash.get(_STACKS_KEY, None))
    os.set_inheritable(int(control), False)
    config.pluginmanager.register(probe, "mtest-probe-instance")


_STACKS_KEY = pytest.StashKey[IO[str]]()
