"""The project's static import graph: which of its files each file imports (issue 13).

Read with ``ast`` (``supervisor.importscan``), never by importing user code.
Nodes are keyed by repository-relative POSIX path, so two ``utils.py`` in
different packages never collide; ``ModuleMap`` turns the dotted names the
sources use into those paths. Top-level names are found under the rootdir,
under ``src/`` when it holds Python files, and, for test files and
``conftest.py``, under the directory pytest's default ``prepend`` import mode
puts on ``sys.path`` (the first ancestor without ``__init__.py``). Directories
without ``__init__.py`` are PEP 420 namespace packages: their modules have
names, the directory itself has no file.

An edge ``a → b`` means importing ``a`` may run ``b``: ``b`` is named by an
import in ``a`` (or is one of the packages around such a module, or one of
``a``'s own packages, whose ``__init__`` runs first). A name several files answer
to (``helpers`` in two test directories without ``__init__.py``) gives an edge
to each: which one Python imports depends on ``sys.path`` order and on
``sys.modules``. What cannot be resolved statically makes a module *unsure*
(``Node.unsure``): later stages must assume it may import anything.

Use::

    graph = importgraph.current(rootdir, store)   # loads, updates and saves .gates/importgraph.json
    graph.reaches(["tests/test_api.py"])           # every file that test may run
    graph.importers("src/pkg/core.py")             # who imports it directly
    graph.reached_by(["src/pkg/core.py"])          # every file whose import may run it

``current`` re-parses only the files whose content (or module name) changed.
``docs/design.md`` ("Import graph") and ``docs/formats.md`` have the rules and the format.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from supervisor.importscan import ANY_SUBMODULE, Parsed, parse, prefixes
from supervisor.jsonshape import as_object, check_version, strs_field
from supervisor.model import FORMAT_VERSION
from supervisor.store import IMPORT_GRAPH, Store

__all__ = [
    "Graph", "ModuleMap", "Node", "Parsed", "build", "current", "from_sources",
    "module_map", "parse", "project_files",
]  # fmt: skip

TEST_FILES = ("test_*.py", "*_test.py", "conftest.py")
"""pytest's default ``python_files`` and conftests: imported under the ``prepend`` rule."""
SKIP_DIRS = frozenset({".gates", ".git", "build", "dist", "node_modules", "__pycache__"})
"""Directories ``project_files`` never enters (also: hidden ones, ``*.egg-info``, virtualenvs)."""
SRC = "src"


# --- names and paths ----------------------------------------------------------------


@dataclass(frozen=True)
class ModuleMap:
    """Dotted module names ↔ repository-relative POSIX paths."""

    by_name: Mapping[str, frozenset[str]]
    """Each dotted name → the files that answer to it (usually one)."""
    by_path: Mapping[str, tuple[str, ...]]
    """Each file → its names, the one under the deepest root first (``name``)."""

    def paths(self, name: str) -> frozenset[str]:
        return self.by_name.get(name, frozenset())

    def name(self, path: str) -> str:
        """The name Python gives the file when imported from its deepest root."""
        names = self.by_path.get(path, ())
        return names[0] if names else path.removesuffix(".py").replace("/", ".")

    def names(self, path: str) -> tuple[str, ...]:
        return self.by_path.get(path, ())

    def submodules(self, package: str) -> frozenset[str]:
        """The names one level below ``package`` that some file answers to."""
        return self._children.get(package, frozenset())

    @cached_property
    def _children(self) -> Mapping[str, frozenset[str]]:
        children: dict[str, set[str]] = {}
        for name in self.by_name:
            parent = name.rpartition(".")[0]
            if parent:
                children.setdefault(parent, set()).add(name)
        return {p: frozenset(c) for p, c in children.items()}


def is_package(path: str) -> bool:
    return path == "__init__.py" or path.endswith("/__init__.py")


