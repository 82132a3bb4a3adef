"""GitHub Actions integration: workflow-command annotations and the step summary.

``annotations`` is pure: final records in, ``::error``/``::warning`` lines out,
for the caller to print to stdout. ``append_step_summary`` is the one function
that touches a file.

Design:

- A gating outcome (failed, error, hung, crashed) of a test that is not
  quarantined is an ``::error``: it is what failed the run. A flaky test and a
  quarantined test's failing outcome are ``::warning``: reported, not gating.
  Every other outcome gets no annotation.
- ``file`` is the path part of the node id (relative to pytest's rootdir, which
  is normally the checkout); ``line`` comes from the collected ``TestItem`` and
  is left out when unknown, so GitHub pins the annotation to the file.
- Escaping follows ``@actions/core`` (``escapeData``/``escapeProperty``): in
  the message ``%``, CR and LF are percent-encoded; in property values ``:``
  and ``,`` too, since they delimit properties.
- Output is sorted by level (errors first), then test id, so it does not
  depend on scheduling. GitHub shows only 10 annotations of a kind per step,
  so only the first ``MAX_ANNOTATIONS`` are printed, followed by one
  ``::notice`` saying how many more failures the step summary lists.
- The message is the record's message, the end of its traceback (read back
  from the bundle by the caller: ``diagnoses``, see ``bundle.read_diagnoses``)
  and the bundle's path. Control characters from tests are shown as escapes
  (``text.console_text``), since GitHub's log viewer interprets them, and the
  record's message is capped at ``MESSAGE_CHARS``.
"""

# No ``from __future__ import annotations`` here: it would bind the name
# ``annotations`` that this module's main function needs (Python >= 3.11
# evaluates these annotations fine without it).
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from supervisor.model import Outcome, TestItem, TestRecord, file_of
from supervisor.text import clip, console_text, one_line

MAX_ANNOTATIONS = 10
"""GitHub shows at most 10 error (and 10 warning) annotations per step."""
MESSAGE_CHARS = 1000
"""The message is capped at this; the diagnosis has its own cap (``bundle.DIAGNOSIS_CHARS``)."""
ID_CHARS = 500


def annotations(
    finals: Mapping[str, TestRecord],
    items: Mapping[str, TestItem],
    diagnoses: Mapping[str, str] | None = None,
) -> list[str]:
    """A workflow command for each of the first ``MAX_ANNOTATIONS`` problems, then a notice."""
    found = [(level, test_id) for test_id in finals if (level := _level(finals[test_id]))]
    found.sort(key=lambda pair: (pair[0] != "error", pair[1]))
    lines: list[str] = []
    for level, test_id in found[:MAX_ANNOTATIONS]:
        record = finals[test_id]
        item = items.get(test_id)
        props = [("file", one_line(file_of(test_id)))]
        if item is not None and item.line is not None:
            props.append(("line", str(item.line)))
        props.append(("title", _title(record)))
        rendered = ",".join(f"{key}={escape_property(value)}" for key, value in props)
        message = _message(record, (diagnoses or {}).get(record.bundle or "", ""))
        lines.append(f"::{level} {rendered}::{escape_data(message)}")
    more = len(found) - MAX_ANNOTATIONS
    if more > 0:
        lines.append(f"::notice title=mtest::… and {more} more failure(s): see the step summary")
    return lines


def publish(
    emit: Callable[[str], None],
    finals: Mapping[str, TestRecord],
    items: Mapping[str, TestItem],
    summary: str,
    environ: Mapping[str, str] = os.environ,
    diagnoses: Mapping[str, str] | None = None,
) -> None:
    """Under GitHub Actions: print the annotations and append the step summary."""
    if environ.get("GITHUB_ACTIONS") != "true":
        return
    for line in annotations(finals, items, diagnoses):
        emit(line)
    step_summary = environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        append_step_summary(Path(step_summary), summary)


def append_step_summary(path: Path, markdown: str) -> None:
    """Append ``markdown`` and a newline to ``path`` ($GITHUB_STEP_SUMMARY), creating it."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(markdown + "\n")


def escape_data(text: str) -> str:
    """A workflow command's message, escaped as ``@actions/core`` ``escapeData`` does."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command property value, escaped as ``@actions/core`` ``escapeProperty``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _level(record: TestRecord) -> str | None:
    """``error`` for what gates the run, ``warning`` for flaky or quarantined failures."""
    if record.outcome.gating:
        return "warning" if record.quarantined else "error"
    if record.outcome is Outcome.FLAKY:
        return "warning"
    return None


def _title(record: TestRecord) -> str:
    """``mtest: <outcome> [(quarantined) ]<test id>``."""
    tag = " (quarantined)" if record.quarantined and record.outcome.gating else ""
    return one_line(f"mtest: {record.outcome.value}{tag} {clip(record.test_id, ID_CHARS)}")


def _message(record: TestRecord, diagnosis: str) -> str:
    """The message (or what happened), the end of the traceback, then the bundle."""
    if record.message:
        head = record.message
    elif record.outcome is Outcome.FLAKY:
        head = f"failed, then passed on attempt {record.attempt}"
    else:
        head = record.outcome.value
    parts = [clip(head, MESSAGE_CHARS)]
    if diagnosis:
        parts.append(diagnosis)
    if record.bundle is not None:
        parts.append(f"bundle: {record.bundle}")
    return console_text("\n".join(parts))
