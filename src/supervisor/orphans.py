"""Orphan modules: the project's modules no test reaches through the import graph (issue 13).

Pure classification over an ``importgraph.Graph``: the tests (every test file and
every ``conftest.py``) are the starts, ``Graph.reaches`` gives what they may run,
and every other module of the project is *unreached*. Each unreached module gets
one kind:

- ``redundant``: the same content (digest) as another module of the project (empty
  files aside), or it only re-exports (``Node.reexport_only`` with at least one import);
- ``orphan``: nothing imports it;
- ``isolated``: something imports it, but only modules no test reaches (orphans,
  other isolated modules, or files that are not modules of the project such as
  ``setup.py``).

The default listing is the orphans, the redundant modules, and the isolated
modules no listed orphan reaches (an import cycle no test enters); ``recursive``
also lists the modules an orphan imports that only orphans reach, each with the
orphans it is reached ``via``. The graph may be *unsure* about a module the tests
reach (a non-literal dynamic import, ``exec``, a file that does not parse): that
module may import anything, so an orphan may still run under the tests; the
result says so (``Result.unsure``) and never claims certainty.

``check_file`` writes the pytest file ``mtest --include-orphans`` runs: one test
per checked module that imports it by path under its dotted name (and one that
runs its doctests with ``--doctest-modules``); ``check_ids`` maps that file's node
ids to the records' ids, ``orphan::pkg/mod.py`` (``orphan::pkg/mod.py::doctest``).
``docs/user-guide.md`` ("Orphan modules") and ``docs/formats.md`` (``orphans.json``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.importgraph import TEST_FILES, Graph, is_test_file, relative
from supervisor.model import FORMAT_VERSION
from supervisor.pytestopts import VALUE_LONGS, VALUE_SHORTS

ORPHAN = "orphan"
ISOLATED = "isolated"
REDUNDANT = "redundant"
KINDS = (ORPHAN, ISOLATED, REDUNDANT)

NOT_MODULES = ("setup.py", "noxfile.py", "conftest.py", "__main__.py", "docs/*", "doc/*")
"""Files that are never listed (``fnmatch`` on the repository-relative path, and
on the file name for the patterns without ``/``): build and task scripts, entry
points that run a program when imported, documentation sources. Test files are
the starts and never listed either."""
EMPTY_DIGEST = hashlib.sha256(b"").hexdigest()
"""Empty files (most ``__init__.py``) are alike without being redundant."""
ID_PREFIX = "orphan::"
DOCTEST_SUFFIX = "::doctest"


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One unreached module."""

    path: str
    name: str
    kind: str
    parents: tuple[str, ...] = ()
    """The files that import it directly."""
    duplicates: tuple[str, ...] = ()
    """The other modules with the same content."""
    reexport_only: bool = False
    via: tuple[str, ...] = ()
    """For an isolated module: the orphans (or redundant modules) whose imports reach
    it (empty: none does, e.g. an import cycle no test enters)."""
    unsure: tuple[str, ...] = ()
    """Why the graph is unsure about this module's own imports."""

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "name": self.name, "kind": self.kind,
            "parents": list(self.parents), "duplicates": list(self.duplicates),
            "reexport_only": self.reexport_only, "via": list(self.via),
            "unsure": list(self.unsure),
        }  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Result:
    """What ``mtest orphans`` tells."""

    modules: tuple[Entry, ...]
    """The listed modules, by path."""
    hidden: int = 0
    """Isolated modules only listed orphans reach, not listed (without ``recursive``)."""
    project: int = 0
    """The project's modules (neither tests nor ``NOT_MODULES``)."""
    tests: int = 0
    """The test files and conftests the search starts from."""
    reached: int = 0
    """The project's modules the tests reach."""
    unsure: tuple[str, ...] = ()
    """Modules the tests reach that the graph is unsure about: any orphan may be imported
    at runtime by one of them (empty: the graph is sure of everything the tests reach)."""
    recursive: bool = False
    counts: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "recursive": self.recursive,
            "project_modules": self.project,
            "test_files": self.tests,
            "reached": self.reached,
            "counts": {k: self.counts.get(k, 0) for k in KINDS},
            "hidden": self.hidden,
            "unsure_reached": list(self.unsure),
            "modules": [e.to_json() for e in self.modules],
        }


