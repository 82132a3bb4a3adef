"""Property tests for ``supervisor.text`` and the console that writes through it.

Any ``str`` a test can produce — lone surrogates, NUL, ESC sequences, C1
controls, U+FFFE, megabyte lines — must come out as valid XML text, a safe
terminal line, valid UTF-8 and inert Markdown.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.console import Console
from supervisor.model import Outcome
from supervisor.text import (
    clip,
    console_text,
    escape_char,
    markdown_code,
    markdown_text,
    one_line,
    tail,
    utf8_text,
    xml_text,
)

# Every code point, surrogates included, weighted towards the troublesome ones.
hostile = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=())),  # surrogates included
    st.text(
        alphabet=st.sampled_from("\x00\x07\x0b\x1b[]\x9b\r\n\t\ud800\udfff\ufffe\u202e`*_<>|\\")
    ),
)
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
SETTINGS = settings(max_examples=500, deadline=None)


@SETTINGS
@given(hostile)
def test_xml_text_is_always_valid_xml_text_and_attribute(text: str) -> None:
    element = ET.Element("e", {"a": xml_text(text)})
    element.text = xml_text(text)
    parsed = ET.fromstring(ET.tostring(element, encoding="utf-8"))
    assert parsed.get("a") == xml_text(text)
    # A parser normalises line ends in element text (XML 1.0, 2.11); nothing else changes.
    normalised = xml_text(text).replace("\r\n", "\n").replace("\r", "\n")
    assert (parsed.text or "") == normalised


@SETTINGS
@given(hostile)
def test_console_text_has_no_control_but_newline_and_tab(text: str) -> None:
    safe = console_text(text)
    assert not CONTROL.search(safe)
    safe.encode("utf-8")
    assert safe.count("\n") == text.count("\n")


@SETTINGS
@given(st.text(alphabet=st.sampled_from(": \t\nax")))
def test_no_console_line_is_a_workflow_command(text: str) -> None:
    for line in console_text(text).split("\n"):
        assert not line.lstrip(" \t").startswith("::"), line


def test_a_forged_workflow_command_is_shown_not_obeyed() -> None:
    assert console_text("x\n::error::forged\n  ::stop-commands::t") == (
        "x\n\\x3a:error::forged\n  \\x3a:stop-commands::t"
    )


@SETTINGS
@given(hostile)
def test_one_line_is_one_line(text: str) -> None:
    safe = one_line(text)
    assert "\n" not in safe and "\t" not in safe and not CONTROL.search(safe)


@SETTINGS
@given(hostile)
def test_utf8_text_always_encodes_and_changes_only_surrogates(text: str) -> None:
    safe = utf8_text(text)
    safe.encode("utf-8")
    if not re.search("[\ud800-\udfff]", text):
        assert safe == text


@SETTINGS
@given(st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc"))))
def test_well_behaved_text_passes_unchanged(text: str) -> None:
    text = re.sub("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufffe\uffff]", "", text)
    assert console_text(text) == text
    assert xml_text(text) == text
    assert utf8_text(text) == text


@pytest.mark.parametrize(
    ("char", "shown"),
    [("\x1b", "\\x1b"), ("\x00", "\\x00"), ("\x9b", "\\x9b"), ("\ud800", "\\ud800"),
     ("\n", "\\n"), ("\t", "\\t"), ("\r", "\\r"), ("\u202e", "\\u202e")],
)  # fmt: skip
def test_escape_char_is_pythons_spelling(char: str, shown: str) -> None:
    assert escape_char(char) == shown


def test_a_screen_clear_is_shown_not_sent() -> None:
    assert console_text("\x1b[2J\x1b[Hhi\x07\r\n") == "\\x1b[2J\\x1b[Hhi\\x07\\r\n"


_UNESCAPE = re.compile(r"\\(.)")
_SPECIAL = "\\`*_[]<>|~&!#"


@SETTINGS
@given(hostile)
def test_markdown_text_is_one_inert_line_that_reads_back(text: str) -> None:
    safe = markdown_text(text)
    assert "\n" not in safe and not CONTROL.search(safe)
    # Every special character is escaped, and removing the escapes gives the line back.
    unescaped_specials = re.sub(r"\\.", "", safe)
    assert not any(char in _SPECIAL for char in unescaped_specials)
    assert _UNESCAPE.sub(r"\1", safe) == one_line(text)


@SETTINGS
@given(hostile)
def test_markdown_code_is_one_span_that_holds_the_line(text: str) -> None:
    span = markdown_code(text)
    fence = re.match("`+", span)
    assert fence is not None
    body = span[fence.end() : len(span) - fence.end()]
    assert span.endswith(fence.group(0))
    assert fence.group(0) not in body  # no run of the fence's length closes it early
    assert "\n" not in span
    if one_line(text):
        stripped = body[1:-1] if body.startswith(" ") and body.endswith(" ") else body
        assert stripped == one_line(text)


def test_markdown_of_a_hostile_id() -> None:
    text = "<script>x</script>|`t`*s*[l](http://x)"
    assert markdown_text(text) == r"\<script\>x\</script\>\|\`t\`\*s\*\[l\](http://x)"
    assert markdown_code(text) == "``<script>x</script>|`t`*s*[l](http://x)``"
    assert markdown_code("`a`") == "`` `a` ``"


def test_clip_says_how_much_it_left_out() -> None:
    assert clip("abcdef", 6) == "abcdef"
    assert clip("abcdef", 2) == "ab… [4 more characters]"


def test_tail_keeps_the_end_and_says_what_it_cut() -> None:
    assert tail("a\nb\nc\n", lines=5, chars=100) == "a\nb\nc"
    assert tail("a\nb\nc", lines=2, chars=100) == "[... 1 earlier line(s) cut ...]\nb\nc"
    assert tail("abcdef", lines=2, chars=3) == "[... 3 character(s) cut ...]\ndef"
    assert tail("x\nabcdef", lines=1, chars=3) == (
        "[... 1 earlier line(s) and 3 character(s) cut ...]\ndef"
    )


@SETTINGS
@given(hostile, st.integers(1, 50), st.integers(1, 500))
def test_tail_is_bounded(text: str, lines: int, chars: int) -> None:
    kept = tail(text, lines=lines, chars=chars)
    body = kept.split("\n", 1)[1] if kept.startswith("[... ") else kept
    assert len(body) <= chars
    assert body.count("\n") < lines


# -- the console --------------------------------------------------------------


class Strict(io.TextIOWrapper):
    """A stream that refuses what its encoding cannot carry, like a real stdout."""

    def __init__(self, encoding: str) -> None:
        super().__init__(io.BytesIO(), encoding=encoding, errors="strict", newline="")

    def getvalue(self) -> str:
        self.flush()
        buffer = self.buffer
        assert isinstance(buffer, io.BytesIO)
        return buffer.getvalue().decode(self.encoding)


def test_a_test_cannot_clear_the_screen_but_mtest_still_colours() -> None:
    stream = Strict("utf-8")
    console = Console(stream, verbosity=0, tty=True, color=True)
    console.line("FAILED t.py::x - \x1b[2J\x1b[H\x07", outcome=Outcome.FAILED)
    assert stream.getvalue() == "\x1b[31mFAILED t.py::x - \\x1b[2J\\x1b[H\\x07\x1b[0m\n"


@pytest.mark.parametrize("encoding", ["utf-8", "ascii", "latin-1"])
def test_what_the_stream_cannot_encode_is_escaped_not_raised(encoding: str) -> None:
    stream = Strict(encoding)
    console = Console(stream, verbosity=0, tty=False, color=False)
    console.line("lone \ud800 snowman \u2603")
    console.status("status \udcff", force=True)
    assert "lone \\ud800 snowman" in stream.getvalue()
    assert "status \\udcff" in stream.getvalue()


def test_the_status_line_escapes_controls_but_keeps_its_own_redraw() -> None:
    stream = Strict("utf-8")
    console = Console(stream, verbosity=0, tty=True, color=False)
    console.status("running t.py::x\x1b[2J", force=True)
    assert stream.getvalue().startswith("\r\x1b[K")
    assert stream.getvalue().count("\x1b") == 1


def test_only_command_may_start_a_line_with_two_colons() -> None:
    stream = Strict("utf-8")
    console = Console(stream, verbosity=-1, tty=False, color=False)
    console.always("::add-mask::secret")
    console.command("::error file=a.py::boom\nforged")
    assert stream.getvalue() == "\\x3a:add-mask::secret\n::error file=a.py::boom\\nforged\n"
