"""The mutation check for ``--changed`` (issue 13): does it ever miss a failing test?

For each package (attrs, more-itertools, toolz, packaging, boltons: sdists with their test
suites, downloaded at bench time with ``pip download --no-deps --no-binary :all:``), the
bench unpacks the sdist, commits it to a fresh git repository, and then, ``--mutations``
times, picks a random function or method of the package's own modules (``ast``), makes
``raise RuntimeError("mutated")`` its first statement (after a docstring), and

* asks ``mtest --changed --collect-only`` which tests it selects (when a conftest cannot
  be imported, pytest cannot start and every run ends with that error, exit 4: such a
  mutation counts as "everything", nothing can be missed);
* runs the whole suite with plain ``pytest -rfE`` and reads the failing test ids — unless
  the selection is the whole suite: then no test can be missed, and the run is skipped
  (``ran`` counts the mutations whose suite ran);
* counts a **miss** for every failing test whose file was not selected (tests that fail
  without any mutation, the baseline, are left out). A failing, unselected test is run
  again alone before it counts: it is a miss when it fails again or its output says
  ``mutated``; one that passes then was a flaky failure, reported apart.

It reports, per package, the misses (the requirement: zero), the mean fraction of the
suite selected (selected tests / all tests), how many mutations made some test fail, how
many selections were "everything", and the wall time. Two mutations run at once
(``--jobs``), each in its own clone. A run's result goes to ``WORK/results.json``.

    python bench/mutation.py                         # 3 packages x 50 mutations
    python bench/mutation.py --packages toolz --mutations 10 --seed 7

Run it with an interpreter that has mtest installed (``pip install -e .[dev]``): it makes
a venv in ``WORK/venv`` (kept between runs) with pytest, hypothesis, pytest-timeout, the
packages' own test dependencies and this mtest, and runs everything with it.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sources: tuple[str, ...]
    """Directories (relative to the sdist) holding the package's own modules."""
    tests: str
    """Where its tests are (skipped when picking functions to mutate)."""
    pythonpath: str
    deps: tuple[str, ...] = ()


PACKAGES = {
    "attrs": Package(
        "attrs", "26.1.0", ("src/attr", "src/attrs"), "tests", "src", ("cloudpickle", "pympler")
    ),
    "more-itertools": Package("more-itertools", "11.2.1", ("more_itertools",), "tests", "."),
    "toolz": Package("toolz", "1.2.0", ("toolz", "tlz"), "toolz/tests", "."),
    "boltons": Package("boltons", "26.2.0", ("boltons",), "tests", "."),
    "packaging": Package(
        "packaging", "26.4", ("src/packaging",), "tests", "src", ("pretend", "tomli_w")
    ),
}
RUN_TIMEOUT_S = 1800.0
TEST_TIMEOUT_S = 120
"""pytest-timeout's limit per test: a mutation that makes a test hang fails it instead."""
_RESULT_LINE = re.compile(r"^(FAILED|ERROR) (.+?)(?: - .*)?$")
"""pytest's short summary line; an id may hold spaces (parametrized values)."""
SESSION_ERROR = "<session error>"
"""pytest could not start a session (a conftest fails to import): every run, with
``--changed`` or without, ends with that error (exit 4), so nothing can be missed."""
BROKEN = "<pytest exit "
"""A failing "id" for a pytest run that ended with another status than 0 or 1."""
_PROBLEM_LINE = re.compile(r"^(?:ERROR|CRASHED|HUNG) (\S+) - ")
"""``mtest --collect-only``'s line for a test file that failed to import: reported (and
failing) whatever the selection, so it counts as selected."""


