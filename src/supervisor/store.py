"""The only module that touches ``.gates/``: names, lock, atomic JSON, append-only JSONL, bundles.

Every JSON file carries ``"version": 1`` and is written to a temporary name,
fsynced and renamed over the old one. A file that is missing, empty, truncated,
not JSON or of another version never crashes mtest: the reader warns in one
line and behaves as if the file were absent. ``run.jsonl`` is appended one
flushed line per record; a partial last line (a crash mid-write) is ignored.

A test may delete, rename or replace ``.gates/`` while the run goes on. Records
still go to the ``run.jsonl`` handle mtest holds open; every other write
recreates the directories it needs, and one that cannot be done becomes a line
of ``Store.notes``, never a traceback. ``Store.ensure_log`` puts ``run.jsonl``
back at its path from the open handle. ``last-run/`` holds at most
``LAST_RUN_CAP_BYTES`` of what the store writes there; past that, a bundle is
a short stub that says so.

``history.jsonl`` (or the file ``--history`` names, anywhere) is a ``SharedLog``:
appended by whole lines under a lock, compacted by an atomic rename, its unreadable
lines moved to a ``.corrupt`` side file; ``supervisor.history`` decides what it holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from supervisor.errors import Busy, MtestError
from supervisor.model import FORMAT_VERSION, TestRecord

Warn = Callable[[str], None]

# The names under ``.gates/``, defined here only (SPEC, Files).
LOCK = "lock"
CONTAINER_LOCK = "container.lock"
STATE = "state.json"
DURATIONS = "durations.json"
QUARANTINE = "quarantine.json"
INDEX = "index.json"
IMPORT_GRAPH = "importgraph.json"
"""The static import graph, cached by file content (``supervisor.importgraph``)."""
ORPHANS = "orphans.json"
"""``mtest orphans``' last answer (``supervisor.orphans``)."""
ORPHAN_CHECKS = "orphans"
"""Under ``cache/``: the pytest file ``--include-orphans`` generates for each run."""
CACHE = "cache"
LAST_RUN = "last-run"
RUN_LOG = "run.jsonl"
SUMMARY = "summary.md"
TIMELINE = "timeline.jsonl"
"""``last-run/timeline.jsonl``: which worker ran what, when (``supervisor.timeline``)."""
REPORT_HTML = "report.html"
"""``last-run/report.html``: the run as one self-contained page (``supervisor.htmlreport``)."""
FAILURES = "failures"
CHILDREN = "children"
HISTORY = "history.jsonl"
CORRUPT_SUFFIX = ".corrupt"
"""Lines a compaction of a shared log could not read go to ``<file>.corrupt``, never away."""
SETUP_ENV = "setup.env"
"""``last-run/setup.env``: ``$MTEST_ENV_FILE`` of the once-per-run setup (docs/formats.md)."""
SETUP_OUTPUT = "{what}-output.txt"
"""``failures/setup-output.txt``, ``failures/teardown-output.txt``: what the command printed
(bundle names always end in ``_<hash>.txt``: the two never meet)."""
SERVICE_LOG = "service.log"
"""``mtest service``'s faults (with tracebacks), restarts and giving up; plain text."""
COVERAGE_DIR = "coverage"
COVERAGE_DATA = ".coverage"
"""The children's data files are ``coverage/.coverage.<run id>.<pid>.<random>``."""
COVERAGE_LAST = f"{COVERAGE_DIR}/last.json"
COVERAGE_STALE = "stale"
COVERAGE_REPLACED = "replaced"

FSYNC_EVERY_S = 1.0
"""``run.jsonl`` is flushed per record and fsynced at most this often (and at close)."""
SERVICE_LOG_CAP_BYTES = 1024 * 1024
"""``service.log`` past this is renamed ``service.log.1`` (replacing the older one) and
begun again: the two hold at most twice this."""
LAST_RUN_CAP_BYTES = 256 * 1024 * 1024
"""What the store writes into ``last-run/`` (records, bundles, JUnit, summary) in one run,
at most; bundles past it become stubs, chunk JUnit files are not written."""
STUB_HEAD_LINES = 12
STUB_HEAD_CHARS = 2000
"""A stub keeps the head of its bundle (test, outcome, how to reproduce), at most this."""


