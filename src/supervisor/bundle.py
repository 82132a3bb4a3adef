"""Failure bundles: one self-contained plain-text diagnosis per non-passing test.

Pure: the name is derived from the test id, the text from the result; ``store``
writes it. ``read_diagnoses`` is the one function here that reads files.

Design:

- The bundle is the one place a test's traceback, output and stacks are
  stored (``run.jsonl`` has only the one-line message). The CI reports that
  need the diagnosis (JUnit ``<failure>`` bodies, GitHub annotations, also
  those ``--merge`` writes from other shards' directories) read it back from
  the bundle with ``read_diagnoses`` / ``diagnosis``.
- The header fields are single lines (``text.one_line``), and each section
  header states its body's length (``== traceback (call): 812 characters ==``),
  so ``sections`` splits a bundle exactly, whatever lines a test printed.
- The text is what the test produced, with lone surrogates shown as escapes
  (``text.utf8_text``) so it encodes; control characters are kept: the
  bundle is the faithful record, and nothing prints it to the console raw.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Iterable
from pathlib import Path

from supervisor import order
from supervisor.model import Fingerprint, Outcome, TestRecord, TestResult
from supervisor.text import one_line, tail, utf8_text

NAME_CHARS = 120
HASH_CHARS = 10
STREAM_CAP = 1024 * 1024
"""Captured stdout, captured stderr, the traceback and the child's output: each at most this."""
DIAGNOSIS_LINES = 30
DIAGNOSIS_CHARS = 4096
"""A CI report carries at most the last this many lines / characters of the diagnosis."""
TRACEBACK = "traceback"
STACKS = "stacks of every thread when the test was stopped"
CHILD_OUTPUT = "the child's own output (stdout+stderr)"
ORDER = "order dependence"


