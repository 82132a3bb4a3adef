"""argv → ``Config``: mtest's command line, ``[tool.mtest]`` and pytest's own options.

``make_config`` is the one way to build a ``Config``; ``cli``, ``resume`` and
``selfcheck`` use it. It raises ``MtestError`` (exit 4) for anything wrong,
before any test runs; it prints nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from supervisor import launcher, pytestopts, select
from supervisor.config import (
    DEFAULT_KILL_GRACE_S,
    Config,
    FlakyResult,
    Mode,
    check_junit_target,
    check_keys,
    check_python,
    default_python,
    find_rootdir,
    flag_of,
    load_tool_config,
    parse_command,
    parse_duration,
    parse_jobs,
    parse_port,
    parse_positive,
    parse_size,
    text_of,
    tier_map_from,
)
from supervisor.errors import MtestError
from supervisor.version import __version__

_MODES = (
    ("resume", Mode.RESUME), ("report", Mode.REPORT), ("quarantine", Mode.QUARANTINE),
    ("self_check", Mode.SELF_CHECK), ("merge", Mode.MERGE), ("collect_only", Mode.COLLECT_ONLY),
)  # fmt: skip
_RUNS_TESTS = frozenset({Mode.RUN, Mode.COLLECT_ONLY, Mode.SELF_CHECK, Mode.SERVICE})
_MTEST_OWN = frozenset(
    {"-h", "--help", "--version", "--cov", "--cov-branch", "--cov-fail-under", "--trace"}
)
SUBCOMMANDS = {
    "service": Mode.SERVICE, "history": Mode.HISTORY, "cleanup": Mode.CLEANUP, "graph": Mode.GRAPH,
    "orphans": Mode.ORPHANS, "slowest": Mode.SLOWEST,
}  # fmt: skip
"""``mtest service …``, ``mtest history …``, ``mtest cleanup …``, ``mtest graph``,
``mtest orphans``, ``mtest slowest [N]``: the first word."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        hint = "pytest's own options go after `--`" if "unrecognized" in message else ""
        raise MtestError(message, hint=hint or "see `mtest --help`")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mtest",
        description="Run pytest from the outside: every test gets one honest outcome, "
        "whatever it does.",
        epilog="Options after `--` go to pytest (-x, --maxfail and --collect-only are "
        "honoured by mtest across all workers). Docs: docs/user-guide.md",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="what to collect, as for pytest")
    p.add_argument("--tier", metavar="SPEC", help="tiers to run: 0, 0-2, 1,3 (default 0-3)")
    p.add_argument("--budget", metavar="DUR", help="wall-clock cap for the run: 90s, 5m, 1h30m")
    p.add_argument(
        "--changed", nargs="?", const="HEAD", metavar="REV",
        help="only the tests that changes since REV (default HEAD) may affect",
    )  # fmt: skip
    modes = p.add_mutually_exclusive_group()
    modes.add_argument("--resume", action="store_true", help="continue the last interrupted run")
    modes.add_argument("--report", action="store_true", help="print the last run's summary")
    modes.add_argument("--quarantine", action="store_true", help="list quarantined/watched tests")
    modes.add_argument("--self-check", action="store_true", help="prove this install works")
    modes.add_argument("--merge", nargs="+", metavar="DIR", help="join shards' gates directories")
    modes.add_argument(
        "--collect-only", "--co", action="store_true", help="list the selected tests and exit"
    )
    _add_pytest_like(p)
    _add_service_and_outputs(p)
    _add_setup(p)
    p.add_argument(
        "--fail-fast", action=argparse.BooleanOptionalAction, help="stop launching after a failure"
    )
    p.add_argument("-j", "--jobs", metavar="N", help="chunks at once; `auto` = usable CPUs")
    p.add_argument("--timeout", metavar="S", help="per-test wall-clock limit in seconds")
    p.add_argument("--kill-grace", metavar="S", help="seconds from SIGTERM to SIGKILL (5)")
    p.add_argument("--retries", metavar="N", help="re-run failed/hung/crashed tests alone")
    _add_order(p)
    p.add_argument(
        "--flaky-result", choices=[f.value for f in FlakyResult],
        help="whether flaky tests fail the run (default: pass)",
    )  # fmt: skip
    p.add_argument(
        "--skip-quarantined",
        action=argparse.BooleanOptionalAction,
        help="do not run quarantined tests",
    )
    p.add_argument("--junit-xml", metavar="PATH", help="also write one merged JUnit XML")
    p.add_argument("--shard", metavar="K/N", help="run only shard K of N")
    p.add_argument("--gates-dir", metavar="DIR", help="state directory (default .gates)")
    p.add_argument("--python", metavar="PATH", help="interpreter that runs pytest")
    _add_sandbox(p)
    p.add_argument("-q", "--quiet", action="count", default=0, help="less output")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more output")
    p.add_argument("--version", action="version", version=f"mtest {__version__}")
    return p


