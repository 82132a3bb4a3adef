"""Hostile text end to end: one real run over ``tests/fixtures/text``, many checks on what it left.

The suite's tests fail with lone surrogates, NUL, screen-clearing escape
sequences, BEL, characters XML forbids, a 2 MB line, Markdown/HTML in an id
and a missing fixture; ``test_innocent`` passes. mtest runs once per module
with its stdout on a pseudo-terminal (so its own colours are on) and
``GITHUB_ACTIONS=true``; the tests below read its console output,
``run.jsonl``, ``summary.md``, the step summary, the JUnit files (per chunk
and ``--junit-xml``) and a ``--merge`` of the run.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FIXTURES, mtest_env, records, run_mtest
from junitparser import JUnitXml

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(300),
    pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal"),
]

RUN_LIMIT_S = 240.0
INNOCENT = "test_texts.py::test_innocent"
MARKDOWN_ID = (
    "test_texts.py::test_markdown_in_id[<script>alert(1)</script>|`tick`*star*[link](http://x)]"
)
EXPECTED = {
    "test_texts.py::test_lone_surrogate": "failed",
    "test_texts.py::test_nul_in_message": "failed",
    "test_texts.py::test_clears_the_screen": "failed",
    "test_texts.py::test_bell_and_xml_illegal": "failed",
    "test_texts.py::test_megabyte_line": "failed",
    "test_texts.py::test_surrogate_in_output": "failed",
    MARKDOWN_ID: "failed",
    "test_texts.py::test_missing_fixture": "error",
    INNOCENT: "passed",
}
OWN_SEQUENCES = re.compile(r"\x1b\[(?:\d+)?m|\r?\x1b\[K|\r")
"""What mtest itself writes to a terminal: colours, and erasing its status line."""
ANNOTATION = re.compile(r"::(error|warning|notice) ([^:\n]*)::([^\n]*)")


@dataclass(frozen=True, kw_only=True)
class TextRun:
    project: Path
    returncode: int
    console: bytes
    stderr: bytes

    @property
    def gates(self) -> Path:
        return self.project / ".gates"

    @property
    def last_run(self) -> Path:
        return self.gates / "last-run"


def run_on_a_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run mtest with stdout on a pseudo-terminal; its exit code, terminal bytes, stderr."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "supervisor", *args],
        cwd=cwd,
        env=mtest_env(env),
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.close(child)
    assert proc.stderr is not None
    seen, errors = bytearray(), bytearray()
    deadline = time.monotonic() + RUN_LIMIT_S
    streams = {main: seen, proc.stderr.fileno(): errors}
    while streams and time.monotonic() < deadline:
        ready, _, _ = select.select(list(streams), [], [], 1.0)
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                chunk = b""
            if chunk:
                streams[fd] += chunk
            else:
                del streams[fd]
    if streams:
        os.killpg(proc.pid, 9)
    code = proc.wait(timeout=30)
    os.close(main)
    proc.stderr.close()
    assert not streams, f"mtest did not finish in {RUN_LIMIT_S}s:\n{bytes(seen[-3000:])!r}"
    return code, bytes(seen), bytes(errors)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> TextRun:
    project = tmp_path_factory.mktemp("text") / "project"
    shutil.copytree(FIXTURES / "text", project)
    env = {
        "TERM": "xterm-256color",
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(project / "step_summary.md"),
    }
    code, console, stderr = run_on_a_terminal(
        ["-j", "2", "--timeout", "60", "--junit-xml", "out/junit.xml"], project, env
    )
    return TextRun(project=project, returncode=code, console=console, stderr=stderr)


def test_the_run_fails_without_an_internal_error(text_run: TextRun) -> None:
    assert text_run.returncode == 1, text_run.stderr.decode("utf-8", "replace")
    assert b"internal error" not in text_run.stderr
    assert b"Traceback" not in text_run.stderr


def test_every_test_is_recorded_once_with_its_outcome(text_run: TextRun) -> None:
    found = records(text_run.gates)
    firsts = [r for r in found if r["attempt"] == 1]
    assert Counter(r["test_id"] for r in firsts) == Counter(set(EXPECTED))
    # Each failure, and only a failure, was rerun alone once, and failed alone too.
    failing = {t for t, o in EXPECTED.items() if o != "passed"}
    assert sorted(r["test_id"] for r in found if r["attempt"] != 1) == sorted(failing)
    assert {r["test_id"]: r["outcome"] for r in found} == EXPECTED
    for record in found:
        record["message"].encode("utf-8")  # no lone surrogate survived into a record


def test_run_jsonl_is_valid_utf8(text_run: TextRun) -> None:
    (text_run.last_run / "run.jsonl").read_bytes().decode("utf-8")


def test_the_lone_surrogate_is_shown_as_an_escape(text_run: TextRun) -> None:
    by_id = {r["test_id"]: r for r in records(text_run.gates)}
    assert "\\ud800 lone surrogate" in by_id["test_texts.py::test_lone_surrogate"]["message"]


def test_the_console_shows_test_controls_but_sends_none(text_run: TextRun) -> None:
    console = text_run.console.decode("utf-8")
    assert "\x1b[31m" in console, "mtest's own colours are gone"
    stray = OWN_SEQUENCES.sub("", console)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", stray), repr(
        [line for line in stray.splitlines() if re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", line)]
    )
    assert "\\x1b[2J\\x1b[Hscreen cleared \\x1b]0;pwned\\x07" in console
    assert "nul \\x00 here" in console
    assert len(console) < 200_000, "the 2 MB line reached the terminal whole"


def test_summary_md_escapes_markdown_and_html(text_run: TextRun) -> None:
    summary = (text_run.last_run / "summary.md").read_text(encoding="utf-8")
    problems = [line for line in summary.splitlines() if line.startswith("- **")]
    assert len(problems) == len(EXPECTED) - 1
    (line,) = [line for line in problems if "test_markdown_in_id" in line]
    assert re.match(r"- \*\*failed\*\* (\([a-z, ]+\) )?``", line), line  # e.g. (broken, gating)
    assert f"``{MARKDOWN_ID}``: AssertionError: \\<b\\>bold\\</b\\>" in line
    message = line.split(f"``{MARKDOWN_ID}``: ", 1)[1].rsplit(" — `failures/", 1)[0]
    unescaped = re.sub(r"\\.", "", message)  # what is left once every escape is taken out
    assert not re.search(r"[<>|*`\[\]]", unescaped), message
    assert len(summary) < 20_000


def test_the_step_summary_is_the_summary(text_run: TextRun) -> None:
    summary = (text_run.last_run / "summary.md").read_text(encoding="utf-8")
    step = (text_run.project / "step_summary.md").read_text(encoding="utf-8")
    assert step == summary + "\n"


def junit_files(text_run: TextRun) -> list[Path]:
    chunks = sorted(text_run.last_run.glob("junit-*.xml"))
    assert chunks
    return [text_run.project / "out" / "junit.xml", *chunks]


def test_every_junit_file_parses(text_run: TextRun) -> None:
    tests = 0
    for path in junit_files(text_run):
        ET.parse(path)
        parsed = JUnitXml.fromfile(str(path))
        tests += sum(1 for suite in parsed for _ in suite) if path.parent.name == "out" else 0
    assert tests == len(EXPECTED)


def failure_bodies(path: Path) -> dict[str, str]:
    """testcase name → the text of its ``<failure>`` or ``<error>``."""
    bodies = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        for tag in ("failure", "error"):
            element = case.find(tag)
            if element is not None:
                bodies[case.get("name", "")] = element.text or ""
    return bodies


def test_the_junit_failure_carries_the_traceback_and_message(text_run: TextRun) -> None:
    bodies = failure_bodies(text_run.project / "out" / "junit.xml")
    assert len(bodies) == len(EXPECTED) - 1
    surrogate = bodies["test_lone_surrogate"]
    assert surrogate.startswith("AssertionError: \\ud800 lone surrogate\n")
    assert 'assert False, "\\ud800 lone surrogate"' in surrogate
    assert "test_texts.py:15: AssertionError" in surrogate
    assert "bundle: failures/" in surrogate
    assert "fixture 'no_such_fixture' not found" in bodies["test_missing_fixture"]
    assert len(bodies["test_megabyte_line"]) < 10_000
    assert "\\x0b" in bodies["test_bell_and_xml_illegal"]


def test_the_chunk_files_carry_the_same_diagnosis(text_run: TextRun) -> None:
    merged = failure_bodies(text_run.project / "out" / "junit.xml")
    chunks: dict[str, str] = {}
    for path in sorted(text_run.last_run.glob("junit-*.xml")):
        chunks.update(failure_bodies(path))
    assert chunks == merged


def test_github_annotations_are_well_formed(text_run: TextRun) -> None:
    # Erasing the live status line ends it: what follows starts a line of its own.
    console = OWN_SEQUENCES.sub(
        lambda m: "" if m.group().endswith("m") else "\n", text_run.console.decode("utf-8")
    )
    lines = [line for line in console.splitlines() if line.startswith("::")]
    assert len(lines) == len(EXPECTED) - 1
    for line in lines:
        match = ANNOTATION.fullmatch(line)
        assert match is not None, line
        level, props, data = match.groups()
        assert data.strip()
        assert level == "error"
        assert re.fullmatch(r"file=[^,]+,line=\d+,title=[^,]+", props), props
        assert not re.search("[\x00-\x1f\x7f-\x9f]", line)
    (surrogate,) = [line for line in lines if "test_lone_surrogate" in line]
    assert "::AssertionError: \\ud800 lone surrogate%0A" in surrogate
    assert "test_texts.py:15: AssertionError%0Abundle: failures/" in surrogate


def test_a_merge_of_the_run_writes_the_same_junit(text_run: TextRun, tmp_path: Path) -> None:
    merged = tmp_path / "merged.xml"
    result = run_mtest(
        ["--merge", str(text_run.gates), "--gates-dir", str(tmp_path / "gates"),
         "--junit-xml", str(merged)],
        text_run.project, timeout=RUN_LIMIT_S,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    JUnitXml.fromfile(str(merged))
    assert failure_bodies(merged) == failure_bodies(text_run.project / "out" / "junit.xml")