def bundle_name(test_id: str, attempt: int = 1) -> str:
    """A safe, unique file name for a test's bundle.

    Only ``[A-Za-z0-9._-]``, at most ``NAME_CHARS`` characters before the
    hash of the full id, so two ids never collide and no id — ``..``, ``/``,
    quotes, non-ASCII, 300 characters — can leave ``failures/``.
    """
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", test_id).strip("._-")[:NAME_CHARS]
    digest = hashlib.sha256(test_id.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    suffix = f"_a{attempt}" if attempt > 1 else ""
    return f"{readable or 'test'}_{digest}{suffix}.txt"


_CUT = re.compile(r"\n\[\.\.\. mtest cut (\d+) characters \.\.\.\]\n")


def cap(text: str, limit: int = STREAM_CAP) -> str:
    """Head and tail of ``text``, saying how much was cut in all.

    Text the probe already capped carries its own marker; when that marker
    falls in the part cut here, its count is added, so the one marker left
    says how much of the original output is missing.
    """
    if len(text) <= limit:
        return text
    half = max(1, limit // 2)
    removed = text[half:-half]
    earlier = sum(int(n) for n in _CUT.findall(removed))
    markers = sum(len(m.group(0)) for m in _CUT.finditer(removed))
    cut = len(removed) - markers + earlier
    return f"{text[:half]}\n[... mtest cut {cut} characters ...]\n{text[-half:]}"


def repro_command(
    test_id: str, python: str, pytest_args: tuple[str, ...], cwd: str,
    *, runner: tuple[str, ...] = (), before: tuple[str, ...] = (),
) -> str:  # fmt: skip
    """The exact command that runs this test alone (after ``before``: an
    order-dependent test's polluter), with the run's pytest options (after
    ``runner``: a container's ``docker run … IMAGE``)."""
    command = [*runner, python, "-m", "pytest", *before, test_id, *pytest_args]
    return shlex.join(["cd", cwd]) + " && " + shlex.join(command)


def _streams(result: TestResult) -> list[tuple[str, str]]:
    grouped: dict[str, list[str]] = {}
    for title, content in result.sections:
        key = "stdout" if "stdout" in title else "stderr" if "stderr" in title else "log"
        grouped.setdefault(key, []).append(f"--- {title} ---\n{content}")
    return [(key, cap("\n".join(parts))) for key, parts in grouped.items()]


def bundle_text(
    result: TestResult, record: TestRecord, *, repro: str, fingerprint: Fingerprint
) -> str:
    """The bundle's content: what happened, how to reproduce it, and everything seen."""
    quarantined = " (quarantined)" if record.quarantined else ""
    head = [
        f"test:      {record.test_id}",
        f"outcome:   {record.outcome.value}{quarantined}",
        f"attempt:   {record.attempt}",
        f"duration:  {record.duration_s:.3f}s",
        f"run:       {record.run_id}  chunk {record.chunk}  worker {result.worker}",
        f"message:   {record.message}",
    ]
    lines = [one_line(line) for line in head]
    lines += ["", "reproduce:", f"  {one_line(repro)}", ""]
    if result.longrepr:
        when = f" ({result.when})" if result.when else ""
        lines += _section(f"{TRACEBACK}{when}", cap(result.longrepr))
    for key, text in _streams(result):
        lines += _section(f"captured {key}", text)
    if result.stacks:
        lines += _section(STACKS, cap(result.stacks))
    if result.child_output:
        lines += _section(CHILD_OUTPUT, cap(result.child_output))
    if record.outcome is Outcome.ORDER_DEPENDENT:
        lines += _section(ORDER, order.section(record.predecessors, record.polluter))
    lines += [
        "== environment ==",
        f"python:    {fingerprint.python} ({fingerprint.executable})",
        f"platform:  {fingerprint.platform}",
        f"pytest:    {fingerprint.pytest}",
        f"plugins:   {', '.join(fingerprint.plugins) or '(none)'}",
        f"rootdir:   {fingerprint.rootdir}",
        "",
    ]
    return utf8_text("\n".join(lines))


def _section(title: str, body: str) -> list[str]:
    """A section: its header with the body's exact length, the body, a blank line."""
    body = utf8_text(body)
    return [f"== {title}: {len(body)} characters ==", body, ""]


_SECTION = re.compile(r"== (.+): (\d+) characters ==\n")


def sections(text: str) -> dict[str, str]:
    """Title → body of each counted section of a bundle, in order.

    The first header is looked for at a line start; after it, each section's
    stated length says exactly where the next header is, so a test that
    printed a line like a header cannot shift or forge a section.
    """
    found: dict[str, str] = {}
    first = re.search(r"^" + _SECTION.pattern, text, flags=re.MULTILINE)
    at = first.start() if first else len(text)
    while (match := _SECTION.match(text, at)) is not None:
        end = match.end() + int(match.group(2))
        found[match.group(1)] = text[match.end() : end]
        at = end + 2  # the body's own newline and the blank line
    return found


def diagnosis(text: str) -> str:
    """The end of a bundle's traceback (else of its stacks, else of the child's output).

    At most ``DIAGNOSIS_LINES`` lines and ``DIAGNOSIS_CHARS`` characters: the
    last frames and the exception, which is what a CI report has room for.
    """
    found = sections(text)
    for title, body in found.items():
        if title.split(" (")[0] == TRACEBACK and body.strip():
            return tail(body, lines=DIAGNOSIS_LINES, chars=DIAGNOSIS_CHARS)
    for title in (STACKS, CHILD_OUTPUT):
        if found.get(title, "").strip():
            return tail(found[title], lines=DIAGNOSIS_LINES, chars=DIAGNOSIS_CHARS)
    return ""


_BUNDLE_PATH = re.compile(r"failures/[A-Za-z0-9._-]+\.txt")


def read_diagnoses(run_dir: Path, records: Iterable[TestRecord]) -> dict[str, str]:
    """``record.bundle`` → ``diagnosis`` of that bundle file under ``run_dir``.

    A bundle that is missing or unreadable, or a path that is not one mtest
    writes (``failures/<safe name>.txt``), is left out: the report then says
    where the bundle was supposed to be, and nothing fails.
    """
    found: dict[str, str] = {}
    for record in records:
        path = record.bundle
        if path is None or path in found or not _BUNDLE_PATH.fullmatch(path):
            continue
        if record.outcome in (Outcome.PASSED, Outcome.SKIPPED, Outcome.XFAILED):
            continue
        try:
            with open(run_dir / path, encoding="utf-8", errors="replace", newline="") as handle:
                found[path] = diagnosis(handle.read())
        except OSError:
            continue
    return found
