"""The signal guard and its decisions without processes: is the sender ours, what does it mean."""

from __future__ import annotations

import signal

import pytest

from supervisor import events, interrupts, senders
from supervisor.control import Stop, StopControl
from supervisor.reaper import Watchdog
from supervisor.senders import Action, Meaning, Origin, Sender
from supervisor.worker import Worker

ME = 100
WATCHDOG = 101
WORKERS = (200, 300)
# 200 is a worker; 201 its child; 202 a grandchild in a new session; 900 → 1 the user's shell.
PARENTS = {200: ME, 201: 200, 202: 201, 900: 1}


def identify(pid: int, parents: dict[int, int] = PARENTS) -> Sender:
    return senders.identify(pid, me=ME, parents=parents, workers=WORKERS, watchdog=WATCHDOG)


def test_a_worker_is_of_the_run() -> None:
    assert identify(200) == Sender(pid=200, origin=Origin.RUN, worker=200)


def test_a_grandchild_is_of_the_run_and_its_worker_is_found_on_its_chain() -> None:
    assert identify(202) == Sender(pid=202, origin=Origin.RUN, worker=200)


def test_an_orphan_re_parented_to_mtest_is_of_the_run_without_a_worker() -> None:
    assert identify(400, {400: ME}) == Sender(pid=400, origin=Origin.RUN, worker=None)


def test_a_process_below_a_worker_whose_chain_is_cut_is_still_of_the_run() -> None:
    # 201's parent could not be read past the worker (mtest's own stat unreadable).
    assert identify(201, {201: 200}).origin is Origin.RUN


@pytest.mark.parametrize("pid", [900, 0, ME, 12345])
def test_the_user_the_kernel_mtest_itself_and_a_vanished_sender_are_outside(pid: int) -> None:
    assert identify(pid).origin is Origin.OUTSIDE


def test_a_sender_gone_at_once_is_of_the_run_when_a_worker_just_reaped_a_child() -> None:
    sender = senders.identify(
        555, me=ME, parents={}, workers=WORKERS, watchdog=WATCHDOG, reaping=(300,)
    )
    assert sender == Sender(pid=555, origin=Origin.RUN, worker=300, gone=True)
    assert senders.note(signal.SIGTERM, sender, test="t.py::test_x", in_flight=()) == (
        "a short-lived process (pid 555) of worker pid 300 sent SIGTERM to mtest; ignored"
        " (the last test its worker had started: t.py::test_x)"
    )


def test_init_and_the_kernel_are_outside_whatever_a_worker_reaped() -> None:
    for pid in (0, 1):
        sender = senders.identify(
            pid, me=ME, parents={}, workers=WORKERS, watchdog=WATCHDOG, reaping=(300,)
        )
        assert sender.origin is Origin.OUTSIDE


def test_the_watchdog_is_recognised() -> None:
    assert identify(WATCHDOG).origin is Origin.WATCHDOG


def test_a_parent_loop_does_not_hang() -> None:
    assert identify(7, {7: 8, 8: 7}).origin is Origin.OUTSIDE


@pytest.mark.parametrize(
    ("sig", "kind"),
    [
        (signal.SIGINT, Meaning.INTERRUPT),
        (signal.SIGTERM, Meaning.INTERRUPT),
        (signal.SIGHUP, Meaning.INTERRUPT),
        (signal.SIGQUIT, Meaning.QUIT),
        (signal.SIGTSTP, Meaning.SUSPEND),
        (signal.SIGCONT, Meaning.CONTINUE),
        (signal.SIGUSR1, Meaning.NONE),
        (signal.SIGALRM, Meaning.NONE),
        (signal.SIGRTMIN, Meaning.NONE),
    ],
)
def test_each_signal_has_a_meaning(sig: int, kind: Meaning) -> None:
    assert senders.meaning(sig) is kind


def test_the_guard_blocks_what_a_test_could_send_but_not_kill_or_stop() -> None:
    wanted = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
              signal.SIGUSR2, signal.SIGALRM, signal.SIGTSTP, signal.SIGCONT}  # fmt: skip
    assert wanted <= senders.GUARDED
    assert signal.SIGKILL not in senders.GUARDED and signal.SIGSTOP not in senders.GUARDED


@pytest.mark.parametrize(
    "sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP,
            signal.SIGUSR1, signal.SIGALRM],
)  # fmt: skip
def test_from_the_run_every_signal_is_ignored(sig: int) -> None:
    assert senders.decide(sig, Origin.RUN, interrupted=False) is Action.IGNORE
    assert senders.decide(sig, Origin.RUN, interrupted=True) is Action.IGNORE


