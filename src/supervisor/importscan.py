"""One module's imports, read with ``ast`` from its source: pure, no user code runs.

``parse(source, module=..., is_package=...)`` returns the absolute dotted names
the module may import (``refs``: each with its parent packages, whose
``__init__`` runs first), the modules it star-imports, its literal ``__all__``,
whether it only re-exports, and ``unsure``: one line per thing that may import
what the source does not name (a non-literal ``import_module``, an ``exec``,
``sys.path`` changes, loading a file by path). Which of these names are project
modules is ``supervisor.importgraph``'s business: a name no project file answers
to (``os``, ``pytest``, ``pkg.CONSTANT``) simply gives no edge.

Every import counts, wherever it is: inside functions, classes, ``try`` and
``if TYPE_CHECKING:`` alike (a function may run, and selection must not miss it).
Strings that pytest or ``unittest.mock`` import count too: ``pytest_plugins``,
``pytest.importorskip("m")``, ``patch("pkg.mod.attr")``,
``monkeypatch.setattr("pkg.mod.attr", ...)``; so do submodules used through an
imported name (``import p`` … ``p.q.f()`` depends on ``p.q``).
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass

SHOWN_CHARS = 60
"""An unsure reason shows the call it is about, cut to this many characters."""

EXEC_CALLS = frozenset({"exec", "eval", "builtins.exec", "builtins.eval"})
BY_PATH = frozenset(
    {"spec_from_file_location", "SourceFileLoader", "SourcelessFileLoader", "load_source",
     "run_path", "load_module"}
)  # fmt: skip
"""Call names (last part) that load code from a file path, out of the graph's sight."""
IMPORT_STATE = ("sys.path", "sys.meta_path", "sys.path_hooks", "__path__")
"""Where Python looks for modules: changing one hides imports from the graph (``__path__``
of a package: where its submodules are found, e.g. ``pkgutil.extend_path``)."""
MUTATORS = frozenset({"insert", "append", "extend", "remove", "clear", "pop", "__setitem__"})
PATCH_CALLS = frozenset({"patch", "setattr", "delattr"})
"""``mock.patch("a.b.c")`` and ``monkeypatch.setattr("a.b.c", v)`` import ``a.b`` (the
builtin ``setattr`` is not one: only a call through an object counts)."""
ANY_SUBMODULE = "*"
"""In ``Parsed.exports``: ``__all__`` is not a literal list, so ``from pkg import *`` may
import any submodule of the package."""


@dataclass(frozen=True, kw_only=True)
class Parsed:
    """What one module's source says about its imports."""

    refs: frozenset[str] = frozenset()
    """Absolute dotted names that may be modules it imports, parent packages included."""
    star: frozenset[str] = frozenset()
    """Modules it imports with ``from m import *`` (``m``'s ``__all__`` decides the rest)."""
    exports: tuple[str, ...] | None = None
    """Its module-level ``__all__`` (``None``: it has none); ``ANY_SUBMODULE`` among them when
    some part of it is not a literal list or tuple of strings."""
    unsure: tuple[str, ...] = ()
    """Why its imports are not all known, one line each (``line 12: ...``)."""
    reexport_only: bool = False
    """Its body is only imports, ``__all__``, a docstring and ``pass``."""


def parse(source: str, *, module: str, is_package: bool) -> Parsed:
    """The imports of ``source``, the code of ``module`` (a package's ``__init__`` when
    ``is_package``: relative imports are anchored at the package itself)."""
    try:
        with warnings.catch_warnings():
            # `"\d"` in the user's code: a SyntaxWarning is theirs to see, not mtest's to print.
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except SyntaxError as exc:
        return Parsed(unsure=(f"does not parse: line {exc.lineno}: {exc.msg}",))
    except (ValueError, RecursionError, MemoryError) as exc:
        return Parsed(unsure=(f"does not parse: {type(exc).__name__}: {exc}",))
    scan = _Scan(module, is_package)
    try:
        scan.visit(tree)
    except RecursionError:
        return Parsed(unsure=("does not parse: nested too deeply to read",))
    for name in scan.used():
        scan.add(name)
    return Parsed(
        refs=frozenset(scan.refs),
        star=frozenset(scan.star),
        exports=_exports(tree),
        unsure=tuple(scan.unsure),
        reexport_only=all(_reexport_stmt(stmt) for stmt in tree.body),
    )


