"""The frozen ``Config`` of one invocation, from the command line and ``[tool.mtest]``.

Command-line flags win over ``[tool.mtest]`` in the rootdir's ``pyproject.toml``.
Every validation error names the value, where it came from and the fix, and
carries exit code 4 (usage error).
"""

from __future__ import annotations

import configparser
import enum
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from supervisor import select
from supervisor.errors import MtestError

DEFAULT_KILL_GRACE_S = 5.0
DEFAULT_SETUP_TIMEOUT_S = 300.0
"""How long the once-per-run setup (and the teardown) may take: 5m."""
_NARROWING = frozenset({"--deselect", "--ignore", "--ignore-glob", "--pyargs"})
"""pytest options that collect less than the suite (besides ``-k`` and ``-m``)."""
_DURATION = re.compile(
    r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$"
)
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$")
DEFAULT_HISTORY_KEEP_RUNS = 1000
DEFAULT_HISTORY_KEEP_S = 90 * 86400.0


class Mode(enum.Enum):
    RUN = "run"
    RESUME = "resume"
    REPORT = "report"
    QUARANTINE = "quarantine"
    SELF_CHECK = "self-check"
    MERGE = "merge"
    COLLECT_ONLY = "collect-only"
    """List the selected test ids and exit (``--collect-only``); nothing is recorded."""
    SERVICE = "service"
    """``mtest service``: a run every ``--every``, with metrics, until stopped."""
    HISTORY = "history"
    """``mtest history``: the trend of the last runs, from the history file."""
    CLEANUP = "cleanup"
    """``mtest cleanup``: remove the containers of dead runs."""
    GRAPH = "graph"
    """``mtest graph``: the static import graph, each module's imports and unsure reasons."""
    ORPHANS = "orphans"
    """``mtest orphans``: the project's modules no test reaches through the import graph."""
    SLOWEST = "slowest"
    """``mtest slowest [N]``: the N slowest tests of the last run."""


class FlakyResult(enum.Enum):
    """Whether a ``flaky`` test (failed, then passed on a retry) fails the run."""

    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True, kw_only=True)
