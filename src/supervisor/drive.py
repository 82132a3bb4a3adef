"""Running chunks in pytest children: the event loop, deadlines, blame and the kill.

A ``Pool`` keeps up to ``jobs`` children ("workers"). Each worker is a pytest
session with the probe loaded: it collects the suite once, reports the
listing, then runs the chunks the pool sends it, one after another, until told
to exit. All workers start at once and collect in parallel, so collection
costs one collection's wall time, not one per chunk.

The loop (``loop.Loop``, which ``Pool`` builds on) is single-threaded and
never sleeps: it waits on the children's "doorbell" pipes with a short
timeout, reads each child's event stream incrementally (typed events,
``parse.decode_events``), and checks deadlines. Which deadline fires,
whether a kill still stands after the stacks were asked for, and who is
blamed are ``blame``'s pure decisions; time is always mtest's own
``time.monotonic()`` when it read an event. When a child dies or is
killed, the one test in flight is blamed (``crashed`` or ``hung``) and the
tests of its chunk that never started go back to the front of the queue, to
run in a fresh child. How a child is started and stopped is ``worker``'s business.
"""

from __future__ import annotations

import selectors
import time
from collections import deque
from collections.abc import Callable, Sequence

from supervisor import blame, reaper
from supervisor.control import (
    BUDGET_KILL_GRACE_S,
    DEFAULT_TIMEOUT_S,
    DriveOptions,
    ResultSink,
    Stop,
    StopControl,
)  # fmt: skip
from supervisor.errors import MtestError
from supervisor.loop import Loop
from supervisor.model import Chunk, Collection
from supervisor.worker import Launch, State, Worker

__all__ = [
    "BUDGET_KILL_GRACE_S", "DEFAULT_TIMEOUT_S", "DriveOptions", "Pool", "ResultSink", "Stop",
    "StopControl",
]  # fmt: skip