def not_modules_for(rootdir: Path, gates_dir: Path) -> tuple[str, ...]:
    """``NOT_MODULES``, and the gates directory when it is under the rootdir and not
    hidden (``--gates-dir gates``): mtest's own files are not the project's."""
    rel = relative(rootdir.resolve(), gates_dir.resolve())
    inside = rel is not None and rel != "."
    return (*NOT_MODULES, f"{rel}/*") if inside else NOT_MODULES


def _matches(path: str, patterns: Sequence[str]) -> bool:
    base = path.rpartition("/")[2]
    return any(fnmatch.fnmatch(path if "/" in p else base, p) for p in patterns)


def classify(
    graph: Graph,
    *,
    recursive: bool = False,
    test_files: Sequence[str] = TEST_FILES,
    not_modules: Sequence[str] = NOT_MODULES,
) -> Result:
    """The project's modules no test or conftest reaches through ``graph``, classified."""
    paths = sorted(graph.modules)
    starts = [p for p in paths if is_test_file(p, test_files)]
    project = [p for p in paths if not is_test_file(p, test_files) and not _matches(p, not_modules)]
    reached = graph.reaches(starts)
    unreached = [p for p in project if p not in reached]
    by_digest: dict[str, list[str]] = {}
    for path in project:
        digest = graph.modules[path].digest
        if digest and digest != EMPTY_DIGEST:
            by_digest.setdefault(digest, []).append(path)
    entries = {p: _entry(graph, p, by_digest) for p in unreached}
    # The listed modules an isolated one may be reached from: orphans, and redundant ones.
    roots = [p for p, e in entries.items() if e.kind != ISOLATED]
    via: dict[str, list[str]] = {}
    for root in roots:
        for target in sorted(graph.reaches([root]) - {root}):
            if target in entries:
                via.setdefault(target, []).append(root)
    listed: list[Entry] = []
    hidden = 0
    for path, entry in entries.items():
        if entry.kind == ISOLATED:
            entry = dataclasses.replace(entry, via=tuple(via.get(path, ())))
            if entry.via and not recursive:
                hidden += 1
                continue
        listed.append(entry)
    counts = {k: sum(1 for e in entries.values() if e.kind == k) for k in KINDS}
    return Result(
        modules=tuple(listed), hidden=hidden, project=len(project), tests=len(starts),
        reached=len(project) - len(unreached), recursive=recursive, counts=counts,
        unsure=tuple(sorted(p for p in reached if p in graph.modules and graph.modules[p].unsure)),
    )  # fmt: skip


def _entry(graph: Graph, path: str, by_digest: Mapping[str, list[str]]) -> Entry:
    node = graph.modules[path]
    parents = tuple(sorted(graph.importers(path)))
    same = tuple(p for p in by_digest.get(node.digest, ()) if p != path)
    # An empty module or one with only a docstring "only re-exports" nothing.
    reexport = node.reexport_only and bool(node.refs)
    kind = REDUNDANT if same or reexport else ORPHAN if not parents else ISOLATED
    return Entry(path=path, name=node.name, kind=kind, parents=parents, duplicates=same,
                 reexport_only=reexport, unsure=node.unsure)  # fmt: skip


def text_lines(result: Result) -> list[str]:
    """The listing as ``mtest orphans`` prints it (the summary line is the caller's)."""
    lines: list[str] = []
    for entry in result.modules:
        lines.append(f"{entry.path} ({entry.name}): {entry.kind}")
        if entry.parents:
            lines.append(f"  imported by {', '.join(entry.parents)}")
        if entry.duplicates:
            lines.append(f"  same content as {', '.join(entry.duplicates)}")
        if entry.reexport_only:
            lines.append("  only re-exports")
        if entry.via:
            lines.append(f"  reached only via {', '.join(entry.via)}")
        lines.extend(f"  unsure: {reason}" for reason in entry.unsure)
    if result.hidden:
        lines.append(
            f"{result.hidden} more module(s) only these orphans import: --recursive lists them"
        )
    if result.unsure:
        lines.append(
            f"not certain: {len(result.unsure)} module(s) the tests reach import dynamically "
            f"(any orphan may be imported at runtime): {', '.join(result.unsure)}"
        )
    return lines


def summary_line(result: Result) -> str:
    c = result.counts
    return (
        f"mtest orphans: {result.reached} of {result.project} module(s) reached from "
        f"{result.tests} test file(s); {c.get(ORPHAN, 0)} orphan, {c.get(ISOLATED, 0)} isolated, "
        f"{c.get(REDUNDANT, 0)} redundant" + (" (not certain)" if result.unsure else "")
    )


