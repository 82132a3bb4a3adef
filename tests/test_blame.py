"""Unit tests for ``supervisor.blame``: deadlines, the kill re-check, who is blamed, sessions.

Plain values, no processes and no clock: every time is a number on mtest's
own clock, as the pool passes it.
"""

from __future__ import annotations

import pytest

from supervisor import blame, events
from supervisor.blame import Blamed, Deadline, KillReason, Limits, Phase, Watch

LIMITS = Limits(
    timeout_s=10.0, startup_s=120.0, linger_s=2.0, exit_s=10.0, per_test={"t.py::slow": 30.0}
)


def running(test: str | None, since: float = 100.0, started: float = 100.0) -> Watch:
    return Watch(phase=Phase.RUNNING, since=since, in_flight=test, in_flight_since=started)


# -- which deadline fires ------------------------------------------------------


def test_a_ready_worker_waits_for_mtest_and_has_no_deadline() -> None:
    assert blame.deadline(Watch(phase=Phase.READY, since=0.0), LIMITS) is None


def test_a_test_in_flight_is_under_its_own_limit_from_when_mtest_read_its_start() -> None:
    due = blame.deadline(running("t.py::a", started=100.0), LIMITS)
    assert due == Deadline(reason=KillReason.HUNG, at=110.0, subject="t.py::a", limit_s=10.0)
    slow = blame.deadline(running("t.py::slow", started=100.0), LIMITS)
    assert slow is not None and slow.at == 130.0


def test_a_chunk_with_no_test_in_flight_stalls_after_the_timeout() -> None:
    due = blame.deadline(running(None, since=50.0), LIMITS)
    assert due is not None and (due.reason, due.at) == (KillReason.STALLED, 60.0)


@pytest.mark.parametrize(
    ("watch", "reason", "at"),
    [
        (Watch(phase=Phase.STARTING, since=0.0), KillReason.STARTUP_HUNG, 120.0),
        (
            Watch(phase=Phase.STARTING, since=0.0, collecting="t.py", collecting_since=5.0),
            KillReason.COLLECT_HUNG,
            15.0,
        ),
        (Watch(phase=Phase.EXITING, since=40.0), KillReason.EXIT_HUNG, 50.0),
        (
            Watch(phase=Phase.EXITING, since=40.0, session_over_at=41.0),
            KillReason.LINGERING,
            43.0,
        ),
    ],
)
def test_every_other_state_has_a_deadline(watch: Watch, reason: KillReason, at: float) -> None:
    due = blame.deadline(watch, LIMITS)
    assert due is not None and (due.reason, due.at) == (reason, at)


def test_overdue_fires_at_the_deadline_and_not_before() -> None:
    watch = running("t.py::a", started=100.0)
    assert blame.overdue(watch, LIMITS, 109.9) is None
    fired = blame.overdue(watch, LIMITS, 110.0)
    assert fired is not None and fired.subject == "t.py::a"


def test_stacks_are_asked_for_before_killing_a_hung_test_but_not_a_lingering_child() -> None:
    assert KillReason.HUNG.dumps_stacks and KillReason.COLLECT_HUNG.dumps_stacks
    assert not KillReason.LINGERING.dumps_stacks and not KillReason.HALT.dumps_stacks


# -- the re-check after the stacks were asked for ----------------------------------


def test_the_kill_stands_when_the_same_test_is_still_in_flight() -> None:
    decided = blame.overdue(running("t.py::a", started=100.0), LIMITS, 111.0)
    assert decided is not None
    assert blame.still_due(decided, running("t.py::a", started=100.0), LIMITS, 111.5)


def test_the_kill_is_dropped_when_the_overdue_test_ended_and_the_next_one_is_fresh() -> None:
    decided = blame.overdue(running("t.py::a", started=100.0), LIMITS, 111.0)
    assert decided is not None
    after = running("t.py::b", started=111.2)  # the next test started: its own deadline
    assert not blame.still_due(decided, after, LIMITS, 111.5)
    assert blame.overdue(after, LIMITS, 111.5) is None


