"""``mtest service``: the same run every ``--every``, surviving its own faults, until stopped.

One cycle is one ``pipeline.run`` of the command line's ``Config`` as a
one-shot run (``Mode.RUN``): every option applies, each cycle has its own run
id, and its records, state and summary are those of a one-shot run. After
each cycle the history gets a line and ``--metrics-file`` is rewritten;
``--metrics-port`` serves the counters of this process from a thread.

Faults, restarts and the schedule are decided in ``schedule``. A fault (an
exception in a cycle or in what follows it) is logged with its traceback to
``.gates/service.log``, counted, makes ``/health`` answer 503 until a clean
cycle, and the next cycle runs. Too many faults re-execute the process
(``os.execve`` of the same interpreter and arguments) after a backoff; too
many restarts end it with exit 3.

Signals: the service blocks every signal the run's ``interrupts.Guard``
reads, for its whole life, before any thread starts (the metrics thread
inherits the mask, so no signal lands on it). While a cycle runs its Guard
reads them, as in a one-shot run: the first SIGINT/SIGTERM stops the cycle
(records kept, ``mtest --resume`` continues it), a second one kills its
children at once; the service then ends with exit 0. Between cycles
``Signals.wait`` reads them and ends the wait at once. A signal that comes as
a cycle ends stays pending until that wait: none is lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType, MappingProxyType, TracebackType
from typing import NoReturn

from supervisor import pipeline, schedule
from supervisor.config import Config, Mode
from supervisor.console import Console
from supervisor.control import StopControl
from supervisor.errors import MtestError
from supervisor.metrics import Snapshot, result_label
from supervisor.record import utc_now
from supervisor.result import Hooks, OnEvent, RunResult
from supervisor.senders import GUARDED, Action, Origin, decide, signal_name
from supervisor.store import Store

EXIT_INTERNAL = 3
FAULTY_KEPT = 1000
"""Cycles whose fault flag is kept (``schedule.FaultLimit.cycles`` looks at the last few)."""
MAX_NOTES = 20
"""Ignored signals between cycles get a line each, per sender and signal, this many at most."""

RunCycle = Callable[[StopControl], RunResult]
Step = tuple[str, Callable[[RunResult], None]]
"""What follows a cycle (the history line, the metrics file): its name and itself."""


@dataclass(frozen=True, kw_only=True)
class Ended:
    """How the loop ended: with an exit code (and why), or asking for a restart."""

    code: int = 0
    message: str = ""
    restart: schedule.Restart | None = None


class Service:
    """The state of one service process: its cycles, counters and health.

    ``snapshot()`` is what the metrics thread reads: a frozen value replaced
    whole after each change, so the thread never sees a half-made one.
    """

    def __init__(
        self, *, console: Console, store: Store, run: RunCycle, after: Sequence[Step],
        carried: schedule.Carried,
    ) -> None:  # fmt: skip
        self.console = console
        self.store = store
        self.run = run
        self.after = after
        self.cycles = carried.cycles
        self.faulty: list[bool] = []
        """One per recent cycle of this process (``FAULTY_KEPT``): whether it had a fault."""
        self.proven = carried.restarts > 0
        """A cycle has completed (or the service restarted): bad input is now a fault."""
        self._snapshot = Snapshot.fresh(time.time())

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def skipped(self, count: int) -> None:
        if count:
            skipped = self._snapshot.cycles_skipped_total + count
            self._snapshot = dataclasses.replace(self._snapshot, cycles_skipped_total=skipped)
            self.console.line(
                f"mtest: cycle {self.cycles} outlasted --every: {count} start(s) skipped"
            )

    def cycle(self) -> bool:
        """Run one cycle and what follows it; whether a signal stopped it."""
        self.cycles += 1
        number = self.cycles
        self.console.line(f"mtest: cycle {number}")
        stop = StopControl()
        began, clock = utc_now(), time.monotonic()
        faults_before = self._snapshot.service_faults_total
        try:
            result = self.run(stop)
        except Exception as exc:  # a fault, unless an interrupt or bad input (schedule.judge)
            verdict = schedule.judge(exc, interrupted=stop.interrupted, proven=self.proven)
            if verdict is schedule.Verdict.BAD_INPUT:
                raise
            if verdict is schedule.Verdict.FAULT:
                self._fault(number, "the run", exc)
            code = exc.code if isinstance(exc, MtestError) else EXIT_INTERNAL
            result = RunResult(
                exit_code=2 if verdict is schedule.Verdict.STOPPED else code,
                run_id=pipeline.new_run_id(), started=began, ended=utc_now(),
                wall_s=time.monotonic() - clock, interrupted=stop.interrupted,
            )  # fmt: skip
            self._count(result)  # a run that did not finish: counted, not the last run
        else:
            self.proven = True
            self._snapshot = self._snapshot.after(result)
        for name, step in self.after:
            try:
                step(result)
            except Exception as exc:  # whatever it is, the service goes on
                self._fault(number, name, exc)
        self.faulty.append(self._snapshot.service_faults_total > faults_before)
        del self.faulty[:-FAULTY_KEPT]  # a service runs for months: keep what the window needs
        return stop.interrupted

    def _count(self, result: RunResult) -> None:
        runs = dict(self._snapshot.runs_total)
        label = result_label(result.exit_code)
        runs[label] = runs.get(label, 0) + 1
        self._snapshot = dataclasses.replace(self._snapshot, runs_total=MappingProxyType(runs))

    def _fault(self, number: int, where: str, exc: Exception) -> None:
        faults = self._snapshot.service_faults_total + 1
        self._snapshot = dataclasses.replace(
            self._snapshot, service_faults_total=faults, healthy=False
        )
        what = f"{type(exc).__name__}: {exc}"
        trace = "".join(traceback.format_exception(exc))
        self.log(f"cycle {number}: fault in {where}: {what}\n{trace}")
        self.console.warn(
            f"cycle {number}: fault in {where}: {what} (traceback in "
            f"{self.store.paths.service_log}); the next cycle runs"
        )

    def log(self, entry: str) -> None:
        self.store.append_service_log(f"{utc_now()} pid {os.getpid()} {entry.rstrip()}\n")


def loop(
    service: Service, wait: Callable[[float], bool], *, every_s: float, cycles: int | None,
    limits: schedule.Limits, carried: schedule.Carried,
) -> Ended:  # fmt: skip
    """Cycles until ``cycles`` ran, a signal came (``wait`` says so), or a restart is due."""
    while cycles is None or service.cycles < cycles:
        started = time.monotonic()
        if service.cycle():
            return Ended(message="stopped by a signal")
        if cycles is not None and service.cycles >= cycles:
            break
        if schedule.too_many_faults(service.faulty, limits.faults):
            return _restart_or_give_up(service, limits, carried)
        tick = schedule.next_start(started, time.monotonic(), every_s)
        service.skipped(tick.skipped)
        if wait(tick.start - time.monotonic()):
            return Ended(message="stopped by a signal")
    if service.faulty and service.faulty[-1]:
        return Ended(code=EXIT_INTERNAL, message="the last cycle had a fault")
    return Ended()


def _restart_or_give_up(
    service: Service, limits: schedule.Limits, carried: schedule.Carried
) -> Ended:
    plan = schedule.plan_restart(
        carried, now=time.monotonic(), cycles=service.cycles, limits=limits
    )
    recent = sum(service.faulty[-limits.faults.cycles :])
    why = (
        f"{recent} of the last {min(len(service.faulty), limits.faults.cycles)} cycles had a fault"
    )
    if isinstance(plan, schedule.GiveUp):
        window = f"{limits.restarts.interval_s:g}s or {schedule.window_cycles(limits)} cycles"
        message = (
            f"the service restarted {plan.restarts} time(s) within {window} and {why}: giving up"
        )
        service.log(message)
        return Ended(code=EXIT_INTERNAL, message=message)
    service.log(f"{why}: restart {plan.number} of {limits.restarts.burst} in {plan.delay_s:g}s")
    service.console.line(
        f"mtest: {why}: restarting in {plan.delay_s:g}s "
        f"(restart {plan.number} of {limits.restarts.burst})"
    )
    return Ended(restart=plan)


def serve(
    config: Config, console: Console, hooks: Hooks | None = None, *,
    sinks: Sequence[OnEvent] = (), restartable: bool = False,
) -> int:  # fmt: skip
    """``mtest service``: the exit code (0 when it ends as asked or on a signal).

    ``restartable``: this process is mtest's own (the console script) and may
    re-execute itself; in-process (the Python API) a restart ends it instead.
    """
    assert config.every_s is not None, "args checks that `mtest service` has --every"
    limits = schedule.limits_from(os.environ)
    carried = schedule.Carried.decode(os.environ.pop(schedule.STATE_VAR, None))
    store = Store(config.gates_dir, console.warn)
    cycle_config = dataclasses.replace(config, mode=Mode.RUN)

    def run(stop: StopControl) -> RunResult:
        return pipeline.run(cycle_config, console, hooks, sinks=sinks, stop=stop)

    with Signals(console) as signals:
        after = _steps(cycle_config, lambda: service, console.warn)
        service = Service(console=console, store=store, run=run, after=after, carried=carried)
        if carried.restarts:
            again = f"restarted (restart {carried.restarts}, {carried.cycles} cycle(s) so far)"
            service.log(again)
            console.line(f"mtest: service {again}")
        with _metrics_server(config, console, service.snapshot):
            ended = loop(
                service, signals.wait, every_s=config.every_s, cycles=config.cycles,
                limits=limits, carried=carried,
            )  # fmt: skip
        if ended.restart is not None:
            if not restartable:
                raise MtestError(
                    "the service had too many faults and cannot restart in-process",
                    hint=f"see {store.paths.service_log}",
                    code=EXIT_INTERNAL,
                )
            if signals.wait(ended.restart.delay_s):
                return 0
            reexec(ended.restart.carried)
    if ended.code:
        raise MtestError(ended.message, hint=f"see {store.paths.service_log}", code=ended.code)
    console.line(f"mtest: service ended after {service.cycles} cycle(s): {ended.message or 'done'}")
    return 0


def _steps(
    config: Config, service: Callable[[], Service], warn: Callable[[str], None]
) -> list[Step]:
    """After each cycle: its line in the history; the metrics file, when asked for."""
    from supervisor import history, metrics

    def write_history(result: RunResult) -> None:
        history.append(config, result, warn=warn)

    steps: list[Step] = [("the history", write_history)]
    if config.metrics_file is not None:
        path = config.metrics_file

        def write_metrics(result: RunResult) -> None:
            metrics.write_textfile(path, metrics.render(service().snapshot()))

        steps.append(("--metrics-file", write_metrics))
    return steps


@contextlib.contextmanager
def _metrics_server(
    config: Config, console: Console, snapshot: Callable[[], Snapshot]
) -> Iterator[None]:
    if config.metrics_port is None:
        yield
        return
    from supervisor.metrics_server import MetricsServer

    server = MetricsServer(config.metrics_host, config.metrics_port, snapshot)
    server.start()
    try:
        console.always(f"mtest: metrics on {server.url}")
        yield
    finally:
        server.close()


def reexec(carried: schedule.Carried) -> NoReturn:
    """Replace this process by the same interpreter with the same arguments.

    The signal mask survives ``execve`` on purpose: a signal that comes while
    the new process starts stays pending until its service reads it.
    Python opens every file close-on-exec, so no descriptor is carried over.
    """
    env = {**os.environ, schedule.STATE_VAR: carried.encode()}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError as exc:
        raise MtestError(
            f"cannot restart the service: `{sys.executable}`: {exc.strerror or exc}",
            code=EXIT_INTERNAL,
        ) from None


class Signals:
    """``with Signals(console) as signals:`` — the signals to the service between cycles.

    ``wait(seconds)`` returns early, with ``True``, when SIGINT, SIGTERM, SIGHUP
    or SIGQUIT came (from anyone: between cycles there is no child). Ctrl-Z
    stops the service as usual; the other signals are ignored with a line.
    Without ``sigtimedwait`` (macOS) plain handlers for SIGINT, SIGTERM and
    SIGHUP set a flag instead (a cycle's Guard replaces them while it runs).
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.stopped = False
        self._mask: set[int] | None = None
        self._handlers: dict[int, object] = {}
        self._flag = threading.Event()
        self._seen: set[tuple[int, int]] = set()

    def __enter__(self) -> Signals:
        if hasattr(signal, "sigtimedwait"):
            self._mask = {int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, GUARDED)}
            return self

        def handler(signum: int, frame: FrameType | None) -> None:
            self._flag.set()

        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            signum = signal.Signals[name]
            self._handlers[signum] = signal.signal(signum, handler)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, old in self._handlers.items():
            signal.signal(signum, old)  # type: ignore[arg-type]
        if self._mask is not None:
            # Drained first: the service is ending, and a signal left pending would
            # kill it (or raise KeyboardInterrupt) the moment the mask is restored.
            while signal.sigtimedwait(GUARDED, 0) is not None:
                pass
            signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)

    def wait(self, seconds: float) -> bool:
        """Wait ``seconds`` (at least look once); ``True`` if a signal says stop."""
        deadline = time.monotonic() + max(0.0, seconds)
        while not self.stopped:
            left = max(0.0, deadline - time.monotonic())
            self._take(left)
            if left <= 0:
                break
        return self.stopped

    def _take(self, timeout: float) -> None:
        if self._mask is None:
            self.stopped = self._flag.wait(timeout)
            return
        info = signal.sigtimedwait(GUARDED, timeout)
        if info is None:
            return
        action = decide(info.si_signo, Origin.OUTSIDE, interrupted=False)
        name = signal_name(info.si_signo)
        if action in (Action.HALT, Action.KILL_NOW):
            self.stopped = True
            self.console.line(f"mtest: {name} from pid {info.si_pid}: the service ends")
        elif action is Action.SUSPEND:
            os.kill(os.getpid(), signal.SIGSTOP)
        elif action is Action.IGNORE and len(self._seen) < MAX_NOTES:
            if (info.si_signo, info.si_pid) in self._seen:
                return
            self._seen.add((info.si_signo, info.si_pid))
            self.console.line(f"note: pid {info.si_pid} sent {name} to mtest; ignored")
