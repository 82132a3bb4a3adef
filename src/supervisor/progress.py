"""The pool's sink during a run: records each result, counts gating failures, decides
when the run stops early (``--fail-fast``, ``-x``/``--maxfail``) and keeps the status line.

The stop decision is ``StopRule.after``, a pure function of the failures so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from supervisor.console import Console
from supervisor.drive import Stop, StopControl
from supervisor.model import Outcome, TestItem, TestRecord, TestResult
from supervisor.record import Recorder

_PRECEDENCE = {None: 0, Stop.DRAIN: 1, Stop.AFTER_TEST: 2, Stop.HALT: 3}


@dataclass(frozen=True, kw_only=True)
class StopRule:
    """When gating failures stop a run, and what counts as one."""

    fail_fast: bool = False
    """Launch no new chunk after the first failure; running chunks finish."""
    maxfail: int | None = None
    """After this many failures, tests in flight finish and nothing else starts."""
    flaky_fails: bool = False
    """``--flaky-result fail``: a ``flaky`` test counts as a failure."""

    def gates(self, record: TestRecord) -> bool:
        """Whether ``record`` counts as a failure of the run (as pytest counts them)."""
        if self.flaky_fails and record.outcome is Outcome.FLAKY:
            return True
        return record.outcome.gating and not record.quarantined

    def after(self, failures: int) -> Stop | None:
        """The stop a run takes once it has seen ``failures`` gating failures."""
        if self.maxfail is not None and failures >= self.maxfail:
            return Stop.AFTER_TEST
        if self.fail_fast and failures > 0:
            return Stop.DRAIN
        return None


def escalate(current: Stop | None, wanted: Stop | None) -> Stop | None:
    """The stronger of two stops: a halt is never softened into a drain."""
    return wanted if _PRECEDENCE[wanted] > _PRECEDENCE[current] else current


class Progress:
    """The pool's sink: records each result, applies the ``StopRule``, keeps the status line.

    The ETA scales the remaining estimate by the pace observed so far, so it
    corrects itself on a first run (unseen tests have a default estimate) and
    on a loaded machine.
    """

    def __init__(
        self, *, console: Console, recorder: Recorder, stop: StopControl, rule: StopRule,
        chosen: tuple[TestItem, ...], estimates: dict[str, float], jobs: int,
    ) -> None:  # fmt: skip
        self.console = console
        self.recorder = recorder
        self.stop = stop
        self.rule = rule
        self.total = len(chosen)
        self.estimates = estimates
        self.remaining_s = sum(estimates.get(t.test_id, 0.0) for t in chosen)
        self.done_s = 0.0
        self.jobs = jobs
        self.started = time.monotonic()
        self.done: set[str] = set()
        self.failures = 0
        self.running: Callable[[], list[str]] = list

    def __call__(self, result: TestResult) -> None:
        self.recorder(result)
        if result.test_id not in self.done:
            self.done.add(result.test_id)
            estimate = self.estimates.get(result.test_id, 0.0)
            self.remaining_s -= estimate
            self.done_s += estimate
        if self.rule.gates(self.recorder.finals[result.test_id]):
            self.count_failures(1)
        self.show()

    def count_failures(self, n: int) -> None:
        """Add ``n`` gating failures (also the files that failed to import) and apply the rule."""
        self.failures += n
        self.stop.mode = escalate(self.stop.mode, self.rule.after(self.failures))

    def show(self) -> None:
        if not self.console.status_due():
            return
        elapsed = time.monotonic() - self.started
        pace = 1.0
        if self.done_s > 0:
            pace = min(20.0, max(0.2, elapsed / (self.done_s / self.jobs)))
        eta = max(0.0, self.remaining_s / self.jobs * pace)
        running = self.running()
        now = ""
        if running:
            more = f" +{len(running) - 1}" if len(running) > 1 else ""
            now = f", running {running[0]}{more}"
        self.console.status(
            f"[{len(self.done)}/{self.total}] {self.failures} failing, {elapsed:.0f}s elapsed, "
            f"~{eta:.0f}s to go{now}"
        )

    def finish(self) -> None:
        self.console.end_status()