@dataclass
class Mutation:
    file: str
    function: str
    line: int
    selected_tests: int = 0
    selected_files: int = 0
    everything: bool = False
    ran: bool = False
    broken: bool = False
    session_error: bool = False
    """pytest ended with a usage or internal error: its failures are not all known."""
    failing: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)
    seconds: float = 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", default=",".join(PACKAGES))
    parser.add_argument("--mutations", type=int, default=50)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mtest-mutation")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    chosen = [PACKAGES[name] for name in args.packages.split(",")]
    python = bench_venv(args.work, chosen)
    report: dict[str, object] = {"load_before": os.getloadavg(), "packages": {}}
    for package in chosen:
        started = time.monotonic()
        summary = check_package(package, python, args)
        summary["wall_s"] = round(time.monotonic() - started, 1)
        report["packages"][package.name] = summary  # type: ignore[index]
        print(json.dumps({k: v for k, v in summary.items() if k != "mutations"}), flush=True)
    report["load_after"] = os.getloadavg()
    (args.work / "results.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print_table(report)
    packages: dict[str, dict[str, object]] = report["packages"]  # type: ignore[assignment]
    return 1 if any(p["misses"] for p in packages.values()) else 0


def bench_venv(work: Path, packages: list[Package]) -> str:
    venv = work / "venv"
    python = str(venv / "bin" / "python")
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    deps = {d for p in packages for d in p.deps}
    subprocess.run([python, "-m", "pip", "install", "-q", "-e", str(REPO), "pytest",
                    "hypothesis", "pytest-timeout", *sorted(deps)], check=True)  # fmt: skip
    return python


def check_package(package: Package, python: str, args: argparse.Namespace) -> dict[str, object]:
    base = unpack(package, args.work)
    baseline_ids, baseline_failing = baseline(base, package, python)
    print(f"{package.name}: {len(baseline_ids)} tests, {len(baseline_failing)} failing "
          "without a mutation (left out)", flush=True)  # fmt: skip
    targets = functions(base, package)
    rng = random.Random(f"{args.seed}:{package.name}")
    picked = rng.sample(targets, min(args.mutations, len(targets)))
    clones = [clone(base, args.work / f"{package.name}-w{i}") for i in range(args.jobs)]
    free = list(clones)
    lock = threading.Lock()

    def one(target: tuple[str, str, int, int]) -> Mutation:
        with lock:
            where = free.pop()
        try:
            return mutate_and_check(where, package, python, target, baseline_ids,
                                    baseline_failing)  # fmt: skip
        finally:
            with lock:
                free.append(where)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = []
        for done in pool.map(one, picked):
            results.append(done)
            print(f"  {len(results)}/{len(picked)} {done.file}:{done.function} "
                  f"selected {done.selected_tests}/{len(baseline_ids)} failing "
                  f"{len(done.failing)} misses {done.misses or 0} flaky {done.flaky or 0}"
                  f"{' BROKEN' if done.broken else ''} ({done.seconds:.0f}s)",
                  flush=True)  # fmt: skip
    fractions = [m.selected_tests / len(baseline_ids) for m in results]
    return {
        "version": package.version,
        "tests": len(baseline_ids),
        "baseline_failing": len(baseline_failing),
        "mutations": [asdict(m) for m in results],
        "count": len(results),
        "ran": sum(1 for m in results if m.ran),
        "killed": sum(1 for m in results if m.failing),
        "misses": sum(len(m.misses) for m in results),
        "flaky": sum(len(m.flaky) for m in results),
        "broken": sum(1 for m in results if m.broken),
        "everything": sum(1 for m in results if m.everything),
        "session_errors": sum(1 for m in results if m.session_error),
        "mean_fraction": round(statistics.fmean(fractions), 4) if fractions else None,
    }


def unpack(package: Package, work: Path) -> Path:
    """The sdist, unpacked and committed to a git repository (kept between runs)."""
    base = work / f"{package.name}-base"
    if (base / ".git").is_dir():
        return base
    download = work / "dl"
    download.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                    ":all:", f"{package.name}=={package.version}", "-d", str(download)],
                   check=True)  # fmt: skip
    stem = package.name.replace("-", "_")
    sdist = next(p for p in download.iterdir()
                 if p.name.lower().startswith(f"{stem}-{package.version}"))  # fmt: skip
    with tempfile.TemporaryDirectory(dir=work) as tmp, tarfile.open(sdist) as tar:
        tar.extractall(tmp, filter="data")
        shutil.move(next(Path(tmp).iterdir()), base)
    git(base, "init", "-q")
    git(base, "add", "-A")
    git(base, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "sdist")
    return base


