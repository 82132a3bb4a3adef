"""Once-per-run setup and teardown: a shell command before the first worker, one at the end.

``[tool.mtest] setup`` (``--setup``) runs once, in the project's cwd, before
any worker (collection included) starts; the ``KEY=VALUE`` lines it writes to
``$MTEST_ENV_FILE`` (``.gates/last-run/setup.env``) are added to every
worker's environment. ``teardown`` runs once at the end, whatever happened,
when the setup succeeded (or there is none). This is how a suite shares one
expensive service (a database) across its workers.

Design (docs/design.md, "Once-per-run setup"):

- The command runs as ``/bin/sh -c COMMAND`` (as a Makefile recipe or a CI
  ``run:`` step): starting a service in the background (``&``) and writing
  to ``$MTEST_ENV_FILE`` need a shell. It starts in its own session, stdin
  from /dev/null, stdout and stderr into ``failures/<setup|teardown>-output.txt``
  (a file: a background service holding it open blocks nothing). A tiny
  Python bootstrap clears the signal mask the guard set before it becomes the
  shell, as a worker's bootstrap does.
- Its processes carry ``MTEST_RUN_ID`` and, in ``MTEST_ANCESTRY``, the mark
  ``<run id>+setup`` instead of the run id: the pool's sweeps spare the
  service; the setup's own end and the watchdog (mtest killed) do not. mtest
  is no subreaper while the setup runs, so a service left behind is not
  mtest's orphan either.
- A setup that fails, hangs past ``--setup-timeout`` or is interrupted: the
  one kill sequence (``worker.kill_step``: SIGTERM to its group, the grace,
  SIGKILL) ends its group, its mark is swept, and ``MtestError`` ends the run
  before any test: exit 3 (2 when interrupted). No teardown then.
- After the teardown, whatever the setup started and nothing stopped is killed
  (with a note): nothing a run starts outlives it. A failing teardown is a
  note (a warning); the run's exit code stays its tests'.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from supervisor import reaper
from supervisor.config import Config
from supervisor.console import Console
from supervisor.control import StopControl
from supervisor.errors import MtestError
from supervisor.store import Store
from supervisor.worker import PROTOCOL_VARS, kill_step

ENV_FILE_VAR = "MTEST_ENV_FILE"
EXIT_SETUP_FAILED = 3
"""The setup failed or hung: the run could not be carried out (SPEC: exit 3)."""
EXIT_INTERRUPTED = 2
POLL_S = 0.05
REAP_WAIT_S = 5.0
"""After SIGKILL, how long to wait for the shell to be reapable."""
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_PREFIX = "MTEST_"

# The shell, with the signals mtest blocks unblocked and the dispositions Python
# changed (SIGPIPE, SIGXFSZ ignored) back to their defaults: exec keeps both.
_SHELL = """\
import os, signal, sys
signal.pthread_sigmask(signal.SIG_SETMASK, [])
for name in ("SIGPIPE", "SIGXFSZ"):
    if hasattr(signal, name):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
try:
    os.execv("/bin/sh", ["/bin/sh", "-c", sys.argv[1]])
except OSError as exc:
    sys.stderr.write(f"mtest: cannot start /bin/sh: {exc}\\n")
    sys.exit(127)
