"""What git says about the project: the commit checked out, and whether it was changed.

Asked with one ``git status`` and a short timeout; anything that goes wrong
(no git, not a repository, a repository git refuses, a slow disk) is "unknown",
never an error: the run history writes ``null``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 5.0
"""``git status`` gets this long; a repository it cannot read in time is unknown."""


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """The commit checked out at ``root`` and whether tracked files differ from it.

    ``(None, None)`` outside a repository, without git, or when git fails or takes
    longer than ``GIT_TIMEOUT_S``; the commit is ``None`` before the first commit.
    Untracked files (``.gates/`` among them) do not make the tree dirty. No
    optional lock and no fsmonitor: a run never blocks the user's git, nor
    leaves a daemon behind.
    """
    git = shutil.which("git")
    if git is None:
        return None, None
    args = ["status", "--porcelain=v2", "--branch", "--untracked-files=no"]
    done = run_git(git, root, args, timeout=GIT_TIMEOUT_S)
    if done is None or done.returncode != 0:
        return None, None
    return parse_git_status(done.stdout.decode("utf-8", errors="replace"))


def run_git(
    git: str, cwd: Path, args: list[str], *, timeout: float
) -> subprocess.CompletedProcess[bytes] | None:
    """``git ARGS`` in ``cwd``, output captured; ``None`` when it could not run or hung."""
    argv = [git, "--no-optional-locks", "-c", "core.fsmonitor=false", "-C", str(cwd), *args]
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
            check=False, env={**os.environ, "LC_ALL": "C"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None


def parse_git_status(text: str) -> tuple[str | None, bool]:
    """``git status --porcelain=v2 --branch`` → (commit or ``None``, dirty)."""
    commit: str | None = None
    dirty = False
    for line in text.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.removeprefix("# branch.oid ").strip()
            commit = oid if oid and all(c in "0123456789abcdef" for c in oid) else None
        elif line and not line.startswith("#"):
            dirty = True
    return commit, dirty