def _add_order(p: argparse.ArgumentParser) -> None:
    """Order dependence and reruns of the last run's failures (issue 13)."""
    p.add_argument(
        "--isolate-failures", action=argparse.BooleanOptionalAction,
        help="rerun a test that failed in its chunk alone (default: on)",
    )  # fmt: skip
    p.add_argument(
        "--find-polluter", action="store_true",
        help="name the earlier test that breaks an order_dependent one",
    )  # fmt: skip
    p.add_argument(
        "--failed", action="store_true",
        help="run only the last run's failing tests and the new ones",
    )  # fmt: skip


def _add_pytest_like(p: argparse.ArgumentParser) -> None:
    """The pytest options users type at the top level; mtest honours them across workers."""
    p.add_argument("-k", dest="keyword", metavar="EXPR", help="as pytest's -k (given to pytest)")
    p.add_argument("-m", dest="markexpr", metavar="EXPR", help="as pytest's -m (given to pytest)")
    p.add_argument(
        "-x", "--exitfirst", action="store_true", help="stop the run after the first failure"
    )
    p.add_argument("--maxfail", metavar="N", help="stop the run after N failures")


def _add_sandbox(p: argparse.ArgumentParser) -> None:
    sandbox = p.add_argument_group("isolation (docs/isolation.md)")
    sandbox.add_argument(
        "--sandbox", action=argparse.BooleanOptionalAction,
        help="run each worker under bubblewrap: no network, private /tmp, host read-only",
    )  # fmt: skip
    sandbox.add_argument(
        "--sandbox-writable", action="append", metavar="PATH",
        help="an existing path the sandboxed tests may write (besides .gates/); repeatable",
    )  # fmt: skip
    sandbox.add_argument("--container", metavar="IMAGE", help="run each worker in a container")
    sandbox.add_argument(
        "--container-runtime", metavar="NAME", help="docker or podman (default: the first found)"
    )
    sandbox.add_argument(
        "--docker-host", metavar="URL", help="the engine: unix://, tcp://, ssh:// (DOCKER_HOST)"
    )
    sandbox.add_argument(
        "--container-arg", action="append", metavar="ARG",
        help="given to `docker run` as is; repeatable (write --container-arg=--cpus=2)",
    )  # fmt: skip
    sandbox.add_argument(
        "--container-lock", metavar="PATH", help="serialises container runs (.gates/container.lock)"
    )
    sandbox.add_argument(
        "--image-tar", metavar="PATH", help="`docker load -i` it when the image is missing"
    )