def test_a_stall_is_dropped_when_a_test_started_meanwhile() -> None:
    decided = blame.overdue(running(None, since=0.0), LIMITS, 10.5)
    assert decided is not None and decided.reason is KillReason.STALLED
    assert not blame.still_due(decided, running("t.py::a", started=10.4), LIMITS, 10.8)


# -- --max-rss: a test in flight above the limit --------------------------------------

MIB = 1024 * 1024
CAPPED = Limits(timeout_s=10.0, startup_s=120.0, linger_s=2.0, exit_s=10.0,
                max_rss_bytes=150 * MIB)  # fmt: skip


def test_a_test_in_flight_above_max_rss_is_killed_at_once_without_stacks() -> None:
    watch = Watch(phase=Phase.RUNNING, since=100.0, in_flight="t.py::hog",
                  in_flight_since=100.0, rss_bytes=151 * MIB)  # fmt: skip
    due = blame.overdue(watch, CAPPED, 100.5)
    assert due == Deadline(
        reason=KillReason.MAX_RSS, at=100.5, subject="t.py::hog", rss_bytes=151 * MIB,
        limit_bytes=150 * MIB,
    )  # fmt: skip
    assert not KillReason.MAX_RSS.dumps_stacks


@pytest.mark.parametrize(
    "watch",
    [
        # at the limit is not above it
        Watch(phase=Phase.RUNNING, since=0.0, in_flight="t.py::a", rss_bytes=150 * MIB),
        # between tests: the probe ends the chunk, mtest replaces the worker, nobody dies
        Watch(phase=Phase.RUNNING, since=0.0, rss_bytes=500 * MIB),
        Watch(phase=Phase.READY, since=0.0, rss_bytes=500 * MIB),
        Watch(phase=Phase.EXITING, since=0.0, rss_bytes=500 * MIB),
        Watch(phase=Phase.RUNNING, since=0.0, in_flight="t.py::a"),  # not measured
    ],
)
def test_no_memory_kill_outside_a_test_or_within_the_limit(watch: Watch) -> None:
    assert blame.over_max_rss(watch, CAPPED, 1.0) is None
    assert blame.overdue(watch, CAPPED, 1.0) is None


def test_without_max_rss_memory_kills_nobody() -> None:
    watch = Watch(phase=Phase.RUNNING, since=0.0, in_flight="t.py::a", rss_bytes=2**40)
    assert blame.overdue(watch, LIMITS, 1.0) is None


# -- who is blamed ----------------------------------------------------------------


HUNG_A = Deadline(reason=KillReason.HUNG, at=110.0, subject="t.py::a")
OVER_A = Deadline(reason=KillReason.MAX_RSS, at=1.0, subject="t.py::a", rss_bytes=2, limit_bytes=1)


@pytest.mark.parametrize(
    ("kill", "in_flight", "expected"),
    [
        (None, None, blame.Culprit(how=Blamed.NOBODY)),
        (None, "t.py::a", blame.Culprit(how=Blamed.CRASHED, test_id="t.py::a")),
        (HUNG_A, "t.py::a", blame.Culprit(how=Blamed.HUNG, test_id="t.py::a")),
        # The overdue test ended just before the kill, an innocent one had started.
        (HUNG_A, "t.py::b", blame.Culprit(how=Blamed.REQUEUE, test_id="t.py::b")),
        (HUNG_A, None, blame.Culprit(how=Blamed.NOBODY)),
        (
            Deadline(reason=KillReason.STALLED, at=1.0),
            "t.py::b",
            blame.Culprit(how=Blamed.REQUEUE, test_id="t.py::b"),
        ),
        # The test above --max-rss took its worker down: crashed, as an OOM kill would.
        (OVER_A, "t.py::a", blame.Culprit(how=Blamed.CRASHED, test_id="t.py::a")),
        # It ended before the kill and the next had started: that one is innocent.
        (OVER_A, "t.py::b", blame.Culprit(how=Blamed.REQUEUE, test_id="t.py::b")),
        (OVER_A, None, blame.Culprit(how=Blamed.NOBODY)),
    ],
)
def test_the_test_blamed_is_the_one_in_flight_at_the_kill(
    kill: Deadline | None, in_flight: str | None, expected: blame.Culprit
) -> None:
    assert blame.culprit(kill, in_flight) == expected


