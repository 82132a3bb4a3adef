"""Commands that read ``.gates/`` instead of running tests.

``--report``, ``--quarantine``, ``--merge``, ``mtest cleanup``, ``mtest graph`` and
``mtest orphans``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

from supervisor import containers, github, importgraph, learn, orphans, report
from supervisor.bundle import read_diagnoses
from supervisor.config import Config
from supervisor.console import Console
from supervisor.errors import MtestError
from supervisor.junit import write_junit
from supervisor.model import TestRecord, final_records
from supervisor.record import holder_line
from supervisor.resume import load_state
from supervisor.store import DURATIONS, ORPHANS, QUARANTINE, Store


def report_view(config: Config, console: Console) -> int:
    """Print the last run's ``summary.md``; exit with that run's code."""
    store = Store(config.gates_dir, console.warn)
    text = store.read_summary()
    if text is None:
        raise MtestError(
            f"no run to report in `{config.gates_dir}`", hint="run `mtest` first", code=4
        )
    console.always(text.rstrip("\n"))
    if store.paths.report_html.is_file():
        console.line(f"mtest: the HTML report is {store.paths.report_html}")
    state = load_state(store)
    if state is not None and state.exit_code is not None:
        return state.exit_code
    finals = final_records(store.read_records())
    return report.exit_code(finals, interrupted=False, selected=len(finals))


def quarantine_view(config: Config, console: Console) -> int:
    """List quarantined and watched tests with their recent outcomes."""
    store = Store(config.gates_dir, console.warn)
    quarantine = store.load(QUARANTINE, learn.Quarantine.from_json) or learn.Quarantine()
    if not quarantine.entries:
        console.always("no quarantined or watched tests")
        return 0
    kinds = quarantine.kinds()
    for state in (learn.State.QUARANTINED, learn.State.WATCHED):
        entries = sorted(
            (e for e in quarantine.entries.values() if e.state is state), key=lambda e: e.test_id
        )
        if not entries:
            continue
        console.always(f"{state.value} ({len(entries)}):")
        for entry in entries:
            recent = " ".join(entry.recent)
            kind = kinds.get(entry.test_id)
            console.always(f"  {entry.test_id}" + (f" ({_KIND_WORDS[kind]})" if kind else ""))
            console.always(
                f"    since {entry.since}; recent runs: {recent}; "
                f"last failure: {entry.last_failure or '(no message)'}"
            )
    return 0


_KIND_WORDS = {
    learn.QuarantineKind.FLAKY: "flaky: it failed and passed again",
    learn.QuarantineKind.BROKEN: "broken: failing since it first failed; it still fails the run",
}


def merge_view(config: Config, console: Console) -> int:
    """Join shards' gates directories into ``config.gates_dir``: records, summary, durations.

    Each shard's ``last-run/run.jsonl`` is read (damaged lines skipped with a
    warning); the merged run keeps every record, so a test's result is still
    its last record. Durations are joined test by test so that the next split
    is balanced on everything every shard learned; bundles are copied along.
    """
    store = Store(config.gates_dir, console.warn)
    with store.locked(holder_line(config.argv, os.getpid())):
        records: list[TestRecord] = []
        durations = learn.Durations()
        quarantines: list[tuple[learn.Quarantine, frozenset[str]]] = []
        shards = [Store(directory, console.warn) for directory in config.merge_dirs]
        for shard in shards:
            if not shard.paths.run_log.is_file():
                raise MtestError(
                    f"no run to merge in `{shard.paths.root}`: it has no last-run/run.jsonl",
                    hint="pass the gates directory of each shard's finished run",
                )
            shard_records = shard.read_records()
            records += shard_records
            found = shard.load(DURATIONS, learn.Durations.from_json)
            if found is not None:
                durations = learn.merge_durations(durations, found)
            watched = shard.load(QUARANTINE, learn.Quarantine.from_json)
            ran = frozenset(r.test_id for r in shard_records)
            quarantines.append((watched or learn.Quarantine(), ran))
        store.begin_run(fresh=True)
        for shard in shards:
            for bundle in sorted(shard.paths.failures.glob("*.txt")):
                shutil.copyfile(bundle, store.paths.failures / bundle.name)
        for record in records:
            store.append(record)
        store.close_log()
        finals = final_records(records)
        code = report.exit_code(finals, interrupted=False, selected=len(finals))
        run_ids = sorted({r.run_id for r in records})
        facts = report.RunFacts(run_id=" + ".join(run_ids) or "(empty)", elapsed_s=None)
        summary = report.summary_markdown(finals, facts, code, records)
        store.write_summary(summary)
        store.write_json(DURATIONS, durations.to_json())
        store.write_json(QUARANTINE, learn.merge_quarantine(quarantines).to_json())
        if config.junit_xml is not None:
            diagnoses = read_diagnoses(store.paths.last_run, records)
            write_junit(config.junit_xml, records, {}, diagnoses)
        # The shards printed their annotations already; the merge adds the summary.
        github.publish(console.command, {}, {}, summary)
        console.line(
            f"mtest: merged {len(shards)} run(s): {report.summary_line(finals, facts)} "
            f"(exit {code})",
            level=-1,
        )
        return code


def cleanup_view(config: Config, console: Console) -> int:
    """``mtest cleanup``: remove the containers that runs which are gone left behind
    (labelled ``mtest.run``, their ``mtest.pid`` dead on this host), nothing else.
    Exit 0 when none is left, 1 when some could not be removed (after ``--retries``)."""
    engine = containers.resolve(config.container_runtime, config.docker_host, os.environ)
    containers.check(engine)
    done = containers.cleanup(engine, retries=config.retries)
    for name in done.removed:
        console.line(f"removed {name}")
    for name in done.failed:
        console.line(f"could not remove {name}", level=-1)
    if done.kept:
        console.line(f"kept {len(done.kept)} container(s) of runs still alive or of other hosts")
    console.line(
        f"mtest cleanup: {len(done.removed)} removed, {len(done.failed)} could not be removed, "
        f"{len(done.kept)} kept ({engine.runtime} at {engine.tried})",
        level=-1,
    )
    return 1 if done.failed else 0


def graph_view(config: Config, console: Console) -> int:
    """``mtest graph [PATH…] [--json]``: the import graph's modules under the PATHs (all
    by default), each with the project files it imports and why it is unsure; exit 0.
    Builds and caches ``.gates/importgraph.json`` as a run would."""
    roots = _graph_roots(config)
    graph = importgraph.current(config.rootdir, Store(config.gates_dir, console.warn))
    shown = sorted(p for p in graph.modules if _under(p, roots))
    if config.paths and not shown:
        raise MtestError(
            f"no Python file of the project under {', '.join(f'`{p}`' for p in config.paths)}",
            hint="give a file or directory under the rootdir, or no path for all",
            code=4,
        )
    if config.json_output:
        data = importgraph.Graph({p: graph.modules[p] for p in shown}).to_json()
        console.always(json.dumps(data, indent=2, sort_keys=True))
        return 0
    for path in shown:
        node = graph.modules[path]
        console.always(f"{path} ({node.name})")
        for target in sorted(node.imports):
            console.always(f"  imports {target}")
        for reason in node.unsure:
            console.always(f"  unsure: {reason}")
    edges = sum(len(graph.modules[p].imports) for p in shown)
    unsure = sum(1 for p in shown if graph.modules[p].unsure)
    console.line(
        f"mtest graph: {len(shown)} module(s), {edges} import(s), {unsure} unsure", level=-1
    )
    return 0


def orphans_view(config: Config, console: Console) -> int:
    """``mtest orphans [PATH…] [--recursive] [--json]``: the project's modules no test
    reaches (``supervisor.orphans``), those under the PATHs; written to
    ``.gates/orphans.json`` too. Exit 0: orphans are information, not a failure."""
    store = Store(config.gates_dir, console.warn)
    graph = importgraph.current(config.rootdir, store)
    found = orphans.classify(
        graph, recursive=config.recursive,
        not_modules=orphans.not_modules_for(config.rootdir, config.gates_dir),
    )  # fmt: skip
    roots = _graph_roots(config)
    if roots is not None:
        found = dataclasses.replace(
            found, modules=tuple(e for e in found.modules if _under(e.path, roots))
        )
    store.write_json(ORPHANS, found.to_json())
    if config.json_output:
        console.always(json.dumps(found.to_json(), indent=2, sort_keys=True))
        return 0
    for line in orphans.text_lines(found):
        console.always(line)
    console.line(orphans.summary_line(found), level=-1)
    return 0


def _graph_roots(config: Config) -> tuple[str, ...] | None:
    """The PATHs as rootdir-relative POSIX prefixes; ``None``: every module."""
    if not config.paths:
        return None
    rootdir = config.rootdir.resolve()
    found = []
    for given in config.paths:
        resolved = (config.cwd / given).resolve()
        rel = importgraph.relative(rootdir, resolved)
        if rel is None:
            raise MtestError(
                f"`{given}` is outside the rootdir `{rootdir}`", hint="give a path under it", code=4
            )
        found.append("" if rel == "." else rel)
    return tuple(found)


def _under(path: str, roots: tuple[str, ...] | None) -> bool:
    return roots is None or any(not r or path == r or path.startswith(f"{r}/") for r in roots)