def prefixes(name: str) -> list[str]:
    """``a.b.c`` → ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages first."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _exports(tree: ast.Module) -> tuple[str, ...] | None:
    """``__all__`` as the module body builds it: assigned, ``+=``, ``.extend``, ``.append``."""
    found: list[str] | None = None
    for stmt in tree.body:
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign | ast.AnnAssign) and _assigns(stmt, "__all__"):
            found, value = [], stmt.value
        elif isinstance(stmt, ast.AugAssign) and _assigns(stmt, "__all__"):
            value = stmt.value
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            if _dotted(stmt.value.func) not in ("__all__.extend", "__all__.append"):
                continue
            value = stmt.value.args[0] if len(stmt.value.args) == 1 else None
        else:
            continue
        names = _literal_strs(value)
        found = [*(found or ()), *(names if names is not None else (ANY_SUBMODULE,))]
    return None if found is None else tuple(dict.fromkeys(found))


def _reexport_stmt(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Import | ast.ImportFrom | ast.Pass):
        return True
    if isinstance(stmt, ast.Expr):
        return isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)
    if isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
        return _assigns(stmt, "__all__")
    return False


def _assigns(stmt: ast.Assign | ast.AnnAssign | ast.AugAssign, name: str) -> bool:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    return bool(targets) and all(isinstance(t, ast.Name) and t.id == name for t in targets)


def _literal_strs(node: ast.expr | None) -> tuple[str, ...] | None:
    """A literal string, list or tuple of strings as a tuple; anything else ``None``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value,)
    if isinstance(node, ast.List | ast.Tuple):
        values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
        strings = [v for v in values if isinstance(v, str)]
        return tuple(strings) if len(strings) == len(node.elts) else None
    return None


