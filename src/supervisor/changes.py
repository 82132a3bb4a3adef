"""``--changed [REV]``: what changed since ``REV`` (git), and the run's use of it.

``changed_files`` asks git (the impure half of ``--changed``): the files that differ
between ``REV`` and the working tree, staged or not, the untracked ones, both sides of a
rename (``--no-renames``: the old path deleted, the new one added), caches and tool state
left out. ``diff_for`` does that before any worker starts; ``narrow``, after collection,
builds the import graph and asks ``supervisor.affected`` (the pure decision) which test
files to keep, and prints why.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from supervisor import importgraph
from supervisor.affected import Changes, affected
from supervisor.config import Config
from supervisor.console import Console
from supervisor.errors import MtestError
from supervisor.gitinfo import run_git
from supervisor.importgraph import Graph
from supervisor.model import Collection
from supervisor.store import IMPORT_GRAPH, Store

__all__ = [
    "changed_files", "diff_for", "graph_of", "is_noise", "narrow", "parse_name_status",
    "rebased",
]  # fmt: skip

GIT_TIMEOUT_S = 120.0
"""What ``git diff`` and ``git ls-files`` get; a slower repository is an error, not a guess."""

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
    # Test ids are relative to pytest's rootdir: the graph and the paths must be too.
    root = Path(collection.fingerprint.rootdir or config.rootdir)
    diff = rebased(diff, config.rootdir, root)
    # A file that failed to import is a test file too (its error is reported anyway).
    found = (*(i.file for i in collection.items), *(p.test_id for p in collection.problems))
    tests = frozenset(t.partition("::")[0] for t in found)
    graph = Graph() if diff.empty else graph_of(root, store, save=save)
    decision = affected(graph, diff, tests, root=root)
    for line in decision.lines():
        console.line(line)
    return decision.tests


def rebased(diff: Changes, old: Path, new: Path) -> Changes:
    """``diff``'s paths (relative to ``old``) relative to ``new``; those outside it move
    to ``outside``. The same ``Changes`` when both are one directory."""
    old, new = old.resolve(), new.resolve()
    if old == new:
        return diff
    moved: dict[str, list[str]] = {"changed": [], "deleted": []}
    outside = list(diff.outside)
    for kind, paths in (("changed", diff.changed), ("deleted", diff.deleted)):
        for path in paths:
            rel = importgraph.relative(new, old / path)
            (outside if rel is None else moved[kind]).append(rel or path)
    return Changes(rev=diff.rev, changed=tuple(moved["changed"]),
                   deleted=tuple(moved["deleted"]), outside=tuple(outside))  # fmt: skip


def graph_of(root: Path, store: Store, *, save: bool) -> Graph:
    """The working tree's import graph, from the cache where files did not change."""
    if save:
        return importgraph.current(root, store)
    old = store.load(IMPORT_GRAPH, Graph.from_json)
    files = importgraph.project_files(root)
    return importgraph.build(root, files, cached=old.modules if old else None)
