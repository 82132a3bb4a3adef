"""Failure bundles: one self-contained plain-text diagnosis per non-passing test.

Pure: the name is derived from the test id, the text from the result; ``store``
writes it.
"""

from __future__ import annotations

import hashlib
import re
import shlex

from supervisor.model import Fingerprint, TestRecord, TestResult

NAME_CHARS = 120
HASH_CHARS = 10
STREAM_CAP = 1024 * 1024
"""Captured stdout, captured stderr, the traceback and the child's output: each at most this."""


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


def repro_command(test_id: str, python: str, pytest_args: tuple[str, ...], cwd: str) -> str:
    """The exact command that runs this test alone, with the run's pytest options."""
    command = [python, "-m", "pytest", test_id, *pytest_args]
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
    lines = [
        f"test:      {record.test_id}",
        f"outcome:   {record.outcome.value}" + (" (quarantined)" if record.quarantined else ""),
        f"attempt:   {record.attempt}",
        f"duration:  {record.duration_s:.3f}s",
        f"run:       {record.run_id}  chunk {record.chunk}  worker {result.worker}",
        f"message:   {record.message}",
        "",
        "reproduce:",
        f"  {repro}",
        "",
    ]
    if result.longrepr:
        lines += [
            f"== traceback{f' ({result.when})' if result.when else ''} ==",
            cap(result.longrepr),
            "",
        ]
    for key, text in _streams(result):
        lines += [f"== captured {key} ==", text, ""]
    if result.stacks:
        lines += ["== stacks of every thread when the test was stopped ==", cap(result.stacks), ""]
    if result.child_output:
        lines += ["== the child's own output (stdout+stderr) ==", cap(result.child_output), ""]
    lines += [
        "== environment ==",
        f"python:    {fingerprint.python} ({fingerprint.executable})",
        f"platform:  {fingerprint.platform}",
        f"pytest:    {fingerprint.pytest}",
        f"plugins:   {', '.join(fingerprint.plugins) or '(none)'}",
        f"rootdir:   {fingerprint.rootdir}",
        "",
    ]
    return "\n".join(lines)
