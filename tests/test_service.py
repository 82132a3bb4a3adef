"""The service loop without processes: faults, health, counters, restarts and signals.

Each cycle here is a plain function standing in for ``pipeline.run``; the
integration tests (``test_integration_service.py``) run the real thing.
"""

from __future__ import annotations

import io
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from supervisor import metrics, schedule, service
from supervisor.console import Console
from supervisor.control import StopControl
from supervisor.errors import Busy, MtestError
from supervisor.metrics import result_label
from supervisor.result import RunResult
from supervisor.store import Store

Run = Callable[[StopControl], RunResult]
FIRST = schedule.Carried()


def result(code: int = 0, **counts: int) -> RunResult:
    return RunResult(
        exit_code=code, run_id="r", started="2026-12-06T13:00:00.000Z",
        ended="2026-12-06T13:00:01.000Z", wall_s=0.1, counts=counts,
    )  # fmt: skip


def raising(exc: Exception) -> Run:
    def run(stop: StopControl) -> RunResult:
        raise exc

    return run


def interrupted(stop: StopControl) -> RunResult:
    stop.interrupted = True
    raise MtestError("interrupted before listing the tests", code=2)


class Scripted:
    """A cycle per call, each from the script, in order (the last one repeats)."""

    def __init__(self, *runs: Run) -> None:
        self.runs = list(runs)
        self.calls = 0

    def __call__(self, stop: StopControl) -> RunResult:
        run = self.runs[min(self.calls, len(self.runs) - 1)]
        self.calls += 1
        return run(stop)


def ok(stop: StopControl) -> RunResult:
    return result(0, passed=3)


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def make(tmp_path: Path, out: io.StringIO) -> Callable[..., service.Service]:
    def make(
        run: Run, *, after: list[service.Step] | None = None,
        carried: schedule.Carried = FIRST,
    ) -> service.Service:  # fmt: skip
        console = Console(out, verbosity=0, tty=False, color=False)

        def warn(line: str) -> None:
            out.write(f"warning: {line}\n")

        store = Store(tmp_path / ".gates", warn)
        return service.Service(console=console, store=store, run=run, after=after or [],
                               carried=carried)  # fmt: skip

    return make


def log_of(svc: service.Service) -> str:
    return svc.store.paths.service_log.read_text()


def test_a_clean_cycle_counts_its_result_and_stays_healthy(
    make: Callable[..., service.Service],
) -> None:
    svc = make(Scripted(ok, lambda stop: result(1, passed=2, failed=1)))
    assert svc.cycle() is False
    assert svc.cycle() is False
    snap = svc.snapshot()
    assert snap.healthy
    assert snap.runs_total[result_label(0)] == 1
    assert snap.runs_total[result_label(1)] == 1
    assert snap.last is not None and snap.last.counts == {"passed": 2, "failed": 1}
    assert snap.last_success_ts is not None
    assert snap.service_faults_total == 0
    assert svc.faulty == [False, False]
    # Every label is exported from the start, so a rate() has a zero to begin with.
    assert set(snap.runs_total) == set(metrics.RESULTS)


def test_a_fault_is_logged_counted_and_unhealthy_until_a_clean_cycle(
    make: Callable[..., service.Service], capsys: pytest.CaptureFixture[str]
) -> None:
    svc = make(Scripted(raising(KeyError("boom")), ok))
    assert svc.cycle() is False
    snap = svc.snapshot()
    assert not snap.healthy
    assert snap.service_faults_total == 1
    assert snap.runs_total[result_label(3)] == 1
    assert snap.last is None, "a faulty cycle is no run: the last run's gauges stay"
    log = log_of(svc)
    assert "cycle 1: fault in the run: KeyError: 'boom'" in log
    assert "Traceback (most recent call last):" in log
    assert "service.log); the next cycle runs" in capsys.readouterr().err
    svc.cycle()
    assert svc.snapshot().healthy
    assert svc.snapshot().service_faults_total == 1
    assert svc.faulty == [True, False]


def test_a_fault_after_the_run_counts_the_run_and_the_fault(
    make: Callable[..., service.Service],
) -> None:
    seen: list[RunResult] = []

    def history(res: RunResult) -> None:
        seen.append(res)
        raise IsADirectoryError(21, "Is a directory")

    svc = make(ok, after=[("the history", history), ("after", seen.append)])
    svc.cycle()
    snap = svc.snapshot()
    assert snap.runs_total[result_label(0)] == 1
    assert snap.service_faults_total == 1
    assert not snap.healthy
    assert len(seen) == 2, "a failing step does not stop the next one"
    assert "fault in the history: IsADirectoryError" in log_of(svc)


