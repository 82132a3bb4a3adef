"""Pure: records → the terminal's lines, ``summary.md`` and the exit code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from supervisor.model import Outcome, TestRecord

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 2
EXIT_NO_TESTS = 5
ORDER = (
    Outcome.FAILED, Outcome.ERROR, Outcome.HUNG, Outcome.CRASHED, Outcome.FLAKY,
    Outcome.PASSED, Outcome.SKIPPED, Outcome.XFAILED, Outcome.XPASSED,
)  # fmt: skip


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


def exit_code(finals: Mapping[str, TestRecord], *, interrupted: bool, selected: int) -> int:
    """The spec's exit code: 2 interrupted, 5 nothing selected, 1 a gating problem, else 0."""
    if interrupted:
        return EXIT_INTERRUPTED
    if selected == 0 and not finals:
        return EXIT_NO_TESTS
    if any(r.outcome.gating and not r.quarantined for r in finals.values()):
        return EXIT_FAILED
    return EXIT_OK


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
    return f"{', '.join(parts) or 'no tests ran'}{took}"


def _count(n: int, outcome: Outcome) -> str:
    # pytest's words: "1 error", "2 errors"; the other outcomes do not change.
    word = "errors" if outcome is Outcome.ERROR and n != 1 else outcome.value
    return f"{n} {word}"


def problem_line(record: TestRecord) -> str:
    """One line for a non-passing test, printed as it happens."""
    tag = record.outcome.value.upper()
    if record.quarantined:
        tag += " (quarantined)"
    if record.attempt > 1:
        tag += f" (attempt {record.attempt})"
    message = f" - {record.message}" if record.message else ""
    return f"{tag} {record.test_id}{message}"


def is_problem(record: TestRecord) -> bool:
    return record.outcome.gating or record.outcome is Outcome.FLAKY


def summary_markdown(
    finals: Mapping[str, TestRecord], facts: RunFacts, code: int, attempts: Sequence[TestRecord]
) -> str:
    """``summary.md``: the verdict, the counts, every problem with its bundle, what did not run."""
    lines = [
        f"# mtest run {facts.run_id}" + (" (resumed)" if facts.resumed else ""),
        "",
        f"**{summary_line(finals, facts)}** — exit code {code}",
        "",
        "| outcome | tests |",
        "|---|---|",
    ]
    tally = counts(finals.values())
    lines += [f"| {o.value} | {tally[o]} |" for o in ORDER if tally[o]]
    problems = [r for r in finals.values() if is_problem(r)]
    if problems:
        lines += ["", "## Problems", ""]
        for record in sorted(problems, key=lambda r: (ORDER.index(r.outcome), r.test_id)):
            quarantined = " (quarantined, not gating)" if record.quarantined else ""
            bundle = f" — `{record.bundle}`" if record.bundle else ""
            lines.append(
                f"- **{record.outcome.value}**{quarantined} `{record.test_id}`: "
                f"{record.message or '(no message)'}{bundle}"
            )
    retried = [r for r in attempts if r.attempt > 1]
    if retried:
        lines += ["", f"Retries: {len(retried)} extra attempt(s)."]
    if facts.interrupted or facts.stopped_reason or facts.outstanding:
        reason = facts.stopped_reason or ("interrupted" if facts.interrupted else "stopped")
        lines += ["", "## Not run", "", f"{facts.outstanding} test(s) did not run ({reason}); "
                  "`mtest --resume` runs them."]  # fmt: skip
    if facts.left_out:
        lines += ["", "## Left out by selection", ""]
        lines += [f"- {reason}: {n} test(s), ~{secs:.1f}s" for reason, n, secs in facts.left_out]
    return "\n".join(lines) + "\n"
