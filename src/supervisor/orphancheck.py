"""``--include-orphans``: a run also imports each orphan module in a worker (issue 13).

After the run's tests (and their retries), the modules ``mtest orphans`` lists are
checked the way any test runs: ``orphans.check_file`` is written under
``.gates/cache/orphans/``, and its tests go to the run's pool as one *dedicated*
chunk (a fresh child with the run's launcher that collects only them), so the
per-test timeout, the kill sequence and blame apply unchanged: an import that
raises is ``failed``, one that hangs is ``hung``, one that kills its child is
``crashed``, and the checks after it run in a fresh child. Each result is
recorded under the module's own id, ``orphan::pkg/mod.py`` (its doctests:
``orphan::pkg/mod.py::doctest``); a bundle's ``reproduce:`` line names the
generated node id.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from supervisor import importgraph, orphans, report
from supervisor.config import Config
from supervisor.drive import Pool, ResultSink, StopControl
from supervisor.model import Chunk, TestItem, TestResult
from supervisor.record import Recorder
from supervisor.result import RunEvent
from supervisor.store import ORPHANS, Store

CHECK_FILE = "mtest_orphan_checks.py"
"""Not named like a test file: a pytest run of the project never collects it by itself
(a gates directory that is not hidden, ``--gates-dir gates``); the children are
given its node ids."""
DOCTEST_FLAG = "--doctest-modules"


def run(
    pool: Pool, config: Config, store: Store, recorder: Recorder, stop: StopControl,
    *, first_chunk: int,
) -> dict[str, int]:  # fmt: skip
    """Check every orphan; return outcome → how many checks ended with it (records carry
    the rest). Nothing to check, or a gates directory outside pytest's rootdir: ``{}``."""
    graph = importgraph.current(config.rootdir, store)
    found = orphans.classify(
        graph, not_modules=orphans.not_modules_for(config.rootdir, config.gates_dir)
    )
    store.write_json(ORPHANS, found.to_json())
    if not found.modules:
        recorder.console.line("mtest: --include-orphans: no orphan module to check")
        return {}
    rootdir = Path(pool.layout.rootdir if pool.layout and pool.layout.rootdir else config.rootdir)
    doctests = DOCTEST_FLAG in config.pytest_args
    sources = {e.path: _text(config.rootdir / e.path) for e in found.modules} if doctests else {}
    checks = orphans.checks(found, graph, doctests=doctests, sources=sources)
    target = store.write_orphan_check(
        CHECK_FILE, orphans.check_file(config.rootdir.resolve().as_posix(), checks)
    )
    node_file = Path(os.path.relpath(target, rootdir.resolve())).as_posix()
    if node_file.startswith("../"):
        store.note(
            "--include-orphans: the gates directory is outside pytest's rootdir "
            f"`{rootdir}`: the orphan checks did not run"
        )
        return {}
    ids = orphans.check_ids(checks, node_file)
    recorder.context.repro_ids = {
        **recorder.context.repro_ids,
        **{record_id: node_id for node_id, record_id in ids.items()},
    }
    chunk = Chunk(index=first_chunk, tests=tuple(TestItem(test_id=n, file=node_file) for n in ids))
    # The run's -k/-m/--deselect select its tests; they would deselect the checks.
    options, announce = pool.options, pool.announce
    pool.options = dataclasses.replace(
        options, pytest_args=orphans.without_selection(options.pytest_args)
    )
    if announce is not None:  # the caller's events name the checks as the records do
        pool.announce = lambda event: announce(_renamed_event(event, ids))
    try:
        never = pool.run([chunk], _renamed(recorder, ids), stop, dedicated=True)
    finally:
        pool.options, pool.announce = options, announce
    mine = set(ids.values())
    counts = Counter(r.outcome.value for t, r in recorder.finals.items() if t in mine)
    if never:
        store.note(f"--include-orphans: {len(never)} orphan check(s) did not run (the run stopped)")
    recorder.console.line(
        f"mtest: {report.orphans_line(counts)} (--include-orphans: {shlex.quote(str(target))})"
    )
    return dict(counts)


def _renamed(recorder: Recorder, ids: Mapping[str, str]) -> ResultSink:
    def sink(result: TestResult) -> None:
        recorder(dataclasses.replace(result, test_id=ids.get(result.test_id, result.test_id)))

    return sink


def _renamed_event(event: RunEvent, ids: Mapping[str, str]) -> RunEvent:
    test_id = None if event.test_id is None else ids.get(event.test_id, event.test_id)
    return dataclasses.replace(
        event, test_id=test_id, tests=tuple(ids.get(t, t) for t in event.tests)
    )


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
