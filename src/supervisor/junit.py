"""The merged JUnit XML that ``--junit-xml`` writes from mtest's own records.

``junit_xml`` is pure: records in, one XML document out. It is written from
the records (never by stitching the children's ``junit-NNNN.xml``), so hung
and crashed tests, which have no pytest report, are in it too.

Design:

- ``records`` are all attempts of a run, in order; a test's result is its last
  record. One ``<testcase>`` per distinct test id, in first-seen order, in one
  ``<testsuite>`` under ``<testsuites>``.
- ``classname``/``name`` are pytest's own mangling of the node id
  (``junit_key``), so tools that join pytest's JUnit back to node ids
  work on this file unchanged. ``file`` is the path part of the id; ``line``
  is ``TestItem.line`` (1-based, unlike pytest's 0-based ``line``).
- Outcomes map onto what JUnit consumers understand; hung and crashed are
  ``<failure>`` with ``type`` set to the mtest outcome. Earlier failing
  attempts follow the Maven Surefire convention: ``<flakyFailure>`` /
  ``<flakyError>`` when the test ended passing, ``<rerunFailure>`` /
  ``<rerunError>`` when it did not; each carries the attempt's message in a
  ``<stackTrace>`` child. A quarantined test keeps its real result and gets
  the ``mtest.quarantined`` property; every non-passed test gets
  ``mtest.outcome``.
- Counts: ``failures`` = failed + hung + crashed, ``errors`` = error,
  ``skipped`` = skipped + xfailed (quarantined tests included: the file tells
  what happened, the exit code tells what gates). ``time`` is the sum of the
  testcases' times, i.e. of each test's final attempt.
- A failure's body (``<failure>``, ``<error>``, ``<stackTrace>``) is the
  message, then the end of the traceback (the last ``bundle.DIAGNOSIS_LINES``
  lines, at most ``bundle.DIAGNOSIS_CHARS`` characters), then the bundle's
  path. The traceback is not in the records: the caller reads it back from the
  bundles (``bundle.read_diagnoses``) and passes ``diagnoses``, keyed by the
  record's bundle path — for the per-chunk files, the merged file and
  ``--merge`` alike.
- Text that XML 1.0 cannot carry (control characters other than tab, newline
  and carriage return; C1 controls; lone surrogates; U+FFFE/U+FFFF) is shown
  as a visible escape (``text.xml_text``: ``\\x1b``, ``\\ud800``); everything
  else is escaped by ElementTree. The file always parses.
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

from supervisor.model import Outcome, TestItem, TestRecord, file_of
from supervisor.text import clip, xml_text

Diagnoses = Mapping[str, str]
"""A record's bundle path → the end of its traceback (``bundle.read_diagnoses``)."""
MESSAGE_CHARS = 4096


def junit_key(test_id: str) -> tuple[str, str]:
    """The (classname, name) pytest's junitxml plugin writes for a node id."""
    path, bracket, params = test_id.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

_FAILURES = frozenset({Outcome.FAILED, Outcome.HUNG, Outcome.CRASHED, Outcome.ORDER_DEPENDENT})
_SKIPS = frozenset({Outcome.SKIPPED, Outcome.XFAILED})
_ENDED_PASSING = frozenset({Outcome.PASSED, Outcome.XPASSED, Outcome.FLAKY})


