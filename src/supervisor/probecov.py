"""coverage.py in the tested environment: measuring in the children, combining afterwards.

This module runs only in the project's interpreter, where coverage.py is
installed; mtest itself never imports it (coverage.py is no dependency of
mtest). Like the probe, it is loaded from its file and imports only the
standard library and, inside its functions, ``coverage``.

In a child (``MTEST_COVERAGE`` holds the settings as JSON), the worker's
bootstrap calls ``start`` before it imports pytest — where ``coverage run -m
pytest`` starts too — so conftests, plugins and test modules are measured
from their first line. The data file is ``<gates>/coverage/.coverage`` with a
suffix that names the run, the process and a random part (a parallel data
file, as ``coverage run --parallel-mode`` writes). The probe calls
``Saver.after_test`` after each test: it saves when the test executed a line
(or arc) this child has not saved yet, so a child that segfaults or is killed
loses at most the test in flight, and a suite whose later tests re-run known
lines pays almost nothing. ``finish`` saves at the session's end.

The project's configuration is honoured as ``coverage run`` honours it:
``.coveragerc``, ``setup.cfg``, ``tox.ini`` or ``pyproject.toml`` in the
working directory, ``COVERAGE_RCFILE``; ``--cov=SOURCE`` and ``--cov-branch``
override ``[run] source`` and ``[run] branch`` as ``coverage run --source``
and ``--branch`` do. mtest's own child-side files are omitted.

As a program (``main``; mtest runs it with the project's interpreter):

- ``check SETTINGS``: coverage.py imports and accepts its configuration;
  prints its version, the project's data file (``[run] data_file``,
  ``COVERAGE_FILE``), ``precision`` and ``fail_under``.
- ``combine SETTINGS``: ``coverage combine --keep PARTS`` into the project's
  data file, then the total that ``coverage report`` computes, and whether
  it fails under the threshold (coverage.py's own rule).

Each prints one line, ``MARK`` followed by a JSON object, on standard output.
"""

from __future__ import annotations

import io
import json
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

ENV = "MTEST_COVERAGE"
"""The protocol variable that carries the child's settings (JSON)."""
MARK = "mtest-coverage:"
NO_COVERAGE_EXIT = 3
"""``main``'s exit status when ``coverage`` cannot be imported."""
CHILD_FILES = ("probe.py", "probeio.py", "probedeps.py", "probelazy.py", "probecov.py")
"""mtest's own files in the child: never measured."""


# -- in a child --------------------------------------------------------------------


def start() -> Any:
    """Start measuring with the settings in ``MTEST_COVERAGE``; returns the ``Coverage``."""
    import coverage

    settings = json.loads(os.environ[ENV])
    cov = coverage.Coverage(
        data_file=settings["data_file"],
        data_suffix=f"{settings['run_id']}.{os.getpid()}.{os.urandom(3).hex()}",
        source=settings.get("source") or None,
        branch=True if settings.get("branch") else None,
        config_file=True,
    )
    here = os.path.dirname(os.path.abspath(__file__))
    omit = _option(cov, "run:omit") or []
    cov.set_option("run:omit", [*omit, *(os.path.join(here, name) for name in CHILD_FILES)])
    cov.start()
    return cov


def finish(cov: Any) -> None:
    """The session is over: stop measuring and save what is left."""
    cov.stop()
    _save(cov)


def saver() -> Saver | None:
    """A ``Saver`` for the measurement ``start`` began (``None``: there is none)."""
    import coverage

    cov = coverage.Coverage.current()
    return None if cov is None else Saver(cov)


class Saver:
    """Saves a child's data after each test that executed something not saved yet.

    Whether a test did is read from the collector's sets of lines (or arcs) per
    file, which coverage.py fills as code runs and empties when it saves: a set
    that is not a subset of what was saved before holds news. A set is looked
    into only when its size changed since the last look, so a test that ran
    known lines costs a few dictionary lookups. Where the collector is not as
    expected (another coverage.py), or dynamic contexts are on (each test's
    context must be written), it saves after every test.

    The first save is ``Coverage.save()``, which also records the source files
    no test has run yet (as 0 % covered); the later ones only flush the
    collector's new lines into the data file, a sixth of the cost where
    ``source`` makes coverage.py walk the source tree on every ``save()``.
    ``finish`` ends with a full ``save()`` again.
    """

    def __init__(self, cov: Any) -> None:
        self.cov = cov
        self.saved: dict[str, set[Any]] = {}
        self.looked: dict[str, tuple[int, int]] = {}
        """File → (id, size) of its set at the last look."""
        self.every_test = bool(_option(cov, "run:dynamic_context"))
        self.saves = 0
        self.tests = 0

    def after_test(self) -> None:
        self.tests += 1
        if not (self.every_test or self._news()):
            return
        self.saves += 1
        flush = getattr(getattr(self.cov, "_collector", None), "flush_data", None)
        if self.saves == 1 or not callable(flush):
            _save(self.cov)
        else:
            _save(self.cov, flush)
        self.looked.clear()  # the sets were emptied: sizes say nothing now

    def _news(self) -> bool:
        data = getattr(getattr(self.cov, "_collector", None), "data", None)
        if not isinstance(data, dict):
            return True
        news = False
        for name, hits in data.copy().items():
            if not isinstance(hits, set):
                return True
            look = (id(hits), len(hits))
            if self.looked.get(name) == look:
                continue  # only added to, never emptied but by a save: nothing new
            self.looked[name] = look
            known = self.saved.setdefault(name, set())
            if not hits <= known:
                known |= hits
                news = True
        return news


