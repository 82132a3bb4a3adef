"""Pure: the one place that decides how text from tests is made safe for each output.

A test can put anything into a failure message, a parametrize id or its
output: NUL, terminal escape sequences, characters XML 1.0 forbids, lone
surrogates (which no UTF-8 encoder accepts), megabyte lines, Markdown and
HTML. Every output mtest writes takes text through one of these functions,
so none of them can raise, rewrite the user's screen or produce a file its
reader rejects.

The rule is the same everywhere: a character an output cannot carry is
replaced by a visible Python-style escape (``\\x1b``, ``\\ud800``,
``\\ufffe``), never silently dropped, so the reader still sees that
something was there.

- ``console_text``: no C0/C1 control (ESC, BEL, CR, NUL, CSI ...) except
  newline and tab, no bidirectional override, no lone surrogate. mtest adds
  its own colours *after* this, so they still work. No line starts with
  ``::`` either (its first colon is shown as ``\\x3a``): under GitHub Actions
  such a line is a workflow command (``::error``, ``::add-mask::``,
  ``::stop-commands::``), and only mtest's own annotations may be one.
- ``one_line``: ``console_text`` with newline and tab escaped too.
- ``utf8_text``: only lone surrogates escaped; the result always encodes.
- ``xml_text``: what XML 1.0 allows (tab, LF, CR, U+0020-U+D7FF,
  U+E000-U+FFFD, U+10000-U+10FFFF), everything else escaped, C1 controls too.
- ``markdown_text`` / ``markdown_code``: one line of Markdown that renders
  as the literal text, with no HTML, link, emphasis or table cell break.
- ``clip`` / ``tail``: bounded excerpts that say how much they left out.
"""

from __future__ import annotations

import re

_CONTROLS = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 but tab and newline, DEL, C1 (incl. CSI \x9b)
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional overrides
    "\ud800-\udfff"  # lone surrogates
)
_CONSOLE_UNSAFE = re.compile(f"[{_CONTROLS}]")
_LINE_UNSAFE = re.compile(f"[{_CONTROLS}\t\n]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_COMMAND = re.compile(r"^([ \t]*):(?=:)", re.MULTILINE)
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&!#])")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_char(char: str) -> str:
    r"""``\x1b``, ``\ud800``, ``\n``: how one unsafe character is shown."""
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _escape(match: re.Match[str]) -> str:
    return escape_char(match.group(0))


def console_text(text: str) -> str:
    """``text`` with every control character but newline and tab shown as an escape,
    and no line that GitHub Actions would read as a workflow command."""
    return _COMMAND.sub(r"\1\\x3a", _CONSOLE_UNSAFE.sub(_escape, text))


def one_line(text: str) -> str:
    """``text`` as one safe terminal line: newline and tab are escaped too."""
    return _LINE_UNSAFE.sub(_escape, text)


def utf8_text(text: str) -> str:
    """``text`` with its lone surrogates escaped, so it always encodes as UTF-8."""
    return _SURROGATE.sub(_escape, text)


def xml_text(text: str) -> str:
    """``text`` with every character XML 1.0 forbids (and C1 controls) escaped."""
    return _XML_UNSAFE.sub(_escape, text)


def markdown_text(text: str) -> str:
    """One line of Markdown that renders as ``text`` itself: no HTML, link, emphasis or cell break.

    Control characters and newlines become visible escapes first, then every
    character Markdown or HTML gives a meaning to inside a line is
    backslash-escaped (CommonMark escapes any ASCII punctuation this way).
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", one_line(text))


def markdown_code(text: str) -> str:
    """``text`` as one inline code span: fenced by more backticks than it contains.

    Inside a code span nothing is interpreted (no HTML, no emphasis), so only
    the fence needs care: CommonMark closes a span at a backtick run of the
    fence's exact length, and strips one space at each end when both are there.
    """
    line = one_line(text)
    if not line:
        return "` `"
    longest = max((len(run) for run in re.findall(r"`+", line)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if line.startswith("`") or line.endswith("`") or line.startswith(" ") else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def clip(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def tail(text: str, *, lines: int, chars: int) -> str:
    """The last ``lines`` lines of ``text``, at most ``chars`` characters, saying what was cut.

    The place a failure shows itself is at the end of a traceback (the last
    frames and the exception), so the end is what a CI report keeps.
    """
    kept = text.rstrip("\n").split("\n")
    cut_lines = max(0, len(kept) - lines)
    body = "\n".join(kept[cut_lines:])
    cut_chars = max(0, len(body) - chars)
    body = body[cut_chars:]
    if not cut_lines and not cut_chars:
        return body
    what = f"{cut_lines} earlier line(s)" if cut_lines else ""
    if cut_chars:
        what += f"{' and ' if what else ''}{cut_chars} character(s)"
    return f"[... {what} cut ...]\n{body}"