def clean(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot represent shown as escapes."""
    return xml_text(text)


def junit_xml(
    records: Sequence[TestRecord],
    items: Mapping[str, TestItem],
    *,
    suite_name: str = "mtest",
    diagnoses: Diagnoses | None = None,
    properties: Mapping[str, str] | None = None,
) -> str:
    """One JUnit XML document (with declaration) for all attempts in ``records``;
    ``properties`` (the run's ``coverage``) go on the testsuite."""
    attempts: dict[str, list[TestRecord]] = {}
    for record in records:
        attempts.setdefault(record.test_id, []).append(record)
    finals = [history[-1] for history in attempts.values()]
    counts = _counts(finals)
    root = ET.Element("testsuites", {"name": clean(suite_name), **counts})
    suite = ET.SubElement(root, "testsuite", {"name": clean(suite_name), **counts})
    if properties:
        listed = ET.SubElement(suite, "properties")
        for key, value in properties.items():
            ET.SubElement(listed, "property", {"name": clean(key), "value": clean(value)})
    for test_id, history in attempts.items():
        suite.append(_testcase(history, items.get(test_id), diagnoses or {}))
    ET.indent(root)
    return XML_DECLARATION + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(
    path: Path,
    records: Sequence[TestRecord],
    items: Mapping[str, TestItem],
    diagnoses: Diagnoses | None = None,
    *,
    properties: Mapping[str, str] | None = None,
) -> None:
    """Write ``junit_xml(records, items, diagnoses=..., properties=...)`` to ``path`` as UTF-8,
    atomically.

    A temp file in the same directory is written, fsynced and renamed over
    ``path``, so a reader never sees half a file. Parent directories are created.
    """
    data = junit_xml(records, items, diagnoses=diagnoses, properties=properties).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _counts(finals: Sequence[TestRecord]) -> dict[str, str]:
    """The testsuite attributes for these final records."""
    return {
        "tests": str(len(finals)),
        "failures": str(sum(r.outcome in _FAILURES for r in finals)),
        "errors": str(sum(r.outcome is Outcome.ERROR for r in finals)),
        "skipped": str(sum(r.outcome in _SKIPS for r in finals)),
        "time": f"{sum(r.duration_s for r in finals):.3f}",
    }


def _testcase(
    history: Sequence[TestRecord], item: TestItem | None, diagnoses: Diagnoses
) -> ET.Element:
    """One ``<testcase>``: the final attempt's result plus the earlier failing ones."""
    final = history[-1]
    classname, name = junit_key(final.test_id)
    attrs = {
        "classname": clean(classname),
        "name": clean(name),
        "file": clean(file_of(final.test_id)),
    }
    if item is not None and item.line is not None:
        attrs["line"] = str(item.line)
    attrs["time"] = f"{final.duration_s:.3f}"
    case = ET.Element("testcase", attrs)
    properties = _properties(final)
    if properties is not None:
        case.append(properties)
    result = _final_result(final, diagnoses)
    if result is not None:
        case.append(result)
    kind = "flaky" if final.outcome in _ENDED_PASSING else "rerun"
    for earlier in history[:-1]:
        if earlier.outcome.gating:
            case.append(_interim_result(kind, earlier, diagnoses))
    return case


def _properties(final: TestRecord) -> ET.Element | None:
    """``mtest.outcome`` for non-passed tests, ``mtest.quarantined`` for quarantined ones."""
    pairs: list[tuple[str, str]] = []
    if final.outcome is not Outcome.PASSED:
        pairs.append(("mtest.outcome", final.outcome.value))
    if final.quarantined:
        pairs.append(("mtest.quarantined", "true"))
    if not pairs:
        return None
    properties = ET.Element("properties")
    for key, value in pairs:
        ET.SubElement(properties, "property", {"name": key, "value": value})
    return properties


def _final_result(final: TestRecord, diagnoses: Diagnoses) -> ET.Element | None:
    """The ``<failure>``/``<error>``/``<skipped>`` element, or None for a pass."""
    outcome = final.outcome
    if outcome in _FAILURES or outcome is Outcome.ERROR:
        tag = "error" if outcome is Outcome.ERROR else "failure"
        element = ET.Element(tag, {"message": _message(final), "type": outcome.value})
        element.text = _details(final, diagnoses)
        return element
    if outcome is Outcome.SKIPPED:
        return ET.Element("skipped", {"type": "pytest.skip", "message": _message(final, "")})
    if outcome is Outcome.XFAILED:
        return ET.Element("skipped", {"type": "pytest.xfail", "message": _message(final, "")})
    return None


def _interim_result(kind: str, earlier: TestRecord, diagnoses: Diagnoses) -> ET.Element:
    """``<{kind}Failure>`` or ``<{kind}Error>`` for one earlier failing attempt."""
    suffix = "Error" if earlier.outcome is Outcome.ERROR else "Failure"
    element = ET.Element(
        f"{kind}{suffix}", {"message": _message(earlier), "type": earlier.outcome.value}
    )
    ET.SubElement(element, "stackTrace").text = _details(earlier, diagnoses)
    return element


def _message(record: TestRecord, default: str | None = None) -> str:
    """The ``message`` attribute: the record's message (capped), else ``default`` or its outcome."""
    fallback = record.outcome.value if default is None else default
    return clean(clip(record.message, MESSAGE_CHARS)) or fallback


def _details(record: TestRecord, diagnoses: Diagnoses) -> str:
    """Element text: the message, the end of the traceback, then where the bundle is."""
    parts = [clip(record.message, MESSAGE_CHARS)] if record.message else []
    found = diagnoses.get(record.bundle or "", "")
    if found:
        parts.append(found)
    if record.bundle is not None:
        parts.append(f"bundle: {record.bundle}")
    return clean("\n".join(parts))