def _dotted(node: ast.expr) -> str:
    """``a.b.c`` for a name or attribute chain; ``""`` for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _shown(node: ast.AST) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


class _Scan(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.refs: set[str] = set()
        self.star: set[str] = set()
        self.unsure: list[str] = []
        self.bound: dict[str, set[str]] = {}
        """Names that imports bind → the dotted names they stand for."""
        self.chains: set[str] = set()
        """Every ``x.y.z`` attribute chain; ``used`` resolves those rooted at a bound name."""

    def used(self) -> set[str]:
        """``import a`` … ``a.b.f()`` uses ``a.b``: a submodule that some other import
        loaded, so the code depends on it although no import here names it."""
        found: set[str] = set()
        for chain in self.chains:
            root, _, rest = chain.partition(".")
            found.update(f"{target}.{rest}" for target in self.bound.get(root, ()))
        return found

    def bind(self, name: str, target: str) -> None:
        self.bound.setdefault(name, set()).add(target)

    def add(self, name: str) -> None:
        if name:
            self.refs.update(prefixes(name))

    def doubt(self, node: ast.expr | ast.stmt, why: str) -> None:
        self.unsure.append(f"line {node.lineno}: {why}")

    def absolute(self, name: str, level: int, node: ast.expr | ast.stmt) -> str | None:
        """``name`` imported ``level`` dots up from this module; ``None`` (unsure) when
        that is above the top-level package."""
        if not level:
            return name
        parts = self.package.split(".") if self.package else []
        if len(parts) < level:
            self.doubt(node, f"relative import {'.' * level}{name} above the top-level package")
            return None
        anchor = ".".join(parts[: len(parts) - level + 1])
        return f"{anchor}.{name}" if name else anchor

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.add(alias.name)
            top = alias.name.partition(".")[0]
            self.bind(alias.asname or top, alias.name if alias.asname else top)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _dotted(node)
        if chain:
            self.chains.add(chain)  # only names and attributes inside: nothing else to visit
        else:
            self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self.absolute(node.module or "", node.level, node)
        if base is None:
            return
        self.add(base)
        for alias in node.names:
            if alias.name == "*":
                self.star.add(base)
            else:
                self.add(f"{base}.{alias.name}" if base else alias.name)
                self.bind(
                    alias.asname or alias.name, f"{base}.{alias.name}" if base else alias.name
                )

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assignment(node.targets, node.value, node)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._assignment([node.target], node.value, node)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._assignment([node.target], node.value, node)
        self.generic_visit(node)

    def _assignment(self, targets: list[ast.expr], value: ast.expr | None, node: ast.stmt) -> None:
        for target in targets:
            base = target.value if isinstance(target, ast.Subscript) else target
            if _dotted(base) in IMPORT_STATE:
                self.doubt(node, f"`{_shown(node)}` changes where imports are found")
            elif isinstance(target, ast.Name) and target.id == "pytest_plugins":
                names = _literal_strs(value)
                if names is None:
                    self.doubt(node, "pytest_plugins is not a literal string or list of strings")
                for name in names or ():
                    self.add(name)

    def visit_Call(self, node: ast.Call) -> None:
        func = _dotted(node.func)
        # `__import__("importlib").import_module(...)`: no dotted name, still the call.
        last = node.func.attr if isinstance(node.func, ast.Attribute) else func
        if last == "import_module":
            self._import_module(node)
        elif func in ("__import__", "builtins.__import__"):
            self._dunder_import(node)
        elif func in EXEC_CALLS:
            self.doubt(node, f"{func}() runs code that may import anything")
        elif last in BY_PATH and not func.startswith(("self.", "cls.")):
            # `self.load_module(name)` is the class's own method (mypyc has one), not a loader.
            self.doubt(node, f"{_shown(node)} loads code by file path")
        elif func == "site.addsitedir" or (
            func.rpartition(".")[0] in IMPORT_STATE and last in MUTATORS
        ):
            self.doubt(node, f"{_shown(node)} changes where imports are found")
        elif last in ("importorskip", "run_module"):
            self._literal_module(node)
        elif func == "patch" or (last in PATCH_CALLS and "." in func):
            self._patch_target(node)
        self.generic_visit(node)

    def _literal_module(self, node: ast.Call) -> None:
        name = _argument(node, 0, "modname")
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            self.add(name.value)
        else:
            self.doubt(node, f"{_shown(node)} with a non-literal name")

    def _patch_target(self, node: ast.Call) -> None:
        target = node.args[0] if node.args else None
        if isinstance(target, ast.Constant) and isinstance(target.value, str):
            self.add(target.value.rpartition(".")[0])

    def _value(self, node: ast.expr | None) -> str | None:
        """A string argument known statically: a literal, ``__name__``, ``__package__``."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        known = {"__name__": self.module, "__package__": self.package,
                 "__spec__.parent": self.package, "__spec__.name": self.module}  # fmt: skip
        return known.get(_dotted(node)) if node is not None else None

    def _import_module(self, node: ast.Call) -> None:
        name = self._value(_argument(node, 0, "name"))
        if name is None:
            self.doubt(node, f"{_shown(node)} with a non-literal name")
            return
        level = len(name) - len(name.lstrip("."))
        if level:
            package = self._value(_argument(node, 1, "package"))
            if not package:
                self.doubt(node, f"{_shown(node)}: a relative name without a literal package")
                return
            anchor = package.split(".")
            if len(anchor) < level:
                self.doubt(node, f"{_shown(node)}: relative name above the top-level package")
                return
            base = ".".join(anchor[: len(anchor) - level + 1])
            name = f"{base}.{name[level:]}" if name[level:] else base
        self.add(name)

    def _dunder_import(self, node: ast.Call) -> None:
        name = self._value(_argument(node, 0, "name"))
        level_node = _argument(node, 4, "level")
        level = level_node.value if isinstance(level_node, ast.Constant) else level_node
        fromlist_node = _argument(node, 3, "fromlist")
        empty = isinstance(fromlist_node, ast.Constant) and fromlist_node.value is None
        fromlist = () if fromlist_node is None or empty else _literal_strs(fromlist_node)
        if level_node is None:
            level = 0
        if name is None or type(level) is not int or fromlist is None:
            self.doubt(node, f"{_shown(node)} with a non-literal name, fromlist or level")
            return
        base = self.absolute(name, level, node)
        if base is None:
            return
        self.add(base)
        for item in fromlist:
            if item != "*":
                self.add(f"{base}.{item}" if base else item)