class Config:
    mode: Mode
    paths: tuple[str, ...]
    pytest_args: tuple[str, ...]
    cwd: Path
    rootdir: Path
    gates_dir: Path
    python: str
    python_origin: str
    """Where ``python`` came from: ``--python``, ``[tool.mtest]``, mtest's own, PATH."""
    jobs: int
    timeout_s: float | None
    """``None``: pytest's ``timeout`` ini if the project sets one, else 60 s."""
    kill_grace_s: float
    retries: int
    tiers: frozenset[int]
    tier_map: Mapping[str, int]
    budget_s: float | None
    shard: tuple[int, int] | None
    fail_fast: bool
    skip_quarantined: bool
    junit_xml: Path | None
    merge_dirs: tuple[Path, ...]
    verbosity: int
    argv: tuple[str, ...]
    maxfail: int | None = None
    """``-x`` (1) / ``--maxfail N``: stop the run after N gating failures."""
    flaky_result: FlakyResult = FlakyResult.PASS
    history_file: Path | None = None
    """``--history``: one line per run; ``None``: ``<gates>/history.jsonl``."""
    history_keep_runs: int = DEFAULT_HISTORY_KEEP_RUNS
    history_keep_s: float = DEFAULT_HISTORY_KEEP_S
    history_last: int = 20
    """``mtest history --last N``: how many runs the trend table shows."""
    json_output: bool = False
    """``mtest history --json``."""
    recursive: bool = False
    """``mtest orphans --recursive``: also the modules only orphans import."""
    include_orphans: bool = False
    """``--include-orphans``: the run also import-checks each orphan module (``orphans``)."""
    every_s: float | None = None
    """``mtest service --every``: seconds from one cycle's start to the next."""
    cycles: int | None = None
    """``mtest service --cycles N``: stop after N cycles (``None``: until signalled)."""
    metrics_port: int | None = None
    """``--metrics-port``: serve ``/metrics`` and ``/health`` (0: any free port)."""
    metrics_host: str = "127.0.0.1"
    metrics_file: Path | None = None
    """``--metrics-file``: the exposition, rewritten atomically after each run."""
    cov: bool = False
    cov_sources: tuple[str, ...] = ()
    """``--cov=SOURCE`` (repeatable); empty with ``cov``: coverage.py's own default."""
    cov_branch: bool = False
    cov_fail_under: float | None = None
    max_rss_bytes: int | None = None
    """``--max-rss``: a worker above it is replaced between tests."""
    events_to: str | None = None
    """``--events``: ``-`` (stdout) or a path for the run's events as JSON lines."""
    changed: str | None = None
    """``--changed [REV]``: run only the tests the changes since REV may affect."""
    lazy_collection: bool = True
    """``[tool.mtest] lazy_collection = false``: every worker collects the whole suite,
    for a ``pytest_collection_modifyitems`` that must see every test at once."""
    sandbox: bool = False
    """``--sandbox``: every worker runs under bubblewrap (``launcher``)."""
    sandbox_writable: tuple[Path, ...] = ()
    """``--sandbox-writable``: existing paths the sandboxed tests may write, besides .gates/."""
    container: str | None = None
    """``--container IMAGE``: every worker runs in a container of that image."""
    container_runtime: str | None = None
    """``--container-runtime``: ``docker`` or ``podman`` (``None``: the first found)."""
    docker_host: str | None = None
    """``--docker-host``: the engine's URL (``None``: the runtime's variable or default)."""
    container_args: tuple[str, ...] = ()
    """``--container-arg`` / ``[tool.mtest] container_args``: given to ``run`` as is."""
    container_lock: Path | None = None
    """``--container-lock``: the lock file (``None``: the gates dir's ``container.lock``)."""
    image_tar: Path | None = None
    """``--image-tar``: loaded when the image is missing."""
    setup: str | None = None
    """``--setup`` / ``[tool.mtest] setup``: a shell command run once before any worker."""
    teardown: str | None = None
    """``--teardown`` / ``[tool.mtest] teardown``: run once at the end, whatever happened."""
    setup_timeout_s: float = DEFAULT_SETUP_TIMEOUT_S
    """``--setup-timeout``: the setup's limit, and the teardown's."""
    isolate_failures: bool = True
    """A test that fails in its chunk is rerun alone (``--no-isolate-failures``: not)."""
    find_polluter: bool = False
    """``--find-polluter``: bisect an ``order_dependent`` test's predecessors."""
    failed_only: bool = False
    """``--failed``: only the last run's failing tests and the new ones (``select.rerun``)."""
    html_path: Path | None = None
    """``--html``: the report page also written there (always to ``last-run/report.html``)."""
    trace_path: Path | None = None
    """``--trace``: the run as a Chrome trace-event JSON file."""
    durations: int | None = None
    """``--durations N``: the N slowest tests at the run's end (0: all)."""
    slowest_n: int = 20
    """``mtest slowest N``."""

    @property
    def child_args(self) -> tuple[str, ...]:
        """What every pytest child gets after mtest's own options."""
        return (*self.pytest_args, *self.paths)

    @property
    def whole_suite(self) -> bool:
        """Whether the children collect the whole suite: no paths, no option that narrows it.

        Only such a run tells which tests no longer exist."""
        return not self.paths and not any(
            arg.partition("=")[0] in _NARROWING or arg[:2] in ("-k", "-m")
            for arg in self.pytest_args
        )


def parse_duration(text: str, origin: str) -> float:
    """``90s``, ``5m``, ``1h30m`` or plain seconds → seconds."""
    value = text.strip().lower()
    seconds: float | None = None
    try:
        seconds = float(value)
    except ValueError:
        match = _DURATION.match(value)
        if match and any(match.groups()):
            days, hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
            seconds = days * 86400 + hours * 3600 + minutes * 60 + secs
    if seconds is None or not 0 < seconds < math.inf:
        raise MtestError(
            f"invalid {origin} `{text}`",
            hint="expected a finite, positive duration like 90s, 5m or 1h30m",
        )
    return seconds


def parse_command(value: object, origin: str) -> str:
    """A ``setup``/``teardown`` command: a non-empty string (``/bin/sh -c`` runs it)."""
    if not isinstance(value, str) or not value.strip():
        raise MtestError(
            f"invalid {origin} {value!r}",
            hint='expected a shell command, e.g. setup = "./start-db.sh"',
        )
    if "\0" in value:
        raise MtestError(f"invalid {origin}: it contains a NUL byte", hint="remove it")
    return value


def parse_size(text: object, origin: str) -> int:
    """``512M``, ``2G``, ``1.5GiB`` or plain bytes → bytes (powers of 1024)."""
    match = _SIZE.match(str(text).strip().lower())
    value = 0.0
    if match:
        value = float(match.group(1)) * 1024 ** " kmgt".index(match.group(2) or " ")
    if not 0 < value < math.inf:
        raise MtestError(
            f"invalid {origin} `{text}`", hint="expected a size greater than 0 like 512M or 2G"
        )
    return int(value)


def parse_port(text: object, origin: str) -> int:
    try:
        port = int(str(text))
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise MtestError(
            f"invalid {origin} `{text}`", hint="expected a port from 1 to 65535, or 0 for any"
        )
    return port