@pytest.mark.parametrize(
    ("sig", "interrupted", "action"),
    [
        (signal.SIGINT, False, Action.HALT),
        (signal.SIGINT, True, Action.KILL_NOW),
        (signal.SIGTERM, False, Action.HALT),
        (signal.SIGTERM, True, Action.KILL_NOW),
        (signal.SIGHUP, False, Action.HALT),
        (signal.SIGQUIT, False, Action.KILL_NOW),
        (signal.SIGTSTP, False, Action.SUSPEND),
        (signal.SIGUSR1, False, Action.IGNORE),
        (signal.SIGCONT, False, Action.NOTHING),
    ],
)
def test_from_outside_a_signal_keeps_its_meaning(
    sig: int, interrupted: bool, action: Action
) -> None:
    assert senders.decide(sig, Origin.OUTSIDE, interrupted=interrupted) is action


def test_sigcont_from_the_watchdog_means_mtest_had_been_stopped() -> None:
    assert senders.decide(signal.SIGCONT, Origin.WATCHDOG, interrupted=False) is Action.CONTINUED
    assert senders.decide(signal.SIGCONT, Origin.RUN, interrupted=False) is Action.NOTHING


def test_notes_name_the_test_the_sender_and_the_signal() -> None:
    run = Sender(pid=202, origin=Origin.RUN, worker=200)
    assert (
        senders.note(signal.SIGTERM, run, test="t.py::test_x", in_flight=())
        == "pid 202 of the run sent SIGTERM to mtest; ignored"
        " (the last test its worker had started: t.py::test_x)"
    )
    assert "pid 202 (of the run, no test in flight) sent SIGINT" in senders.note(
        signal.SIGINT, run, test=None, in_flight=()
    )
    user = Sender(pid=900, origin=Origin.OUTSIDE)
    assert "pid 900 sent SIGUSR1 to mtest; ignored" in senders.note(
        signal.SIGUSR1, user, test=None, in_flight=()
    )
    dog = Sender(pid=WATCHDOG, origin=Origin.WATCHDOG)
    assert senders.note(signal.SIGCONT, dog, test=None, in_flight=("b", "a")) == (
        "mtest was stopped (SIGSTOP) and the watchdog continued it; in flight: a, b"
    )


def test_the_test_named_is_the_last_the_worker_itself_started() -> None:
    stream: list[events.Event] = [
        events.Start(pid=200, test_id="t.py::test_a"),
        events.Start(pid=200, test_id="t.py::test_b"),
        events.Start(pid=999, test_id="t.py::from_a_forked_copy"),
    ]
    assert senders.last_started(stream, 200) == "t.py::test_b"
    assert senders.last_started([], 200) is None


class FakePool:
    """What the guard reads from a pool: one worker (pid 4242) running a test."""

    def __init__(self, *, broken: bool = False) -> None:
        self.broken = broken
        self.watchdog: Watchdog | None = None
        self.workers: list[Worker | None] = []

    def in_flight_by_pid(self) -> dict[int, str | None]:
        if self.broken:
            raise ValueError("a pool in a state nobody foresaw")
        return {4242: "t.py::test_x"}


def guard(pool: FakePool) -> interrupts.Guard:
    """A guard that judges signals handed to it (not entered: no mask, no thread)."""
    g = interrupts.Guard(StopControl())
    g.follow(pool)
    return g


def test_a_signal_from_a_worker_is_noted_once_and_stops_nothing() -> None:
    g = guard(FakePool())
    g.on_signal(signal.SIGTERM, 4242)
    g.on_signal(signal.SIGTERM, 4242)
    assert g.notes == ["pid 4242 (of the run, no test in flight) sent SIGTERM to mtest; ignored"]
    assert not g.stop.interrupted and g.stop.mode is None


def test_from_outside_the_first_interrupt_halts_and_the_second_kills_at_once() -> None:
    g = guard(FakePool())
    g.on_signal(signal.SIGINT, 0)
    assert g.stop.interrupted and g.stop.mode is Stop.HALT and not g.stop.hurry
    g.on_signal(signal.SIGTERM, 0)
    assert g.stop.hurry
    assert g.notes == []


def test_when_judging_fails_the_signal_is_honoured_as_the_users() -> None:
    g = guard(FakePool(broken=True))
    g._judge(signal.SIGTERM, 4242)
    assert g.stop.interrupted and g.stop.mode is Stop.HALT
