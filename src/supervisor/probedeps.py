"""Which local files a test file's listing may depend on (loaded by the probe).

Standard library only: the probe loads this file beside itself, inside the
project's interpreter. A test file's listing (its tests, markers and
parametrizations) is what its module body produced when it was imported, and
that body can read any module it imports. So the dependencies of a test file
are the project's own modules it reaches by ``import`` statements, followed
transitively (read from each module's source, resolved through
``sys.modules``), plus every local module that was first imported while the
file was collected (which catches ``importlib.import_module`` and the like).

"Local" means: a file under the rootdir, outside the interpreter's prefixes
and site directories (a virtual environment inside the project is not
local), and not the probe's own modules. The result is a superset of what
the listing can depend on, in the common cases; ``docs/design.md`` ("Test
index") says where it is not (a conftest's own imports, data files read at
import time).
"""

from __future__ import annotations

import contextlib
import os
import re
import site
import sys
from collections.abc import Iterable
from types import ModuleType


def outside_dirs() -> tuple[str, ...]:
    """Directories whose modules are never the project's: prefixes and site directories."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    with contextlib.suppress(AttributeError):  # an old virtualenv's site module
        dirs.update(site.getsitepackages())
    user = getattr(site, "USER_SITE", None)
    if user:
        dirs.add(user)
    return tuple(sorted(os.path.abspath(d) + os.sep for d in dirs if d))


class Deps:
    """The local-dependency finder of one child (caches each module's imports)."""

    def __init__(self, rootdir: str, outside: tuple[str, ...] | None = None) -> None:
        self.root = os.path.abspath(rootdir) + os.sep
        self.outside = outside_dirs() if outside is None else outside
        self.imports: dict[str, tuple[str, ...]] = {}
        """Module name → the module names its source imports (those in ``sys.modules``)."""

    def local_path(self, module: ModuleType | None) -> str | None:
        """The module's file relative to the rootdir (``/``-separated), if it is local."""
        if module is None or module.__name__.startswith("_mtest_"):
            return None
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or not path:
            return None
        path = os.path.abspath(path)
        # A venv inside the project is under the rootdir but is not the project.
        if not path.startswith(self.root) or path.startswith(self.outside):
            return None
        return path[len(self.root) :].replace(os.sep, "/")

    def snapshot(self) -> frozenset[str]:
        """The names of the modules imported so far."""
        return frozenset(sys.modules)

    def of(self, module: ModuleType | None, before: frozenset[str]) -> list[str]:
        """The local files a test module's listing may depend on, sorted; ``before``: the
        modules that were imported before its collection started."""
        found: set[str] = set()
        for name in set(sys.modules) - before:
            path = self.local_path(sys.modules.get(name))
            if path is not None:
                found.add(path)
        if module is not None:
            found.update(self.closure(module.__name__))
            own = self.local_path(module)
            found.discard(own or "")
        return sorted(found)

    def closure(self, name: str) -> set[str]:
        """The local files of the modules ``name`` reaches by import statements."""
        seen: set[str] = set()
        files: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            path = self.local_path(sys.modules.get(current))
            if path is None and current != name:
                continue  # not the project's: its imports are not followed
            if path is not None:
                files.add(path)
            todo.extend(self._imports_of(current))
        return files

    def _imports_of(self, name: str) -> tuple[str, ...]:
        if name not in self.imports:
            module = sys.modules.get(name)
            path = getattr(module, "__file__", None) if module is not None else None
            source = _read(path) if isinstance(path, str) and path.endswith(".py") else None
            package = getattr(module, "__package__", None) or ""
            if source is None:
                self.imports[name] = ()
            else:
                names = imported_names(source, package)
                self.imports[name] = tuple(n for n in names if n in sys.modules)
        return self.imports[name]


IMPORT_LINE = re.compile(
    rb"^[ \t]*(?:from[ \t]+(?P<base>\.*[\w.]*)[ \t]+import[ \t]*(?P<names>\([^)]*\)|[^\n#;]*)"
    rb"|import[ \t]+(?P<modules>[^\n#;]*))",
    re.MULTILINE,
)
"""An ``import`` statement at the start of a line (also inside a string: more names,
never fewer). A regular expression, not ``ast``: parsing a 200 KB generated data
module costs a tenth of a second, and only import statements matter here."""


def imported_names(source: bytes, package: str) -> list[str]:
    """Every module name an ``import`` statement in ``source`` may bind: ``import a.b``
    gives ``a`` and ``a.b``; ``from .m import x`` gives the resolved ``m`` and ``m.x``
    (``x`` may be a submodule)."""
    names: list[str] = []
    for match in IMPORT_LINE.finditer(source):
        if match["modules"] is not None:
            for part in match["modules"].split(b","):
                module = part.strip().split()[0].decode("ascii", "replace") if part.strip() else ""
                if _dotted(module):
                    names.extend(_prefixes(module))
            continue
        raw = match["base"].decode("ascii", "replace")
        level = len(raw) - len(raw.lstrip("."))
        base = _resolve(raw[level:] or None, level, package)
        if base is None or not _dotted(base):
            continue
        names.extend(_prefixes(base))
        listed = match["names"].strip(b"() \t\r\n\\")
        for part in listed.replace(b"\\\n", b" ").split(b","):
            words = part.split()
            name = words[0].decode("ascii", "replace") if words else ""
            if name and name != "*" and _dotted(name):
                names.append(f"{base}.{name}")
    return list(dict.fromkeys(names))


def _dotted(name: str) -> bool:
    return all(part.isidentifier() for part in name.split("."))


def _prefixes(dotted: str) -> Iterable[str]:
    parts = dotted.split(".")
    return (".".join(parts[: n + 1]) for n in range(len(parts)))


def _resolve(module: str | None, level: int, package: str) -> str | None:
    """The absolute name of ``from <level dots><module> import ...`` in ``package``."""
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts) or (not parts and level):
        return None
    base = parts[: len(parts) - (level - 1)]
    if module:
        base.append(module)
    return ".".join(base) or None


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None
