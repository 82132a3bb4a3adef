"""Generated suites for issue 10's narrow-run targets: ``tier0``, ``storm``/``calm``, ``resume``.

Standard library only; the generated tests need only pytest. Import-time and
test-time work is ``generate``'s calibrated busy loop (never ``sleep``).

* ``tier0``: 40 modules that each take ≈0.5 s to import; ``test_smoke.py`` holds
  the only tier-0 (``smoke``) tests, the 39 others tier-1 tests. The target
  compares ``mtest --tier 0`` with ``pytest test_smoke.py``.
* ``storm`` and ``calm``: the same 300 tests in ten modules, except that in
  ``storm`` every third test segfaults (``ctypes.string_at(0)``) and in
  ``calm`` it passes. The target compares the CPU of mtest's children on
  ``storm`` with plain pytest's on ``calm``.
* ``resume``: 10,000 quick tests in ten modules, to time ``mtest --resume``
  when the last run's ``state.json`` is unfinished but has nothing outstanding.

    python bench/scenarios.py DEST [--suites tier0,storm,resume]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from generate import _ini, _prelude, _write, calibrate, parse_choices

SCENARIOS = ("tier0", "storm", "resume")
TIER0_MODULES = 40
TIER0_IMPORT_MS = 500.0
TIER0_FILE = "test_smoke.py"
SMOKE_TESTS = 10
OTHER_TESTS = 5
"""Tests per tier-1 module of ``tier0``."""
STORM_MODULES = 10
STORM_TESTS = 30
"""Per module: 300 tests, 100 of them crash in ``storm``."""
STORM_IMPORT_MS = 40.0
STORM_TEST_MS = 2.0
RESUME_MODULES = 10
RESUME_TESTS = 1000
"""Per module: 10,000 tests in all."""


def tier0(root: Path) -> dict[str, int]:
    """40 slow-to-import modules, the tier-0 tests in one of them; tests per directory."""
    _ini(root, markers=("smoke",))
    cost = _prelude(
        calibrate(TIER0_IMPORT_MS),
        f"≈{TIER0_IMPORT_MS:g} ms at import, as a heavy code base under test costs.",
    )
    _write(
        root / TIER0_FILE,
        f"""
        import pytest


        @pytest.mark.smoke
        @pytest.mark.parametrize("case", range({SMOKE_TESTS}))
        def test_smoke(case):
            assert IMPORTED >= 0 and case >= 0
        """,
        spin=cost,
    )
    for index in range(TIER0_MODULES - 1):
        _write(
            root / f"test_area_{index:02d}.py",
            f"""
            import pytest


            @pytest.mark.parametrize("case", range({OTHER_TESTS}))
            def test_area(case):
                assert IMPORTED >= 0 and case + {index} >= 0
            """,
            spin=cost,
        )
    return {"tier0": SMOKE_TESTS + (TIER0_MODULES - 1) * OTHER_TESTS}


def _storm_module(root: Path, index: int, *, crash: bool) -> None:
    body = "ctypes.string_at(0)  # segfault" if crash else "assert _spin(N) >= 0"
    _write(
        root / f"test_storm_{index}.py",
        f"""
        import ctypes

        import pytest

        N = {calibrate(STORM_TEST_MS)}  # ≈{STORM_TEST_MS:g} ms of busy loop


        @pytest.mark.parametrize("case", range({STORM_TESTS}))
        def test_case(case):
            assert _spin(N) >= 0
            if case % 3 == 2:
                {body}
        """,
        spin=_prelude(
            calibrate(STORM_IMPORT_MS), f"≈{STORM_IMPORT_MS:g} ms at import, as code under test."
        ),
    )


def storm(root: Path) -> dict[str, int]:
    """``root/storm`` (every third test segfaults) and ``root/calm`` (the same, passing)."""
    for name, crash in (("storm", True), ("calm", False)):
        _ini(root / name)
        for index in range(STORM_MODULES):
            _storm_module(root / name, index, crash=crash)
    return {"storm": STORM_MODULES * STORM_TESTS, "calm": STORM_MODULES * STORM_TESTS}


def storm_crashes() -> int:
    """How many of ``storm``'s tests crash."""
    return STORM_MODULES * len([c for c in range(STORM_TESTS) if c % 3 == 2])


def resume(root: Path) -> dict[str, int]:
    """10,000 quick tests in ten modules."""
    _ini(root)
    for index in range(RESUME_MODULES):
        _write(
            root / f"test_many_{index}.py",
            f"""
            import pytest


            @pytest.mark.parametrize("case", range({RESUME_TESTS}))
            def test_many(case):
                assert case + {index} >= 0
            """,
        )
    return {"resume": RESUME_MODULES * RESUME_TESTS}


GENERATORS: dict[str, Callable[[Path], dict[str, int]]] = {
    "tier0": tier0,
    "storm": storm,
    "resume": resume,
}


def generate_scenario(dest: Path, name: str) -> dict[str, int]:
    """Write scenario ``name`` into ``dest/name`` (replacing it); tests per suite directory."""
    root = dest / name
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    return GENERATORS[name](root)


def unfinish_state(gates: Path) -> dict[str, object]:
    """Make ``gates/state.json`` an interrupted run with nothing outstanding (docs/formats.md).

    This is what ``state.json`` holds after Ctrl-C lands once the last test
    has finished: ``complete`` false, ``outstanding`` empty, the run's exit
    code that of an interrupt (2). Written atomically, as mtest writes it.
    """
    path = gates / "state.json"
    state = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(state, dict) or state.get("version") != 1:
        raise ValueError(f"{path}: not a version-1 state.json")
    state.update(complete=False, outstanding=[], exit_code=2)
    temp = path.with_name(f".state.json.{os.getpid()}.tmp")
    temp.write_text(json.dumps(state, sort_keys=True, separators=(",", ":")), encoding="utf-8")
    os.replace(temp, path)
    return state


def parse_scenarios(text: str) -> tuple[str, ...]:
    return parse_choices(text, SCENARIOS, "scenario")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("dest", type=Path, help="directory to write the suites into")
    parser.add_argument("--suites", type=parse_scenarios, default=SCENARIOS)
    args = parser.parse_args(argv)
    for name in args.suites:
        for suite, count in generate_scenario(args.dest.resolve(), name).items():
            print(f"{name}: {suite}: {count} tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