# --- the import check of --include-orphans --------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Check:
    """One module to import: its path (repository-relative), dotted name, and whether
    its doctests run too."""

    path: str
    name: str
    doctests: bool = False


def checks(
    result: Result, graph: Graph, *, doctests: bool, sources: Mapping[str, str]
) -> list[Check]:
    """What ``--include-orphans`` imports: every listed module; with ``doctests``
    (``--doctest-modules``) the doctests of those whose source has a ``>>>``."""
    return [
        Check(path=e.path, name=graph.modules[e.path].name,
              doctests=doctests and ">>>" in sources.get(e.path, ""))
        for e in result.modules
    ]  # fmt: skip


def without_selection(args: Sequence[str]) -> tuple[str, ...]:
    """pytest's arguments without ``-k``, ``-m`` and ``--deselect`` (and their values):
    they select the project's tests, and would deselect the generated checks."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("--"):
            name, eq, _ = arg.partition("=")
            valued = not eq and name in VALUE_LONGS and i < len(args)
            value = args[i : i + 1] if valued and not args[i].startswith("-") else []
            if name != "--deselect":
                out.extend([arg, *value])
            i += len(value)
            continue
        at = next((n for n, c in enumerate(arg[1:], 1) if c in VALUE_SHORTS), None)
        if arg == "-" or not arg.startswith("-") or at is None:
            out.append(arg)
            continue
        takes = at == len(arg) - 1 and i < len(args)
        if arg[at] in "km":
            out.extend([f"-{arg[1:at]}"] if at > 1 else [])
        else:
            out.extend([arg, *args[i : i + 1]] if takes else [arg])
        i += 1 if takes else 0
    return tuple(out)


def check_ids(checks_: Iterable[Check], node_file: str) -> dict[str, str]:
    """The generated file's node ids (``node_file``: its rootdir-relative path) → the
    records' ids."""
    ids: dict[str, str] = {}
    for number, check in enumerate(checks_):
        ids[f"{node_file}::test_import_{number}"] = f"{ID_PREFIX}{check.path}"
        if check.doctests:
            ids[f"{node_file}::test_doctest_{number}"] = f"{ID_PREFIX}{check.path}{DOCTEST_SUFFIX}"
    return ids


_CHECK_HEAD = '''\
"""Generated by mtest --include-orphans: import checks of modules no test reaches."""

import doctest
import importlib
import importlib.util
import sys

ROOT = {root!r}


def _load(path, name):
    file = ROOT + "/" + path
    old = sys.modules.get(name)
    if old is not None and getattr(old, "__file__", None) == file:
        return old
    parts, segs = name.split("."), path.split("/")
    package = segs[-1] == "__init__.py"
    # The directory the dotted name starts from (above the rootdir when it is a package).
    keep = len(segs) - len(parts) - (1 if package else 0)
    base = "/".join([ROOT, *segs[:keep]]) if keep > 0 else ROOT
    for _ in range(-keep):
        base = base.rpartition("/")[0] or "/"
    if base not in sys.path:
        sys.path.insert(0, base)
    if len(parts) > 1:
        importlib.import_module(".".join(parts[:-1]))
    where = [file.rpartition("/")[0]] if package else None
    spec = importlib.util.spec_from_file_location(name, file, submodule_search_locations=where)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _doctests(path, name):
    module = _load(path, name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    out = []
    for test in doctest.DocTestFinder().find(module):
        runner.run(test, out=out.append)
    failed, tried = runner.summarize(verbose=False)
    if failed:
        head = f"{{failed}} of {{tried}} doctest example(s) failed"
        raise AssertionError(head + "\\n" + "".join(out))
'''


def check_file(root: str, checks_: Sequence[Check]) -> str:
    """The source of the pytest file that imports each of ``checks_`` (``root``: the
    rootdir, absolute POSIX)."""
    parts = [_CHECK_HEAD.format(root=root)]
    for number, check in enumerate(checks_):
        args = f"{check.path!r}, {check.name!r}"
        parts.append(f"\n\ndef test_import_{number}():\n    _load({args})\n")
        if check.doctests:
            parts.append(f"\n\ndef test_doctest_{number}():\n    _doctests({args})\n")
    return "".join(parts)
