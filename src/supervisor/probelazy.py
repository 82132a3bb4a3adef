"""Lazy collection inside a child (loaded by the probe beside itself; imports pytest).

In lazy mode (``MTEST_LAZY=1``) the session walks the suite's directories but
every test file answers with an empty report: its node is kept, nothing is
imported. The supervisor then names the files to collect (``collect``), or a
chunk reaches a file, and ``Lazy.collect`` collects it as pytest would have:
the hooks pytest's own collection of one node calls, ``session.genitems`` for
its children, ``pytest_collection_modifyitems`` for the new items.

**Partial collection.** When the plan splits one big file over several
workers, each is told its share (``scope``): while such a file is collected,
test functions and ``unittest`` methods outside the share are not even made
into items (a tryfirst ``pytest_pycollect_makeitem`` answers ``[]``, and
``unittest.TestLoader.getTestCaseNames`` is filtered for the duration), so a
worker pays only for the tests it runs. Such a listing is marked partial (the
index is not updated from it). A later chunk that needs a test left out
collects the file again, as a fresh node, for just the missing tests.
"""

from __future__ import annotations

import unittest
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from . import probedeps, probeio

LISTING_HOOKS = (b"pytest_generate_tests", b"pytest_pycollect", b"pytest_collect")
"""Text in a conftest that may shape the listing of the files under it: its own
imports then count as those files' dependencies."""