"""


def parse_env_file(text: str, where: str) -> dict[str, str]:
    """``KEY=VALUE`` lines → variables (pure). Blank lines and ``#`` comments are
    skipped; the value is everything after the first ``=``, as written (no quotes,
    no expansion; one trailing ``\\r`` is dropped); the last of a repeated key wins.

    A malformed line raises ``MtestError`` (exit 3) naming ``where`` and the line number.
    """
    env: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, eq, value = line.partition("=")
        problem = ""
        if not eq or not _KEY.fullmatch(key):
            problem = "expected KEY=VALUE (KEY: letters, digits and _, not first a digit)"
        elif key.startswith(_RESERVED_PREFIX):
            problem = f"`{key}`: variables named {_RESERVED_PREFIX}* are mtest's own"
        elif "\0" in value:
            problem = f"`{key}`: a value cannot hold a NUL byte"
        if problem:
            raise MtestError(
                f"{where}:{number}: {problem}, got {line[:80]!r}",
                hint="the setup writes one KEY=VALUE per line (docs/formats.md)",
                code=EXIT_SETUP_FAILED,
            )
        env[key] = value
    return env


class Ended(enum.Enum):
    EXITED = "exited"
    TIMED_OUT = "timed out"
    INTERRUPTED = "interrupted"
    NOT_STARTED = "not started"


@dataclass(frozen=True, kw_only=True)
class Ran:
    """How one setup or teardown command went."""

    what: str
    """``setup`` or ``teardown``."""
    command: str
    ended: Ended
    returncode: int | None
    duration_s: float
    output: Path
    limit_s: float
    reason: str = ""
    """Why it could not be started."""

    @property
    def ok(self) -> bool:
        return self.ended is Ended.EXITED and self.returncode == 0

    @property
    def how(self) -> str:
        """How it ended, for a message: ``exited with status 1`` ..."""
        if self.ended is Ended.NOT_STARTED:
            return f"could not be started ({self.reason})"
        if self.ended is Ended.TIMED_OUT:
            return f"did not finish within --setup-timeout {self.limit_s:g}s and was killed"
        if self.ended is Ended.INTERRUPTED:
            return "was stopped: mtest was interrupted"
        code = self.returncode
        if code is not None and code < 0:
            return f"was killed by {_signal_name(-code)}"
        return f"exited with status {code}"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def run_command(
    command: str, *, what: str, cwd: Path, env: Mapping[str, str], limit_s: float,
    grace_s: float, output: Path, stop: StopControl, stopped: Callable[[], bool],
) -> Ran:  # fmt: skip
    """Run ``command`` under ``/bin/sh -c`` in its own session and wait for it.

    Past ``limit_s``, or once ``stopped()`` says so, its process group is
    ended with the kill sequence (``grace_s``; at once when ``stop.hurry``).
    A command that exits leaves what it started in the background alone.
    """
    started = time.monotonic()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", _SHELL, command], cwd=cwd, env=dict(env),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
    except OSError as exc:
        with contextlib.suppress(OSError):
            output.write_text(f"mtest: cannot start the {what} `{command}`: {exc}\n")
        return Ran(
            what=what, command=command, ended=Ended.NOT_STARTED, returncode=None,
            duration_s=time.monotonic() - started, output=output, limit_s=limit_s,
            reason=exc.strerror or str(exc),
        )  # fmt: skip
    ended = Ended.EXITED
    while proc.poll() is None:
        if time.monotonic() - started >= limit_s:
            ended = Ended.TIMED_OUT
        elif stopped():
            ended = Ended.INTERRUPTED
        else:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=POLL_S)
            continue
        end_group(proc, grace_s=grace_s, stop=stop)
    return Ran(
        what=what, command=command, ended=ended, returncode=proc.returncode,
        duration_s=time.monotonic() - started, output=output, limit_s=limit_s,
    )  # fmt: skip


def end_group(proc: subprocess.Popen[bytes], *, grace_s: float, stop: StopControl) -> None:
    """SIGTERM → ``grace_s`` → SIGKILL to ``proc``'s process group (``kill_step``), until
    the shell is reaped and nothing is left in its group (or SIGKILL was sent)."""
    term_sent, killed = None, False
    while not killed and (proc.poll() is None or _group_alive(proc.pid)):
        term_sent, killed = kill_step(
            proc.pid, term_sent=term_sent, killed=killed, now=time.monotonic(),
            grace_s=grace_s, hurry=stop.hurry,
        )  # fmt: skip
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=POLL_S)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=REAP_WAIT_S)


def _group_alive(pgid: int) -> bool:
    """Whether a live process is left in group ``pgid`` (Linux; elsewhere: not known, no)."""
    return any(p.pgid == pgid and not p.dead for p in reaper.process_table().values())


class Once:
    """``with Once(config, store, run_id, stop, console) as once:`` — the setup.

    Entering runs the setup (none configured: nothing) and raises ``MtestError``
    when it fails; ``once.env`` is then what every worker adds to its
    environment. ``finish()`` runs the teardown (at most once) and ends what the
    setup left; leaving the block calls it if nobody did (an error, an early end).
    """

    def __init__(
        self, config: Config, store: Store, run_id: str, stop: StopControl, console: Console
    ) -> None:
        self.config, self.store, self.run_id = config, store, run_id
        self.stop, self.console = stop, console
        self.env: dict[str, str] = {}
        self._owed = False
        """The teardown must still run (the setup succeeded, or there is none)."""
        self._mark = reaper.setup_mark(run_id)

    def __enter__(self) -> Once:
        config = self.config
        if config.setup is None and config.teardown is None:
            return self
        self.store.paths.setup_env.parent.mkdir(parents=True, exist_ok=True)
        self.store.paths.setup_env.write_bytes(b"")  # fresh, also for a resumed run
        if config.setup is not None:
            self._set_up(config.setup)
        self._owed = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish()

    def finish(self) -> None:
        """Run the teardown now (once), then end whatever the setup left running."""
        if not self._owed:
            return
        self._owed = False
        teardown = self.config.teardown
        if teardown is not None:
            before = (self.stop.interrupted, self.stop.hurry)
            ran = self._run(teardown, "teardown", lambda: (self.stop.interrupted,
                                                           self.stop.hurry) != before)  # fmt: skip
            if ran.ok:
                self.store.note(f"teardown `{teardown}` took {ran.duration_s:.1f}s")
            else:
                self.store.note(
                    f"warning: the teardown `{teardown}` {ran.how} (its output: {ran.output}); "
                    "the run's exit code is its tests'"
                )
        left = reaper.kill_descendants(self._mark)
        if left:
            self.store.note(
                f"{left} process(es) the setup started were still running after "
                f"{'the teardown' if teardown else 'the run'}: killed (nothing a run starts "
                "outlives it)"
            )

    def _set_up(self, command: str) -> None:
        # Not a subreaper now: the service the setup leaves must not become
        # mtest's orphan (the pool kills those); the pool turns it back on.
        reaper.set_subreaper(False)
        self.console.line(f"mtest: setup: {command}")
        ran = self._run(command, "setup", lambda: self.stop.interrupted)
        if not ran.ok:
            reaper.kill_descendants(self._mark)
            if ran.ended is Ended.INTERRUPTED:
                raise MtestError(
                    f"interrupted during the setup `{command}`: no test ran "
                    f"(its output: {ran.output})",
                    code=EXIT_INTERRUPTED,
                )
            raise MtestError(
                f"the setup `{command}` {ran.how}: no test ran (its output: {ran.output})",
                hint="fix the command (--setup or [tool.mtest] setup); it runs in "
                f"`{self.config.cwd}` under /bin/sh -c",
                code=EXIT_SETUP_FAILED,
            )
        self._owed = True  # from now on the teardown runs, whatever happens
        path = self.store.paths.setup_env
        try:
            text = path.read_bytes().decode("utf-8", errors="surrogateescape")
        except OSError as exc:
            self.finish()
            raise MtestError(
                f"cannot read `{path}` after the setup: {exc.strerror}",
                hint="the setup must not remove $MTEST_ENV_FILE",
                code=EXIT_SETUP_FAILED,
            ) from exc
        try:
            self.env = parse_env_file(text, str(path))
        except MtestError:
            self.finish()
            raise
        self.store.note(
            f"setup `{command}` took {ran.duration_s:.1f}s and set {len(self.env)} variable(s)"
        )

    def _run(self, command: str, what: str, stopped: Callable[[], bool]) -> Ran:
        return run_command(
            command, what=what, cwd=self.config.cwd, env=self._env(), stopped=stopped,
            limit_s=self.config.setup_timeout_s, grace_s=self.config.kill_grace_s,
            output=self.store.paths.setup_output(what), stop=self.stop,
        )  # fmt: skip

    def _env(self) -> dict[str, str]:
        """mtest's environment without an outer run's protocol, the setup's variables (for
        the teardown), the run id, the env file and the setup's ancestry mark."""
        inherited = os.environ.get(reaper.ANCESTRY_VAR, "")
        env = {k: v for k, v in os.environ.items() if k not in PROTOCOL_VARS}
        env.update(self.env)
        env.update(
            MTEST_RUN_ID=self.run_id,
        )
        env[ENV_FILE_VAR] = str(self.store.paths.setup_env)
        env[reaper.ANCESTRY_VAR] = f"{inherited}:{self._mark}" if inherited else self._mark
        return env