# -- sessions that fail on their own --------------------------------------------------


def session(
    *,
    errors: tuple[events.SessionError, ...] = (),
    exit_code: int | None = 0,
    returncode: int | None = 0,
    kill: KillReason | None = None,
    explained: bool = False,
    blamed: bool = False,
    rss_bytes: int | None = None,
) -> str | None:
    return blame.session_failure(
        errors=errors, exit_code=exit_code, returncode=returncode, kill=kill,
        explained=explained, blamed=blamed, rss_bytes=rss_bytes,
    )  # fmt: skip


def test_a_clean_session_did_not_fail() -> None:
    assert session() is None


def test_a_session_error_is_a_failure_even_with_failing_tests() -> None:
    error = events.SessionError(pid=1, where="sessionfinish", message="RuntimeError: boom")
    assert session(errors=(error,), exit_code=1, explained=True) == (
        "pytest_sessionfinish raised: RuntimeError: boom"
    )


def test_a_non_zero_status_with_no_failing_test_is_a_failure() -> None:
    why = session(exit_code=1, returncode=1)
    assert why is not None and "exit status 1" in why
    assert session(exit_code=1, returncode=1, explained=True) is None


def test_a_child_that_never_finished_its_session_is_a_failure_even_at_exit_0() -> None:
    assert session(exit_code=None, returncode=0) is not None
    assert session(exit_code=None, returncode=-11, explained=False) is not None


def test_a_child_sigkilled_between_tests_by_someone_else_is_asked_about_memory() -> None:
    why = session(exit_code=None, returncode=-9, rss_bytes=64 * MIB)
    assert why == (
        "the child was killed by SIGKILL — out of memory? (mtest sent no signal; its RSS "
        "was 64 MiB when last measured) before its session finished"
    )
    other = session(exit_code=None, returncode=-11)
    assert other == "the child ended before its session finished (signal 11)"


def test_a_session_that_does_not_end_after_exit_is_a_failure() -> None:
    why = session(exit_code=None, returncode=-9, kill=KillReason.EXIT_HUNG, explained=True)
    assert why is not None and "did not end in time" in why


def test_a_death_recorded_against_the_test_in_flight_is_no_session_failure() -> None:
    assert session(exit_code=None, returncode=0, explained=True, blamed=True) is None
    assert session(exit_code=None, returncode=0, explained=True) is not None


def test_a_child_mtest_killed_is_blamed_by_the_kill_unless_it_only_lingered() -> None:
    assert session(exit_code=None, returncode=-15, kill=KillReason.HUNG) is None
    assert session(exit_code=0, returncode=-15, kill=KillReason.LINGERING) is None
    assert session(exit_code=3, returncode=-15, kill=KillReason.LINGERING) is not None


# -- replacing workers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("dedicated", "waiting", "starting", "expected"),
    [
        (True, 1, 5, True),  # a retry always gets its own fresh child
        (False, 2, 1, True),  # one chunk more than the collecting children will take
        (False, 1, 1, False),  # the child still collecting takes it
        (False, 0, 0, False),
    ],
)
def test_an_empty_slot_gets_a_worker_only_for_chunks_nobody_will_take(
    dedicated: bool, waiting: int, starting: int, expected: bool
) -> None:
    assert blame.replaces(dedicated=dedicated, waiting=waiting, starting=starting) is expected


# -- early deaths and pytest's own verdict ---------------------------------------------


def test_children_dying_before_a_test_end_the_run_after_the_limit() -> None:
    deaths = blame.Deaths(limit=3)
    for _ in range(2):
        deaths = deaths.after_death()
    assert not deaths.exhausted
    assert deaths.after_death().exhausted
    assert not deaths.after_death().after_progress().exhausted


@pytest.mark.parametrize(("code", "final"), [(4, True), (5, True), (1, False), (None, False)])
def test_usage_and_nothing_collected_end_the_listing_at_once(code: int | None, final: bool) -> None:
    assert blame.gives_up_listing(code) is final
