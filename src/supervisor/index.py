"""The test index (``.gates/index.json``): what collection said about each test file.

A pure core, keyed so that it is never wrong. An entry holds one test file's
listing (its ``TestItem``\\ s as the probe listed them, and its collection
problem, if any) under a ``FileKey``: the file's content, the ``conftest.py`` and
``__init__.py`` files that apply to it, and the local modules its collection imported. The
whole index sits under one ``EnvKey``: rootdir, ini file, interpreter, pytest,
plugins, installed distributions, the collection-affecting pytest arguments
and environment variables, and the conftests that act on the whole session.

Use (``docs/design.md``, "Test index", has the exact rules)::

    env = env_key(fingerprint, inifile=..., args=child_args, environ=os.environ,
                  conftests=every_conftest, reader=reader)
    keys = file_keys(test_files, reader, deps=index.deps())
    known, stale = lookup(index, env, keys)          # collect ``stale``, each file whole
    before = file_keys(stale, reader)                # taken before the collection starts
    ... the probe reports each stale file's items, problem and local imports (deps) ...
    index = update(index, env, {f: Listing(with_deps(before[f], deps[f], reader), items[f],
                                            problems.get(f)) for f in stale})
    index = prune(index, test_files)                           # whole-suite runs only
    store.write_json(store.INDEX, index.to_json())

Reading files is the one I/O and goes through a ``Reader`` (``fs_reader`` for
the real tree, a dict's ``get`` in tests). ``Index.from_json`` raises
``ValueError`` on anything malformed; the store reads that as "absent".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from supervisor.jsonshape import as_object, check_version, strs_field
from supervisor.model import FORMAT_VERSION, Fingerprint, TestItem
from supervisor.pytestopts import VALUE_LONGS, VALUE_SHORTS

Reader = Callable[[str], "bytes | None"]
"""A file's content by path (relative to the rootdir, or absolute); ``None`` if unreadable."""

DIGEST_CHARS = 32
"""Hex characters kept of a SHA-256 (128 bits)."""

CHAIN_NAMES = ("conftest.py", "__init__.py")
"""Files in a test file's directory and each parent that apply to it (pytest imports both)."""

SESSION_WIDE = (
    "pytest_addhooks", "pytest_addoption", "pytest_cmdline", "pytest_collection",
    "pytest_configure", "pytest_deselected", "pytest_itemcollected",
    "pytest_load_initial_conftests", "pytest_plugin_registered", "pytest_plugins",
    "pytest_sessionstart", "import *",
)  # fmt: skip
"""Text that makes a conftest act beyond its directory: pytest calls these hooks for the
whole session (``pytest_collection`` also matches ``pytest_collection_modifyitems`` and
``pytest_collection_finish``), and ``import *`` may bring any of them in."""

ENVIRON = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONPATH")
"""Environment variables that change what pytest collects."""

OUTPUT_ONLY = frozenset(
    {"-v", "-q", "--verbose", "--quiet", "--verbosity", "-r", "--report-chars", "--tb",
     "-l", "--showlocals", "--no-showlocals", "--color", "--code-highlight", "-s",
     "--capture", "--show-capture", "--full-trace", "--fulltrace", "--durations",
     "--durations-min", "--junit-xml", "--junitxml", "--junit-prefix", "--junitprefix",
     "--timeout", "--timeout-method", "--basetemp", "--reruns", "--reruns-delay",
     "--cov", "--cov-report", "--cov-config", "--cov-fail-under", "--no-cov"}
)  # fmt: skip
"""Options that only change output or running, never what is collected: left out of the
environment key. Every other option, known or not, is in it."""
_OUTPUT_SHORTS = frozenset("vqlsr")
"""Short options (bundled or not) that only change output."""


# --- hashing: the one I/O ------------------------------------------------------------


