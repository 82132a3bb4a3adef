"""The only module that touches ``.gates/``: lock, atomic JSON, append-only JSONL, bundles.

Every JSON file carries ``"version": 1`` and is written to a temporary name,
fsynced and renamed over the old one. A file that is missing, empty, truncated,
not JSON or of another version never crashes mtest: the reader warns in one
line and behaves as if the file were absent. ``run.jsonl`` is appended one
flushed line per record; a partial last line (a crash mid-write) is ignored.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from supervisor.errors import MtestError
from supervisor.model import FORMAT_VERSION, TestRecord

Warn = Callable[[str], None]

LAST_RUN = "last-run"
RUN_LOG = "run.jsonl"
SUMMARY = "summary.md"
FSYNC_EVERY_S = 1.0
"""``run.jsonl`` is flushed per record and fsynced at most this often (and at close)."""


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def lock(self) -> Path:
        return self.root / "lock"

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
    def failures(self) -> Path:
        return self.last_run / "failures"

    @property
    def children(self) -> Path:
        return self.last_run / "children"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def file(self, name: str) -> Path:
        return self.root / name


class Store:
    """``.gates/`` for one mtest process."""

    def __init__(self, root: Path, warn: Warn) -> None:
        self.paths = Paths(root)
        self.warn = warn
        self._lock_file: IO[str] | None = None
        self._log: IO[bytes] | None = None
        self._last_sync = 0.0

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
            raise MtestError(
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
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
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
        write_atomic(self.paths.file(name), text + "\n")

    # -- the run's directory ----------------------------------------------------

    def begin_run(self, *, fresh: bool) -> None:
        """A new run starts with an empty ``last-run/``; a resumed one keeps it."""
        if fresh and self.paths.last_run.exists():
            shutil.rmtree(self.paths.last_run, ignore_errors=True)
        for directory in (self.paths.failures, self.paths.children):
            directory.mkdir(parents=True, exist_ok=True)
        self._log = open(self.paths.run_log, "ab")  # noqa: SIM115 (open for the run)
        if fresh:
            return
        # A crash mid-write leaves a partial last line: end it so the next record stands alone.
        size = self._log.tell()
        if size:
            with open(self.paths.run_log, "rb") as handle:
                handle.seek(size - 1)
                if handle.read(1) != b"\n":
                    self._log.write(b"\n")

    def append(self, record: TestRecord) -> None:
        assert self._log is not None, "begin_run() first"
        self._log.write(json.dumps(record.to_json(), ensure_ascii=True).encode() + b"\n")
        self._log.flush()
        now = time.monotonic()
        if now - self._last_sync >= FSYNC_EVERY_S:
            os.fsync(self._log.fileno())
            self._last_sync = now

    def close_log(self) -> None:
        if self._log is not None:
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

    def write_bundle(self, name: str, text: str) -> None:
        target = self.paths.failures / name
        # The name comes from bundle.bundle_name, but this is the last line of defence.
        if target.resolve().parent != self.paths.failures.resolve():
            raise MtestError(f"refusing to write a bundle outside failures/: `{name}`", code=3)
        target.write_text(text, encoding="utf-8", errors="replace")

    def write_chunk_junit(self, index: int, xml: str) -> None:
        write_atomic(self.paths.last_run / f"junit-{index:04d}.xml", xml)

    def write_summary(self, text: str) -> None:
        write_atomic(self.paths.summary, text)

    def read_summary(self) -> str | None:
        try:
            return self.paths.summary.read_text(encoding="utf-8")
        except OSError:
            return None


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