class Lazy:
    """The lazy state of one child: deferred file nodes, the scope, the filter."""

    def __init__(
        self,
        config: pytest.Config,
        events: probeio.EventWriter,
        *,
        deps_module: Any,
        clock: Callable[[], float],
        describe: Callable[[pytest.Item], list[Any]],
        notify: Callable[[], None],
        guard: Callable[[], None],
    ) -> None:
        self.config = config
        self.events = events
        self.probedeps = deps_module
        self.clock = clock
        self.describe = describe
        self.notify = notify
        self.guard = guard
        """Called after each file's collection (a forked copy leaves there)."""
        self.walking = True
        self.deferred: dict[str, list[pytest.Collector]] = {}
        """File → its nodes (two with ``--doctest-modules``: the module and its doctests)."""
        self.partial: dict[str, pytest.Collector] = {}
        """Files collected for only part of their tests: file → the node used."""
        self.deps: probedeps.Deps | None = None
        self.conftest_deps: dict[str, list[str]] = {}
        self.scope: dict[str, frozenset[str]] = {}
        """File → the tests of it this child's lane holds (only files split over lanes)."""
        self.wanted: frozenset[str] | None = None
        """While a file is collected partially: the base ids (no ``[...]``) to make."""

    # -- the walk ------------------------------------------------------------

    def defers(self, collector: pytest.Collector) -> bool:
        """A test file found while walking: kept, not imported (a package is walked)."""
        return (
            self.walking
            and isinstance(collector, pytest.File)
            and not isinstance(collector, pytest.Package)
        )

    def defer(self, collector: pytest.Collector) -> pytest.CollectReport:
        self.deferred.setdefault(collector.nodeid, []).append(collector)
        return pytest.CollectReport(collector.nodeid, "passed", None, [])

    def announce(self) -> None:
        """The walk is over: send the files found and the conftests loaded."""
        self.walking = False
        self.deps = self.probedeps.Deps(str(self.config.rootpath))
        conftests: list[str] = []
        for plugin in self.config.pluginmanager.get_plugins():
            path = self.deps.local_path(plugin) if isinstance(plugin, ModuleType) else None
            if path is None or not path.endswith("conftest.py"):
                continue
            conftests.append(path)
            source = self.probedeps._read(str(plugin.__file__)) or b""
            if any(hook in source for hook in LISTING_HOOKS):
                deps = sorted(self.deps.closure(plugin.__name__) - {path})
                self.conftest_deps[path.rpartition("/")[0]] = deps
        event = {"e": "files", "files": list(self.deferred), "conftests": sorted(conftests)}
        self.events.emit({**event, "t": self.clock()}, flush=True)
        self.notify()

    def set_scope(self, ids: Sequence[str]) -> None:
        scope: dict[str, set[str]] = {}
        for test_id in ids:
            scope.setdefault(test_id.split("::", 1)[0], set()).add(test_id)
        self.scope = {file: frozenset(tests) for file, tests in scope.items()}

    # -- collecting ------------------------------------------------------------

    def collect(
        self, session: pytest.Session, files: Sequence[str], by_id: dict[str, pytest.Item],
        need: Sequence[str] = (),
    ) -> None:  # fmt: skip
        """Collect these deferred files (each whole, or its scope plus ``need`` when the
        plan split it over workers), add their items to ``by_id`` and list them."""
        listed: list[list[Any]] = []
        for file in files:
            nodes = self.deferred.pop(file, None)
            if nodes is None:
                continue
            share = self.scope.get(file)
            wanted = None if share is None else share | {i for i in need if i.startswith(file)}
            listed.append(self._collect_nodes(session, file, nodes, wanted, by_id))
        self._list(listed)

    def collect_missing(
        self, session: pytest.Session, file: str, ids: Sequence[str],
        by_id: dict[str, pytest.Item],
    ) -> bool:  # fmt: skip
        """A file collected partially lacks tests a chunk needs: collect just those, as a
        fresh node of the same file. Returns whether it could try."""
        old = self.partial.get(file)
        if old is None or not isinstance(old, pytest.Module) or old.parent is None:
            return False
        node = type(old).from_parent(old.parent, path=old.path)
        self._list([self._collect_nodes(session, file, [node], frozenset(ids), by_id)])
        return True

    def _collect_nodes(
        self, session: pytest.Session, file: str, nodes: Sequence[pytest.Collector],
        wanted: frozenset[str] | None, by_id: dict[str, pytest.Item],
    ) -> list[Any]:  # fmt: skip
        assert self.deps is not None
        before = self.deps.snapshot()
        started = self.clock()
        items: list[pytest.Item] = []
        for node in nodes:
            with self._only(wanted):
                node.ihook.pytest_collectstart(collector=node)
                report = node.ihook.pytest_make_collect_report(collector=node)
                report.__dict__.pop("call", None)
                if report.passed:
                    for child in report.result:
                        items.extend(session.genitems(child))
            node.ihook.pytest_collectreport(report=report)
            self.guard()
        module = next((n for n in nodes if _python_module(n)), None)
        if wanted is not None:
            self.partial[file] = module or nodes[0]
            items = [item for item in items if item.nodeid in wanted]
        obj = getattr(module, "_obj", None)
        deps = self.deps.of(obj if isinstance(obj, ModuleType) else None, before)
        for folder, extra in self.conftest_deps.items():
            if not folder or file.startswith(folder + "/"):
                deps = sorted({*deps, *extra})
        self.config.hook.pytest_collection_modifyitems(
            session=session, config=self.config, items=items
        )
        session.items.extend(items)
        session.testscollected += len(items)
        by_id.update((item.nodeid, item) for item in items)
        seconds = round(self.clock() - started, 4)
        return [file, [self.describe(item) for item in items], deps, seconds, wanted is not None]

    def _list(self, listed: list[list[Any]]) -> None:
        self.events.emit({"e": "listed", "files": listed, "t": self.clock()}, flush=True)
        self.notify()

    @contextmanager
    def _only(self, wanted: frozenset[str] | None) -> Iterator[None]:
        """While a file is collected partially: make only the wanted tests."""
        if wanted is None:
            yield
            return
        self.wanted = frozenset(i.split("[", 1)[0] for i in wanted)
        names = frozenset(base.rsplit("::", 1)[-1] for base in self.wanted)
        original = unittest.TestLoader.getTestCaseNames

        def only_wanted(loader: unittest.TestLoader, case: type[Any]) -> Sequence[str]:
            return [name for name in original(loader, case) if name in names]

        unittest.TestLoader.getTestCaseNames = only_wanted  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            unittest.TestLoader.getTestCaseNames = original  # type: ignore[method-assign]
            self.wanted = None

    def makeitem(self, collector: pytest.Collector, name: str, obj: object) -> list[Any] | None:
        """``pytest_pycollect_makeitem`` while collecting partially: a test function none
        of whose tests is wanted makes no item (``[]`` ends the hook)."""
        if self.wanted is None or not isinstance(collector, pytest.Module | pytest.Class):
            return None
        if not collector.istestfunction(obj, name):
            return None
        return None if f"{collector.nodeid}::{name}" in self.wanted else []

    def resolve(
        self, session: pytest.Session, ids: list[str], by_id: dict[str, pytest.Item],
        unknown: Callable[[str, bool], None],
    ) -> Iterator[pytest.Item]:  # fmt: skip
        """The chunk's items in order; a file not collected yet is collected when the
        chunk reaches it (one test ahead: pytest needs the next item to know what to
        tear down), so a child that dies early has imported only what it reached."""
        for position, test_id in enumerate(ids):
            item = by_id.get(test_id)
            file = test_id.split("::", 1)[0]
            if item is None and file in self.deferred:
                self.collect(session, [file], by_id, need=_of_file(ids[position:], file))
                item = by_id.get(test_id)
            if item is None and file in self.partial:
                missing = [i for i in _of_file(ids[position:], file) if i not in by_id]
                self.collect_missing(session, file, missing, by_id)
                item = by_id.get(test_id)
            if item is None:
                unknown(test_id, file in self.partial)
                continue
            yield item


def _python_module(node: pytest.Collector) -> bool:
    """The file's Python module (not ``--doctest-modules``' node, a Module subclass)."""
    return isinstance(node, pytest.Module) and type(node).__name__ != "DoctestModule"


def _of_file(ids: Sequence[str], file: str) -> list[str]:
    return [i for i in ids if i.split("::", 1)[0] == file]
