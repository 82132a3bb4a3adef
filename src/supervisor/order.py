"""Pure: order dependence — which failures to rerun alone, what the rerun means, and
the bisection that names a polluter.

A test that fails (``failed``/``error``) in a chunk is rerun alone in a fresh
worker (``isolate.py`` drives it). Failing alone too, it stays failing (the
rerun is one more attempt record); passing alone, it is ``order_dependent``,
with the tests its worker ran before it (``predecessors``). Hung and crashed
tests are not rerun for this: a deadline or a dead worker is not an order
question; nor is an error in teardown (``isolates``).

``--find-polluter`` bisects the predecessors: a ``Search`` asks "does the test
fail after this subset (in the original order), in a fresh worker?" and narrows
on the answers. The first pass already showed that all the predecessors make it
fail, so each level costs at most two runs (the first half; the second half
only when the first did not fail): at most ``2·⌈log2 n⌉`` runs (``max_runs``,
always under ``2·log2(n) + 2``). When neither half alone breaks it, the failure
needs several predecessors together and the search says so rather than naming
one; at the top level the whole set is run once more first (only the first pass,
in a worker that had also imported other files, showed that it fails).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from supervisor.model import Outcome

ISOLATE_LIMIT = 100
"""At most this many failures of one run are rerun alone (a broken build fails
hundreds of tests; each rerun is a fresh worker). The rest stay as they are, and
the run says so."""
LISTED = 5
"""A message names at most this many tests of a set."""

_ISOLATED = frozenset({Outcome.FAILED, Outcome.ERROR})


def isolates(outcome: Outcome, when: str | None = None) -> bool:
    """Whether a test that ended like this in a chunk (``when``: the phase that failed)
    is rerun alone. Not an error in teardown: pytest reports the teardown of a
    session or module fixture on whichever test ran last, and that test alone
    would pass for reasons that have nothing to do with its order."""
    return outcome in _ISOLATED and not (outcome is Outcome.ERROR and when == "teardown")


def predecessors(started: Sequence[str], test_id: str) -> tuple[str, ...]:
    """The tests a worker started before ``test_id`` (its last start), in order."""
    for at in range(len(started) - 1, -1, -1):
        if started[at] == test_id:
            return tuple(started[:at])
    return tuple(started)


def chosen(failed: Sequence[str], limit: int = ISOLATE_LIMIT) -> tuple[tuple[str, ...], int]:
    """The failures rerun alone (the first ``limit``, in the order they failed) and
    how many were left out."""
    return tuple(failed[:limit]), max(0, len(failed) - limit)


class Found(enum.StrEnum):
    """How a polluter search ended."""

    POLLUTER = "polluter"
    """One predecessor alone breaks the test."""
    SEVERAL = "several"
    """No single predecessor does: it needs several of ``candidates`` together."""
    NOT_REPRODUCED = "not_reproduced"
    """After all its predecessors, in a fresh worker, it passed."""
    STOPPED = "stopped"
    """The budget ran out or the run was interrupted first."""
    NOTHING = "nothing"
    """No test ran before it in its worker: there is nothing to bisect."""


def after_alone(alone: Outcome, *, retries: bool = False, found: Found | None = None) -> Outcome:
    """The final outcome of a test that failed in its chunk, from its run alone.

    What gates alone stands (failed, error, hung, crashed). Anything else means
    the failure came from the order — ``order_dependent`` — except under
    ``--retries``, whose users ask for one-off failures to be absorbed: a test
    that failed once and passed alone cannot be told from a flaky one, so it is
    ``flaky`` unless the polluter search made it fail again after its
    predecessors (``found``: a polluter, or several together).
    """
    if alone.gating:
        return alone
    if retries and found not in (Found.POLLUTER, Found.SEVERAL):
        return Outcome.FLAKY
    return Outcome.ORDER_DEPENDENT


@dataclass(frozen=True, kw_only=True)
class Search:
    """One bisection, as a value: ``query`` is the next subset to run before the test
    (``None``: the search is over), ``answer`` narrows it."""

    candidates: tuple[str, ...]
    """A set of predecessors known to make the test fail (at the start: all of them,
    from the first pass)."""
    seen_failing: bool = True
    """``candidates`` made it fail in a run (false only for the whole set, when the
    first pass is all that showed it)."""
    tried_first: bool = False
    """The first half was run and did not fail: the second half is next."""
    checking_all: bool = False
    """Neither half failed and the whole set is being run once more."""
    runs: int = 0
    found: Found | None = None

    @property
    def halves(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        middle = len(self.candidates) // 2
        return self.candidates[:middle], self.candidates[middle:]

    @property
    def query(self) -> tuple[str, ...] | None:
        if self.found is not None:
            return None
        if self.checking_all or len(self.candidates) == 1:
            return self.candidates
        first, second = self.halves
        return second if self.tried_first else first

    @property
    def polluter(self) -> str | None:
        return self.candidates[0] if self.found is Found.POLLUTER else None


def start(preds: Sequence[str]) -> Search:
    """A search over these predecessors (in the order they ran)."""
    candidates = tuple(preds)
    if not candidates:
        return Search(candidates=(), found=Found.NOTHING)
    # Only the first pass (a worker that had imported other files too) showed that
    # these make it fail: a lone predecessor is run once, the whole set if need be.
    return Search(candidates=candidates, seen_failing=False)


def answer(search: Search, fails: bool) -> Search:
    """Narrow ``search`` on whether the test failed after ``search.query``."""
    runs = search.runs + 1
    if search.found is not None:
        return search
    if len(search.candidates) == 1:
        return replace(search, runs=runs, found=Found.POLLUTER if fails else Found.NOT_REPRODUCED)
    if search.checking_all:
        return replace(search, runs=runs, found=Found.SEVERAL if fails else Found.NOT_REPRODUCED)
    first, second = search.halves
    if fails:
        narrowed = second if search.tried_first else first
        found = Found.POLLUTER if len(narrowed) == 1 else None
        return Search(candidates=narrowed, runs=runs, found=found)
    if not search.tried_first:
        return replace(search, tried_first=True, runs=runs)
    if search.seen_failing:  # each half passes, the whole fails: it needs several
        return replace(search, runs=runs, found=Found.SEVERAL)
    return replace(search, runs=runs, checking_all=True, tried_first=False)


def stopped(search: Search) -> Search:
    """The run stopped before the search ended."""
    return search if search.found is not None else replace(search, found=Found.STOPPED)


def max_runs(n: int) -> int:
    """The most worker runs a search over ``n`` predecessors takes."""
    if n <= 1:
        return n
    # Two per level down to one test; or, at the top, both halves and the whole set.
    return max(2 * math.ceil(math.log2(n)), 3)


def bisect(preds: Sequence[str], fails: Callable[[tuple[str, ...]], bool]) -> Search:
    """Run a search to its end, asking ``fails`` (the tests' order is kept)."""
    search = start(preds)
    while (query := search.query) is not None:
        search = answer(search, fails(query))
    return search


def _names(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:LISTED])
    more = len(ids) - LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def verdict_text(search: Search | None, before: int) -> str:
    """What the record's message says about the order (``search``: ``None`` without
    ``--find-polluter``)."""
    if search is None or search.found is Found.NOTHING:
        if before == 0:
            return "failed in its worker (no test ran before it there), passed alone"
        return f"failed after {before} other test(s) in its worker, passed alone"
    if search.found is Found.POLLUTER:
        return f"fails after {search.polluter} (passes alone)"
    if search.found is Found.SEVERAL:
        return f"no single polluter: needs {_names(search.candidates)} (together)"
    if search.found is Found.NOT_REPRODUCED:
        return (
            f"failed after {before} other test(s) in its worker, passed alone; it did not "
            "fail again after them in a fresh worker, so no polluter is named"
        )
    return (
        f"failed after {before} other test(s) in its worker, passed alone; the polluter "
        f"search stopped after {search.runs} run(s), narrowed to {_names(search.candidates)}"
    )


def section(predecessors: Sequence[str], polluter: str | None) -> str:
    """The bundle's ``order dependence`` section: the polluter and what ran before."""
    lines = [f"polluter: {polluter}"] if polluter is not None else []
    lines.append(f"ran before it in its worker ({len(predecessors)}, in order):")
    lines += [f"  {test_id}" for test_id in predecessors]
    return "\n".join(lines)
