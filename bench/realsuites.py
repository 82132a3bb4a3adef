"""Real suites for the benchmark: pinned sdists from the package index, with their tests.

Each suite is the source distribution of a released package (it carries the
tests), downloaded with ``pip download --no-deps --no-binary :all:`` at bench
time and extracted into the work directory. What its tests import is installed
into the bench's interpreter (``sys.executable``) only when it is missing: the
bench never changes a version that is already installed, except the suite's
own package where its tests import the installed copy (attrs: ``src`` layout
and ``--import-mode=importlib``), which must be the pinned version.

Before anything is timed, plain pytest runs each suite once with
``--junit-xml``: every test's outcome there is the reference that each mtest
run is compared with, test by test (``.ci/compare.py``'s logic), and a test
that fails under plain pytest must be one of the suite's known failures.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from run import BenchError, _tail, collected_ids, command_for, timed

from supervisor.junit import junit_key

REPO = Path(__file__).resolve().parent.parent
PIP_TIMEOUT_S = 600.0
COUNTED = ("passed", "failed", "skipped", "xfailed", "xpassed", "errors")
"""The words of pytest's summary line that count tests (not warnings, not subtests)."""


@dataclass(frozen=True)
class RealSuite:
    name: str
    requirement: str
    """The pinned sdist, ``name==version``."""
    test_needs: tuple[str, ...] = ()
    """Distributions the tests import, installed if missing (any version)."""
    installed: bool = False
    """The tests import the installed package, so ``requirement`` is installed too."""
    known_failures: Mapping[str, str] = field(default_factory=dict)
    """Test id → why it fails under plain pytest in this environment too."""


REAL_SUITES: dict[str, RealSuite] = {
    s.name: s
    for s in (
        RealSuite("idna", "idna==3.20", test_needs=("hypothesis",)),
        RealSuite("toolz", "toolz==1.2.0"),
        RealSuite("six", "six==1.17.0"),
        RealSuite("more-itertools", "more-itertools==10.8.0"),
        RealSuite(
            "attrs",
            "attrs==25.4.0",
            test_needs=("hypothesis", "pympler", "cloudpickle"),
            installed=True,
            known_failures={
                "tests/test_converters.py::TestPipe::test_wrapped_annotation": (
                    "fails under plain pytest too, with attrs 25.4.0 on Python 3.11.7: the "
                    "piped converter's return annotation is None where the test expects bool"
                ),
            },
        ),
    )
}


@dataclass
class Baseline:
    """Plain pytest's run of a suite: the reference for every timed run."""

    collected: int
    exit_code: int
    counts: dict[str, int]
    """Tests per word of pytest's summary line (``COUNTED`` only)."""
    outcomes: dict[tuple[str, str], str]
    """JUnit key → outcome, as ``.ci/compare.py`` reads pytest's JUnit XML."""
    failing: list[str]
    """Test ids that failed or errored (each one a known failure)."""


def load_compare() -> ModuleType:
    """``.ci/compare.py``, the dogfood check that compares pytest's JUnit XML with run.jsonl."""
    path = REPO / ".ci" / "compare.py"
    spec = importlib.util.spec_from_file_location("mtest_ci_compare", path)
    if spec is None or spec.loader is None:
        raise BenchError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COMPARE = load_compare()


def _pip(args: list[str]) -> None:
    command = [sys.executable, "-m", "pip", *args]
    print(f"  $ {' '.join(command)}", flush=True)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"`{' '.join(command)}` exited {done.returncode}:\n{_tail(done.stderr)}")


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def ensure_requirements(suite: RealSuite, *, install: bool) -> dict[str, str]:
    """Install what ``suite``'s tests need and is missing; the versions used, by distribution."""
    name, _, pinned = suite.requirement.partition("==")
    wanted = {need: "" for need in suite.test_needs}
    if suite.installed:
        wanted[name] = pinned
    versions: dict[str, str] = {}
    for dist, version in wanted.items():
        have = installed_version(dist)
        if have is None or (version and have != version):
            spec = f"{dist}=={version}" if version else dist
            if not install:
                found = f"{dist} {have}" if have else f"no {dist}"
                raise BenchError(
                    f"{suite.name}: its tests need {spec}, this interpreter has {found} "
                    f"(drop --no-install, or `{sys.executable} -m pip install {spec}`)"
                )
            _pip(["install", "-q", spec])
            importlib.invalidate_caches()
            have = installed_version(dist)
        versions[dist] = have or "?"
    return versions


