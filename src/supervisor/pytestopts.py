"""pytest's own options as mtest meets them: the ones it honours itself, the ones it refuses.

Pure. mtest gives every pytest child the options after ``--`` (and
``[tool.mtest] pytest_args``), but a few cannot work inside one child of many:

- ``-x``/``--exitfirst``, ``--maxfail N``: a child would end its session after
  its own N-th failure. mtest takes them out and counts failures across every
  child itself.
- ``--collect-only``/``--co``: mtest takes it out and lists the selection itself.
- the options in ``REFUSED`` make no sense under a supervisor (a debugger
  with no terminal, pytest-xdist's workers, pytest's last-failed cache that
  sees one chunk, options that run no tests, pytest-cov's, which would measure
  each chunk on its own: mtest's ``--cov`` measures across them): a usage
  error names them.

``-k`` and ``-m`` stay with the children: every child selects the same tests,
so the listing and the node ids stay pytest's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from supervisor.errors import MtestError

VALUE_SHORTS = frozenset("Wckmoprn")
"""Short options that take a value (pytest 9's, and pytest-xdist's ``-n``): in a
bundle such as ``-rxs`` the rest of the token is that value, not more options."""

EXITFIRST = frozenset({"-x", "--exitfirst"})
MAXFAIL = "--maxfail"
COLLECT_ONLY = frozenset({"--collect-only", "--co", "--collectonly"})

_DEBUGGER = (
    "the pytest children run without a terminal; debug one test with plain `pytest --pdb ID`"
)
_PARALLEL = "mtest runs tests in parallel itself: use `-j N` (or `-j auto`)"
_CACHE = (
    "each pytest child sees only its own chunk, so pytest's cache of failures is not the run's; "
    "pass the ids to rerun as paths (`mtest --report` lists the last failures)"
)
_STEPWISE = "stop at the first failure with `-x`; `mtest --resume` then goes on from there"
_NO_RUN = "this option runs no tests; use plain pytest, or mtest's `--collect-only`"
_INFO = "this option prints information and runs no tests: run it with plain pytest"
_COVERAGE = (
    "pytest-cov in each child would measure one chunk: use mtest's own `--cov[=SOURCE]`, "
    "`--cov-branch` and `--cov-fail-under N` (before `--`), then `coverage report` or "
    "`coverage html`"
)

_REFUSED_GROUPS = (
    (("--pdb", "--trace", "--pdbcls"), _DEBUGGER),
    (("-n", "--numprocesses", "--maxprocesses", "--dist", "--tx", "-d", "-f", "--looponfail"),
     _PARALLEL),
    (("--lf", "--last-failed", "--ff", "--failed-first", "--nf", "--new-first", "--lfnf",
      "--last-failed-no-failures"), _CACHE),
    (("--sw", "--stepwise", "--sw-skip", "--stepwise-skip", "--sw-reset", "--stepwise-reset"),
     _STEPWISE),
    (("--setup-only", "--setuponly", "--setup-plan", "--setupplan"), _NO_RUN),
    (("--fixtures", "--funcargs", "--fixtures-per-test", "--markers", "--cache-show", "-h",
      "--help", "-V", "--version"), _INFO),
    (("--cov", "--cov-report", "--cov-config", "--cov-append", "--cov-branch",
      "--cov-fail-under", "--cov-context", "--cov-precision", "--cov-reset",
      "--no-cov-on-fail"), _COVERAGE),
)  # fmt: skip
REFUSED: Mapping[str, str] = MappingProxyType(
    {option: hint for options, hint in _REFUSED_GROUPS for option in options}
)
"""pytest options mtest cannot honour, with the hint that goes with the refusal."""

VALUE_LONGS = frozenset(
    {"--basetemp", "--capture", "--code-highlight", "--color", "--confcutdir",
     "--config-file", "--deselect", "--doctest-glob", "--doctest-report", "--durations",
     "--durations-min", "--ignore", "--ignore-glob", "--import-mode", "--junit-prefix",
     "--junit-xml", "--junitprefix", "--junitxml", "--log-auto-indent",
     "--log-cli-date-format", "--log-cli-format", "--log-cli-level", "--log-date-format",
     "--log-disable", "--log-file", "--log-file-date-format", "--log-file-format",
     "--log-file-level", "--log-file-mode", "--log-format", "--log-level",
     "--max-warnings", "--override-ini", "--pastebin", "--pythonwarnings",
     "--report-chars", "--rootdir", "--show-capture", "--tb", "--verbosity", "--assert",
     "--timeout", "--timeout-method", "--reruns", "--reruns-delay", "--cov",
     "--cov-report", "--cov-config", "--cov-fail-under"}
)  # fmt: skip
"""Long options whose value may be the next argument (pytest 9's and common plugins'):
that argument is a value, never read as an option."""


@dataclass(frozen=True, kw_only=True)
class Taken:
    """pytest arguments split into what the children get and what mtest does itself."""

    child_args: tuple[str, ...]
    maxfail: int | None = None
    """From ``-x`` (1) or ``--maxfail N`` (the last one wins, as in pytest); ``None``: no limit."""
    collect_only: bool = False


def refuse(option: str, origin: str) -> MtestError:
    return MtestError(
        f"pytest's `{option}` cannot be used with mtest ({origin})", hint=REFUSED[option]
    )


def parse_maxfail(text: str, where: str) -> int:
    """``--maxfail``'s value; ``where`` says where it was given, e.g. `` (after `--`)``."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise MtestError(
            f"invalid --maxfail `{text}`{where}",
            hint="expected a whole number of failures, 0 or more",
        )
    return value