class Pool(Loop):
    """Up to ``jobs`` pytest children collecting once and running chunks on demand."""

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> Pool:
        reaper.set_subreaper()
        self.watchdog = reaper.Watchdog(
            self.options.run_id, record=self.options.work_dir / "watchdog.txt"
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start every worker; each begins collecting the suite at once."""
        self.sink = self.blamed.append
        for slot in range(self.options.jobs):
            self._spawn(slot)

    def collect(self, stop: StopControl) -> Collection:
        """Wait for the first complete listing of the suite (starting the workers if needed).

        Its ``problems`` hold the files that failed to import or skipped at
        import, and the files whose import crashed or hung a child (those are
        ``--ignore``d by the children started after). Nothing is recorded here:
        the caller records the problems once it knows the environment.
        """
        self.stop = stop
        if not self._live():
            self.start()
        while self.collection is None:
            if stop.current(time.monotonic()) is Stop.HALT:
                self._halt(stop)
                why = "interrupted" if stop.interrupted else "the --budget ran out"
                raise MtestError(f"{why} before the tests were listed", code=2)
            self._turn(stop)
            primary = self.workers[0]
            if self.collection is None and (primary is None or primary.state is State.DEAD):
                self._spawn(0)  # slot 0's child is the one that lists the suite
        return self.collection

    def run(
        self,
        chunks: Sequence[Chunk],
        sink: ResultSink,
        stop: StopControl,
        *,
        dedicated: bool = False,
        tick: Callable[[], None] = lambda: None,
    ) -> list[str]:
        """Run the chunks; return the ids that never started (outstanding).

        ``dedicated``: each chunk runs alone in a fresh child that collects only
        the chunk's tests and exits after it (``--retries``).
        """
        self.sink = sink
        self.stop = stop
        self.dedicated = dedicated
        self.queue = deque(chunks)
        while True:
            now = time.monotonic()
            mode = stop.current(now)
            if mode is Stop.HALT:
                self._halt(stop)
                break
            # --fail-fast stops new tests, not the retries of tests that already ran.
            launching = mode is None or (dedicated and mode is Stop.DRAIN)
            if launching:
                self._dispatch(stop)
            elif mode is Stop.AFTER_TEST:
                self._stop_after_test()
            busy = [w for w in self._live() if w.chunk is not None]
            launchable = launching and any(stop.fits(c, now) for c in self.queue)
            if not busy and not launchable:
                break
            self._turn(stop)
            tick()
        outstanding = [t.test_id for chunk in self.queue for t in chunk.tests]
        self.queue.clear()
        return outstanding

    def running(self) -> list[str]:
        """The tests in flight right now, one per busy child."""
        return [w.in_flight for w in self._live() if w.in_flight is not None]

    def in_flight_by_pid(self) -> dict[int, str | None]:
        """Each live worker's pid and the test it is running (``None``: between tests)."""
        return {w.proc.pid: w.in_flight for w in self._live()}

    def release(self) -> None:
        """Let every child finish its session and wait for it (each state has a deadline).

        A session that fails on its own (``pytest_sessionfinish``, a session
        teardown, a plugin's exit status) is recorded before this returns.
        """
        now = time.monotonic()
        for worker in self._live():
            if worker.state in (State.STARTING, State.RUNNING):
                # It ran nothing yet, or an error is ending the run mid-chunk.
                worker.stop_now(blame.KillReason.CLOSING, now)
            elif worker.state is State.READY:
                self._send_exit(worker)
        self._wait_all()

    def close(self) -> None:
        """Let children finish their sessions, kill what is left, reap, clean up."""
        self.release()
        reaper.kill_descendants(self.options.run_id)
        self._kill_orphans()
        if self.watchdog is not None:
            self.watchdog.close()
            self.watchdog = None
        self.selector.close()

    def _wait_all(self) -> None:
        while self._live():
            if self.stop.interrupted:
                now = time.monotonic()
                for worker in self._live():
                    worker.stop_now(blame.KillReason.CLOSING, now)
            self._turn(self.stop)

    # -- spawning and dispatch ---------------------------------------------

    def _spawn(self, slot: int, chunk: Chunk | None = None) -> Worker:
        opts = self.options
        self._ensure_work_dir()
        self.seq += 1
        env = {
            # One child lists every test with its markers; the others
            # only say they are ready (the listing is costly on big suites).
            "MTEST_LISTING": "full" if slot == 0 and chunk is None else "count",
            "MTEST_WORKER": str(slot),
            "MTEST_RUN_ID": opts.run_id,
            reaper.ANCESTRY_VAR: opts.ancestry,
        }
        if self.timeout_known:
            env["MTEST_TIMEOUT"] = f"{self.timeout_s:g}"
        worker = Worker.start(
            Launch(
                python=opts.python,
                args=(
                    *(f"--ignore={path}" for path in self.ignored),
                    *opts.pytest_args,
                    *(opts.paths if chunk is None else (t.test_id for t in chunk.tests)),
                ),
                cwd=opts.cwd,
                base=opts.work_dir / f"{self.seq:04d}",
                cache_dir=opts.cache_dir,
                env=env,
            ),
            slot=slot,
            seq=self.seq,
        )
        self.selector.register(worker.doorbell, selectors.EVENT_READ, worker)
        if self.watchdog is not None:
            self.watchdog.watch(worker.pgid)
        if chunk is not None:
            worker.take_chunk(chunk)
        self.workers[slot] = worker
        return worker

    def _dispatch(self, stop: StopControl) -> None:
        """Give idle workers the next chunk that fits; start workers where slots are empty."""
        for slot, worker in enumerate(self.workers):
            now = time.monotonic()
            fitting = [i for i, chunk in enumerate(self.queue) if stop.fits(chunk, now)]
            if not fitting:
                break
            if worker is None or worker.state is State.DEAD:
                starting = sum(1 for w in self._live() if w.state is State.STARTING)
                if blame.replaces(
                    dedicated=self.dedicated, waiting=len(fitting), starting=starting
                ):
                    self._spawn(slot, self._take(fitting[0]) if self.dedicated else None)
            elif worker.state is State.READY and not self.dedicated:
                self._assign(worker, self._take(fitting[0]))
        for worker in self._live():
            if worker.state is State.READY and (self.dedicated or not self.queue):
                self._send_exit(worker)

    def _stop_after_test(self) -> None:
        """Ask every busy child to end its chunk after the test in flight (once each)."""
        for worker in self._live():
            if worker.state is State.RUNNING and not worker.stop_sent:
                worker.stop_sent = True
                self._send(worker, "stop\n")
            if worker.state is State.READY:
                self._send_exit(worker)

    def _take(self, index: int) -> Chunk:
        chunk = self.queue[index]
        del self.queue[index]
        return chunk

    def _halt(self, stop: StopControl) -> None:
        """Stop every child now; tests in flight get no record (they stay outstanding)."""
        now = time.monotonic()
        for worker in self._live():
            worker.stop_now(blame.KillReason.HALT, now)
            rest = worker.release_chunk()
            if rest is not None:
                self.queue.appendleft(rest)
        while self._live():
            self._turn(stop)