def test_the_steps_after_a_cycle_see_its_counts(make: Callable[..., service.Service]) -> None:
    seen: list[int] = []
    holder: list[service.Service] = []
    svc = make(
        raising(RuntimeError("x")),
        after=[("metrics", lambda res: seen.append(holder[0].snapshot().service_faults_total))],
    )
    holder.append(svc)
    svc.cycle()
    assert seen == [1]


def test_a_faulty_cycle_still_gives_the_steps_a_result(
    make: Callable[..., service.Service],
) -> None:
    seen: list[RunResult] = []
    svc = make(raising(Busy("`lock` is held by pid 7")), after=[("the history", seen.append)])
    svc.cycle()
    assert [r.exit_code for r in seen] == [4]
    assert seen[0].run_id, "it gets a run id of its own"


def test_bad_input_ends_the_service_before_any_cycle_completed(
    make: Callable[..., service.Service],
) -> None:
    svc = make(raising(MtestError("`python` cannot import pytest", code=4)))
    with pytest.raises(MtestError, match="cannot import pytest"):
        svc.cycle()


def test_bad_input_after_a_completed_cycle_is_a_fault(make: Callable[..., service.Service]) -> None:
    svc = make(Scripted(ok, raising(MtestError("`python` cannot import pytest", code=4))))
    svc.cycle()
    svc.cycle()
    assert svc.snapshot().service_faults_total == 1


def test_a_restarted_service_counts_bad_input_as_a_fault(
    make: Callable[..., service.Service],
) -> None:
    carried = schedule.Carried(restarts=1, first_ts=1.0, first_cycle=4, cycles=4)
    svc = make(raising(MtestError("`python` cannot import pytest", code=4)), carried=carried)
    svc.cycle()
    assert svc.snapshot().service_faults_total == 1
    assert svc.cycles == 5, "cycles count on from the processes before"


def test_an_interrupted_cycle_stops_the_service_without_a_fault(
    make: Callable[..., service.Service],
) -> None:
    seen: list[RunResult] = []
    svc = make(interrupted, after=[("the history", seen.append)])
    assert svc.cycle() is True
    assert svc.snapshot().service_faults_total == 0
    assert [r.exit_code for r in seen] == [2]
    assert svc.snapshot().runs_total[result_label(2)] == 1


def never(seconds: float) -> bool:
    return False


def test_the_loop_runs_the_cycles_asked_for(make: Callable[..., service.Service]) -> None:
    run = Scripted(ok)
    ended = service.loop(
        make(run), never, every_s=0.001, cycles=3, limits=schedule.Limits(),
        carried=schedule.Carried(),
    )  # fmt: skip
    assert ended == service.Ended()
    assert run.calls == 3


def test_the_loop_ends_when_the_wait_is_ended_by_a_signal(
    make: Callable[..., service.Service],
) -> None:
    run = Scripted(ok)
    waits: list[float] = []

    def signalled(seconds: float) -> bool:
        waits.append(seconds)
        return True

    ended = service.loop(
        make(run), signalled, every_s=60.0, cycles=None, limits=schedule.Limits(),
        carried=schedule.Carried(),
    )  # fmt: skip
    assert ended.code == 0 and ended.restart is None
    assert run.calls == 1
    assert 0 < waits[0] <= 60.0


def test_the_loop_ends_at_once_after_an_interrupted_cycle(
    make: Callable[..., service.Service],
) -> None:
    run = Scripted(ok, interrupted)
    ended = service.loop(
        make(run), never, every_s=0.001, cycles=None, limits=schedule.Limits(),
        carried=schedule.Carried(),
    )  # fmt: skip
    assert ended.code == 0
    assert run.calls == 2


def test_too_many_faults_ask_for_a_restart_with_the_carried_state(
    make: Callable[..., service.Service],
) -> None:
    run = Scripted(ok, raising(RuntimeError("x")))
    limits = schedule.Limits(faults=schedule.FaultLimit(faults=2, cycles=3))
    svc = make(run)
    ended = service.loop(
        svc, never, every_s=0.001, cycles=None, limits=limits, carried=schedule.Carried()
    )
    assert ended.restart is not None
    assert ended.restart.number == 1
    assert ended.restart.carried.cycles == 3
    assert run.calls == 3
    assert "2 of the last 3 cycles had a fault: restart 1 of 3" in log_of(svc)


