"""The probe → driver protocol as typed values: one frozen dataclass per event kind.

``parse.decode_events`` is the one decoder: it turns the JSONL lines a child
writes into these values and skips what it cannot read (a line that is not an
object, an unknown kind, a field of the wrong type). Every event carries the
``pid`` of the process that wrote it (``None`` from an older probe): only the
worker itself speaks for its tests, a forked copy's events are dropped.
Timestamps the child writes (``t``) are not kept: the driver measures time on
its own clock when it reads an event.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from supervisor.model import TestItem


class EventKind(enum.StrEnum):
    HELLO = "hello"
    COLLECT_START = "cstart"
    COLLECT_END = "cend"
    COLLECT_PROBLEM = "collect_problem"
    COLLECTED = "collected"
    FILES = "files"
    LISTED = "listed"
    UNKNOWN = "unknown"
    START = "start"
    END = "end"
    DONE = "done"
    THREADS = "threads"
    SESSION_ERROR = "session_error"
    EXIT = "exit"


@dataclass(frozen=True, kw_only=True)
class Hello:
    pid: int | None
    python: str = ""
    executable: str = ""
    pytest: str = ""
    plugins: tuple[str, ...] = ()
    rootdir: str = ""
    inifile: str | None = None
    """The ini file pytest read (``config.inipath``), absolute; ``None``: none."""
    timeout: float | None = None
    """pytest-timeout's option or the project's ``timeout`` ini, when set."""
    t: float | None = None
    """The child's monotonic clock when it wrote this: informational only."""


@dataclass(frozen=True, kw_only=True)
class CollectStart:
    pid: int | None
    file: str


@dataclass(frozen=True, kw_only=True)
class CollectEnd:
    pid: int | None
    file: str


@dataclass(frozen=True, kw_only=True)
class CollectProblem:
    pid: int | None
    test_id: str
    error: bool
    """``True``: the file failed to import; ``False``: it skipped itself."""
    message: str = ""
    longrepr: str = ""


@dataclass(frozen=True, kw_only=True)
class Collected:
    pid: int | None
    count: int
    items: tuple[TestItem, ...] | None
    """The whole listing, from the child asked for it; ``None`` from the others."""
    t: float | None = None
    """The child's monotonic clock when it wrote this: informational only."""


@dataclass(frozen=True, kw_only=True)
class Files:
    """A lazy child walked the suite: its test files, none imported yet."""

    pid: int | None
    files: tuple[str, ...]
    """Node ids of the test files, rootdir-relative, in pytest's collection order."""
    conftests: tuple[str, ...] = ()
    """The conftest.py files the walk loaded (rootdir-relative when under it)."""


@dataclass(frozen=True, kw_only=True)
class FileListing:
    file: str
    items: tuple[TestItem, ...]
    deps: tuple[str, ...] = ()
    """Local files its listing may depend on (``probedeps``), rootdir-relative."""
    collect_s: float = 0.0
    """The child's seconds collecting it (import, items, hooks): for planning only."""
    partial: bool = False
    """Only the tests of this child's share were made (``probelazy``): not a listing."""


@dataclass(frozen=True, kw_only=True)
class Listed:
    """A lazy child collected these files (each whole): their tests."""

    pid: int | None
    files: tuple[FileListing, ...]


@dataclass(frozen=True, kw_only=True)
class Unknown:
    pid: int | None
    ids: tuple[str, ...]
    partial: bool = False
    """In a file the child collected only in part: never "gone", always an error."""


@dataclass(frozen=True, kw_only=True)
class Start:
    pid: int | None
    test_id: str
    rss_bytes: int | None = None
    """The worker's resident memory as the test starts (``None``: not measured)."""


@dataclass(frozen=True, kw_only=True)
class End:
    pid: int | None
    test_id: str
    outcome: str
    duration_s: float = 0.0
    message: str = ""
    when: str | None = None
    longrepr: str = ""
    sections: tuple[tuple[str, str], ...] = ()
    rss_bytes: int | None = None
    """The worker's resident memory after the test (``None``: not measured)."""
    rss_growth_bytes: int | None = None
    """After minus before the test: may be negative."""
    cpu_s: float | None = None
    """The worker's CPU seconds (user + system, all its threads) during the test."""


@dataclass(frozen=True, kw_only=True)
class Done:
    pid: int | None
    chunk: int
    over_rss: bool = False
    """The worker is above ``--max-rss``: the chunk ended after the test that took it
    there, and the worker asks to be replaced."""


@dataclass(frozen=True, kw_only=True)
class Threads:
    pid: int | None
    test_id: str
    names: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class SessionError:
    pid: int | None
    where: str
    message: str = ""
    longrepr: str = ""


@dataclass(frozen=True, kw_only=True)
class Exit:
    pid: int | None
    code: int


Event = (
    Hello
    | CollectStart
    | CollectEnd
    | CollectProblem
    | Collected
    | Files
    | Listed
    | Unknown
    | Start
    | End
    | Done
    | Threads
    | SessionError
    | Exit
)