def is_test_file(path: str, patterns: Sequence[str] = TEST_FILES) -> bool:
    base = path.rpartition("/")[2]
    return any(fnmatch.fnmatch(base, pattern) for pattern in patterns)


def relative(root: Path, file: Path) -> str | None:
    """``file`` (absolute, or relative to ``root``) as a POSIX path under ``root``."""
    rel = os.path.relpath(file if file.is_absolute() else root / file, root)
    posix = Path(rel).as_posix()
    return None if posix == ".." or posix.startswith("../") else posix


def module_map(
    root: Path, files: Iterable[Path], *, test_files: Sequence[str] = TEST_FILES
) -> ModuleMap:
    """The names of ``files`` (every ``.py`` file of the project: whether a directory is a
    package is read from this list, not from the disk). ``test_files``: the name patterns
    of the files pytest imports under its ``prepend`` rule (``python_files``, conftests)."""
    paths = sorted({r for f in files if (r := relative(root, f)) is not None})
    return _map_of(paths, root, test_files)


def _map_of(paths: list[str], root: Path, test_files: Sequence[str]) -> ModuleMap:
    present = set(paths)
    roots: set[tuple[str, tuple[str, ...]]] = {("", ())}
    if any(p.startswith(f"{SRC}/") for p in paths):
        roots.add((SRC, ()))
    roots.update(_basedir(p, present, root) for p in paths if is_test_file(p, test_files))
    prefixes_at: dict[str, list[tuple[str, ...]]] = {}
    # At one directory, the root above the rootdir (a prefixed one) first.
    for directory, prefix in sorted(roots, key=lambda r: -len(r[1])):
        prefixes_at.setdefault(directory, []).append(prefix)
    by_name: dict[str, set[str]] = {}
    by_path: dict[str, tuple[str, ...]] = {}
    for path in paths:
        dirs = _parts(path)[:-1]
        under = (("/".join(dirs[:k]), prefix) for k in range(len(dirs), -1, -1)
                 for prefix in prefixes_at.get("/".join(dirs[:k]), ()))  # fmt: skip
        names = tuple(dict.fromkeys(n for r in under if (n := _name_under(path, *r))))
        by_path[path] = names
        for name in names:
            by_name.setdefault(name, set()).add(path)
    return ModuleMap({n: frozenset(p) for n, p in by_name.items()}, by_path)


def _parts(directory: str) -> list[str]:
    return directory.split("/") if directory else []


def _basedir(path: str, present: set[str], root: Path) -> tuple[str, tuple[str, ...]]:
    """pytest's ``prepend`` root for a test file: the first ancestor directory without
    ``__init__.py``; above the rootdir (which is then a package) it is named by prefix."""
    parts = _parts(path)[:-1]
    while parts and "/".join([*parts, "__init__.py"]) in present:
        parts.pop()
    if not parts and "__init__.py" in present:
        return "", (root.resolve().name,)
    return "/".join(parts), ()


def _name_under(path: str, directory: str, prefix: tuple[str, ...]) -> str:
    head = _parts(directory)
    parts = _parts(path)
    if parts[: len(head)] != head or not path.endswith(".py"):
        return ""
    rest = [*prefix, *parts[len(head) :]]
    rest[-1] = rest[-1].removesuffix(".py")
    if rest[-1] == "__init__":
        rest.pop()
    return ".".join(rest)


# --- the graph ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Node:
    """One project file and what it imports."""

    path: str
    name: str
    imports: frozenset[str] = frozenset()
    """Project files (paths) it imports directly."""
    unsure: tuple[str, ...] = ()
    """Why its imports may go beyond ``imports`` (empty: the graph is sure)."""
    reexport_only: bool = False
    digest: str = ""
    """SHA-256 of its content (hex); ``""`` when it could not be read."""
    refs: frozenset[str] = frozenset()
    """The dotted names its source may import (``Parsed.refs``), kept for re-resolving."""
    star: frozenset[str] = frozenset()
    exports: tuple[str, ...] | None = None

    def parsed(self) -> Parsed:
        return Parsed(refs=self.refs, star=self.star, exports=self.exports,
                      unsure=self.unsure, reexport_only=self.reexport_only)  # fmt: skip


