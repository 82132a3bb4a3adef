"""argv → Config → the pipeline. The only place that prints errors and picks exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from supervisor import __version__, select
from supervisor.config import (
    DEFAULT_KILL_GRACE_S,
    Config,
    Mode,
    check_keys,
    default_python,
    find_rootdir,
    flag_of,
    load_tool_config,
    parse_duration,
    parse_jobs,
    parse_positive,
    text_of,
    tier_map_from,
)
from supervisor.console import Console
from supervisor.errors import MtestError

EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        hint = "pytest's own options go after `--`" if "unrecognized" in message else ""
        raise MtestError(message, hint=hint or "see `mtest --help`")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mtest",
        description="Run pytest from the outside: every test gets one honest outcome, "
        "whatever it does.",
        epilog="Options after `--` go to pytest unchanged. Docs: docs/user-guide.md",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="what to collect, as for pytest")
    p.add_argument("--tier", metavar="SPEC", help="tiers to run: 0, 0-2, 1,3 (default 0-3)")
    p.add_argument("--budget", metavar="DUR", help="wall-clock cap for the run: 90s, 5m, 1h30m")
    modes = p.add_mutually_exclusive_group()
    modes.add_argument("--resume", action="store_true", help="continue the last interrupted run")
    modes.add_argument("--report", action="store_true", help="print the last run's summary")
    modes.add_argument("--quarantine", action="store_true", help="list quarantined/watched tests")
    modes.add_argument("--self-check", action="store_true", help="prove this install works")
    modes.add_argument("--merge", nargs="+", metavar="DIR", help="join shards' gates directories")
    p.add_argument(
        "--fail-fast", action=argparse.BooleanOptionalAction, help="stop launching after a failure"
    )
    p.add_argument("-j", "--jobs", metavar="N", help="chunks at once; `auto` = usable CPUs")
    p.add_argument("--timeout", metavar="S", help="per-test wall-clock limit in seconds")
    p.add_argument("--kill-grace", metavar="S", help="seconds from SIGTERM to SIGKILL (5)")
    p.add_argument("--retries", metavar="N", help="re-run failed/hung/crashed tests alone")
    p.add_argument(
        "--skip-quarantined",
        action=argparse.BooleanOptionalAction,
        help="do not run quarantined tests",
    )
    p.add_argument("--junit-xml", metavar="PATH", help="also write one merged JUnit XML")
    p.add_argument("--shard", metavar="K/N", help="run only shard K of N")
    p.add_argument("--gates-dir", metavar="DIR", help="state directory (default .gates)")
    p.add_argument("--python", metavar="PATH", help="interpreter that runs pytest")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less output")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more output")
    p.add_argument("--version", action="version", version=f"mtest {__version__}")
    return p


def make_config(argv: Sequence[str], cwd: Path) -> Config:
    """Parse the command line, read ``[tool.mtest]``, validate everything."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    own, pytest_args = argv[:split], tuple(argv[split + 1 :])
    ns = build_parser().parse_args(own)
    rootdir = find_rootdir((*pytest_args, *ns.paths), cwd)
    table, origin = load_tool_config(rootdir)
    check_keys(table, origin)

    def pick(flag: str | None, key: str) -> tuple[object, str] | None:
        if flag is not None:
            return flag, f"--{key.replace('_', '-')}"
        if key in table:
            return table[key], f"`{key}` in {origin}"
        return None

    jobs = pick(ns.jobs, "jobs")
    timeout = pick(ns.timeout, "timeout")
    grace = pick(ns.kill_grace, "kill_grace")
    retries = pick(ns.retries, "retries")
    budget = pick(ns.budget, "budget")
    gates = pick(ns.gates_dir, "gates_dir")
    python = pick(ns.python, "python")
    extra = table.get("pytest_args", [])
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise MtestError(f"invalid `pytest_args` in {origin}", hint="expected a list of strings")
    try:
        tiers = frozenset({0, 1, 2, 3}) if ns.tier is None else select.parse_tiers(ns.tier)
        shard = None if ns.shard is None else select.parse_shard(ns.shard)
    except ValueError as exc:
        flag = "--tier" if ns.tier is not None and "tier" in str(exc) else "--shard"
        raise MtestError(str(exc), hint=f"see `mtest --help` for {flag}") from None
    found_python = default_python() if python is None else ("", "")
    mode = Mode.RUN
    for flag, value in (
        (ns.resume, Mode.RESUME), (ns.report, Mode.REPORT), (ns.quarantine, Mode.QUARANTINE),
        (ns.self_check, Mode.SELF_CHECK), (ns.merge, Mode.MERGE),
    ):  # fmt: skip
        if flag:
            mode = value
    return Config(
        mode=mode,
        paths=tuple(ns.paths),
        pytest_args=(*extra, *pytest_args),
        cwd=cwd,
        rootdir=rootdir,
        gates_dir=_gates_dir(gates, ns.gates_dir is not None, cwd, rootdir),
        python=found_python[0] if python is None else text_of(*python),
        python_origin=found_python[1] if python is None else python[1],
        jobs=1 if jobs is None else parse_jobs(*jobs),
        timeout_s=None if timeout is None else parse_positive(*timeout, integer=False),
        kill_grace_s=DEFAULT_KILL_GRACE_S
        if grace is None
        else parse_positive(*grace, integer=False, allow_zero=True),
        retries=0
        if retries is None
        else int(parse_positive(*retries, integer=True, allow_zero=True)),
        tiers=tiers,
        tier_map=tier_map_from(table, origin),
        budget_s=None if budget is None else parse_duration(str(budget[0]), budget[1]),
        shard=shard,
        fail_fast=flag_of(table, "fail_fast", origin) if ns.fail_fast is None else ns.fail_fast,
        skip_quarantined=flag_of(table, "skip_quarantined", origin)
        if ns.skip_quarantined is None
        else ns.skip_quarantined,
        junit_xml=None if ns.junit_xml is None else (cwd / ns.junit_xml).resolve(),
        merge_dirs=tuple((cwd / d).resolve() for d in ns.merge or ()),
        verbosity=ns.verbose - ns.quiet,
        argv=tuple(argv),
    )