def _add_service_and_outputs(p: argparse.ArgumentParser) -> None:
    """``mtest service`` and ``mtest history``, and what a run can also produce."""
    service = p.add_argument_group("mtest service")
    service.add_argument("--every", metavar="DUR", help="start a run every DUR: 30s, 5m, 1h")
    service.add_argument("--cycles", metavar="N", help="stop after N runs (default: never)")
    service.add_argument(
        "--metrics-port", metavar="PORT", help="serve /metrics and /health (0: any free port)"
    )
    service.add_argument("--metrics-host", metavar="HOST", help="address to bind (127.0.0.1)")
    outputs = p.add_argument_group("what a run also writes")
    outputs.add_argument("--metrics-file", metavar="PATH", help="Prometheus text after each run")
    outputs.add_argument("--history", metavar="FILE", help="run history (.gates/history.jsonl)")
    outputs.add_argument(
        "--history-keep", metavar="N,AGE", help="history kept: runs and/or age (1000,90d)"
    )
    outputs.add_argument(
        "--events", metavar="PATH", help="the run's events as JSON lines (- = stdout)"
    )
    outputs.add_argument(
        "--cov", action="append", nargs="?", const="", metavar="SOURCE",
        help="measure coverage (coverage.py in the tested environment); repeatable",
    )  # fmt: skip
    outputs.add_argument("--cov-branch", action="store_true", help="also branch coverage")
    outputs.add_argument("--cov-fail-under", metavar="PCT", help="fail the run under PCT %%")
    outputs.add_argument(
        "--max-rss", metavar="SIZE", help="replace a worker above SIZE (512M, 2G) between tests"
    )
    outputs.add_argument(
        "--html", metavar="PATH", help="the HTML report also here (always last-run/report.html)"
    )
    outputs.add_argument("--trace", metavar="PATH", help="the run as a Chrome trace (Perfetto)")
    outputs.add_argument(
        "--durations", metavar="N", help="list the N slowest tests at the end (0: all)"
    )
    history = p.add_argument_group("mtest history, mtest slowest [N]")
    history.add_argument("--last", metavar="N", help="runs in the trend table (20)")
    history.add_argument(
        "--json",
        action="store_true",
        help="the runs (or `mtest graph`/`orphans`/`slowest`) as JSON",
    )
    orphans = p.add_argument_group("mtest orphans (modules no test reaches)")
    orphans.add_argument(
        "--recursive", action="store_true", help="also the modules only orphans import"
    )
    orphans.add_argument(
        "--include-orphans", action="store_true", help="a run also import-checks each orphan"
    )


def _add_setup(p: argparse.ArgumentParser) -> None:
    """The once-per-run setup and teardown (``runsetup``)."""
    once = p.add_argument_group("once-per-run setup")
    once.add_argument("--setup", metavar="CMD", help="shell command run once before any worker")
    once.add_argument("--teardown", metavar="CMD", help="shell command run once at the end")
    once.add_argument(
        "--setup-timeout", metavar="DUR", help="limit for the setup and the teardown (5m)"
    )


