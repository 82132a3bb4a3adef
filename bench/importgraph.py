"""What the import graph costs, and whether it misses an import that really happens.

* ``time``: ``importgraph.build`` of every ``.py`` file under ``--root``: cold
  (nothing cached), warm (the previous graph as cache, nothing changed) and
  with one file changed; ``--rounds`` rounds, medians.
* ``check``: each module in ``--module`` (dotted, repeatable) and each test
  file directly in ``--tests DIR`` (imported with ``DIR`` on ``sys.path``, as
  pytest's ``prepend`` mode does) is imported in a fresh interpreter; every
  ``.py`` file under the root that the import loaded must be in
  ``graph.reaches`` of that module's file. A loaded file outside the reach is
  a *miss*; the bench prints each and fails when there is one.

    python bench/importgraph.py                                   # this repository, tests/
    python bench/importgraph.py --root "$SITE_PACKAGES" \\
        --module _pytest.python --module hypothesis.strategies --module mypy.build

Prints Markdown tables; exit 1 on a miss.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from supervisor import importgraph

CHILD = r"""
import importlib, json, os, sys
root, extra, name = sys.argv[1], sys.argv[2], sys.argv[3]
if extra:
    sys.path.insert(0, extra)
before = set(sys.modules)
importlib.import_module(name)
loaded = []
for key, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None)
    if key not in before and path and path.endswith(".py"):
        real = os.path.realpath(path)
        if real.startswith(root + os.sep):
            loaded.append(os.path.relpath(real, root))
print(json.dumps(loaded))
"""


def median_s(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def timing(root: Path, rounds: int) -> list[str]:
    files = importgraph.project_files(root)
    cold = importgraph.build(root, files)
    changed = {**cold.modules}
    victim = next(iter(sorted(changed)))
    del changed[victim]  # as if that one file's content had changed
    rows = [
        ("cold", median_s(lambda: importgraph.build(root, files), rounds)),
        ("warm", median_s(lambda: importgraph.build(root, files, cached=cold.modules), rounds)),
        ("one file changed",
         median_s(lambda: importgraph.build(root, files, cached=changed), rounds)),
    ]  # fmt: skip
    size = len(json.dumps(cold.to_json()))
    head = [f"{len(files)} files, {sum(len(n.imports) for n in cold.modules.values())} edges, "
            f"{len(cold.unsure_paths())} unsure, cache {size / 1e6:.2f} MB", "",
            "| build | median |", "|---|---|"]  # fmt: skip
    return head + [f"| {what} | {seconds:.3f} s |" for what, seconds in rows]


def check(root: Path, graph: importgraph.Graph, starts: Sequence[tuple[str, str, str]]) -> int:
    """``starts``: (path, dotted name, directory put on sys.path). Prints a table; the misses."""
    print("| module | loaded | reached | missed |\n|---|---|---|---|")
    misses = 0
    for path, name, extra in starts:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(root.resolve()), extra, name],
            capture_output=True, text=True, cwd="/", check=False,
        )  # fmt: skip
        if done.returncode:
            print(f"| `{name}` | import failed: {done.stderr.strip().splitlines()[-1:]} | | |")
            continue
        loaded = set(json.loads(done.stdout))
        missed = sorted(loaded - graph.reaches([path]))
        misses += len(missed)
        print(f"| `{name}` | {len(loaded)} | {len(graph.reaches([path]))} | "
              f"{len(missed)}{' ' + ', '.join(missed) if missed else ''} |")  # fmt: skip
    return misses


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--module", action="append", default=[])
    parser.add_argument("--tests", default=None, help="a test directory under the root")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    tests = args.tests if args.tests is not None else ("tests" if not args.module else None)
    print("\n".join(timing(root, args.rounds)), end="\n\n")
    graph = importgraph.build(root, importgraph.project_files(root))
    by_name = {node.name: path for path, node in graph.modules.items()}
    starts = [(by_name[m], m, "") for m in args.module]
    if tests:
        starts += [
            (path, node.name, str(root / tests))
            for path, node in sorted(graph.modules.items())
            if path.rpartition("/")[0] == tests and importgraph.is_test_file(path)
        ]
    misses = check(root, graph, starts)
    print(f"\n{misses} miss(es) over {len(starts)} module(s)")
    return 1 if misses else 0


if __name__ == "__main__":
    raise SystemExit(main())
