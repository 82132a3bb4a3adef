"""What the pipeline gives a pool: its options, and how to stop it while it runs."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.launcher import LOCAL, Launcher
from supervisor.model import Chunk, TestResult

POLL_S = 0.05
EXIT_WAIT_S = 10.0
"""The least time a child gets to finish its session (fixtures, atexit) after ``exit``."""
LINGER_S = 2.0
"""How long a child may stay once its session said it finished (non-daemon threads)."""
STARTUP_LIMIT_S = 120.0
"""A child that has not loaded the probe by then (a conftest that hangs) is killed."""
DEFAULT_TIMEOUT_S = 60.0
MAX_EARLY_DEATHS = 3
"""Children in a row that die before running a test (not in an import) end the run."""
SESSION_ID = "<session>::child-{seq:04d}"
"""The id of the ``error`` record for a child's session that failed on its own."""
BUDGET_KILL_GRACE_S = 0.3
"""At the budget's end the run must stop now: SIGKILL follows SIGTERM this soon."""


@dataclass(frozen=True, kw_only=True)
class DriveOptions:
    python: str
    python_origin: str
    """Where ``python`` came from, for messages (``--python``, PATH, ...)."""
    pytest_args: tuple[str, ...]
    """pytest options, given to every child after mtest's own."""
    paths: tuple[str, ...]
    """What to collect; a dedicated child gets its chunk's node ids instead."""
    cwd: Path
    jobs: int
    timeout_s: float | None
    """Per-test limit from mtest's flag or config; ``None``: pytest's ini, else 60 s."""
    kill_grace_s: float
    run_id: str
    ancestry: str
    work_dir: Path
    """Where each child's events, ids, stacks and output go (``last-run/children``)."""
    junit_dir: Path
    cache_dir: Path
    coverage: str = ""
    """``--cov``: ``MTEST_COVERAGE`` for every child (``covdata.Setup.child_env``)."""
    max_rss_bytes: int | None = None
    """``--max-rss``: the probe ends a chunk after a test that leaves its worker above
    it (the worker is replaced); a test in flight above it is killed (``crashed``)."""
    launcher: Launcher = LOCAL
    """Where the workers run (``--sandbox``: under bubblewrap)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables every child gets besides mtest's own: what the once-per-run setup wrote
    to ``$MTEST_ENV_FILE`` (``runsetup``)."""


class Stop(enum.Enum):
    DRAIN = "drain"
    """Launch nothing new; running chunks finish (``--fail-fast``)."""
    HALT = "halt"
    """Stop running children now (interrupt, budget deadline)."""
    AFTER_TEST = "after-test"
    """Tests in flight finish, nothing else starts (not even the rest of a running
    chunk); what did not start stays outstanding (``-x``, ``--maxfail``)."""


@dataclass(kw_only=True)
class StopControl:
    """What the pipeline asks of a running pool; read by the loop every turn."""

    mode: Stop | None = None
    hurry: bool = False
    """A second interrupt: SIGKILL at once instead of waiting the grace."""
    deadline: float | None = None
    """A ``time.monotonic()`` at which to halt (the budget)."""
    interrupted: bool = False
    """SIGINT/SIGTERM arrived: the run exits 2 and ``--resume`` continues it."""

    def grace(self, kill_grace_s: float) -> float:
        """The SIGTERM→SIGKILL grace for a halt: short when the budget's end forces it."""
        if self.deadline is not None and not self.interrupted:
            return min(kill_grace_s, BUDGET_KILL_GRACE_S)
        return kill_grace_s

    def fits(self, chunk: Chunk, now: float) -> bool:
        """Whether ``chunk`` is expected to finish before the deadline (always, without one)."""
        return self.deadline is None or now + chunk.estimate_s <= self.deadline

    def current(self, now: float) -> Stop | None:
        if self.deadline is not None and now >= self.deadline:
            return Stop.HALT
        return self.mode


ResultSink = Callable[[TestResult], None]