def _option(cov: Any, name: str) -> Any:
    """A setting of coverage.py's configuration (``run:omit``), as read from the project's."""
    return cov.get_option(name)


def _save(cov: Any, how: Callable[[], object] | None = None) -> None:
    """``cov.save()`` (or ``how()``); its warnings are printed, never raised (``filterwarnings
    = error``), and a failure is one line on standard error: the next save tries again."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            (how or cov.save)()
    except Exception as exc:  # coverage.py's or sqlite's: the tests go on
        sys.stderr.write(f"mtest: coverage.py could not save its data: {exc}\n")


# -- as a program ------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    """``check SETTINGS`` or ``combine SETTINGS``: one ``MARK`` line of JSON on stdout."""
    command, settings = argv[0], json.loads(argv[1])
    try:
        import coverage
    except ImportError as exc:
        _answer({"error": f"{type(exc).__name__}: {exc}"})
        return NO_COVERAGE_EXIT
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            answer = check(settings) if command == "check" else combine(settings)
        except Exception as exc:  # coverage.py's own, sqlite's, the file system's
            own = isinstance(exc, coverage.CoverageException)
            answer = {"error": str(exc) if own else f"{type(exc).__name__}: {exc}"}
    answer["warnings"] = list(dict.fromkeys(str(w.message) for w in caught))
    _answer(answer)
    return 0


def _answer(answer: Mapping[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(answer) + "\n")


def check(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Build the children's ``Coverage`` once (their configuration, checked) and say where
    the combined data goes and how ``coverage report`` rounds."""
    import coverage

    cov = coverage.Coverage(
        source=settings.get("source") or None,
        branch=True if settings.get("branch") else None,
        config_file=True,
    )
    return {
        "version": coverage.__version__,
        "data_file": os.path.abspath(str(_option(cov, "run:data_file"))),
        "precision": _option(cov, "report:precision"),
        "fail_under": _option(cov, "report:fail_under"),
    }


def combine(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``coverage combine --keep PARTS`` into ``target``, then ``coverage report``'s total."""
    import coverage

    target = settings["target"]
    cov = coverage.Coverage(data_file=target, config_file=True)
    cov.combine(settings["parts"], strict=True, keep=True)
    cov.save()
    reporter = coverage.Coverage(data_file=target, config_file=True)
    reporter.load()
    percent = float(reporter.report(file=io.StringIO()))
    precision = int(_option(reporter, "report:precision") or 0)
    fail_under = settings.get("fail_under")
    if fail_under is None:
        fail_under = float(_option(reporter, "report:fail_under") or 0.0)
    return {
        "percent": percent,
        "display": _display(percent, max(precision, 2)),
        "precision": precision,
        "branch": bool(reporter.get_data().has_arcs()),
        "fail_under": fail_under or None,
        "failed": bool(fail_under) and _fails_under(percent, fail_under, precision),
        "version": coverage.__version__,
    }


def _display(percent: float, precision: int) -> str:
    """As coverage.py shows a total: never 0 or 100 unless it is exactly that."""
    try:
        from coverage.results import display_covered
    except ImportError:  # older coverage.py
        return f"{percent:.{precision}f}"
    return str(display_covered(percent, precision))


def _fails_under(percent: float, fail_under: float, precision: int) -> bool:
    """coverage.py's own rule (``coverage report --fail-under``), with its rounding."""
    try:
        from coverage.results import should_fail_under
    except ImportError:  # older coverage.py
        if fail_under == 100.0:
            return percent != 100.0
        return round(percent, precision) < fail_under
    return bool(should_fail_under(percent, fail_under, precision))