def _looks_like_value(arg: str) -> bool:
    """What argparse would take as an option's value rather than another option."""
    return not arg.startswith("-") or " " in arg or arg == "-"


def take(args: Sequence[str], origin: str) -> Taken:
    """Take ``-x``, ``--maxfail`` and ``--collect-only`` out of ``args``; refuse ``REFUSED``."""
    scan = _Scan(args=tuple(args), origin=origin)
    while scan.index < len(scan.args):
        arg = scan.next()
        if not arg.startswith("-") or arg == "-":
            scan.kept.append(arg)
        elif arg.startswith("--"):
            scan.long_option(arg)
        else:
            scan.short_options(arg)
    return Taken(
        child_args=tuple(scan.kept), maxfail=scan.maxfail or None, collect_only=scan.collect_only
    )


@dataclass(kw_only=True)
class _Scan:
    args: tuple[str, ...]
    origin: str
    index: int = 0
    kept: list[str] = field(default_factory=list)
    maxfail: int | None = None
    collect_only: bool = False

    def next(self) -> str:
        self.index += 1
        return self.args[self.index - 1]

    def keep_value(self) -> None:
        """Keep the next argument as the value of the option just kept, if it is one."""
        if self.index < len(self.args) and _looks_like_value(self.args[self.index]):
            self.kept.append(self.next())

    def long_option(self, arg: str) -> None:
        name, eq, value = arg.partition("=")
        if name in REFUSED:
            raise refuse(name, self.origin)
        if name in EXITFIRST:
            self.maxfail = 1
        elif name in COLLECT_ONLY:
            self.collect_only = True
        elif name == MAXFAIL:
            if not eq and self.index >= len(self.args):
                raise MtestError(f"`--maxfail` needs a value ({self.origin})", hint="--maxfail 2")
            self.maxfail = parse_maxfail(value if eq else self.next(), f" ({self.origin})")
        else:
            self.kept.append(arg)
            if not eq and name in VALUE_LONGS:
                self.keep_value()

    def short_options(self, arg: str) -> None:
        flags, tail = _short_bundle(arg, self.origin)
        if "x" in flags:
            self.maxfail = 1
        rebuilt = "-" + flags.replace("x", "") + (tail or "")
        if rebuilt != "-":
            self.kept.append(rebuilt)
        if tail is not None and len(tail) == 1:
            self.keep_value()


def _short_bundle(arg: str, origin: str) -> tuple[str, str | None]:
    """``-vxkfoo`` → ``("vx", "kfoo")``: the flags, then the first value-taking option
    with what is attached to it (``None`` when there is none)."""
    for position, char in enumerate(arg[1:], start=1):
        if f"-{char}" in REFUSED:
            raise refuse(f"-{char}", origin)
        if char in VALUE_SHORTS:
            return arg[1:position], arg[position:]
    return arg[1:], None