def fetch(suite: RealSuite, downloads: Path, dest: Path) -> Path:
    """Download ``suite``'s sdist (once) and extract it to ``dest/<name>``; its root directory."""
    downloads.mkdir(parents=True, exist_ok=True)
    name, _, version = suite.requirement.partition("==")
    stem = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"
    archive = _find_sdist(downloads, stem)
    if archive is None:
        _pip(
            [
                "download",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
                suite.requirement,
                "-d",
                str(downloads),
            ]
        )
        archive = _find_sdist(downloads, stem)
    if archive is None:
        raise BenchError(f"{suite.name}: pip downloaded no sdist {stem}.tar.gz into {downloads}")
    target = dest / suite.name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    roots = [p for p in target.iterdir() if p.is_dir()]
    if len(roots) != 1:
        raise BenchError(f"{archive}: expected one top-level directory, found {len(roots)}")
    return roots[0]


def _find_sdist(downloads: Path, stem: str) -> Path | None:
    """The archive in ``downloads`` whose normalized name is ``stem``: ``more_itertools-10.8.0``."""
    for path in downloads.glob("*.tar.gz"):
        name, _, version = path.name.removesuffix(".tar.gz").rpartition("-")
        if f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}" == stem:
            return path
    return None


def summary_counts(stdout: str) -> dict[str, int]:
    """Tests per word of pytest's last summary line, ``error`` counted as ``errors``."""
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    counts: dict[str, int] = {}
    for number, word in re.findall(r"(\d+) (\w+)", last):
        word = "errors" if word == "error" else word
        if word in COUNTED:
            counts[word] = int(number)
    return counts


def baseline(suite: RealSuite, root: Path, junit: Path) -> Baseline:
    """Plain pytest on ``root``, once, untimed: the reference outcomes."""
    _, ids = collected_ids(root, (), "inherit")
    command = [*command_for("pytest", Path()), f"--junit-xml={junit}"]
    print(f"  $ (cd {root} && {' '.join(command)})", flush=True)
    _, _, done = timed(command, root, "inherit")
    outcomes: dict[tuple[str, str], str] = COMPARE.junit_outcomes(junit)
    failing = ["::".join(k) for k, v in outcomes.items() if v in ("failed", "error")]
    known = {"::".join(junit_key(test_id)) for test_id in suite.known_failures}
    unknown = [f for f in failing if f not in known]
    if done.returncode not in (0, 1) or unknown:
        raise BenchError(
            f"{suite.name}: plain pytest exited {done.returncode} with "
            f"{len(unknown)} unexpected failure(s) {unknown[:5]}\n{_tail(done.stdout)}"
        )
    return Baseline(len(ids), done.returncode, summary_counts(done.stdout), outcomes, failing)


def parity(base: Baseline, run_jsonl: Path, mtest_exit: int) -> list[str]:
    """Every difference between mtest's final outcomes and plain pytest's (empty: parity)."""
    if not run_jsonl.is_file():
        return [f"mtest (exit {mtest_exit}) wrote no {run_jsonl}"]
    ours: dict[tuple[str, str], str] = COMPARE.mtest_outcomes(run_jsonl)
    problems: list[str] = COMPARE.disagreements(
        base.outcomes, ours, str(base.exit_code), str(mtest_exit)
    )
    return problems