def digest(*parts: str | bytes | None) -> str:
    """A hash of ``parts`` in order; each is length-prefixed and ``None`` is distinct."""
    h = hashlib.sha256()
    for part in parts:
        if part is None:
            h.update(b"N")
            continue
        data = part.encode("utf-8", "surrogateescape") if isinstance(part, str) else part
        h.update(b"S" + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()[:DIGEST_CHARS]


def fs_reader(rootdir: Path) -> Reader:
    """Read files under ``rootdir`` (absolute paths as they are); ``None`` when unreadable."""

    def read(path: str) -> bytes | None:
        try:
            return (rootdir / path).read_bytes()
        except (OSError, ValueError):
            return None

    return read


def hash_files(paths: Iterable[str], reader: Reader) -> dict[str, str | None]:
    """Each distinct path read once: its content's digest, ``None`` when it cannot be read."""
    hashes: dict[str, str | None] = {}
    for path in paths:
        if path not in hashes:
            data = reader(path)
            hashes[path] = None if data is None else digest(data)
    return hashes


# --- keys ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileKey:
    """What one file's listing depends on, as digests; equal keys, equal listings."""

    content: str | None
    """The file's content; ``None``: it could not be read (never matches an entry)."""
    chain: str
    """Every ``conftest.py`` and ``__init__.py`` in the file's directory and each parent up
    to the rootdir (path and content; an absent one counts too, so a new one changes it)."""
    deps: tuple[str, ...] = ()
    """Local modules the file's collection imported (rootdir-relative), as reported."""
    deps_digest: str = ""
    """Their contents, in order (a missing one counts as missing)."""


@dataclass(frozen=True, slots=True)
class EnvKey:
    """What every file's listing depends on: part name → digest or value."""

    parts: tuple[tuple[str, str], ...]
    """Sorted by name, so that a key read back from JSON (sorted keys) compares equal."""

    def changed(self, other: EnvKey | None) -> tuple[str, ...]:
        """The names of the parts that differ from ``other`` (all of them if ``None``)."""
        theirs = dict(other.parts) if other is not None else {}
        return tuple(name for name, value in self.parts if theirs.get(name) != value)


def chain_paths(file: str) -> tuple[str, ...]:
    """The ``conftest.py`` and ``__init__.py`` that may apply to a rootdir-relative file:
    in the rootdir, then in each directory down to the file's own."""
    dirs = file.split("/")[:-1]
    return tuple("/".join([*dirs[:n], name]) for n in range(len(dirs) + 1) for name in CHAIN_NAMES)


def indexable(file: str) -> bool:
    """Whether a node-id path can be indexed: relative to the rootdir and inside it."""
    parts = file.split("/")
    return bool(file) and not file.startswith("/") and ".." not in parts and "" not in parts


def file_keys(
    files: Iterable[str], reader: Reader, *, deps: Mapping[str, Sequence[str]] | None = None
) -> dict[str, FileKey]:
    """The current key of each file. ``deps``: each file's local imports; before ``lookup``
    pass ``Index.deps()``; before collecting, none (``with_deps`` adds them afterwards)."""
    files = list(dict.fromkeys(files))
    deps = deps or {}
    wanted = [p for f in files for p in (f, *chain_paths(f), *deps.get(f, ()))]
    hashes = hash_files(wanted, reader)
    return {
        file: FileKey(
            content=hashes[file],
            chain=_paths_digest(chain_paths(file), hashes),
            deps=tuple(deps.get(file, ())),
            deps_digest=_paths_digest(deps.get(file, ()), hashes),
        )
        for file in files
    }


def with_deps(key: FileKey, deps: Sequence[str], reader: Reader) -> FileKey:
    """``key`` (computed before the file was collected) with the local imports the probe
    reported once it was, hashed now."""
    return FileKey(
        content=key.content,
        chain=key.chain,
        deps=tuple(deps),
        deps_digest=_paths_digest(deps, hash_files(deps, reader)),
    )


def _paths_digest(paths: Sequence[str], hashes: Mapping[str, str | None]) -> str:
    return digest(*(x for p in paths for x in (p, hashes[p]))) if paths else ""


def session_wide(source: bytes) -> bool:
    """Whether a conftest may change the collection of files outside its directory."""
    return any(hook.encode() in source for hook in SESSION_WIDE)


def collection_args(args: Sequence[str]) -> tuple[str, ...]:
    """The children's pytest arguments that can change what a file yields.

    Left out: positional paths and node ids (they choose files, and a listing is
    only recorded for a whole file), and ``OUTPUT_ONLY`` options with their
    values. A bare argument after an unknown long option may be its value: kept.
    """
    kept: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg.startswith("--"):
            name, eq, _ = arg.partition("=")
            output_only = name in OUTPUT_ONLY
            takes_value = not eq and (name in VALUE_LONGS or not output_only)
        elif arg.startswith("-") and arg != "-":
            flags = _short_flags(arg)
            output_only = all(c in _OUTPUT_SHORTS for c in flags)
            takes_value = flags[-1] in VALUE_SHORTS and len(flags) == len(arg) - 1
        else:
            continue  # a path or node id
        value = []
        if takes_value and index < len(args) and not args[index].startswith("-"):
            value = [args[index]]
            index += 1
        if not output_only:
            kept.extend([arg, *value])
    return tuple(kept)


def _short_flags(arg: str) -> str:
    """``-vsk`` → ``vsk``, ``-kfoo`` → ``k``: the options of a short bundle, up to the first
    one that takes a value (the rest of the token is that value)."""
    for position, char in enumerate(arg[1:], start=1):
        if char in VALUE_SHORTS:
            return arg[1 : position + 1]
    return arg[1:]


def env_key(
    fingerprint: Fingerprint,
    *,
    inifile: str | None,
    args: Sequence[str],
    environ: Mapping[str, str],
    conftests: Iterable[str],
    reader: Reader,
    installed: Iterable[str] = (),
) -> EnvKey:
    """The key shared by every file. ``fingerprint`` is a ``model.Fingerprint`` (the probe's
    ``hello``); ``inifile`` the ini pytest used (``config.inipath``); ``args`` the children's
    pytest arguments; ``conftests`` every conftest.py collection loads (rootdir-relative);
    ``installed`` every distribution as ``name-version``, if the probe lists them."""
    conftest_parts: list[str | None] = []
    for path in sorted(set(conftests)):
        source = reader(path)
        if source is not None and session_wide(source):
            conftest_parts += [path, digest(source)]
    ini = None if inifile is None else reader(inifile)
    parts = {
        "rootdir": str(fingerprint.rootdir),
        "python": f"{fingerprint.executable} {fingerprint.python} {fingerprint.platform}",
        "pytest": str(fingerprint.pytest),
        "plugins": digest(*sorted(fingerprint.plugins)),
        "installed": digest(*sorted(installed)),
        "ini": digest(inifile, None if ini is None else digest(ini)),
        "args": digest(*collection_args(args)),
        "environ": digest(*(x for name in ENVIRON for x in (name, environ.get(name)))),
        "conftests": digest(*conftest_parts),
    }
    return EnvKey(parts=tuple(sorted(parts.items())))


# --- the index -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """A file that failed to import (``error``) or skipped itself at import."""

    error: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    key: FileKey
    items: tuple[TestItem, ...]
    problem: Problem | None = None
    collect_s: float = 0.0
    """How long collecting (importing) the file took when it was listed."""


class Listing(NamedTuple):
    """What collecting one whole file said, for ``update``."""

    key: FileKey
    items: Sequence[TestItem]
    problem: Problem | None = None
    collect_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Index:
    env: EnvKey | None = None
    files: Mapping[str, Entry] = field(default_factory=dict)

    def costs(self) -> dict[str, float]:
        """Each indexed file's collection seconds, as last measured."""
        return {file: entry.collect_s for file, entry in self.files.items() if entry.collect_s}

    def deps(self) -> dict[str, tuple[str, ...]]:
        """Each indexed file's recorded local imports, for ``file_keys`` before ``lookup``."""
        return {file: entry.key.deps for file, entry in self.files.items() if entry.key.deps}

    def to_json(self) -> dict[str, Any]:
        return _encode(self)

    @classmethod
    def from_json(cls, data: object) -> Index:
        return _decode(data)


def lookup(
    index: Index, env: EnvKey, keys: Mapping[str, FileKey]
) -> tuple[dict[str, tuple[TestItem, ...]], list[str]]:
    """``(known, stale_or_new)``, both in the order of ``keys``.

    A file is known when the environment key is the index's, its entry's key
    equals its current key, it could be read, and its collection had no
    problem (errors and import skips are always collected again). Every other
    file of ``keys`` is stale or new: collect it.
    """
    known: dict[str, tuple[TestItem, ...]] = {}
    stale: list[str] = []
    same_env = index.env == env
    for file, key in keys.items():
        entry = index.files.get(file) if same_env else None
        if entry is not None and entry.key == key and key.content is not None and not entry.problem:
            known[file] = entry.items
        else:
            stale.append(file)
    return known, stale


def update(index: Index, env: EnvKey, listings: Mapping[str, Listing]) -> Index:
    """The index with these files' listings; another environment starts from empty.

    Each listing must come from collecting the whole file (never through
    ``file::name`` arguments or a ``-k`` the key does not hold) with its key
    computed before the collection. Files that cannot be indexed are dropped.
    """
    files = dict(index.files) if index.env == env else {}
    for file, (key, items, problem, collect_s) in listings.items():
        if not indexable(file) or key.content is None:
            files.pop(file, None)
            continue
        stray = [item.test_id for item in items if item.file != file]
        if stray:
            raise ValueError(f"index: {stray[0]!r} is not a test of {file!r}")
        files[file] = Entry(key=key, items=tuple(items), problem=problem, collect_s=collect_s)
    return Index(env=env, files=files)


def prune(index: Index, existing: Collection[str]) -> Index:
    """The index without files missing from ``existing`` (the whole suite's test files)."""
    return Index(env=index.env, files={f: e for f, e in index.files.items() if f in existing})


# --- JSON ------------------------------------------------------------------------------


def _encode(index: Index) -> dict[str, Any]:
    table: dict[str, int] = {}
    files: dict[str, Any] = {}
    for file in sorted(index.files):
        entry = index.files[file]
        key = entry.key
        files[file] = {
            "key": [key.content, key.chain, key.deps_digest],
            "deps": [table.setdefault(path, len(table)) for path in key.deps],
            "tests": [_item_row(file, item) for item in entry.items],
            "problem": entry.problem and [entry.problem.error, entry.problem.message],
            "collect_s": round(entry.collect_s, 4),
        }
    return {
        "version": FORMAT_VERSION,
        "env": None if index.env is None else dict(index.env.parts),
        "paths": list(table),
        "files": files,
    }


def _item_row(file: str, item: TestItem) -> list[Any]:
    """``[name, line, markers, timeout]``; the name is the id without ``file::``."""
    name = None if item.test_id == file else item.test_id.removeprefix(file + "::")
    return [name, item.line, list(item.markers), item.timeout]


def _decode(data: object) -> Index:
    obj = as_object(data, "index")
    check_version(obj, "index")
    raw_env = obj.get("env")
    env = None
    if raw_env is not None:
        parts = as_object(raw_env, "index `env`")
        if not all(isinstance(v, str) for v in parts.values()):
            raise ValueError("index: `env` values must be strings")
        env = EnvKey(parts=tuple(sorted((str(k), v) for k, v in parts.items())))
    paths = strs_field(obj, "paths", "index")
    raw_files = as_object(obj.get("files"), "index `files`")
    files = {
        str(f): _entry(str(f), as_object(e, f"index {f!r}"), paths) for f, e in raw_files.items()
    }
    return Index(env=env, files=files)


def _entry(file: str, raw: Mapping[str, Any], paths: Sequence[str]) -> Entry:
    what = f"index {file!r}"
    key, deps, tests, problem = (raw.get(k) for k in ("key", "deps", "tests", "problem"))
    if not isinstance(key, list) or len(key) != 3 or not all(isinstance(k, str) for k in key):
        raise ValueError(f"{what}: `key` must be [content, chain, deps]")
    if not isinstance(deps, list) or not all(type(d) is int and 0 <= d < len(paths) for d in deps):
        raise ValueError(f"{what}: `deps` must index `paths`")
    if not isinstance(tests, list):
        raise ValueError(f"{what}: `tests` must be a list")
    if problem is not None and not (
        isinstance(problem, list) and len(problem) == 2 and isinstance(problem[0], bool)
        and isinstance(problem[1], str)
    ):  # fmt: skip
        raise ValueError(f"{what}: `problem` must be null or [error, message]")
    return Entry(
        key=FileKey(
            content=key[0],
            chain=key[1],
            deps=tuple(paths[d] for d in deps),
            deps_digest=key[2],
        ),
        items=tuple(_item(file, row, what) for row in tests),
        problem=None if problem is None else Problem(error=problem[0], message=problem[1]),
        collect_s=_seconds(raw.get("collect_s"), what),
    )


def _seconds(value: object, what: str) -> float:
    """An optional non-negative number of seconds (absent in older files: 0)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{what}: bad collect_s {value!r}")
    return float(value)


def _item(file: str, row: object, what: str) -> TestItem:
    """One ``[name, line, markers, timeout]`` row; checked inline (it runs per test)."""
    if not isinstance(row, list) or len(row) != 4:
        raise ValueError(f"{what}: a test is not [name, line, markers, timeout]")
    name, line, markers, timeout = row
    if not (name is None or isinstance(name, str)) or not (line is None or type(line) is int):
        raise ValueError(f"{what}: bad test name or line {row!r}")
    if not isinstance(markers, list) or not all(isinstance(m, str) for m in markers):
        raise ValueError(f"{what}: markers of {name!r} must be strings")
    if timeout is not None and (type(timeout) not in (int, float) or not timeout >= 0):
        raise ValueError(f"{what}: bad timeout {timeout!r} of {name!r}")
    return TestItem(
        test_id=file if name is None else f"{file}::{name}",
        file=file,
        line=line,
        markers=tuple(markers),
        timeout=None if timeout is None else float(timeout),
    )
