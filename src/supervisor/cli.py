"""The console script: argv → Config → the command. The only place that prints errors and
picks exit codes.

Parsing is ``args.make_config``'s; running is ``pipeline``'s and ``views``' (imported
when needed, so that ``mtest --version`` and usage errors stay instant). Nothing
below imports this module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from supervisor.args import make_config, split_argv
from supervisor.config import Config
from supervisor.console import Console
from supervisor.errors import MtestError

EXIT_INTERNAL = 3


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: returns the exit code (and ``sys.exit``s with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    console = Console.for_stream(sys.stdout, verbosity=_quick_verbosity(args))
    try:
        config = make_config(args, Path.cwd())
        console.verbosity = config.verbosity
        if "PATH" in config.python_origin:
            console.line(f"mtest: pytest runs under {config.python} ({config.python_origin})")
        # Only the console script's own process (argv from sys.argv) may be re-executed.
        code = _dispatch(config, console, restartable=argv is None)
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
    own, _ = split_argv(args)
    return sum(a in ("-v", "--verbose") for a in own) - sum(a in ("-q", "--quiet") for a in own)


def _dispatch(config: Config, console: Console, *, restartable: bool) -> int:
    from supervisor import api  # not at the top: `mtest --version` stays instant

    if config.events_to == "-":
        # The events own standard output; mtest's own lines go to standard error.
        console = Console.for_stream(sys.stderr, verbosity=config.verbosity)
    return api.execute(config, console, restartable=restartable).exit_code
