"""``--changed``'s decision (pure): which test files the changes may affect, and why.

``affected(graph, changes, test_files)`` takes the import graph of the working tree
(``supervisor.importgraph``), what changed (``Changes``: ``supervisor.changes`` asks git)
and the collected test files, and returns a ``Decision``. The rule is to never miss: a test
file is selected when its module, or a ``conftest.py`` above it, reaches a changed file
through the graph; the selection widens wherever the graph cannot see, and each widening
says why in one line:

- a ``conftest.py`` → every test file under its directory;
- configuration (``CONFIG_NAMES`` anywhere, any file at the project root) → everything;
- a file that is not Python → the test files in its *area* (the first directory under the
  root, or ``src/<name>``) and those reaching any module there; an area without a module
  (``data/``, ``docs/``) → everything: who reads it cannot be known;
- a module no test file reaches (a plugin, a subprocess, a path may run it), a Python file
  the graph does not hold, a path outside the root → everything;
- a deleted module → the test files reaching a file whose source names it;
- test files reaching a module the graph is unsure about (a non-literal dynamic import,
  ``exec``, a file that does not parse) or one that starts subprocesses: always selected
  when anything changed, since what they run is not known.

``docs/design.md`` ("Changed-code selection") says why each rule is what it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from supervisor import importgraph
from supervisor.importgraph import Graph, is_test_file

__all__ = [
    "CONFIG_NAMES", "Changes", "Decision", "affected", "area_of", "starts",
]  # fmt: skip

CONFIG_NAMES = frozenset(
    {"pyproject.toml", "pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "setup.py",
     "sitecustomize.py", "usercustomize.py"}
)  # fmt: skip
"""Files that configure pytest, mtest or the installed project, wherever they are."""

SUBPROCESS_REFS = ("subprocess", "pty", "asyncio.subprocess", "os.system", "os.popen")
"""A module whose source imports one of these may start a program (``python -m pkg``,
a console script of the project) that runs modules no import names."""

SHOWN_REASONS = 12
"""Reason lines shown; more are summed up in one line."""


@dataclass(frozen=True, kw_only=True)
class Changes:
    """What differs between ``rev`` and the working tree, as root-relative POSIX paths."""

    rev: str
    changed: tuple[str, ...] = ()
    """Files that exist now: modified, added, untracked, the new side of a rename."""
    deleted: tuple[str, ...] = ()
    """Files that are gone: deleted, the old side of a rename."""
    outside: tuple[str, ...] = ()
    """Changed files outside the project root (relative to the repository's top)."""

    @property
    def empty(self) -> bool:
        return not (self.changed or self.deleted or self.outside)


@dataclass(frozen=True, kw_only=True)
class Decision:
    """Which test files ``--changed`` runs, and why."""

    tests: frozenset[str]
    """The selected test files (root-relative), a subset of the collected ones."""
    total: int
    """How many test files were collected."""
    everything: bool = False
    reasons: tuple[str, ...] = ()
    """One line per rule that chose tests, each starting ``--changed:``."""

    def lines(self) -> tuple[str, ...]:
        """The reasons, then ``--changed: N of M test files selected``."""
        count = f"--changed: {len(self.tests)} of {self.total} test file(s) selected"
        return (*self.reasons, count)


# --- what is affected: pure -----------------------------------------------------------


def affected(
    graph: Graph, changes: Changes, test_files: Iterable[str], *, root: Path = Path(".")
) -> Decision:
    """The test files among ``test_files`` that the ``changes`` may affect (module doc).

    ``graph`` is the import graph of the working tree (deleted files are not in it);
    ``root`` only names the rootdir's package when the rootdir itself is one."""
    tests = frozenset(test_files)
    if changes.empty:
        return Decision(tests=frozenset(), total=len(tests),
                        reasons=(f"--changed: nothing changed since `{changes.rev}`",))  # fmt: skip
    rules = _Rules(graph, tests, root)
    for path in changes.outside:
        rules.everything(f"`{path}` changed outside the project root")
    for path in changes.changed:
        rules.path(path, gone=False)
    for path in changes.deleted:
        rules.path(path, gone=True)
    rules.always_selected()
    return rules.decision()


class _Rules:
    """The rules of ``affected``, applied one changed path at a time."""

    def __init__(self, graph: Graph, tests: frozenset[str], root: Path) -> None:
        self.graph = graph
        self.root = root
        self.tests = tests
        # Files the graph names as tests (also those this run did not collect): whether
        # any test reaches a module does not depend on which tests a run collects.
        self.graph_tests = frozenset(p for p in graph.modules if is_test_file(p)) | tests
        self.chosen: set[str] = set()
        self.reasons: list[str] = []
        self.all_reasons: list[str] = []
        self.reached: dict[str, set[str]] = {}
        """Changed modules → the test files that reach them (one summary line)."""
        self._memo: dict[frozenset[str], frozenset[str]] = {}

    # -- per changed path --

    def path(self, path: str, *, gone: bool) -> None:
        """One changed (``gone``: deleted) path: the rule that applies to it."""
        how = "was deleted" if gone else "changed"
        name = path.rpartition("/")[2]
        if path in self.tests and not gone:
            self.chosen.add(path)
        if name in CONFIG_NAMES:
            self.everything(f"`{path}` {how} (configuration)")
        elif name == "conftest.py":
            self.conftest(path, how)
            if gone:
                self.deleted_module(path)
            else:
                self.chosen |= self.reaching([path])  # a test may import a conftest too
        elif "/" not in path and not path.endswith(".py"):
            self.everything(f"`{path}` {how} at the project root")
        elif not path.endswith(".py"):
            self.not_python(path, how)
        elif gone:
            self.deleted_module(path)
        elif path not in self.graph.modules:
            self.everything(f"`{path}` changed and is not in the import graph")
        else:
            self.module(path)

    def conftest(self, path: str, how: str) -> None:
        directory = path.rpartition("/")[0]
        if not directory:
            self.everything(f"`{path}` {how}")
            return
        under = self.under(directory)
        self.chosen |= under
        self.say(f"`{path}` {how}: all {len(under)} test file(s) under {directory}/")

    def not_python(self, path: str, how: str) -> None:
        area = area_of(path)
        modules = [p for p in self.graph.modules if p.startswith(f"{area}/")]
        under = self.under(area)
        if not modules and not under:
            self.everything(f"`{path}` {how} (not Python) where no module is ({area}/)")
            return
        found = under | self.reaching(modules)
        self.chosen |= found
        self.say(f"`{path}` {how} (not Python): the {len(found)} test file(s) under {area}/ "
                 "or reaching a module there")  # fmt: skip

    def module(self, path: str) -> None:
        users = self.reaching([path])
        if path not in self.graph_tests and not (users or self.reaching([path], self.graph_tests)):
            self.everything(
                f"`{path}` changed and no test reaches it through the imports "
                "(a plugin, a subprocess or a path may run it)"
            )
            return
        self.chosen |= users
        self.reached.setdefault(path, set()).update(users)

    def deleted_module(self, path: str) -> None:
        """The files whose source names a deleted module (``refs``, or a star import of
        its package) were its importers; the test files reaching them are chosen."""
        files = [*(Path(p) for p in self.graph.modules), Path(path)]
        names = set(importgraph.module_map(self.root, files).names(path))
        packages = {n.rpartition(".")[0] for n in names} - {""}
        importers = [
            p for p, node in self.graph.modules.items()
            if names & node.refs or packages & node.star
        ]  # fmt: skip
        users = self.reaching(importers)
        if not is_test_file(path) and not (users or self.reaching(importers, self.graph_tests)):
            self.everything(
                f"`{path}` was deleted and no test reached it through the imports "
                "(a plugin, a subprocess or a path may have run it)"
            )
            return
        self.chosen |= users
        if importers:
            self.say(f"`{path}` was deleted: the {len(users)} test file(s) reaching the "
                     f"{len(importers)} file(s) that import it")  # fmt: skip

    # -- whatever changed --

    def always_selected(self) -> None:
        """Test files that reach an unsure module, or one that starts subprocesses."""
        unsure = sorted(self.graph.unsure_paths())
        users = self.reaching(unsure) - self.chosen
        if users:
            first = next(p for p in unsure if self.reaching([p]) & users)
            why = self.graph.modules[first].unsure[0]
            self.chosen |= users
            self.say(f"{len(users)} test file(s) reach modules the import graph is unsure "
                     f"about (first: `{first}`: {why}): always selected")  # fmt: skip
        spawning = sorted(
            p for p, node in self.graph.modules.items()
            if any(r == s or r.startswith(f"{s}.") for r in node.refs for s in SUBPROCESS_REFS)
        )  # fmt: skip
        users = self.reaching(spawning) - self.chosen
        if users:
            first = next(p for p in spawning if self.reaching([p]) & users)
            self.chosen |= users
            self.say(f"{len(users)} test file(s) reach modules that start subprocesses "
                     f"(first: `{first}`): always selected")  # fmt: skip

    # -- helpers --

    def under(self, directory: str) -> frozenset[str]:
        return frozenset(t for t in self.tests if t.startswith(f"{directory}/"))

    def reaching(self, targets: Iterable[str], among: frozenset[str] | None = None) -> set[str]:
        """The test files (of ``among``, default the collected ones) whose module, or a
        ``conftest.py`` above it, reaches one of ``targets`` through the graph."""
        back = self._back(frozenset(targets))
        return {t for t in (self.tests if among is None else among)
                if any(s in back for s in starts(t))}  # fmt: skip

    def _back(self, targets: frozenset[str]) -> frozenset[str]:
        if targets not in self._memo:
            self._memo[targets] = self.graph.reached_by(targets)
        return self._memo[targets]

    def everything(self, why: str) -> None:
        self.all_reasons.append(f"--changed: {why}: all {len(self.tests)} test file(s)")

    def say(self, line: str) -> None:
        self.reasons.append(f"--changed: {line}")

    def decision(self) -> Decision:
        if self.all_reasons:
            return Decision(tests=self.tests, total=len(self.tests), everything=True,
                            reasons=_capped(self.all_reasons))  # fmt: skip
        lines = list(self.reasons)
        if self.reached:
            users = set().union(*self.reached.values())
            lines.insert(0, f"--changed: {len(self.reached)} changed module(s), reached by "
                            f"{len(users)} test file(s)")  # fmt: skip
        return Decision(tests=frozenset(self.chosen) & self.tests, total=len(self.tests),
                        reasons=_capped(lines))  # fmt: skip


def _capped(lines: list[str]) -> tuple[str, ...]:
    if len(lines) <= SHOWN_REASONS:
        return tuple(lines)
    rest = len(lines) - SHOWN_REASONS + 1
    return (*lines[: SHOWN_REASONS - 1], f"--changed: … and {rest} more reason(s)")


def area_of(path: str) -> str:
    """Where a non-Python file's readers are looked for: the first directory under the
    root, or ``src/<name>`` under ``src/`` (``""``: the file is at the root)."""
    parts = path.split("/")[:-1]
    if len(parts) >= 2 and parts[0] == importgraph.SRC:
        return "/".join(parts[:2])
    return parts[0] if parts else ""


def starts(test_file: str) -> list[str]:
    """What importing a test file runs first: the ``conftest.py`` files of its directory
    and those above it, then the file itself."""
    parts = test_file.split("/")[:-1]
    found = ["/".join([*parts[:k], "conftest.py"]) for k in range(len(parts) + 1)]
    return [*found, test_file]