def project_container_lock(rootdir: Path) -> Path:
    """``--container``'s default lock: in the project's own ``.gates/`` (whatever
    ``--gates-dir`` says), so that container runs of one project take turns."""
    return rootdir / ".gates" / CONTAINER_LOCK


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def state(self) -> Path:
        return self.root / STATE

    @property
    def durations(self) -> Path:
        return self.root / DURATIONS

    @property
    def quarantine(self) -> Path:
        return self.root / QUARANTINE

    @property
    def index(self) -> Path:
        return self.root / INDEX

    @property
    def cache(self) -> Path:
        return self.root / CACHE

    @property
    def orphan_checks(self) -> Path:
        return self.cache / ORPHAN_CHECKS

    @property
    def history(self) -> Path:
        return self.root / HISTORY

    @property
    def last_run(self) -> Path:
        return self.root / LAST_RUN

    @property
    def run_log(self) -> Path:
        return self.last_run / RUN_LOG

    @property
    def summary(self) -> Path:
        return self.last_run / SUMMARY

    @property
    def timeline(self) -> Path:
        return self.last_run / TIMELINE

    @property
    def report_html(self) -> Path:
        return self.last_run / REPORT_HTML

    @property
    def failures(self) -> Path:
        return self.last_run / FAILURES

    @property
    def children(self) -> Path:
        return self.last_run / CHILDREN

    @property
    def setup_env(self) -> Path:
        return self.last_run / SETUP_ENV

    def setup_output(self, what: str) -> Path:
        """The output of the once-per-run ``setup`` or ``teardown`` command."""
        return self.failures / SETUP_OUTPUT.format(what=what)

    @property
    def service_log(self) -> Path:
        return self.root / SERVICE_LOG

    @property
    def coverage(self) -> Path:
        return self.root / COVERAGE_DIR

    @property
    def coverage_data(self) -> Path:
        """The base name of the children's data files (never a file itself)."""
        return self.coverage / COVERAGE_DATA

    @property
    def coverage_stale(self) -> Path:
        return self.coverage / COVERAGE_STALE

    @property
    def coverage_replaced(self) -> Path:
        return self.coverage / COVERAGE_REPLACED

    def chunk_junit(self, index: int) -> Path:
        return self.last_run / f"junit-{index:04d}.xml"

    def file(self, name: str) -> Path:
        return self.root / name