def split_argv(argv: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
    """mtest's own arguments, and pytest's (after the first ``--``)."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    return argv[:split], tuple(argv[split + 1 :])


def make_config(argv: Sequence[str], cwd: Path) -> Config:
    """Parse the command line, read ``[tool.mtest]``, validate everything."""
    own, after = split_argv(argv)
    word = SUBCOMMANDS.get(own[0]) if own else None
    if word is not None:
        own = own[1:]
    own = _joined_negatives(own)
    slowest_n = _slowest_n(own) if word is Mode.SLOWEST else None
    if slowest_n is not None:
        own = own[1:]
    for arg in own:
        name = arg.partition("=")[0]
        if name in pytestopts.REFUSED and name not in _MTEST_OWN:
            raise pytestopts.refuse(name, "on the command line")
    ns = build_parser().parse_args(own)
    rootdir = find_rootdir((*after, *ns.paths), cwd)
    table, origin = load_tool_config(rootdir)
    check_keys(table, origin)
    extra = table.get("pytest_args", [])
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise MtestError(f"invalid `pytest_args` in {origin}", hint="expected a list of strings")
    from_table = pytestopts.take(extra, f"`pytest_args` in {origin}")
    from_argv = pytestopts.take(after, "after `--`")
    mode = _mode(ns, collect_only=from_table.collect_only or from_argv.collect_only, word=word)
    if mode is Mode.SLOWEST and ns.paths:
        raise MtestError(
            f"unexpected `{ns.paths[0]}` after `mtest slowest`", hint="e.g. mtest slowest 30 --json"
        )
    container = _container_values(ns, table, origin, cwd, rootdir, cleanup=mode is Mode.CLEANUP)
    contained = container.get("container") is not None
    return Config(
        mode=mode,
        paths=tuple(ns.paths),
        pytest_args=(*from_table.child_args, *from_argv.child_args, *_selection(ns)),
        cwd=cwd,
        rootdir=rootdir,
        gates_dir=_gates_dir(_pick(ns.gates_dir, "gates_dir", table, origin), ns, cwd, rootdir),
        maxfail=_maxfail(ns, from_argv.maxfail or from_table.maxfail),
        merge_dirs=tuple((cwd / d).resolve() for d in ns.merge or ()),
        verbosity=ns.verbose - ns.quiet,
        argv=tuple(argv),
        **{
            **_values(ns, table, origin, cwd, check=mode in _RUNS_TESTS and not contained),
            **container,
        },
        **_service_values(ns, mode, cwd),
        **_sandbox_values(ns, table, origin, cwd, rootdir, check=mode in _RUNS_TESTS),
        **_setup_values(ns, table, origin),
        **_report_values(ns, table, origin, cwd, rootdir, mode),
        slowest_n=20 if slowest_n is None else slowest_n,
    )


def _slowest_n(own: list[str]) -> int | None:
    """``mtest slowest N``: the count, when one is given first."""
    if not own or own[0].startswith("-"):
        return None
    return int(parse_positive(own[0], "`mtest slowest` count", integer=True, allow_zero=True))


def _report_values(
    ns: argparse.Namespace, table: Mapping[str, Any], origin: str, cwd: Path, rootdir: Path,
    mode: Mode,
) -> dict[str, Any]:  # fmt: skip
    """``--html``, ``--trace`` (relative to the cwd; ``[tool.mtest] html`` to its rootdir),
    ``--durations`` / ``[tool.mtest] durations``, and ``mtest slowest``'s count."""
    values: dict[str, Any] = {}
    runs = mode in (Mode.RUN, Mode.RESUME, Mode.SERVICE)
    html = ns.html if ns.html is not None else table.get("html") if runs else None
    if html is not None:
        base, where = (cwd, "--html") if ns.html is not None else (rootdir, f"`html` in {origin}")
        values["html_path"] = check_junit_target(
            (base / text_of(html, where)).resolve(), where, example="--html report.html"
        )
    if ns.trace is not None:
        path = (cwd / text_of(ns.trace, "--trace")).resolve()
        values["trace_path"] = check_junit_target(path, "--trace", example="--trace trace.json")
    durations = _pick(ns.durations, "durations", table, origin) if runs else None
    if durations is not None:
        values["durations"] = int(parse_positive(*durations, integer=True, allow_zero=True))
    return values


def _joined_negatives(own: list[str]) -> list[str]:
    """``--every -1s`` → ``--every=-1s``: argparse would take ``-1s`` for an option, and
    the error must name the value."""
    out: list[str] = []
    for arg in own:
        joins = out and out[-1].startswith("--") and "=" not in out[-1]
        if joins and arg.startswith("-") and arg[1:2].isdigit():
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _pick(
    flag: object, key: str, table: Mapping[str, Any], origin: str
) -> tuple[object, str] | None:
    """A flag's value and its name, else the table's value and where it is, else ``None``."""
    if flag is not None:
        return flag, f"--{key.replace('_', '-')}"
    if key in table:
        return table[key], f"`{key}` in {origin}"
    return None


def _values(
    ns: argparse.Namespace, table: Mapping[str, Any], origin: str, cwd: Path, *, check: bool
) -> dict[str, Any]:
    """The settings that a flag or ``[tool.mtest]`` may give, validated."""
    jobs = _pick(ns.jobs, "jobs", table, origin)
    timeout = _pick(ns.timeout, "timeout", table, origin)
    grace = _pick(ns.kill_grace, "kill_grace", table, origin)
    retries = _pick(ns.retries, "retries", table, origin)
    budget = _pick(ns.budget, "budget", table, origin)
    try:
        tiers = frozenset({0, 1, 2, 3}) if ns.tier is None else select.parse_tiers(ns.tier)
        shard = None if ns.shard is None else select.parse_shard(ns.shard)
    except ValueError as exc:
        flag = "--tier" if ns.tier is not None and "tier" in str(exc) else "--shard"
        raise MtestError(str(exc), hint=f"see `mtest --help` for {flag}") from None
    python, python_origin = _python(ns, table, origin, cwd, check=check)
    isolate = flag_of(table, "isolate_failures", origin, default=True)
    if ns.isolate_failures is not None:
        isolate = ns.isolate_failures
    if ns.find_polluter and not isolate:
        raise MtestError(
            "--find-polluter needs the rerun alone that --no-isolate-failures turns off",
            hint="drop one of them (or `isolate_failures = false` from [tool.mtest])",
        )
    return {
        "python": python,
        "python_origin": python_origin,
        "jobs": 1 if jobs is None else parse_jobs(*jobs),
        "timeout_s": None if timeout is None else parse_positive(*timeout, integer=False),
        "kill_grace_s": DEFAULT_KILL_GRACE_S
        if grace is None
        else parse_positive(*grace, integer=False, allow_zero=True),
        "retries": 0
        if retries is None
        else int(parse_positive(*retries, integer=True, allow_zero=True)),
        "tiers": tiers,
        "tier_map": tier_map_from(table, origin),
        "budget_s": None if budget is None else parse_duration(str(budget[0]), budget[1]),
        "changed": ns.changed,
        "shard": shard,
        "fail_fast": flag_of(table, "fail_fast", origin) if ns.fail_fast is None else ns.fail_fast,
        "skip_quarantined": flag_of(table, "skip_quarantined", origin)
        if ns.skip_quarantined is None
        else ns.skip_quarantined,
        "lazy_collection": flag_of(table, "lazy_collection", origin, default=True),
        "isolate_failures": isolate,
        "find_polluter": ns.find_polluter,
        "failed_only": ns.failed,
        "flaky_result": _flaky_result(_pick(ns.flaky_result, "flaky_result", table, origin)),
        "junit_xml": None
        if ns.junit_xml is None
        else check_junit_target((cwd / ns.junit_xml).resolve(), "--junit-xml"),
    }


def _python(
    ns: argparse.Namespace, table: Mapping[str, Any], origin: str, cwd: Path, *, check: bool
) -> tuple[str, str]:
    """The interpreter for pytest and where it came from; a named one must be a Python."""
    picked = _pick(ns.python, "python", table, origin)
    if picked is None:
        return default_python()
    python = text_of(*picked)
    if check:
        check_python(python, picked[1], cwd)
    return python, picked[1]


def _flaky_result(picked: tuple[object, str] | None) -> FlakyResult:
    if picked is None:
        return FlakyResult.PASS
    value, where = picked
    for choice in FlakyResult:
        if value == choice.value:
            return choice
    raise MtestError(f"invalid {where} {value!r}", hint='expected "pass" or "fail"')


def _mode(ns: argparse.Namespace, *, collect_only: bool, word: Mode | None = None) -> Mode:
    given = vars(ns)
    chosen = [mode for attr, mode in _MODES if given[attr]]
    if word is not None:
        if chosen:
            raise MtestError(
                f"`mtest {word.value}` cannot be used with --{chosen[0].value}", hint="pick one"
            )
        return word
    if collect_only and Mode.COLLECT_ONLY not in chosen:
        chosen.append(Mode.COLLECT_ONLY)
    if len(chosen) > 1:
        names = " and ".join(f"--{m.value}" for m in chosen)
        raise MtestError(f"{names} cannot be used together", hint="pick one")
    return chosen[0] if chosen else Mode.RUN


def _selection(ns: argparse.Namespace) -> tuple[str, ...]:
    """Top-level ``-k``/``-m``, given to every pytest child as pytest options."""
    keyword = () if ns.keyword is None else ("-k", ns.keyword)
    markexpr = () if ns.markexpr is None else ("-m", ns.markexpr)
    return (*keyword, *markexpr)


def _maxfail(ns: argparse.Namespace, from_pytest_args: int | None) -> int | None:
    """``-x``/``--maxfail`` at the top level win over the ones given to pytest."""
    if ns.maxfail is not None:
        return pytestopts.parse_maxfail(ns.maxfail, "") or None
    if ns.exitfirst:
        return 1
    return from_pytest_args


def _gates_dir(
    picked: tuple[object, str] | None, ns: argparse.Namespace, cwd: Path, root: Path
) -> Path:
    """``--gates-dir`` is relative to the cwd; ``[tool.mtest] gates_dir`` to its rootdir."""
    if picked is None:
        return root / ".gates"
    return ((cwd if ns.gates_dir is not None else root) / text_of(*picked)).resolve()


def _sandbox_values(
    ns: argparse.Namespace, table: Mapping[str, Any], origin: str, cwd: Path, rootdir: Path,
    *, check: bool,
) -> dict[str, Any]:  # fmt: skip
    """``--sandbox`` and ``--sandbox-writable`` (relative to the cwd; ``[tool.mtest]``'s to
    its rootdir): each path must exist, and bwrap must work here before any test runs."""
    sandbox = flag_of(table, "sandbox", origin) if ns.sandbox is None else ns.sandbox
    raw = table.get("sandbox_writable", [])
    if not isinstance(raw, list):
        raise MtestError(f"invalid `sandbox_writable` in {origin}", hint="expected a list of paths")
    where = f"`sandbox_writable` in {origin}"
    named = [
        *((rootdir, text_of(v, where), where) for v in raw),
        *((cwd, v, "--sandbox-writable") for v in ns.sandbox_writable or ()),
    ]
    if ns.sandbox_writable and not sandbox:
        raise MtestError("--sandbox-writable needs --sandbox", hint="add --sandbox")
    writable = []
    for base, text, origin_of in named:
        path = (base / text).resolve()
        if not path.exists():
            raise MtestError(
                f"invalid {origin_of} `{text}`: {path} does not exist",
                hint="name an existing file or directory (bwrap binds only what exists)",
            )
        writable.append(path)
    if sandbox and check:
        launcher.check(launcher.Launcher(kind=launcher.Kind.SANDBOX))
    return {"sandbox": sandbox, "sandbox_writable": tuple(writable)}


_CONTAINED = frozenset({Mode.RUN, Mode.COLLECT_ONLY, Mode.SERVICE, Mode.RESUME})
"""Where ``--container`` and its options apply (not ``--self-check``: its scenarios check
host processes)."""


def _container_values(
    ns: argparse.Namespace, table: Mapping[str, Any], origin: str, cwd: Path, rootdir: Path,
    *, cleanup: bool,
) -> dict[str, Any]:  # fmt: skip
    """``--container`` and its options (paths relative to the cwd; ``[tool.mtest]``'s to its
    rootdir). In a container the interpreter is the image's ``python3`` unless ``--python``
    (or ``[tool.mtest] python``) names one, which must exist in the image, not here."""
    values: dict[str, Any] = {}
    for key in ("container", "container_runtime", "docker_host"):
        picked = _pick(getattr(ns, key), key, table, origin)
        values[key] = None if picked is None else text_of(*picked)
    raw = table.get("container_args", [])
    if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
        raise MtestError(f"invalid `container_args` in {origin}", hint="expected a list of strings")
    values["container_args"] = (*raw, *(ns.container_arg or ()))
    for key in ("container_lock", "image_tar"):
        flag = getattr(ns, key)
        if flag is not None:
            values[key] = (cwd / text_of(flag, f"--{key.replace('_', '-')}")).resolve()
        elif key in table:
            values[key] = (rootdir / text_of(table[key], f"`{key}` in {origin}")).resolve()
    if values["container"] is None:
        engine = () if cleanup else ("container_runtime", "docker_host")
        used = [k for k in (*engine, "container_lock", "image_tar") if values.get(k) is not None]
        if ns.container_arg:
            used.append("container_arg")
        if used:
            flag = "--" + used[0].replace("_", "-")
            raise MtestError(f"{flag} needs --container", hint="add --container IMAGE")
        return {k: v for k, v in values.items() if k in ("container_runtime", "docker_host")}
    if ns.sandbox or (ns.sandbox is None and table.get("sandbox") is True):
        raise MtestError(
            "--container and --sandbox cannot be combined",
            hint="choose one: a container is already isolated (add --container-arg flags)",
        )
    picked = _pick(ns.python, "python", table, origin)
    values["python"], values["python_origin"] = (
        ("python3", "the image's python3") if picked is None else (text_of(*picked), picked[1])
    )
    return values


_ONLY = (
    ("every", "--every", {Mode.SERVICE}),
    ("cycles", "--cycles", {Mode.SERVICE}),
    ("metrics_port", "--metrics-port", {Mode.SERVICE}),
    ("metrics_host", "--metrics-host", {Mode.SERVICE}),
    ("history", "--history", {Mode.SERVICE, Mode.RUN, Mode.RESUME, Mode.HISTORY}),
    ("history_keep", "--history-keep", {Mode.SERVICE, Mode.RUN, Mode.RESUME}),
    ("last", "--last", {Mode.HISTORY}),
    ("json", "--json", {Mode.HISTORY, Mode.GRAPH, Mode.ORPHANS, Mode.SLOWEST}),
    ("recursive", "--recursive", {Mode.ORPHANS}),
    ("include_orphans", "--include-orphans", {Mode.RUN, Mode.RESUME, Mode.SERVICE}),
    ("html", "--html", {Mode.SERVICE, Mode.RUN, Mode.RESUME}),
    ("trace", "--trace", {Mode.SERVICE, Mode.RUN, Mode.RESUME}),
    ("durations", "--durations", {Mode.SERVICE, Mode.RUN, Mode.RESUME}),
    ("metrics_file", "--metrics-file", {Mode.SERVICE, Mode.RUN, Mode.RESUME}),
    ("events", "--events", {Mode.SERVICE, Mode.RUN, Mode.RESUME}),
    ("cov", "--cov", {Mode.SERVICE, Mode.RUN}),
    ("cov_branch", "--cov-branch", {Mode.SERVICE, Mode.RUN}),
    ("cov_fail_under", "--cov-fail-under", {Mode.SERVICE, Mode.RUN}),
    ("max_rss", "--max-rss", {Mode.SERVICE, Mode.RUN, Mode.RESUME, Mode.SELF_CHECK}),
    # Not --self-check: its scenarios check host pids that a pid namespace would hide.
    ("sandbox", "--sandbox", {Mode.RUN, Mode.COLLECT_ONLY, Mode.SERVICE, Mode.RESUME}),
    (
        "sandbox_writable",
        "--sandbox-writable",
        {Mode.RUN, Mode.COLLECT_ONLY, Mode.SERVICE, Mode.RESUME},
    ),
    ("container", "--container", _CONTAINED),
    ("container_arg", "--container-arg", _CONTAINED),
    ("container_lock", "--container-lock", _CONTAINED),
    ("image_tar", "--image-tar", _CONTAINED),
    ("container_runtime", "--container-runtime", {*_CONTAINED, Mode.CLEANUP}),
    ("docker_host", "--docker-host", {*_CONTAINED, Mode.CLEANUP}),
    ("changed", "--changed", {Mode.RUN, Mode.COLLECT_ONLY, Mode.SERVICE}),
    ("setup", "--setup", {Mode.SERVICE, Mode.RUN, Mode.RESUME}),
    ("teardown", "--teardown", {Mode.SERVICE, Mode.RUN, Mode.RESUME}),
    ("setup_timeout", "--setup-timeout", {Mode.SERVICE, Mode.RUN, Mode.RESUME}),
    ("find_polluter", "--find-polluter", {Mode.SERVICE, Mode.RUN, Mode.RESUME}),
    ("isolate_failures", "--isolate-failures", {Mode.SERVICE, Mode.RUN, Mode.RESUME}),
    ("failed", "--failed", {Mode.RUN, Mode.COLLECT_ONLY}),
)
"""Options that belong to some modes: elsewhere a usage error, not silently ignored."""


def _service_values(ns: argparse.Namespace, mode: Mode, cwd: Path) -> dict[str, Any]:
    """The options of ``mtest service``, ``mtest history`` and the run's extra outputs."""
    for attr, flag, modes in _ONLY:
        if getattr(ns, attr) not in (None, False) and mode not in modes:
            where = " or ".join(sorted(f"`mtest {m.value}`" if m in SUBCOMMANDS.values()
                                       else f"a {m.value} run" for m in modes))  # fmt: skip
            raise MtestError(f"{flag} is not used by this command", hint=f"it is for {where}")
    if mode is Mode.SERVICE and ns.every is None:
        raise MtestError("`mtest service` needs --every", hint="e.g. mtest service --every 1h")
    values: dict[str, Any] = {
        "every_s": None if ns.every is None else parse_duration(ns.every, "--every"),
        "cycles": None
        if ns.cycles is None
        else int(parse_positive(ns.cycles, "--cycles", integer=True)),
        "metrics_port": None
        if ns.metrics_port is None
        else parse_port(ns.metrics_port, "--metrics-port"),
        "metrics_host": ns.metrics_host or "127.0.0.1",
        "metrics_file": None if ns.metrics_file is None else (cwd / ns.metrics_file).resolve(),
        "history_file": None if ns.history is None else (cwd / ns.history).resolve(),
        "history_last": 20
        if ns.last is None
        else int(parse_positive(ns.last, "--last", integer=True)),
        "json_output": bool(ns.json),
        "recursive": bool(ns.recursive),
        "include_orphans": bool(ns.include_orphans),
        "cov": ns.cov is not None or ns.cov_branch or ns.cov_fail_under is not None,
        "cov_sources": tuple(s for s in ns.cov or () if s),
        "cov_branch": bool(ns.cov_branch),
        "cov_fail_under": None if ns.cov_fail_under is None else _percent(ns.cov_fail_under),
        "max_rss_bytes": None if ns.max_rss is None else parse_size(ns.max_rss, "--max-rss"),
        "events_to": ns.events,
    }
    if ns.history_keep is not None:
        values.update(_history_keep(ns.history_keep))
    return values


def _setup_values(ns: argparse.Namespace, table: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """``--setup``/``--teardown``/``--setup-timeout``, else ``[tool.mtest]``'s, validated."""
    values: dict[str, Any] = {}
    for key in ("setup", "teardown"):
        picked = _pick(getattr(ns, key), key, table, origin)
        values[key] = None if picked is None else parse_command(*picked)
    timeout = _pick(ns.setup_timeout, "setup_timeout", table, origin)
    if timeout is not None:
        values["setup_timeout_s"] = parse_duration(str(timeout[0]), timeout[1])
    return values


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise MtestError(
            f"invalid --cov-fail-under `{text}`", hint="expected a percentage from 0 to 100"
        )
    return value


def _history_keep(text: str) -> dict[str, Any]:
    """``500``, ``30d`` or ``500,30d``: the runs and/or the age the history keeps."""
    out: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if part.isdigit():
            out["history_keep_runs"] = int(parse_positive(part, "--history-keep", integer=True))
        else:
            out["history_keep_s"] = parse_duration(part, "--history-keep")
    return out