def _gates_dir(picked: tuple[object, str] | None, from_flag: bool, cwd: Path, root: Path) -> Path:
    """``--gates-dir`` is relative to the cwd; ``[tool.mtest] gates_dir`` to its rootdir."""
    if picked is None:
        return root / ".gates"
    return ((cwd if from_flag else root) / text_of(*picked)).resolve()


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: returns the exit code (and ``sys.exit``s with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    console = Console.for_stream(sys.stdout, verbosity=_quick_verbosity(args))
    try:
        config = make_config(args, Path.cwd())
        console.verbosity = config.verbosity
        if "PATH" in config.python_origin:
            console.line(f"mtest: pytest runs under {config.python} ({config.python_origin})")
        code = _dispatch(config, console)
    except MtestError as exc:
        console.error(exc.message, exc.hint)
        code = exc.code
    except KeyboardInterrupt:
        console.error("interrupted", "")
        code = 2
    except Exception as exc:
        console.error(f"internal error: {type(exc).__name__}: {exc}", "please report this bug")
        if os.environ.get("MTEST_DEBUG"):
            raise
        code = EXIT_INTERNAL
    if argv is None:
        sys.exit(code)
    return code


def _quick_verbosity(args: list[str]) -> int:
    own = args[: args.index("--")] if "--" in args else args
    return sum(a in ("-v", "--verbose") for a in own) - sum(a in ("-q", "--quiet") for a in own)


def _dispatch(config: Config, console: Console) -> int:
    # Imported here so that `mtest --version` and usage errors stay instant.
    if config.mode is Mode.SELF_CHECK:
        from supervisor import selfcheck

        return selfcheck.run(config, console)
    if config.mode in (Mode.REPORT, Mode.QUARANTINE, Mode.MERGE):
        from supervisor import views

        view = {
            Mode.REPORT: views.report_view,
            Mode.QUARANTINE: views.quarantine_view,
            Mode.MERGE: views.merge_view,
        }[config.mode]
        return view(config, console)
    from supervisor import pipeline

    return pipeline.run(config, console)