@dataclass(frozen=True)
class Graph:
    """The import graph: nodes keyed by path."""

    modules: Mapping[str, Node] = field(default_factory=dict)

    def reaches(self, paths: Iterable[str]) -> frozenset[str]:
        """Everything importing ``paths`` may run: the starts and all they import, transitively."""
        seen = set(paths)
        todo = list(seen)
        while todo:
            node = self.modules.get(todo.pop())
            for target in node.imports if node else ():
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        return frozenset(seen)

    def importers(self, path: str) -> frozenset[str]:
        """The files that import ``path`` directly."""
        return self._reverse.get(path, frozenset())

    def reached_by(self, paths: Iterable[str]) -> frozenset[str]:
        """Every file whose import may run one of ``paths``: the starts and, transitively,
        their importers (``reaches`` backwards)."""
        seen = set(paths)
        todo = list(seen)
        while todo:
            for importer in self.importers(todo.pop()):
                if importer not in seen:
                    seen.add(importer)
                    todo.append(importer)
        return frozenset(seen)

    def unsure_paths(self) -> frozenset[str]:
        return frozenset(p for p, n in self.modules.items() if n.unsure)

    @cached_property
    def _reverse(self) -> Mapping[str, frozenset[str]]:
        reverse: dict[str, set[str]] = {}
        for path, node in self.modules.items():
            for target in node.imports:
                reverse.setdefault(target, set()).add(path)
        return {t: frozenset(s) for t, s in reverse.items()}

    def to_json(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION,
                "modules": {p: _node_json(n) for p, n in sorted(self.modules.items())}}  # fmt: skip

    @classmethod
    def from_json(cls, data: object) -> Graph:
        """Raises ``ValueError`` on anything malformed (the store reads it as absent)."""
        top = as_object(data, "importgraph.json")
        check_version(top, "importgraph.json")
        modules = as_object(top.get("modules"), "importgraph.json: modules")
        return cls({p: _node_from_json(p, raw) for p, raw in modules.items()})


def _node_json(node: Node) -> dict[str, Any]:
    return {
        "name": node.name,
        "digest": node.digest,
        "imports": sorted(node.imports),
        "unsure": list(node.unsure),
        "reexport_only": node.reexport_only,
        "refs": sorted(node.refs),
        "star": sorted(node.star),
        "exports": None if node.exports is None else list(node.exports),
    }


def _node_from_json(path: str, raw: object) -> Node:
    what = f"importgraph.json: `{path}`"
    data = as_object(raw, what)
    name, digest, reexport = data.get("name"), data.get("digest"), data.get("reexport_only")
    if not isinstance(name, str) or not isinstance(digest, str) or type(reexport) is not bool:
        raise ValueError(f"{what}: `name`, `digest` or `reexport_only` has the wrong type")
    exports = None if data.get("exports") is None else strs_field(data, "exports", what)
    return Node(
        path=path,
        name=name,
        digest=digest,
        reexport_only=reexport,
        imports=frozenset(strs_field(data, "imports", what)),
        unsure=strs_field(data, "unsure", what),
        refs=frozenset(strs_field(data, "refs", what)),
        star=frozenset(strs_field(data, "star", what)),
        exports=exports,
    )


# --- building -------------------------------------------------------------------------


