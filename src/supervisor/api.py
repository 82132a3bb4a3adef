"""The Python API: ``supervisor.run(["--tier", "0"], cwd=path, on_record=..., on_event=...)``.

The console script is a user of this module: ``cli.main`` parses the command
line into a ``Config`` and calls ``execute``, exactly as ``run`` does. A run
started here is the same run as ``mtest ARGS`` in ``cwd``: the same options,
files and exit code, given back as a ``RunResult``. Bad input raises
``MtestError`` (its ``code`` is the exit code the CLI would give) before any
test runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TextIO

from supervisor.args import make_config
from supervisor.config import Config, Mode
from supervisor.console import Console
from supervisor.errors import MtestError
from supervisor.result import Hooks, OnEvent, OnRecord, RunEvent, RunResult


def run(
    args: Sequence[str] = (),
    *,
    cwd: str | Path | None = None,
    on_record: OnRecord | None = None,
    on_event: OnEvent | None = None,
    output: TextIO | None = None,
) -> RunResult:
    """Run mtest with ``args`` (as on the command line) in ``cwd``.

    ``on_record`` is called once per record as it is appended to ``run.jsonl``
    (a retried test once per attempt); ``on_event`` with every ``RunEvent``.
    Both are called on the calling thread; one that raises is reported as a
    note of the run and not called again. ``output`` receives mtest's console
    lines (default: ``sys.stdout``). Signals are handled as the CLI handles them
    only when this is called on the main thread.
    """
    where = Path.cwd() if cwd is None else Path(cwd).resolve()
    config = make_config(list(args), where)
    stream = sys.stdout if output is None else output
    console = Console.for_stream(stream, verbosity=config.verbosity)
    return execute(config, console, Hooks(on_record=on_record, on_event=on_event))


def execute(
    config: Config, console: Console, hooks: Hooks | None = None, *, restartable: bool = False
) -> RunResult:
    """What ``mtest`` does for a parsed ``Config``: the run, or the view it asks for.

    ``restartable``: the process is mtest's own (the console script), which
    ``mtest service`` may re-execute to restart itself after repeated faults.
    """
    # Imported here so that `mtest --version` and usage errors stay instant.
    if config.mode is Mode.SELF_CHECK:
        from supervisor import selfcheck

        return _code_only(selfcheck.run(config, console))
    if config.mode is Mode.HISTORY:
        from supervisor import trend

        return _code_only(trend.history_view(config, console))
    if config.mode is Mode.SLOWEST:
        from supervisor import slowest

        return _code_only(slowest.slowest_view(config, console))
    if config.mode is Mode.CLEANUP:
        from supervisor import views

        return _code_only(views.cleanup_view(config, console))
    if config.mode in (Mode.REPORT, Mode.QUARANTINE, Mode.MERGE, Mode.GRAPH, Mode.ORPHANS):
        from supervisor import views

        view = {
            Mode.REPORT: views.report_view,
            Mode.QUARANTINE: views.quarantine_view,
            Mode.MERGE: views.merge_view,
            Mode.GRAPH: views.graph_view,
            Mode.ORPHANS: views.orphans_view,
        }[config.mode]
        return _code_only(view(config, console))
    from supervisor import pipeline

    if config.mode in (Mode.RUN, Mode.SERVICE):
        pipeline.warn_jobs(config, console)  # the user's -j (a resumed run warned before)
    began = time.time()
    with _event_stream(config) as stream:
        sinks = () if stream is None else (stream,)
        if config.mode is Mode.SERVICE:
            from supervisor import service

            code = service.serve(config, console, hooks, sinks=sinks, restartable=restartable)
            return _code_only(code)
        result = pipeline.run(config, console, hooks, sinks=sinks)
    if config.mode in (Mode.RUN, Mode.RESUME):
        _record_history(config, console, result)
    if config.metrics_file is not None and config.mode in (Mode.RUN, Mode.RESUME):
        _write_metrics(config.metrics_file, result, began, console)
    return result


def _record_history(config: Config, console: Console, result: RunResult) -> None:
    """The run's line in the history (``--history``); one that cannot be written is a
    warning, and the run keeps its exit code. A resumed run writes where the run it
    continues did (with that run's ``--history`` and ``--history-keep``)."""
    from supervisor import history, resume
    from supervisor.store import Store

    if config.mode is Mode.RESUME:
        state = resume.load_state(Store(config.gates_dir, console.warn))
        # Parsed once already when the run resumed; should it fail now (the project's
        # pyproject.toml changed meanwhile), the --resume command line's options serve.
        with contextlib.suppress(MtestError):
            if state is not None:
                original = resume.original_config(state, config)
                config = dataclasses.replace(original, mode=Mode.RESUME)
    try:
        history.append(config, result, warn=console.warn)
    except MtestError as exc:
        console.warn(exc.message + (f" (hint: {exc.hint})" if exc.hint else ""))


def _write_metrics(path: Path, result: RunResult, began: float, console: Console) -> None:
    """``--metrics-file`` of a one-shot run: its exposition, this run counted once.

    A file that cannot be written is a warning: the run's exit code stays its own."""
    from supervisor import metrics

    try:
        metrics.write_textfile(path, metrics.render(metrics.Snapshot.fresh(began).after(result)))
    except MtestError as exc:
        console.warn(f"{exc.message} (hint: {exc.hint})" if exc.hint else exc.message)


def _code_only(code: int) -> RunResult:
    return RunResult(exit_code=code, run_id="", started="", ended="", wall_s=0.0)


@contextlib.contextmanager
def _event_stream(config: Config) -> Iterator[OnEvent | None]:
    """``--events -`` or ``--events PATH``: each event one JSON line, flushed at once."""
    if config.events_to is None:
        yield None
        return
    target: IO[str]
    if config.events_to == "-":
        target = sys.stdout
    else:
        path = (config.cwd / config.events_to).resolve()
        try:
            target = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise MtestError(
                f"cannot write --events `{config.events_to}`: {exc.strerror or exc}",
                hint="name a writable file, or - for standard output",
            ) from None

    def write(event: RunEvent) -> None:
        target.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")
        target.flush()

    try:
        yield write
    finally:
        if target is not sys.stdout:
            target.close()
