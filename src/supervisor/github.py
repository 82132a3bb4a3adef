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
- Output is sorted by test id, so it does not depend on scheduling.
"""

# No ``from __future__ import annotations`` here: it would bind the name
# ``annotations`` that this module's main function needs (Python >= 3.11
# evaluates these annotations fine without it).
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from supervisor.model import Outcome, TestItem, TestRecord, file_of


def annotations(finals: Mapping[str, TestRecord], items: Mapping[str, TestItem]) -> list[str]:
    """One workflow command per failing, flaky or quarantined-failing test, by test id."""
    lines: list[str] = []
    for test_id in sorted(finals):
        record = finals[test_id]
        level = _level(record)
        if level is None:
            continue
        item = items.get(test_id)
        props = [("file", file_of(test_id))]
        if item is not None and item.line is not None:
            props.append(("line", str(item.line)))
        props.append(("title", _title(record)))
        rendered = ",".join(f"{key}={escape_property(value)}" for key, value in props)
        lines.append(f"::{level} {rendered}::{escape_data(_message(record))}")
    return lines


def publish(
    emit: Callable[[str], None],
    finals: Mapping[str, TestRecord],
    items: Mapping[str, TestItem],
    summary: str,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Under GitHub Actions: print the annotations and append the step summary."""
    if environ.get("GITHUB_ACTIONS") != "true":
        return
    for line in annotations(finals, items):
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
    return f"mtest: {record.outcome.value}{tag} {record.test_id}"


def _message(record: TestRecord) -> str:
    """The record's message (or what happened, when it has none), then its bundle."""
    if record.message:
        head = record.message
    elif record.outcome is Outcome.FLAKY:
        head = f"failed, then passed on attempt {record.attempt}"
    else:
        head = record.outcome.value
    if record.bundle is not None:
        return f"{head}\nbundle: {record.bundle}"
    return head
