"""The reaper's and the watchdog's decisions over process tables, without processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor import reaper, watchdog
from supervisor.reaper import ProcInfo

ME = 100
WATCHDOG = 101


def proc(pid: int, ppid: int, *, session: int | None = None, state: str = "S") -> ProcInfo:
    return ProcInfo(
        pid=pid, ppid=ppid, pgid=session or pid, session=session or pid, state=state, start=pid * 7
    )


def table(*procs: ProcInfo) -> dict[int, ProcInfo]:
    return {p.pid: p for p in procs}


# A run: mtest (100) with the watchdog (101) and two workers (200, 300).
# Worker 200 has a child in its session (201) and an escaped child in a new
# session with a child of its own (202 → 203). Worker 300 has a child (301).
# 400 is an orphan re-parented to mtest from a new session, with a child (401);
# 500 is an orphan still in worker 300's session; 600 is a zombie orphan.
RUN = table(
    proc(ME, 1),
    proc(WATCHDOG, ME),
    proc(200, ME),
    proc(201, 200, session=200),
    proc(202, 200),
    proc(203, 202, session=202),
    proc(300, ME),
    proc(301, 300, session=300),
    proc(400, ME),
    proc(401, 400, session=400),
    proc(500, ME, session=300),
    proc(600, ME, state="Z"),
    proc(700, 1),  # not ours at all
)
KEEP = (WATCHDOG, 200, 300)


def test_parse_stat_reads_the_fields_after_a_command_name_with_spaces_and_parens() -> None:
    text = (
        "4242 (a (weird) name) T 17 4242 4240 34816 4242 4194304 " + " ".join(["0"] * 12) + " 987"
    )
    info = reaper.parse_stat(4242, text + " 0 0\n")
    assert info == ProcInfo(pid=4242, ppid=17, pgid=4242, session=4240, state="T", start=987)


@pytest.mark.parametrize("text", ["", "4242 (x)", "4242 (x) S notanumber 1 2"])
def test_parse_stat_of_garbage_is_none(text: str) -> None:
    assert reaper.parse_stat(1, text) is None


def test_read_proc_of_this_process_names_its_parent() -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc here")
    info = reaper.read_proc(os.getpid())
    assert info is not None and info.ppid == os.getppid() and info.state == "R"


def test_subtree_is_the_root_and_everything_below_it_even_with_a_cycle() -> None:
    children = {1: [2, 3], 2: [4], 4: [1]}
    assert reaper.subtree(children, 1) == {1, 2, 3, 4}
    assert reaper.subtree(children, 3) == {3}


def test_at_close_every_orphan_and_every_workers_descendant_dies_but_not_the_kept() -> None:
    assert reaper.doomed(RUN, me=ME, keep=KEEP) == {201, 202, 203, 301, 400, 401, 500}


def test_at_the_end_of_a_chunk_a_busy_workers_descendants_and_session_are_spared() -> None:
    # Worker 200's chunk ended; worker 300 is still running a test.
    assert reaper.doomed(RUN, me=ME, keep=KEEP, busy=(300,)) == {201, 202, 203, 400, 401}


def test_a_process_not_kept_is_killed_with_its_tree_even_if_it_was_a_worker() -> None:
    assert reaper.doomed(RUN, me=ME, keep=(WATCHDOG, 300)) >= {200, 201, 202, 203}


def test_nothing_outside_mtests_tree_and_no_zombie_is_ever_doomed() -> None:
    doomed = reaper.doomed(RUN, me=ME, keep=())
    assert 700 not in doomed and 600 not in doomed and ME not in doomed and 1 not in doomed


def test_stale_zombies_of_mtest_not_kept_are_reaped() -> None:
    zombie_worker = proc(300, ME, state="Z")
    assert reaper.stale(RUN, me=ME, keep=KEEP) == {600}
    assert reaper.stale({**RUN, 300: zombie_worker}, me=ME, keep=KEEP) == {600}


def test_the_watchdog_remembers_the_supervisors_tree_and_forgets_the_dead_and_reused() -> None:
    seen = watchdog.remember({}, RUN, root=ME, me=WATCHDOG)
    assert set(seen) == {200, 201, 202, 203, 300, 301, 400, 401, 500}
    # mtest died: its children moved to init; 201 is gone; 301's pid was reused.
    after = table(
        proc(200, 1), proc(202, 1), proc(203, 202, session=202), proc(400, 1),
        proc(401, 400, session=400), proc(500, 1, session=300),
        ProcInfo(pid=301, ppid=1, pgid=301, session=301, state="S", start=1),
    )  # fmt: skip
    kept = watchdog.remember(seen, after, root=ME, me=WATCHDOG)
    assert set(kept) == {200, 202, 203, 400, 401, 500}


def test_after_a_death_the_watchdog_kills_what_it_saw_and_what_they_started_since() -> None:
    seen = {202: 202 * 7, 400: 400 * 7, 301: 301 * 7}
    now = table(
        proc(202, 1), proc(204, 202), proc(400, 1), proc(402, 400, state="Z"),
        ProcInfo(pid=301, ppid=1, pgid=301, session=301, state="S", start=1),  # reused pid
    )  # fmt: skip
    assert watchdog.leftovers(seen, now, me=WATCHDOG) == {202, 204, 400}


def test_the_watchdog_applies_the_supervisors_commands() -> None:
    watch = watchdog._Watch(supervisor=ME, record=None, groups=set(), seen={})
    assert not watch.command("+200") and not watch.command("+300") and not watch.command("-200")
    assert not watch.command("hold") and watch.held
    assert not watch.command("release") and not watch.held
    assert not watch.command("+not-a-pid")
    assert watch.groups == {300}
    assert watch.command("bye")


def test_a_sandboxed_workers_own_processes_live_when_its_chunk_ends() -> None:
    # bwrap (800) → its init in the sandbox (801) → pytest (802) → a test's child (803).
    box = table(
        proc(ME, 1), proc(800, ME), proc(801, 800, session=800), proc(802, 801, session=800),
        proc(803, 802, session=800),
    )  # fmt: skip
    assert reaper.doomed(box, me=ME, keep=(800, 801, 802)) == {803}
    assert reaper.doomed(box, me=ME, keep=(800,)) == {801, 802, 803}