def parse_positive(text: object, origin: str, *, integer: bool, allow_zero: bool = False) -> float:
    try:
        if isinstance(text, bool):
            raise ValueError
        value = int(str(text)) if integer else float(str(text))
    except ValueError:
        value = -1
    if not 0 <= value < math.inf or (value == 0 and not allow_zero):
        kind = "whole number" if integer else "finite number of seconds"
        floor = "0 or more" if allow_zero else "greater than 0"
        raise MtestError(f"invalid {origin} `{text}`", hint=f"expected a {kind}, {floor}")
    return value


def flag_of(table: Mapping[str, Any], key: str, origin: str, *, default: bool = False) -> bool:
    """A yes/no key of ``[tool.mtest]``: TOML ``true``/``false`` only."""
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise MtestError(
            f"invalid `{key}` {value!r} in {origin}", hint=f"write {key} = true or {key} = false"
        )
    return value


def text_of(value: object, origin: str) -> str:
    """A path-like setting: a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise MtestError(f"invalid {origin} {value!r}", hint="expected a non-empty path string")
    return value


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def parse_jobs(text: object, origin: str) -> int:
    if str(text).strip().lower() == "auto":
        return usable_cpus()
    return int(parse_positive(text, origin, integer=True))


# -- rootdir, as pytest finds it ------------------------------------------------


def _has_pytest_config(path: Path) -> bool:
    name = path.name
    try:
        if name in ("pytest.ini", ".pytest.ini", "pytest.toml", ".pytest.toml"):
            return True
        if name == "pyproject.toml":
            tool = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {})
            return "pytest" in tool and ("ini_options" in tool["pytest"] or bool(tool["pytest"]))
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path, encoding="utf-8")
        section = "pytest" if name == "tox.ini" else "tool:pytest"
        return parser.has_section(section)
    except (OSError, ValueError, configparser.Error, tomllib.TOMLDecodeError):
        return False


CONFIG_NAMES = (
    "pytest.toml", ".pytest.toml", "pytest.ini", ".pytest.ini",
    "pyproject.toml", "tox.ini", "setup.cfg",
)  # fmt: skip
"""pytest's config files, in the order pytest (9) looks for them in each directory."""


def find_rootdir(args: tuple[str, ...], cwd: Path) -> Path:
    """pytest's rootdir rules: ``--rootdir``; else the nearest ancestor of the
    arguments holding a pytest config file; else the nearest ``pyproject.toml``
    (pytest ≥ 8.1 roots there even without a pytest table); else the nearest
    ``setup.py``; else the common ancestor of the arguments and the cwd."""
    for index, arg in enumerate(args):
        if arg.startswith("--rootdir="):
            return (cwd / arg.split("=", 1)[1]).resolve()
        if arg == "--rootdir" and index + 1 < len(args):
            return (cwd / args[index + 1]).resolve()
    paths = [
        (cwd / a.split("::", 1)[0]).resolve()
        for a in args
        if not a.startswith("-") and (cwd / a.split("::", 1)[0]).exists()
    ]
    ancestor = Path(os.path.commonpath(paths)) if paths else cwd.resolve()
    if ancestor.is_file():
        ancestor = ancestor.parent
    chain = [ancestor, *ancestor.parents]
    for directory in chain:
        for name in CONFIG_NAMES:
            if (directory / name).is_file() and _has_pytest_config(directory / name):
                return directory
    for marker in ("pyproject.toml", "setup.py"):
        for directory in chain:
            if (directory / marker).is_file():
                return directory
    common = Path(os.path.commonpath([cwd.resolve(), ancestor]))
    return ancestor if common == Path(common.anchor) else common


def load_tool_config(rootdir: Path) -> tuple[dict[str, Any], str]:
    """``[tool.mtest]`` of the rootdir's ``pyproject.toml`` and a name for messages."""
    path = rootdir / "pyproject.toml"
    origin = f"{path} [tool.mtest]"
    if not path.is_file():
        return {}, origin
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise MtestError(f"cannot read `{path}`: {exc}", hint="fix the TOML syntax") from exc
    table = data.get("tool", {}).get("mtest", {})
    if not isinstance(table, dict):
        raise MtestError(f"`{origin}` is not a table", hint="write it as [tool.mtest]")
    return table, origin


_KNOWN_KEYS = frozenset(
    {"jobs", "timeout", "kill_grace", "retries", "tiers", "gates_dir", "python",
     "budget", "skip_quarantined", "fail_fast", "pytest_args", "flaky_result",
     "lazy_collection", "sandbox", "sandbox_writable", "setup", "teardown", "setup_timeout",
     "container", "container_runtime", "docker_host", "container_args", "container_lock",
     "image_tar", "isolate_failures", "durations", "html"}
)  # fmt: skip


