"""``--changed [REV]``: the test files that may be affected by what changed since ``REV``.

Two parts. ``changed_files`` asks git (the one impure part): the files that differ
between ``REV`` and the working tree, staged or not, the untracked ones, both sides of a
rename (``--no-renames``: the old path deleted, the new one added). ``affected`` decides
(pure): from the import graph (``supervisor.importgraph``), the changed paths and the
collected test files, which test files to run and why.

The rule is to never miss: a test file is selected when its module, or a ``conftest.py``
above it, reaches a changed file through the graph; and the selection widens wherever the
graph cannot see (each widening says why in one line):

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

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from supervisor import importgraph
from supervisor.config import Config
from supervisor.console import Console
from supervisor.errors import MtestError
from supervisor.gitinfo import run_git
from supervisor.importgraph import Graph, is_test_file
from supervisor.model import Collection
from supervisor.store import IMPORT_GRAPH, Store

__all__ = [
    "CONFIG_NAMES", "Changes", "Decision", "affected", "area_of", "changed_files", "diff_for",
    "graph_of", "is_noise", "narrow", "parse_name_status",
    "reverse_closure", "starts",
]  # fmt: skip

GIT_TIMEOUT_S = 120.0
"""What ``git diff`` and ``git ls-files`` get; a slower repository is an error, not a guess."""

CONFIG_NAMES = frozenset(
    {"pyproject.toml", "pytest.ini", ".pytest.ini", "tox.ini", "setup.cfg", "setup.py",
     "sitecustomize.py", "usercustomize.py"}
)  # fmt: skip
"""Files that configure pytest, mtest or the installed project, wherever they are."""

NOISE_DIRS = frozenset(
    {"__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache", ".tox",
     ".nox", ".git", ".github", ".gitlab", ".circleci"}
)  # fmt: skip
"""Directories whose files are caches, tool state or CI configuration: never read by a
test as its input, so never a change for ``--changed`` (also: ``*.egg-info``, virtualenvs,
the gates directory)."""
NOISE_NAMES = frozenset(
    {".gitignore", ".gitattributes", ".mailmap", ".editorconfig", ".git-blame-ignore-revs",
     ".pre-commit-config.yaml"}
)  # fmt: skip
"""Files that configure git, editors and hooks, never the test process."""
NOISE_SUFFIXES = (".pyc", ".pyo")

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


# --- what changed: git ----------------------------------------------------------------


def changed_files(root: Path, rev: str, *, gates_dir: Path | None = None) -> Changes:
    """The files that differ between ``rev`` and the working tree under ``root``'s
    repository. Raises ``MtestError`` (exit 4) without git, outside a repository, or for a
    ``rev`` git does not know. Caches and tool state (``is_noise``) are left out."""
    if not rev or rev.startswith("-"):
        raise _unknown_rev(rev, "not a revision", root)
    git = shutil.which("git")
    if git is None:
        raise MtestError("--changed needs git, and there is no `git` on PATH",
                         hint="install git, or run without --changed", code=4)  # fmt: skip
    top_out = _git(git, root, ["rev-parse", "--show-toplevel"])
    if top_out is None or top_out[0] != 0:
        detail = _first_line(top_out[1] if top_out else "it did not answer")
        raise MtestError(
            f"--changed: `{root}` is not in a git repository (git: {detail})",
            hint="run it in a git work tree, or without --changed", code=4,
        )  # fmt: skip
    top = Path(top_out[1].strip())
    diff = _git(git, top, ["diff", "--name-status", "--no-renames", "-z", rev, "--"])
    if diff is None or diff[0] != 0:
        raise _unknown_rev(rev, diff[1] if diff else "it did not answer", root)
    others = _git(git, top, ["ls-files", "--others", "--exclude-standard", "-z", "--full-name"])
    if others is None or others[0] != 0:
        detail = _first_line(others[1] if others else "it did not answer")
        raise MtestError(f"--changed: git cannot list the untracked files ({detail})", code=4)
    changed, deleted = parse_name_status(diff[1])
    changed += [p for p in others[1].split("\0") if p]
    return _relative_to(root, top, rev, changed, deleted, gates_dir)


def parse_name_status(text: str) -> tuple[list[str], list[str]]:
    """``git diff --name-status --no-renames -z`` → (changed paths, deleted paths)."""
    fields = text.split("\0")
    changed: list[str] = []
    deleted: list[str] = []
    for status, path in zip(fields[::2], fields[1::2], strict=False):
        if path:
            (deleted if status.startswith("D") else changed).append(path)
    return changed, deleted


def _relative_to(
    root: Path, top: Path, rev: str, changed: list[str], deleted: list[str],
    gates_dir: Path | None,
) -> Changes:  # fmt: skip
    """Toplevel-relative paths → root-relative ones, noise and the gates directory left out."""
    base = root.resolve()
    gates = importgraph.relative(base, gates_dir.resolve()) if gates_dir else None
    venvs: dict[str, bool] = {}
    inside: dict[str, list[str]] = {"changed": [], "deleted": []}
    outside: list[str] = []
    for kind, paths in (("changed", changed), ("deleted", deleted)):
        for path in dict.fromkeys(paths):
            rel = importgraph.relative(base, top.resolve() / path)
            if rel is None:
                outside.append(path)
            elif not is_noise(rel, gates) and not _in_venv(base, rel, venvs):
                inside[kind].append(rel)
    return Changes(
        rev=rev, changed=tuple(sorted(inside["changed"])),
        deleted=tuple(sorted(inside["deleted"])), outside=tuple(sorted(outside)),
    )  # fmt: skip


def is_noise(path: str, gates: str | None = None) -> bool:
    """Whether a root-relative path is a cache, tool state or CI configuration."""
    parts = path.split("/")
    if gates and (path == gates or path.startswith(f"{gates}/")):
        return True
    return (
        any(p in NOISE_DIRS or p.endswith(".egg-info") for p in parts[:-1])
        or parts[-1] in NOISE_NAMES
        or parts[-1].endswith(NOISE_SUFFIXES)
    )


def _in_venv(root: Path, path: str, seen: dict[str, bool]) -> bool:
    parts = path.split("/")[:-1]
    for k in range(1, len(parts) + 1):
        directory = "/".join(parts[:k])
        if directory not in seen:
            seen[directory] = (root / directory / "pyvenv.cfg").is_file()
        if seen[directory]:
            return True
    return False


def _git(git: str, cwd: Path, args: list[str]) -> tuple[int, str] | None:
    """(exit status, stdout or else stderr); ``None`` when git could not run or hung."""
    done = run_git(git, cwd, args, timeout=GIT_TIMEOUT_S)
    if done is None:
        return None
    out = done.stdout if done.returncode == 0 else done.stderr
    return done.returncode, out.decode("utf-8", errors="surrogateescape")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _unknown_rev(rev: str, stderr: str, root: Path) -> MtestError:
    hint = "give a commit, branch or tag git knows (`git log --oneline` lists commits)"
    if (root / rev).exists():
        hint = f"`{rev}` is a path: put paths before --changed, or write --changed=HEAD"
    return MtestError(f"--changed: unknown revision `{rev}` (git: {_first_line(stderr)})",
                      hint=hint, code=4)  # fmt: skip


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
            self._memo[targets] = reverse_closure(self.graph, targets)
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


def reverse_closure(graph: Graph, targets: Iterable[str]) -> frozenset[str]:
    """``targets`` and every file that reaches one of them through the graph."""
    seen = set(targets)
    todo = list(seen)
    while todo:
        for importer in graph.importers(todo.pop()):
            if importer not in seen:
                seen.add(importer)
                todo.append(importer)
    return frozenset(seen)


# --- the run's side: git before any worker starts, the decision after collection -------


def diff_for(config: Config) -> Changes | None:
    """``--changed``: what changed (``None`` without it). Called before any worker
    starts, so a bad REV or a missing repository ends the run at once (exit 4)."""
    if config.changed is None:
        return None
    return changed_files(config.rootdir, config.changed, gates_dir=config.gates_dir)


def narrow(
    config: Config, store: Store, diff: Changes | None, collection: Collection,
    console: Console, *, save: bool,
) -> frozenset[str] | None:  # fmt: skip
    """The test files ``--changed`` keeps (``None``: every file), its reasons printed.
    ``save``: update ``.gates/importgraph.json`` (not under ``--collect-only``)."""
    if diff is None:
        return None
    # A file that failed to import is a test file too (its error is reported anyway).
    found = (*(i.file for i in collection.items), *(p.test_id for p in collection.problems))
    tests = frozenset(t.partition("::")[0] for t in found)
    graph = Graph() if diff.empty else graph_of(config.rootdir, store, save=save)
    decision = affected(graph, diff, tests, root=config.rootdir)
    for line in decision.lines():
        console.line(line)
    return decision.tests


def graph_of(root: Path, store: Store, *, save: bool) -> Graph:
    """The working tree's import graph, from the cache where files did not change."""
    if save:
        return importgraph.current(root, store)
    old = store.load(IMPORT_GRAPH, Graph.from_json)
    files = importgraph.project_files(root)
    return importgraph.build(root, files, cached=old.modules if old else None)
