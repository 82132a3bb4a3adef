"""Pure: records → the terminal's lines, ``summary.md`` and the exit code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from supervisor.model import Outcome, TestRecord
from supervisor.resources import format_growth, format_size, largest_growth
from supervisor.text import clip, markdown_code, markdown_text, one_line

if TYPE_CHECKING:
    from supervisor.covdata import Total

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 2
EXIT_NO_TESTS = 5
ORDER = (
    Outcome.FAILED, Outcome.ERROR, Outcome.HUNG, Outcome.CRASHED, Outcome.ORDER_DEPENDENT,
    Outcome.FLAKY, Outcome.PASSED, Outcome.SKIPPED, Outcome.XFAILED, Outcome.XPASSED,
)  # fmt: skip
MESSAGE_CHARS = 300
"""A message is clipped to this on the console and in ``summary.md`` (the bundle has it all)."""
ID_CHARS = 500
SUMMARY_PROBLEMS = 500
"""``summary.md`` lists at most this many problems: GitHub rejects a step summary over 1 MiB."""
_DIED = frozenset({Outcome.HUNG, Outcome.CRASHED})
"""Outcomes whose record has the RSS mtest last measured, not the RSS after the test."""


@dataclass(frozen=True, kw_only=True)
class RunFacts:
    """What the summary says besides the records."""

    run_id: str
    elapsed_s: float | None
    """Wall time of the run; ``None`` where it is not known (a merge of shards)."""
    interrupted: bool = False
    stopped_reason: str = ""
    outstanding: int = 0
    left_out: tuple[tuple[str, int, float], ...] = ()
    """(reason, count, estimated seconds) of tests not selected."""
    resumed: bool = False
    notes: tuple[str, ...] = ()
    """One-line things the run must tell besides outcomes (shown under "Notes")."""
    quarantine_kinds: Mapping[str, str] = field(default_factory=dict)
    """Test id → ``flaky`` or ``broken`` for the tests the quarantine knows."""
    coverage: Total | None = None
    """``--cov``: the combined total (``covdata``)."""
    peak_rss_bytes: int | None = None
    """The largest RSS of any worker (``None``: not measured)."""
    containers: Mapping[str, int] | None = None
    """``--container``: ``containers.Counts.as_dict`` (started, start failures, ...)."""
    orphans: Mapping[str, int] | None = None
    """``--include-orphans``: outcome → how many orphan import checks ended with it."""


def exit_code(
    finals: Mapping[str, TestRecord],
    *,
    interrupted: bool,
    selected: int,
    flaky_fails: bool = False,
    coverage_failed: bool = False,
) -> int:
    """The spec's exit code: 2 interrupted, 5 nothing selected, 1 a gating problem, else 0.

    With ``flaky_fails`` (``--flaky-result fail``) a ``flaky`` final outcome
    gates too, whether the test is quarantined or not. ``coverage_failed``
    (under ``--cov-fail-under``) fails a run that would pass, as pytest-cov does.
    """
    if interrupted:
        return EXIT_INTERRUPTED
    if selected == 0 and not finals:
        return EXIT_NO_TESTS
    if any(_gates(r, flaky_fails) for r in finals.values()) or coverage_failed:
        return EXIT_FAILED
    return EXIT_OK


def _gates(record: TestRecord, flaky_fails: bool) -> bool:
    if flaky_fails and record.outcome is Outcome.FLAKY:
        return True
    return record.outcome.gating and not record.quarantined


def counts(finals: Iterable[TestRecord]) -> Counter[Outcome]:
    return Counter(record.outcome for record in finals)


def summary_line(finals: Mapping[str, TestRecord], facts: RunFacts) -> str:
    """``3 failed, 1 hung, 40 passed, 2 skipped in 12.3s`` (pytest's order of words)."""
    tally = counts(finals.values())
    parts = [_count(tally[o], o) for o in ORDER if tally[o]]
    quarantined = sum(1 for r in finals.values() if r.quarantined)
    if quarantined:
        parts.append(f"{quarantined} quarantined")
    if facts.outstanding:
        parts.append(f"{facts.outstanding} not run")
    took = "" if facts.elapsed_s is None else f" in {facts.elapsed_s:.1f}s"
    measured = "" if facts.coverage is None else f", {facts.coverage.short}"
    return f"{', '.join(parts) or 'no tests ran'}{took}{measured}"


def _count(n: int, outcome: Outcome) -> str:
    # pytest's words: "1 error", "2 errors"; the other outcomes do not change.
    word = "errors" if outcome is Outcome.ERROR and n != 1 else outcome.value
    return f"{n} {word}"


def problem_line(record: TestRecord) -> str:
    """One line for a non-passing test, printed as it happens (control characters escaped)."""
    tag = record.outcome.value.upper()
    if record.quarantined:
        tag += " (quarantined)"
    if record.attempt > 1:
        tag += f" (attempt {record.attempt})"
    message = f" - {clip(record.message, MESSAGE_CHARS)}" if record.message else ""
    return one_line(f"{tag} {clip(record.test_id, ID_CHARS)}{message}")


def is_problem(record: TestRecord) -> bool:
    return record.outcome.gating or record.outcome is Outcome.FLAKY


def summary_markdown(
    finals: Mapping[str, TestRecord], facts: RunFacts, code: int, attempts: Sequence[TestRecord]
) -> str:
    """``summary.md``: the verdict, the counts, every problem with its bundle, what did not run.

    Test ids are inline code spans and messages escaped text (``text.markdown_code``,
    ``text.markdown_text``): nothing a test names itself can become HTML, a
    link or a broken line in the rendered summary.
    """
    run_id = markdown_text(facts.run_id)
    lines = [
        f"# mtest run {run_id}" + (" (resumed)" if facts.resumed else ""),
        "",
        f"**{markdown_text(summary_line(finals, facts))}** — exit code {code}",
        "",
        "| outcome | tests |",
        "|---|---|",
    ]
    tally = counts(finals.values())
    lines += [f"| {o.value} | {tally[o]} |" for o in ORDER if tally[o]]
    if facts.coverage is not None:
        lines += ["", *_coverage(facts.coverage)]
    lines += _problems(finals, facts.quarantine_kinds)
    retried = [r for r in attempts if r.attempt > 1]
    if retried:
        lines += ["", f"Retries: {len(retried)} extra attempt(s)."]
    if facts.interrupted or facts.stopped_reason or facts.outstanding:
        reason = facts.stopped_reason or ("interrupted" if facts.interrupted else "stopped")
        lines += ["", "## Not run", "", f"{facts.outstanding} test(s) did not run "
                  f"({markdown_text(reason)}); `mtest --resume` runs them."]  # fmt: skip
    lines += _resources(finals, facts.peak_rss_bytes)
    if facts.containers is not None:
        lines += ["", "## Containers", "", container_line(facts.containers) + "."]
    if facts.orphans is not None:
        lines += ["", orphans_line(facts.orphans) + " (`orphan::` records)."]
    if facts.left_out:
        lines += ["", "## Left out by selection", ""]
        lines += [
            f"- {markdown_text(reason)}: {n} test(s), ~{secs:.1f}s"
            for reason, n, secs in facts.left_out
        ]
    if facts.notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {markdown_text(clip(note, MESSAGE_CHARS))}" for note in facts.notes]
    return "\n".join(lines) + "\n"


def orphans_line(counts: Mapping[str, int]) -> str:
    """``Orphans: 3 checked, 1 failed`` (``--include-orphans``; failed: neither passed
    nor skipped)."""
    failed = sum(n for outcome, n in counts.items() if outcome not in ("passed", "skipped"))
    return f"Orphans: {sum(counts.values())} checked, {failed} failed"


def container_line(counts: Mapping[str, int]) -> str:
    """``3 container(s) started, 0 start failure(s), 1 timeout(s), 0 cleanup failure(s)``."""
    return (
        f"{counts.get('started', 0)} container(s) started, "
        f"{counts.get('start_failures', 0)} start failure(s), "
        f"{counts.get('timeouts', 0)} timeout(s) (killed after the grace), "
        f"{counts.get('cleanup_failures', 0)} cleanup failure(s)"
    )


def _coverage(total: Total) -> list[str]:
    """``Coverage: **87.54%** of lines and branches …``, and the verdict on its threshold."""
    if total.percent is None:
        lines = [f"Coverage: **no data** ({markdown_text(total.problem)})."]
    else:
        what = "lines and branches" if total.branch else "lines"
        where = "" if total.data_file is None else f", in {markdown_code(str(total.data_file))}"
        version = markdown_text(total.version)
        lines = [
            f"Coverage: **{total.display}%** of {what} (coverage.py {version}, "
            f"{total.parts} data file(s) combined{where})."
        ]
    if total.fail_under is not None:
        verdict = "**not reached**: the run fails" if total.failed else "reached"
        lines += ["", f"Required coverage {total.fail_under:g}%: {verdict}."]
    return lines


def _resources(finals: Mapping[str, TestRecord], peak_rss_bytes: int | None) -> list[str]:
    """The "Resource use" section: the peak RSS of any worker, and the tests that grew
    their worker's RSS the most (``resources.largest_growth``), which may leak."""
    grown = largest_growth(finals.values())
    if peak_rss_bytes is None and not grown:
        return []
    lines = ["", "## Resource use", ""]
    if peak_rss_bytes is not None:
        lines.append(f"Peak RSS of any worker: {format_size(peak_rss_bytes)}.")
    if grown:
        lines += ["", "The tests that grew their worker's RSS the most (may leak):", ""]
        lines += [_growth_item(record) for record in grown]
    return lines


def _growth_item(record: TestRecord) -> str:
    """``- `id`: +200 MiB (RSS 232.5 MiB after it)``; a test that took its worker down
    has the RSS mtest last measured."""
    when = "when last measured" if record.outcome in _DIED else "after it"
    after = "" if record.rss_bytes is None else f" (RSS {format_size(record.rss_bytes)} {when})"
    growth = format_growth(record.rss_growth_bytes or 0)
    return f"- {markdown_code(clip(record.test_id, ID_CHARS))}: {growth}{after}"


def _problems(finals: Mapping[str, TestRecord], kinds: Mapping[str, str]) -> list[str]:
    """The "Problems" section: one escaped line per problem, at most ``SUMMARY_PROBLEMS``."""
    problems = sorted(
        (r for r in finals.values() if is_problem(r)),
        key=lambda r: (ORDER.index(r.outcome), r.test_id),
    )
    if not problems:
        return []
    lines = ["", "## Problems", ""]
    for record in problems[:SUMMARY_PROBLEMS]:
        lines.append(_problem_item(record, kinds.get(record.test_id)))
    if len(problems) > SUMMARY_PROBLEMS:
        lines.append(
            f"- … and {len(problems) - SUMMARY_PROBLEMS} more: `last-run/run.jsonl` has them all"
        )
    kinds_seen = Counter(kinds.values())
    if kinds_seen:
        tally = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds_seen.items()))
        lines += ["", f"Quarantine: {markdown_text(tally)}."]
    return lines


def _problem_item(record: TestRecord, kind: str | None) -> str:
    """``- **failed** (quarantined: flaky, not gating) `id`: message — `bundle```."""
    tags = []
    if record.quarantined:
        tags.append("quarantined" + (f": {kind}" if kind else ""))
    elif kind:
        tags.append(kind)
    if record.quarantined and record.outcome.gating:
        tags.append("not gating")
    tag = f" ({markdown_text(', '.join(tags))})" if tags else ""
    bundle = f" — {markdown_code(record.bundle)}" if record.bundle else ""
    message = (
        markdown_text(clip(record.message, MESSAGE_CHARS)) if record.message else "(no message)"
    )
    test_id = markdown_code(clip(record.test_id, ID_CHARS))
    return f"- **{record.outcome.value}**{tag} {test_id}: {message}{bundle}"