def tier_map_from(table: Mapping[str, Any], origin: str) -> Mapping[str, int]:
    merged = dict(select.DEFAULT_TIERS)
    raw = table.get("tiers", {})
    if not isinstance(raw, dict):
        raise MtestError(f"invalid `tiers` in {origin}", hint="write [tool.mtest.tiers] smoke = 0")
    for marker, tier in raw.items():
        if isinstance(tier, bool) or not isinstance(tier, int) or not 0 <= tier <= 3:
            raise MtestError(
                f"invalid tier {tier!r} for marker `{marker}` in {origin}.tiers",
                hint="tiers are whole numbers 0 to 3",
            )
        merged[str(marker)] = tier
    return MappingProxyType(merged)


def check_keys(table: Mapping[str, Any], origin: str) -> None:
    for key in table:
        if key not in _KNOWN_KEYS:
            known = ", ".join(sorted(_KNOWN_KEYS))
            raise MtestError(f"unknown key `{key}` in {origin}", hint=f"known keys: {known}")


def default_python() -> tuple[str, str]:
    """The interpreter that runs pytest when none is named, and where it came from.

    mtest's own interpreter, when it can import pytest. mtest installed on its
    own (pipx, a fresh venv) has no pytest beside it: then the first
    ``python3``/``python`` on PATH that can import pytest — the project's, in
    an activated environment. If none can, mtest's own (the run then says
    clearly that pytest is missing).
    """
    own = sys.executable or "python3"
    if importlib.util.find_spec("pytest") is not None:
        return own, "mtest's interpreter"
    for name in ("python3", "python"):
        found = shutil.which(name)
        # Not realpath: every venv's python links to the same base interpreter.
        if found is None or os.path.abspath(found) == os.path.abspath(own):
            continue
        try:
            probe = subprocess.run(
                [found, "-c", "import pytest"],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return found, f"`{name}` on PATH, since mtest's interpreter has no pytest"
    return own, "mtest's interpreter"


# -- files and programs named by the user, checked before any test runs -----------

PYTHON_CHECK_TIMEOUT_S = 60.0
"""A generous bound: a loaded machine may take seconds to start an interpreter."""
_PYTHON_MARK = "mtest-python-ok"


def check_junit_target(path: Path, origin: str, *, example: str = "--junit-xml junit.xml") -> Path:
    """``path`` can be written as a file: not a directory, and creatable where it is.

    Tried for real (its directories made, the file opened for appending, and
    removed again if it was not there), so that a run does not end without its
    report after every test ran; permission bits alone do not say it for root.
    """
    hint = f"name a file in a writable directory, e.g. {example}"
    if path.is_dir():
        raise MtestError(f"invalid {origin} `{path}`: it is a directory", hint=hint)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise MtestError(f"invalid {origin} `{path}`: cannot write it ({why})", hint=hint) from None
    if not existed:
        path.unlink(missing_ok=True)
    return path


def check_python(python: str, origin: str, cwd: Path) -> None:
    """``python`` names a Python interpreter: an executable file that runs ``-c``.

    Cheap on purpose: it exists, is a file, may be executed, and runs one
    line of Python (a text file, a directory or a shell script fails here, in
    one line, instead of as a worker that dies before listing the tests).
    """
    hint = "name a Python interpreter, e.g. --python .venv/bin/python"
    found = shutil.which(python) if os.sep not in python else None
    path = Path(found) if found else cwd / python
    if not path.exists():
        if os.sep not in python:
            raise MtestError(f"invalid {origin} `{python}`: not found on PATH", hint=hint)
        raise MtestError(f"invalid {origin} `{python}`: no such file", hint=hint)
    if not path.is_file():
        raise MtestError(f"invalid {origin} `{python}`: not a file", hint=hint)
    if not os.access(path, os.X_OK):
        raise MtestError(f"invalid {origin} `{python}`: not executable", hint=hint)
    try:
        done = subprocess.run(
            [str(path), "-c", f"print({_PYTHON_MARK!r})"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=PYTHON_CHECK_TIMEOUT_S,
            check=False, cwd=cwd,
        )  # fmt: skip
    except OSError as exc:
        raise MtestError(
            f"invalid {origin} `{python}`: cannot run it ({exc.strerror})", hint=hint
        ) from None
    except subprocess.TimeoutExpired:
        raise MtestError(
            f"invalid {origin} `{python}`: `-c` did not finish in {PYTHON_CHECK_TIMEOUT_S:.0f}s",
            hint=hint,
        ) from None
    if done.returncode != 0 or _PYTHON_MARK not in done.stdout.decode(errors="replace"):
        raise MtestError(
            f"invalid {origin} `{python}`: it does not run Python code "
            f"(`{python} -c ...` exited {done.returncode})",
            hint=hint,
        )
    if found is None and os.sep not in python:
        # It runs, but a bare name is looked up on PATH only, never in the cwd.
        raise MtestError(
            f"invalid {origin} `{python}`: not found on PATH", hint=f"write ./{python}"
        )
