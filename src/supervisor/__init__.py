"""mtest: a test supervisor that drives pytest from the outside.

``supervisor.run(["--tier", "0"], cwd=path, on_record=..., on_event=...)`` runs
mtest in this process and returns a ``RunResult`` (see ``supervisor.api``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from supervisor.version import __version__

if TYPE_CHECKING:
    from supervisor.result import OnEvent, OnRecord, RunResult

__all__ = ["__version__", "run"]


def run(
    args: Sequence[str] = (),
    *,
    cwd: str | Path | None = None,
    on_record: OnRecord | None = None,
    on_event: OnEvent | None = None,
    output: TextIO | None = None,
) -> RunResult:
    """Run mtest with ``args`` in ``cwd``; see ``supervisor.api.run``."""
    from supervisor import api  # here: `import supervisor` (and `mtest --version`) stay light

    return api.run(args, cwd=cwd, on_record=on_record, on_event=on_event, output=output)