def test_a_spent_restart_budget_gives_up_with_exit_3(make: Callable[..., service.Service]) -> None:
    limits = schedule.Limits(
        faults=schedule.FaultLimit(faults=1, cycles=1),
        restarts=schedule.RestartLimit(burst=2, interval_s=3600.0),
    )
    carried = schedule.Carried(restarts=2, first_ts=0.0, first_cycle=1, cycles=2)
    svc = make(raising(RuntimeError("x")), carried=carried)
    ended = service.loop(svc, never, every_s=0.001, cycles=None, limits=limits, carried=carried)
    assert ended.code == 3
    assert ended.restart is None
    assert "restarted 2 time(s)" in ended.message and "giving up" in ended.message
    assert "giving up" in log_of(svc)


def test_a_bounded_service_whose_last_cycle_faulted_exits_3(
    make: Callable[..., service.Service],
) -> None:
    run = Scripted(ok, raising(RuntimeError("x")))
    ended = service.loop(
        make(run), never, every_s=0.001, cycles=2, limits=schedule.Limits(),
        carried=schedule.Carried(),
    )  # fmt: skip
    assert ended.code == 3


def test_the_service_log_is_rotated_past_its_cap(tmp_path: Path) -> None:
    store = Store(tmp_path / ".gates", lambda line: None)
    for n in range(10):
        store.append_service_log(f"entry {n} " + "x" * 100 + "\n", cap_bytes=500)
    current = store.paths.service_log.read_text()
    older = (tmp_path / ".gates" / "service.log.1").read_text()
    assert len(current.encode()) <= 500 and len(older.encode()) <= 500
    assert "entry 9" in current
    assert [name.name for name in (tmp_path / ".gates").iterdir()] != []
    assert not any("entry 0" in text for text in (current, older)), "the oldest went"


def test_an_unwritable_service_log_is_a_warning(tmp_path: Path) -> None:
    warnings: list[str] = []
    (tmp_path / ".gates").mkdir()
    (tmp_path / ".gates" / "service.log").mkdir()
    Store(tmp_path / ".gates", warnings.append).append_service_log("entry\n")
    assert len(warnings) == 1 and "service.log" in warnings[0]


# -- signals between cycles: real signals to this process -------------------------------
# Sent to this thread (``pthread_kill``), not to the process: under a supervisor (mtest's
# own probe) the process has other threads, which do not block the signals and would
# take a process-directed one. The service blocks them before it starts any thread.


def send(sig: signal.Signals) -> None:
    signal.pthread_kill(threading.get_ident(), sig)


@pytest.fixture
def signals(out: io.StringIO) -> Iterator[service.Signals]:
    if not hasattr(signal, "sigtimedwait"):
        pytest.skip("sigtimedwait is Linux's")
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with service.Signals(Console(out, verbosity=0, tty=False, color=False)) as waiting:
        yield waiting
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before, "the mask is restored"


def test_sigterm_ends_the_wait(signals: service.Signals, out: io.StringIO) -> None:
    send(signal.SIGTERM)
    assert signals.wait(600.0) is True
    assert f"SIGTERM from pid {os.getpid()}: the service ends" in out.getvalue()


def test_a_signal_pending_before_the_wait_ends_it(signals: service.Signals) -> None:
    send(signal.SIGINT)
    assert signals.wait(0.0) is True


def test_a_signal_with_no_meaning_is_noted_once_and_the_wait_goes_on(
    signals: service.Signals, out: io.StringIO
) -> None:
    send(signal.SIGUSR1)
    send(signal.SIGUSR1)
    assert signals.wait(0.0) is False
    assert signals.wait(0.0) is False
    assert out.getvalue().count("sent SIGUSR1 to mtest; ignored") == 1


def test_a_signal_left_pending_at_the_end_does_not_kill_the_process(out: io.StringIO) -> None:
    if not hasattr(signal, "sigtimedwait"):
        pytest.skip("sigtimedwait is Linux's")
    with service.Signals(Console(out, verbosity=0, tty=False, color=False)):
        send(signal.SIGTERM)
    # Had it been left pending, restoring the mask would have ended pytest here.
    assert signal.SIGTERM not in signal.sigpending()