class Store:
    """``.gates/`` for one mtest process."""

    def __init__(self, root: Path, warn: Warn, *, cap_bytes: int = LAST_RUN_CAP_BYTES) -> None:
        self.paths = Paths(root)
        self.warn = warn
        self.notes: list[str] = []
        """One line per thing the run must tell the user (directory removed, cap reached)."""
        self.cap_bytes = cap_bytes
        self._used = 0
        self._lock_file: IO[str] | None = None
        self._log: IO[bytes] | None = None
        self._last_sync = 0.0
        self._root_id: tuple[int, int] | None = None
        self._restore_failed = False
        """Set when ``ensure_log`` could not restore: ``append`` stops trying, close tries again."""

    def note(self, line: str) -> None:
        if line not in self.notes:
            self.notes.append(line)

    # -- the lock -------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, holder: str) -> Iterator[Store]:
        """Hold ``.gates/lock`` (flock) for the whole run; a second mtest gets exit 4."""
        try:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.paths.lock, "a+", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise MtestError(
                f"cannot use gates directory `{self.paths.root}`: {exc.strerror}",
                hint="pass a writable directory with --gates-dir",
            ) from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            who = handle.read().strip() or "another mtest"
            handle.close()
            raise Busy(
                f"`{self.paths.lock}` is held by {who}",
                hint="wait for that run to finish, or use another --gates-dir",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(holder)
        handle.flush()
        self._lock_file = handle
        try:
            yield self
        finally:
            self.close_log()
            # The handle stays valid when a test removed the file or its directory.
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                handle.close()
            self._lock_file = None

    # -- JSON files -----------------------------------------------------------

    def read_json(self, name: str) -> dict[str, Any] | None:
        """A versioned JSON object, or ``None`` (with one warning) if it is unusable."""
        path = self.paths.file(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.warn(f"ignoring `{path}`: cannot read it ({exc})")
            return None
        if not text.strip():
            self.warn(f"ignoring `{path}`: it is empty")
            return None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            self.warn(f"ignoring `{path}`: it is not valid JSON (truncated?)")
            return None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            version = data.get("version") if isinstance(data, dict) else None
            self.warn(f"ignoring `{path}`: version {version!r}, expected {FORMAT_VERSION}")
            return None
        return data

    def load(self, name: str, decode: Callable[[dict[str, Any]], Any]) -> Any:
        """``decode(read_json(name))``; a ``ValueError``/``KeyError`` from it reads as absent."""
        data = self.read_json(name)
        if data is None:
            return None
        try:
            return decode(data)
        except (ValueError, KeyError, TypeError) as exc:
            self.warn(f"ignoring `{self.paths.file(name)}`: {exc}")
            return None

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        # No indent: with one, json falls back to its pure-Python encoder (~5x slower
        # on a durations.json of thousands of tests).
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        self._write(self.paths.file(name), text + "\n")

    # -- the run's directory ----------------------------------------------------

    def begin_run(self, *, fresh: bool) -> None:
        """A new run starts with an empty ``last-run/``; a resumed one keeps it."""
        if fresh and self.paths.last_run.exists():
            shutil.rmtree(self.paths.last_run, ignore_errors=True)
        for directory in (self.paths.failures, self.paths.children):
            directory.mkdir(parents=True, exist_ok=True)
        self._root_id = _identity(self.paths.root)
        self._used = 0 if fresh else _tree_size(self.paths.last_run)
        # a+b: records are appended, and can be read back through the handle
        # if a test removes the file (ensure_log).
        self._log = open(self.paths.run_log, "a+b")  # noqa: SIM115 (open for the run)
        if fresh:
            return
        # A crash mid-write leaves a partial last line: end it so the next record stands alone.
        size = self._log.seek(0, os.SEEK_END)
        if size:
            self._log.seek(size - 1)
            if self._log.read(1) != b"\n":
                self._log.write(b"\n")

    def append(self, record: TestRecord) -> None:
        assert self._log is not None, "begin_run() first"
        line = json.dumps(record.to_json(), ensure_ascii=True).encode() + b"\n"
        self._log.write(line)
        self._log.flush()
        self._used += len(line)
        # Two stat calls per record: a removed .gates/ is restored (and noted) at once,
        # so later records land at the path and the summary can say what happened.
        if not self._restore_failed:
            self.ensure_log()
        now = time.monotonic()
        if now - self._last_sync >= FSYNC_EVERY_S:
            os.fsync(self._log.fileno())
            self._last_sync = now

    def ensure_log(self) -> None:
        """Make ``run.jsonl`` at its path the file mtest appends to, restoring it if needed.

        A test that removed, renamed or replaced ``.gates/`` (or the file) leaves
        mtest appending to a file no longer at the path: its content is read
        back through the open handle, written at the path, and appending goes
        on there. ``append`` and ``close_log`` call it.
        """
        log = self._log
        if log is None or _same_file(log, self.paths.run_log):
            return
        what = f"the state directory `{self.paths.root}`"
        if _identity(self.paths.root) == self._root_id:
            what = f"`{self.paths.run_log}`"
        try:
            log.flush()
            log.seek(0)
            content = log.read()
            write_atomic_bytes(self.paths.run_log, content)
            restored = open(self.paths.run_log, "a+b")  # noqa: SIM115 (open for the run)
        except OSError as exc:
            self._restore_failed = True
            self.note(
                f"{what} was removed or replaced during the run, and run.jsonl could not be "
                f"restored at `{self.paths.run_log}`: {exc.strerror or exc}"
            )
            return
        log.close()
        self._log = restored
        self._restore_failed = False
        self._root_id = _identity(self.paths.root)
        self.note(
            f"{what} was removed or replaced during the run; run.jsonl was restored from "
            "mtest's open handle (failure bundles written before that may be missing)"
        )

    def close_log(self) -> None:
        if self._log is not None:
            self.ensure_log()
            self._log.flush()
            os.fsync(self._log.fileno())
            self._log.close()
            self._log = None

    def read_records(self, path: Path | None = None) -> list[TestRecord]:
        """Every readable record of ``run.jsonl``; damaged lines are skipped with one warning."""
        path = path or self.paths.run_log
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.warn(f"ignoring `{path}`: cannot read it ({exc})")
            return []
        records, damaged = parse_records(data)
        if damaged:
            self.warn(f"`{path}`: skipped {damaged} damaged line(s)")
        return records

    def write_orphan_check(self, name: str, text: str) -> Path:
        """``cache/orphans/<name>``: the pytest file of ``--include-orphans``' checks."""
        target = self.paths.orphan_checks / name
        self._write(target, text)
        return target

    def write_bundle(self, name: str, text: str) -> None:
        """``failures/<name>``; past the cap of ``last-run/``, a stub that says so."""
        target = self.paths.failures / name
        # The name comes from bundle.bundle_name, but this is the last line of defence.
        if target.resolve().parent != self.paths.failures.resolve():
            raise MtestError(f"refusing to write a bundle outside failures/: `{name}`", code=3)
        data = text.encode("utf-8", errors="replace")
        if self._over_cap(len(data)):
            head = "\n".join(text.splitlines()[:STUB_HEAD_LINES])[:STUB_HEAD_CHARS]
            data = (
                f"This bundle was cut to its first lines: `{LAST_RUN}/` reached its cap of "
                f"{_mib(self.cap_bytes)} in this run ({len(data)} bytes not kept).\n"
                "The test's record in run.jsonl still holds its outcome and message.\n\n"
                f"{head}\n"
            ).encode("utf-8", errors="replace")
        # Not fsynced: a bundle is a diagnosis, and a run with many failures writes many.
        self._write(target, data, sync=False)

    def write_chunk_junit(self, index: int, xml: str) -> None:
        data = xml.encode("utf-8", errors="replace")
        if not self._over_cap(len(data)):
            self._write(self.paths.chunk_junit(index), data)

    def write_summary(self, text: str) -> None:
        self._write(self.paths.summary, text)

    def write_timeline(self, lines: Iterable[str]) -> None:
        """``last-run/timeline.jsonl``, whole (written once, at the end of the run)."""
        self._write(self.paths.timeline, "".join(f"{line}\n" for line in lines), sync=False)

    def write_report_html(self, text: str) -> None:
        self._write(self.paths.report_html, text, sync=False)

    def read_summary(self) -> str | None:
        try:
            return self.paths.summary.read_text(encoding="utf-8")
        except OSError:
            return None

    def append_service_log(self, text: str, *, cap_bytes: int = SERVICE_LOG_CAP_BYTES) -> None:
        """Append an entry to ``service.log``, rotating it first past ``cap_bytes``.

        Not under the lock (the service writes it between runs) and never a
        failure of its own: a log that cannot be written is a warning.
        """
        path = self.paths.service_log
        data = text.encode("utf-8", errors="replace")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size + len(data) > cap_bytes:
                    os.replace(path, path.with_name(SERVICE_LOG + ".1"))
            with open(path, "ab") as handle:
                handle.write(data)
        except OSError as exc:
            self.warn(f"could not write `{path}`: {exc.strerror or exc}")

    # -- coverage data (``covdata``) ----------------------------------------------

    def coverage_parts(self, run_id: str | None = None) -> list[Path]:
        """The children's data files in ``coverage/`` (of ``run_id`` only, when given)."""
        prefix = f"{COVERAGE_DATA}." + (f"{run_id}." if run_id is not None else "")
        try:
            found = [p for p in self.paths.coverage.iterdir() if p.name.startswith(prefix)]
        except OSError:
            return []
        return sorted(p for p in found if p.is_file())

    def begin_coverage(self, run_id: str) -> None:
        """Make ``coverage/`` ready for ``run_id``: another run's data files are moved to
        ``coverage/stale/`` (emptied first), with a note; they are never combined into
        this run. A resumed run keeps its own."""
        self.paths.coverage.mkdir(parents=True, exist_ok=True)
        others = [p for p in self.coverage_parts() if p not in self.coverage_parts(run_id)]
        if not others:
            return
        stale = self.paths.coverage_stale
        shutil.rmtree(stale, ignore_errors=True)
        try:
            stale.mkdir(parents=True, exist_ok=True)
            for part in others:
                os.replace(part, stale / part.name)
        except OSError as exc:
            raise MtestError(
                f"cannot move the coverage data files of an earlier run out of "
                f"`{self.paths.coverage}`: {exc.strerror or exc}",
                hint="remove them, or pass a writable --gates-dir",
            ) from None
        self.note(
            f"{len(others)} coverage data file(s) of an earlier run were in "
            f"`{self.paths.coverage}`: moved to `{stale}`, not combined into this run"
        )

    def drop_coverage_parts(self, run_id: str) -> None:
        """The run is complete and combined: its data files go."""
        for part in self.coverage_parts(run_id):
            with contextlib.suppress(OSError):
                part.unlink()

    def set_aside(self, target: Path, *, owned: bool) -> bool:
        """Before the combined data is written to ``target`` (outside ``.gates/``): a file
        there that mtest did not leave (``owned`` false) is moved to
        ``coverage/replaced/``, with a note, never overwritten. ``False``: it could not
        be moved, and must stay."""
        if owned or not target.exists():
            return True
        kept = self.paths.coverage_replaced / target.name
        try:
            if kept.is_dir() and not kept.is_symlink():
                shutil.rmtree(kept)
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(target, kept)
        except OSError as exc:
            self.note(f"could not move `{target}` aside: {exc.strerror or exc}")
            return False
        self.note(
            f"`{target}` was not written by mtest: moved to `{kept}` before this run's "
            "combined coverage data took its place"
        )
        return True

    def _over_cap(self, size: int) -> bool:
        """Whether writing ``size`` more bytes into last-run/ would pass the cap (noted once)."""
        if self._used + size <= self.cap_bytes:
            self._used += size
            return False
        self.note(
            f"`{self.paths.last_run}` reached its cap of {_mib(self.cap_bytes)}: later failure "
            "bundles are stubs and chunk JUnit files were not written"
        )
        return True

    def _write(self, path: Path, data: str | bytes, *, sync: bool = True) -> None:
        """An atomic write that recreates removed directories; a failure becomes a note."""
        raw = data.encode("utf-8", errors="replace") if isinstance(data, str) else data
        try:
            write_atomic_bytes(path, raw, sync=sync)
        except OSError as exc:
            self.note(f"could not write `{path}`: {exc.strerror or exc}")


def parse_records(data: bytes) -> tuple[list[TestRecord], int]:
    """Records from JSONL bytes and the count of damaged complete lines.

    A last line without its newline is a write cut short by a crash: it is
    ignored silently, as the spec says.
    """
    lines = data.split(b"\n")
    complete, partial = lines[:-1], lines[-1]
    records: list[TestRecord] = []
    damaged = 0
    for line in complete:
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            records.append(TestRecord.from_json(raw))
        except (ValueError, KeyError, RecursionError):
            damaged += 1
    if partial.strip():
        with contextlib.suppress(ValueError, KeyError, RecursionError):
            raw = json.loads(partial)
            if isinstance(raw, dict):
                records.append(TestRecord.from_json(raw))
    return records, damaged


def write_atomic(path: Path, text: str) -> None:
    """tmp + fsync + ``os.replace``: readers see the old file or the new one, never half."""
    write_atomic_bytes(path, text.encode("utf-8"))


def write_atomic_bytes(path: Path, data: bytes, *, sync: bool = True) -> None:
    """``write_atomic`` for bytes (``sync=False``: not fsynced). The parent directory is
    (re)created, and once more if it vanishes between the ``mkdir`` and the write (a
    test removing ``.gates/``)."""
    for attempt in (1, 2):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                if sync:
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
            return
        except FileNotFoundError:
            if attempt == 2:
                raise


SHARED_LOG_OPEN_ATTEMPTS = 1000
"""How often ``open_shared_log`` reopens a file that was replaced while it waited for
the lock. Each compaction by another process costs one attempt (a process compacts at
most once per append), so only a file replaced in a loop by something else runs out."""


class SharedLog:
    """A JSON Lines file that several processes append to and compact (the run history).

    A line is one ``os.write`` on an ``O_APPEND`` descriptor, so two processes'
    lines never interleave. ``open_shared_log`` holds an exclusive ``flock`` of the
    file from the read to the last write, and makes sure the descriptor still names
    the path once the lock is held: another process's compaction renames a new file
    over the path, and a line appended to the old one would be lost.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._replaced = False

    def read(self) -> bytes:
        """The whole file, as it is under the lock."""
        chunks: list[bytes] = []
        offset = 0
        while chunk := os.pread(self._fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def append(self, line: bytes) -> None:
        """One line (ending in a newline), written and fsynced; a partial last line
        left by a crash is ended first, so the new line stands alone."""
        assert not self._replaced, "the log was replaced: reopen it"
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = os.write(self._fd, line)
        while written < len(line):  # only a full disk or a signal writes less
            written += os.write(self._fd, line[written:])
        os.fsync(self._fd)

    def replace(self, kept: Sequence[bytes], moved: Sequence[bytes]) -> Path | None:
        """Compact: the file becomes ``kept`` (atomically); ``moved`` lines are first
        appended to ``<file>.corrupt`` (returned), so a crash in between duplicates
        them, never loses them. Lines are given without their newline."""
        side = None
        if moved:
            side = self.path.with_name(self.path.name + CORRUPT_SUFFIX)
            fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, b"".join(line + b"\n" for line in moved))
                os.fsync(fd)
            finally:
                os.close(fd)
        write_atomic_bytes(self.path, b"".join(line + b"\n" for line in kept))
        self._replaced = True
        return side


@contextlib.contextmanager
def open_shared_log(path: Path) -> Iterator[SharedLog]:
    """``path`` (created with its directories if missing), locked for this process.

    Raises ``OSError`` when it cannot be opened for reading and appending (a
    directory in the way, no permission, a read-only filesystem). On a filesystem
    without ``flock`` the lock is skipped: appends stay whole lines (``O_APPEND``).
    """
    for _ in range(SHARED_LOG_OPEN_ATTEMPTS):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            with contextlib.suppress(OSError):  # ENOLCK: no locks on this filesystem
                fcntl.flock(fd, fcntl.LOCK_EX)
            st = os.fstat(fd)
            if _identity(path) == (st.st_dev, st.st_ino):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # replaced while we waited for the lock: open the new file
    else:
        raise OSError(f"`{path}` kept being replaced by another process")
    try:
        yield SharedLog(path, fd)
    finally:
        os.close(fd)


def read_shared_log(path: Path) -> bytes:
    """A shared log's bytes, read under a shared ``flock`` (so no line is half written);
    ``b""`` when it does not exist. Other ``OSError`` propagate."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below, after the lock)
    except FileNotFoundError:
        return b""
    with handle:
        with contextlib.suppress(OSError):  # ENOLCK: no locks on this filesystem
            fcntl.flock(handle, fcntl.LOCK_SH)
        return handle.read()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _same_file(handle: IO[bytes], path: Path) -> bool:
    """Whether ``path`` still names the file ``handle`` is open on."""
    st = os.fstat(handle.fileno())
    return _identity(path) == (st.st_dev, st.st_ino)


def _tree_size(directory: Path) -> int:
    total = 0
    for dirpath, _, names in os.walk(directory):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"
