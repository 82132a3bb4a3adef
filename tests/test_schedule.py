"""``mtest service``'s decisions with plain values: the grid of starts, faults, restarts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor import schedule
from supervisor.errors import Busy, MtestError
from supervisor.schedule import (
    Backoff,
    Carried,
    FaultLimit,
    GiveUp,
    Limits,
    Restart,
    RestartLimit,
    Verdict,
    judge,
    next_start,
    plan_restart,
    too_many_faults,
)  # fmt: skip

# -- the grid of starts ----------------------------------------------------------------


def test_a_cycle_shorter_than_the_period_waits_for_the_next_start() -> None:
    assert next_start(100.0, 100.3, 1.0) == schedule.Tick(start=101.0, skipped=0)


def test_a_cycle_that_outlasts_two_starts_skips_both() -> None:
    assert next_start(100.0, 102.5, 1.0) == schedule.Tick(start=103.0, skipped=2)


def test_a_cycle_ending_on_a_start_runs_the_next_one_there() -> None:
    assert next_start(0.0, 2.0, 1.0) == schedule.Tick(start=2.0, skipped=1)


def test_a_cycle_that_took_no_time_still_waits_a_whole_period() -> None:
    assert next_start(5.0, 5.0, 30.0) == schedule.Tick(start=35.0, skipped=0)


@given(
    started=st.floats(0, 1e6),
    took=st.floats(0, 1e4),
    every=st.floats(0.01, 1e3),
)
def test_the_next_start_is_the_first_point_of_the_grid_not_before_the_end(
    started: float, took: float, every: float
) -> None:
    now = started + took
    tick = next_start(started, now, every)
    assert tick.skipped >= 0
    assert tick.start == started + (tick.skipped + 1) * every
    assert tick.start >= now - 1e-6 * max(1.0, now)  # float rounding of the division
    if tick.skipped:  # the start before it had passed while the cycle ran
        assert tick.start - every <= now + 1e-6 * max(1.0, now)


# -- faults ------------------------------------------------------------------------


def test_faults_count_only_within_the_window_of_recent_cycles() -> None:
    limit = FaultLimit(faults=3, cycles=5)
    assert not too_many_faults([True, True], limit)
    assert too_many_faults([True, False, True, False, True], limit)
    # The first two faults are older than the last 5 cycles.
    assert not too_many_faults([True, True, False, False, False, True, True], limit)


def test_an_exception_that_is_not_mtest_s_own_is_a_fault() -> None:
    assert judge(KeyError("x"), interrupted=False, proven=False) is Verdict.FAULT


def test_an_interrupt_stops_the_service() -> None:
    stopped = MtestError("interrupted before listing the tests", code=2)
    assert judge(stopped, interrupted=True, proven=False) is Verdict.STOPPED
    # The same error without a signal (the budget ran out while listing) is a fault.
    assert judge(stopped, interrupted=False, proven=True) is Verdict.FAULT


def test_bad_input_ends_the_service_until_a_cycle_has_completed() -> None:
    missing = MtestError("`python` cannot import pytest", code=4)
    assert judge(missing, interrupted=False, proven=False) is Verdict.BAD_INPUT
    assert judge(missing, interrupted=False, proven=True) is Verdict.FAULT


def test_a_lock_held_by_another_mtest_is_a_fault_even_at_the_start() -> None:
    held = Busy("`.gates/lock` is held by pid 7", code=4)
    assert judge(held, interrupted=False, proven=False) is Verdict.FAULT


def test_mtest_s_own_internal_error_is_a_fault() -> None:
    internal = MtestError("refusing to write a bundle outside failures/", code=3)
    assert judge(internal, interrupted=False, proven=False) is Verdict.FAULT


# -- restarts ------------------------------------------------------------------------

LIMITS = Limits(
    faults=FaultLimit(faults=5, cycles=10),
    restarts=RestartLimit(burst=3, interval_s=3600.0),
    backoff=Backoff(base_s=1.0, max_s=300.0),
)


def test_the_first_restart_opens_a_window() -> None:
    plan = plan_restart(Carried(cycles=7), now=50.0, cycles=12, limits=LIMITS)
    assert plan == Restart(
        number=1, delay_s=1.0, carried=Carried(restarts=1, first_ts=50.0, first_cycle=12, cycles=12)
    )


def test_restarts_in_the_window_double_the_backoff_and_then_give_up() -> None:
    carried = Carried()
    delays = []
    for cycles in (5, 10, 15):
        plan = plan_restart(carried, now=float(cycles), cycles=cycles, limits=LIMITS)
        assert isinstance(plan, Restart)
        delays.append(plan.delay_s)
        carried = plan.carried
    assert delays == [1.0, 2.0, 4.0]
    assert plan_restart(carried, now=20.0, cycles=20, limits=LIMITS) == GiveUp(restarts=3)


def test_a_restart_after_the_window_by_time_and_cycles_opens_a_new_one() -> None:
    carried = Carried(restarts=3, first_ts=0.0, first_cycle=0, cycles=10)
    plan = plan_restart(carried, now=3601.0, cycles=31, limits=LIMITS)
    assert isinstance(plan, Restart)
    assert plan.number == 1
    assert plan.carried.first_ts == 3601.0


def test_the_window_lasts_the_longer_of_its_time_and_its_cycles() -> None:
    carried = Carried(restarts=3, first_ts=0.0, first_cycle=0, cycles=10)
    # An hour has passed, but within 30 cycles: still the same window (slow cycles).
    assert plan_restart(carried, now=7200.0, cycles=25, limits=LIMITS) == GiveUp(restarts=3)
    # 40 cycles, but within the hour (fast cycles): still the same window.
    assert plan_restart(carried, now=100.0, cycles=40, limits=LIMITS) == GiveUp(restarts=3)


def test_a_window_from_another_boot_is_not_trusted() -> None:
    carried = Carried(restarts=3, first_ts=9e9, first_cycle=0, cycles=100)
    assert isinstance(plan_restart(carried, now=5.0, cycles=100, limits=LIMITS), Restart)


def test_the_backoff_stops_growing_at_its_cap() -> None:
    assert Backoff(base_s=1.0, max_s=300.0).delay(40) == 300.0
    assert Backoff(base_s=1.0, max_s=300.0).delay(1000) == 300.0


@given(
    burst=st.integers(0, 6),
    faults=st.integers(1, 6),
    every=st.floats(0.1, 3600.0),
)
def test_a_storm_of_faulty_cycles_gives_up_after_the_burst(
    burst: int, faults: int, every: float
) -> None:
    """Every cycle faults: a restart every ``faults`` cycles, until the budget is spent."""
    limits = Limits(
        faults=FaultLimit(faults=faults, cycles=faults),
        restarts=RestartLimit(burst=burst, interval_s=3600.0),
    )
    carried, cycles, restarts, now = Carried(), 0, 0, 0.0
    while True:
        cycles += faults
        now += faults * every
        plan = plan_restart(carried, now=now, cycles=cycles, limits=limits)
        if isinstance(plan, GiveUp):
            break
        restarts += 1
        now += plan.delay_s
        carried = plan.carried
        assert restarts <= 10 * (burst + 1), "never an endless loop of restarts"
    # However slow the cycles, the whole budget is spent in one window.
    assert restarts == burst


# -- what crosses the exec, and the test-only limits ------------------------------------


@given(
    restarts=st.integers(0, 10**6),
    first_ts=st.floats(0, 1e9, allow_nan=False),
    first_cycle=st.integers(0, 10**9),
    cycles=st.integers(0, 10**9),
)
def test_carried_state_round_trips(
    restarts: int, first_ts: float, first_cycle: int, cycles: int
) -> None:
    carried = Carried(restarts=restarts, first_ts=first_ts, first_cycle=first_cycle, cycles=cycles)
    assert Carried.decode(carried.encode()) == carried


def test_no_carried_state_is_a_first_process() -> None:
    assert Carried.decode(None) == Carried()
    assert Carried.decode("") == Carried()


@pytest.mark.parametrize("text", ["x", "1/2/3", "1/2/3/4/5", "-1/0/0/0", "1/nan/0/0", "a/0/0/0"])
def test_a_damaged_carried_state_is_a_usage_error(text: str) -> None:
    with pytest.raises(MtestError, match=schedule.STATE_VAR) as caught:
        Carried.decode(text)
    assert caught.value.code == 4


def test_the_limits_default_to_the_documented_numbers() -> None:
    assert schedule.limits_from({}) == Limits(
        faults=FaultLimit(faults=5, cycles=10),
        restarts=RestartLimit(burst=3, interval_s=3600.0),
        backoff=Backoff(base_s=1.0, max_s=300.0),
    )
    assert schedule.window_cycles(schedule.limits_from({})) == 30


def test_the_limits_can_be_set_through_the_environment() -> None:
    limits = schedule.limits_from(
        {
            schedule.FAULT_LIMIT_VAR: "2/3",
            schedule.RESTART_LIMIT_VAR: "1/30s",
            schedule.BACKOFF_VAR: "0.1s/2s",
        }
    )
    assert limits == Limits(
        faults=FaultLimit(faults=2, cycles=3),
        restarts=RestartLimit(burst=1, interval_s=30.0),
        backoff=Backoff(base_s=0.1, max_s=2.0),
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (schedule.FAULT_LIMIT_VAR, "5"),
        (schedule.FAULT_LIMIT_VAR, "6/5"),
        (schedule.FAULT_LIMIT_VAR, "0/5"),
        (schedule.RESTART_LIMIT_VAR, "3/soon"),
        (schedule.RESTART_LIMIT_VAR, "3/1h/30"),
        (schedule.BACKOFF_VAR, "1s/-5s"),
    ],
)
def test_bad_limits_in_the_environment_are_usage_errors(name: str, value: str) -> None:
    with pytest.raises(MtestError, match=name) as caught:
        schedule.limits_from({name: value})
    assert caught.value.code == 4