def from_sources(
    sources: Mapping[str, bytes | None],
    *,
    root: Path = Path("."),
    cached: Mapping[str, Node] | None = None,
    test_files: Sequence[str] = TEST_FILES,
) -> Graph:
    """The graph of ``sources`` (repository-relative path → content, ``None`` when it
    could not be read). A ``cached`` node with the same digest and name is reused
    unparsed; only the resolution of names to paths is done again."""
    names = _map_of(sorted(sources), root, test_files)
    parsed: dict[str, tuple[str, Parsed]] = {}
    for path, data in sources.items():
        digest = "" if data is None else hashlib.sha256(data).hexdigest()
        old = (cached or {}).get(path)
        if old is not None and digest and old.digest == digest and old.name == names.name(path):
            parsed[path] = (digest, old.parsed())
        else:
            parsed[path] = (digest, _parse_bytes(data, names.name(path), is_package(path)))
    return Graph(
        {path: _node(path, digest, p, names, parsed) for path, (digest, p) in parsed.items()}
    )


def _parse_bytes(data: bytes | None, module: str, package: bool) -> Parsed:
    if data is None:
        return Parsed(unsure=("cannot be read",))
    try:
        source = importlib.util.decode_source(data)
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        return Parsed(unsure=(f"does not parse: cannot decode it ({exc})",))
    return parse(source, module=module, is_package=package)


def _node(
    path: str, digest: str, parsed: Parsed, names: ModuleMap,
    everything: Mapping[str, tuple[str, Parsed]],
) -> Node:  # fmt: skip
    name = names.name(path)
    wanted = set(parsed.refs) | set(prefixes(name)[:-1])
    for module in parsed.star:
        wanted.update(prefixes(module))
        for target in names.paths(module):
            exported = everything[target][1].exports if is_package(target) else None
            for export in exported or ():
                # A non-literal __all__ may name any submodule (Python imports those).
                wanted.update(names.submodules(module) if export == ANY_SUBMODULE
                              else {f"{module}.{export}"})  # fmt: skip
    imports = {p for n in wanted for p in names.paths(n)} - {path}
    return Node(path=path, name=name, imports=frozenset(imports), unsure=parsed.unsure,
                reexport_only=parsed.reexport_only, digest=digest, refs=parsed.refs,
                star=parsed.star, exports=parsed.exports)  # fmt: skip


def build(
    root: Path,
    files: Iterable[Path],
    *,
    cached: Mapping[str, Node] | None = None,
    test_files: Sequence[str] = TEST_FILES,
) -> Graph:
    """The graph of ``files`` (absolute, or relative to ``root``; those outside it are
    left out), reusing ``cached`` nodes whose file did not change."""
    sources: dict[str, bytes | None] = {}
    for file in files:
        rel = relative(root, file)
        if rel is not None:
            sources[rel] = _read(root / rel)
    return from_sources(sources, root=root, cached=cached, test_files=test_files)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def current(
    root: Path,
    store: Store,
    files: Iterable[Path] | None = None,
    *,
    test_files: Sequence[str] = TEST_FILES,
) -> Graph:
    """The graph of ``files`` (default: ``project_files(root)``), using and updating
    ``.gates/importgraph.json``; a damaged cache is warned about and rebuilt."""
    old: Graph | None = store.load(IMPORT_GRAPH, Graph.from_json)
    graph = build(root, project_files(root) if files is None else files,
                  cached=old.modules if old else None, test_files=test_files)  # fmt: skip
    if graph != old:
        store.write_json(IMPORT_GRAPH, graph.to_json())
    return graph


def project_files(root: Path) -> list[Path]:
    """The ``.py`` files under ``root``, sorted, outside what is never the project's own
    (``SKIP_DIRS``, hidden directories, ``*.egg-info``, virtualenvs)."""
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        subdirs[:] = sorted(d for d in subdirs if not _skipped(here / d))
        found.extend(here / f for f in sorted(files) if f.endswith(".py"))
    return found


def _skipped(directory: Path) -> bool:
    name = directory.name
    return (
        name in SKIP_DIRS
        or name.startswith(".")
        or name.endswith(".egg-info")
        or (directory / "pyvenv.cfg").exists()
    )
