"""What a lazy run collects: the index looked up against the walk, and updated after.

Pure decisions over typed values, between ``index`` (the keys and the JSON) and
``drive.Pool`` (the children). A lazy run goes::

    walk = pool.list_files(stop)                       # test files, none imported
    found = look_up(stored_index, hello, walk, args=..., environ=..., reader=...)
    batches = spread(found.stale, sizes, workers)      # who collects what is new or changed
    collection = pool.collect_lazy(stop, batches, found.known)
    ... the run; workers collect a known file when a chunk of it comes ...
    store.write_json(INDEX, updated(stored_index, found, pool.listings, ...).to_json())

``docs/design.md`` ("Test index") has the rules.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from supervisor import events, index, parse
from supervisor.model import Outcome, TestItem, TestResult

COLD_SPREAD_FILES = 4
"""A warm run with fewer changed files than this collects them in the first worker
alone: starting another pytest costs more than importing a few files."""


@dataclass(frozen=True, kw_only=True)
class Found:
    """The walk's files split by the index: known (their tests) and to collect."""

    env: index.EnvKey
    keys: dict[str, index.FileKey]
    """Every walked file's key, taken before anything was collected."""
    known: dict[str, tuple[TestItem, ...]]
    stale: list[str]
    """New, changed or never-indexed files, in walk order."""
    env_changed: tuple[str, ...]
    """What of the environment differs from the index's (all parts for a first run)."""
    costs: dict[str, float]
    """The known files' collection seconds (paid when a chunk reaches them)."""


def look_up(
    stored: index.Index, hello: events.Hello, walk: events.Files, *, args: Sequence[str],
    environ: Mapping[str, str], reader: index.Reader,
) -> Found:  # fmt: skip
    """Which of the walk's files the index knows, under the environment this child reports."""
    env = index.env_key(
        parse.fingerprint_of(hello), inifile=hello.inifile, args=args, environ=environ,
        conftests=walk.conftests, reader=reader,
    )  # fmt: skip
    keys = index.file_keys(walk.files, reader, deps=stored.deps())
    known, stale = index.lookup(stored, env, keys)
    costs = {file: cost for file, cost in stored.costs().items() if file in known}
    return Found(
        env=env, keys=keys, known=known, stale=stale, env_changed=env.changed(stored.env),
        costs=costs,
    )  # fmt: skip


def with_import_costs(
    estimates: Mapping[str, float], items: Sequence[TestItem], costs: Mapping[str, float]
) -> dict[str, float]:
    """Test estimates with each not-yet-imported file's collection seconds added to its
    first test: a worker pays them when a chunk reaches the file, and the plan must see
    them (durations are the tests' own; a suite of quick tests is mostly imports)."""
    result = dict(estimates)
    seen: set[str] = set()
    for item in items:
        if item.file in costs and item.file not in seen:
            seen.add(item.file)
            result[item.test_id] = result.get(item.test_id, 0.0) + costs[item.file]
    return result


def workers_for(stale: Sequence[str], *, jobs: int, cold: bool) -> int:
    """How many workers collect the stale files before the plan: all on a first run."""
    if not stale:
        return 0
    if cold or len(stale) >= COLD_SPREAD_FILES:
        return max(1, min(jobs, len(stale)))
    return 1


def spread(files: Sequence[str], sizes: Mapping[str, int], workers: int) -> list[tuple[str, ...]]:
    """``files`` in ``workers`` batches of about equal bytes (largest first to the lightest
    batch), each batch in the files' own order; no batch is empty."""
    if workers < 1 or not files:
        return []
    order = {file: n for n, file in enumerate(files)}
    loads = [(0, n) for n in range(min(workers, len(files)))]
    batches: list[list[str]] = [[] for _ in loads]
    for file in sorted(files, key=lambda f: (-sizes.get(f, 0), order[f])):
        load, n = heapq.heappop(loads)
        batches[n].append(file)
        heapq.heappush(loads, (load + max(1, sizes.get(file, 0)), n))
    return [tuple(sorted(batch, key=order.__getitem__)) for batch in batches if batch]


def updated(
    stored: index.Index, found: Found, listings: Mapping[str, events.FileListing],
    problems: Iterable[TestResult], *, reader: index.Reader, blamed: Iterable[str] = (),
    existing: Sequence[str] | None = None,
) -> index.Index:  # fmt: skip
    """The index after a run: every file collected whole in it, with the key it had
    before it was collected; files whose import failed or skipped keep their problem
    (collected again next time); files that crashed or hung a child are forgotten.
    ``existing``: the whole suite's files (a run of the whole suite): others are pruned.
    """
    fresh: dict[str, index.Listing] = {}
    by_file = {p.test_id: p for p in problems if p.test_id in found.keys}
    for file in blamed:
        if file in found.keys:
            fresh[file] = index.Listing(key=_forget(found.keys[file]), items=())
    for file, listing in listings.items():
        key = found.keys.get(file)
        if key is None or file in fresh:
            continue
        if any(item.file != file for item in listing.items):
            fresh[file] = index.Listing(key=_forget(key), items=())  # cannot be indexed
            continue
        problem = by_file.get(file)
        fresh[file] = index.Listing(
            key=index.with_deps(key, listing.deps, reader),
            items=listing.items,
            problem=None
            if problem is None
            else index.Problem(error=problem.outcome is Outcome.ERROR, message=problem.message),
            collect_s=listing.collect_s,
        )
    new = index.update(stored, found.env, fresh)
    return index.prune(new, frozenset(existing)) if existing is not None else new


def _forget(key: index.FileKey) -> index.FileKey:
    """A key that makes ``index.update`` drop the file's entry."""
    return index.FileKey(content=None, chain=key.chain)