def clone(base: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    git(base.parent, "clone", "-q", str(base), str(dest))
    return dest


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout


def env_for(package: Package, where: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MTEST_"))}
    env["PYTHONPATH"] = str(where / package.pythonpath)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def pytest_run(where: Path, package: Package, python: str, ids: list[str] | None = None
               ) -> tuple[set[str], str]:  # fmt: skip
    """Failing test ids of a plain pytest run (the whole suite, or ``ids``), and its output."""
    # Without --continue-on-collection-errors, a test file that fails to import stops
    # pytest before any test runs: the other failures would not be seen.
    argv = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE",
            "--continue-on-collection-errors", f"--timeout={TEST_TIMEOUT_S}",
            *(ids or [])]  # fmt: skip
    done = _run(argv, where, package)
    failing = set()
    for line in done.stdout.splitlines():
        match = _RESULT_LINE.match(line)
        if match:
            failing.add(match.group(2))
    if done.returncode not in (0, 1):
        failing.add(f"{BROKEN}{done.returncode}")
    return failing, done.stdout + done.stderr


def mtest_selection(where: Path, package: Package, python: str, changed: bool) -> list[str]:
    """The test ids ``mtest --collect-only`` lists, and the files it reports as failing
    to import (exit 1)."""
    argv = [python, "-m", "supervisor", "--collect-only", *(["--changed"] if changed else [])]
    done = _run(argv, where, package)
    if done.returncode == 4 and "pytest exited with code" in done.stderr:
        return [SESSION_ERROR]
    if done.returncode not in (0, 1, 5):
        raise SystemExit(f"mtest --collect-only failed in {where} ({done.returncode}):\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")  # fmt: skip
    lines = done.stdout.splitlines()
    problems = [m.group(1) for line in lines if (m := _PROBLEM_LINE.match(line))]
    # An id may hold spaces (parametrized values); a problem line is "ERROR file - message".
    ids = [line for line in lines if "::" in line and not _PROBLEM_LINE.match(line)]
    return [*ids, *problems]


def _run(argv: list[str], where: Path, package: Package) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=where, env=env_for(package, where), capture_output=True, text=True,
        errors="replace", timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip


def baseline(base: Path, package: Package, python: str) -> tuple[list[str], set[str]]:
    cache = base.parent / f"{package.name}-baseline.json"
    if cache.exists():
        data = json.loads(cache.read_text(encoding="utf-8"))
        return data["ids"], set(data["failing"])
    ids = mtest_selection(base, package, python, changed=False)
    if any("::" not in i for i in ids):
        raise SystemExit(f"{package.name}: a test file fails to import without a mutation")
    failing, _ = pytest_run(base, package, python)
    cache.write_text(json.dumps({"ids": ids, "failing": sorted(failing)}), encoding="utf-8")
    return ids, failing


def functions(base: Path, package: Package) -> list[tuple[str, str, int, int]]:
    """Every function or method of the package's own modules whose body starts on a line
    of its own: (file, qualified name, line to insert before, indent)."""
    found: list[tuple[str, str, int, int]] = []
    for source in package.sources:
        for path in sorted((base / source).rglob("*.py")):
            rel = path.relative_to(base).as_posix()
            if rel.startswith(f"{package.tests}/") or "/tests/" in rel:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            found.extend((rel, name, line, indent) for name, line, indent in _defs(tree))
    return found


def _defs(tree: ast.AST, prefix: str = "") -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.ClassDef):
            out.extend(_defs(node, f"{prefix}{node.name}."))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            first = body[1] if len(body) > 1 and _is_docstring(body[0]) else body[0]
            if first.lineno > node.lineno and not (len(body) == 1 and _is_docstring(body[0])):
                out.append((f"{prefix}{node.name}", first.lineno, first.col_offset))
            out.extend(_defs(node, f"{prefix}{node.name}.<locals>."))
    return out


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def mutate_and_check(
    where: Path, package: Package, python: str, target: tuple[str, str, int, int],
    baseline_ids: list[str], baseline_failing: set[str],
) -> Mutation:  # fmt: skip
    file, function, line, indent = target
    started = time.monotonic()
    path = where / file
    original = path.read_text(encoding="utf-8")
    lines = original.splitlines(keepends=True)
    lines.insert(line - 1, " " * indent + 'raise RuntimeError("mutated")\n')
    path.write_text("".join(lines), encoding="utf-8")
    mutation = Mutation(file=file, function=function, line=line)
    try:
        selected = mtest_selection(where, package, python, changed=True)
        if selected == [SESSION_ERROR]:
            mutation.session_error = mutation.everything = True
            mutation.selected_tests = len(baseline_ids)
            return mutation
        files = {t.partition("::")[0] for t in selected}
        all_files = {t.partition("::")[0] for t in baseline_ids}
        mutation.selected_tests = sum(1 for t in baseline_ids if t.partition("::")[0] in files)
        mutation.selected_files = len(files & all_files)
        mutation.everything = all_files <= files
        if mutation.everything:
            return mutation  # nothing was left out: nothing can be missed
        mutation.ran = True
        failing, _ = pytest_run(where, package, python)
        mutation.failing = sorted(failing - baseline_failing)
        for test in mutation.failing:
            if test.startswith(BROKEN):
                mutation.broken = True
                continue
            if test.partition("::")[0] in files:
                continue
            again, output = pytest_run(where, package, python, [test])
            (mutation.misses if again or "mutated" in output else mutation.flaky).append(test)
    finally:
        path.write_text(original, encoding="utf-8")
        git(where, "checkout", "-q", "--", ".")
        mutation.seconds = time.monotonic() - started
    return mutation


def print_table(report: dict[str, object]) -> None:
    print("\n| package | tests | mutations | selected everything | suite run | made a test "
          "fail | misses | flaky | mean fraction selected | wall |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    packages: dict[str, dict[str, object]] = report["packages"]  # type: ignore[assignment]
    for name, p in packages.items():
        fraction = p["mean_fraction"]
        shown = "-" if fraction is None else f"{float(fraction):.1%}"  # type: ignore[arg-type]
        print(f"| {name} {p['version']} | {p['tests']} | {p['count']} | {p['everything']} | "
              f"{p['ran']} | {p['killed']} | {p['misses']} | {p['flaky']} | {shown} | "
              f"{p['wall_s']} s |")  # fmt: skip
    before, after = report["load_before"], report["load_after"]
    print(f"\nload average before {before}, after {after}")


if __name__ == "__main__":
    sys.exit(main())
