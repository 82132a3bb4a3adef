"""Values that flow between the stages: tests, chunks, outcomes and records.

Everything here is a frozen value with a ``to_json``/``from_json`` round trip
where it is stored. No stage mutates what another stage handed it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1


class Outcome(enum.StrEnum):
    """The one outcome a test attempt ends with (see SPEC, "Outcomes")."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    XFAILED = "xfailed"
    XPASSED = "xpassed"
    HUNG = "hung"
    CRASHED = "crashed"
    FLAKY = "flaky"
    ORDER_DEPENDENT = "order_dependent"
    """Failed in its chunk, passed alone in a fresh worker (``order``)."""

    @property
    def gating(self) -> bool:
        """Whether this outcome fails the run (unless the test is quarantined)."""
        return self in _GATING

    @property
    def retryable(self) -> bool:
        """Whether ``--retries`` re-runs a test that ended like this."""
        return self in _RETRYABLE


_GATING = frozenset(
    {Outcome.FAILED, Outcome.ERROR, Outcome.HUNG, Outcome.CRASHED, Outcome.ORDER_DEPENDENT}
)
_RETRYABLE = frozenset({Outcome.FAILED, Outcome.ERROR, Outcome.HUNG, Outcome.CRASHED})


@dataclass(frozen=True, kw_only=True, slots=True)
class TestItem:
    """One collected test, as the probe listed it."""

    __test__ = False  # not a pytest test class

    test_id: str
    """pytest's node id, exactly as pytest prints it."""
    file: str
    """The path part of the node id (before the first ``::``): tests of one
    file share module fixtures, so the planner keeps them together."""
    line: int | None = None
    """1-based line of the test function, when pytest knows it."""
    markers: tuple[str, ...] = ()
    timeout: float | None = None
    """A per-test limit from ``@pytest.mark.timeout(N)``, if any."""

    def to_json(self) -> dict[str, Any]:
        return {
            "test_id": self.test_id,
            "file": self.file,
            "line": self.line,
            "markers": list(self.markers),
            "timeout": self.timeout,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestItem:
        return cls(
            test_id=str(data["test_id"]),
            file=str(data["file"]),
            line=None if data.get("line") is None else int(data["line"]),
            markers=tuple(str(m) for m in data.get("markers", ())),
            timeout=None if data.get("timeout") is None else float(data["timeout"]),
        )


def file_of(test_id: str) -> str:
    """The path part of a node id: split at the first ``::`` only (never on brackets)."""
    return test_id.split("::", 1)[0]


@dataclass(frozen=True, kw_only=True, slots=True)
class Chunk:
    """Tests that one child runs in one go, in this order."""

    index: int
    tests: tuple[TestItem, ...]
    estimate_s: float = 0.0
    """Expected wall time of the tests alone (no start-up or collection)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TestRecord:
    """One attempt of one test: a line of ``run.jsonl``."""

    __test__ = False

    run_id: str
    test_id: str
    outcome: Outcome
    duration_s: float
    tier: int
    markers: tuple[str, ...] = ()
    attempt: int = 1
    chunk: int = 0
    quarantined: bool = False
    message: str = ""
    bundle: str | None = None
    ts: str = ""
    rss_bytes: int | None = None
    """The worker's resident memory after the test (for ``crashed``: when last measured)."""
    rss_growth_bytes: int | None = None
    """How much that memory grew during the test (negative: it shrank)."""
    cpu_s: float | None = None
    """CPU seconds (user + system) the worker used during the test."""
    predecessors: tuple[str, ...] = ()
    """``order_dependent``: the tests its worker ran before it, in order."""
    polluter: str | None = None
    """``order_dependent`` with ``--find-polluter``: the one predecessor that breaks it."""
    version: int = field(default=FORMAT_VERSION)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run_id": self.run_id,
            "test_id": self.test_id,
            "outcome": self.outcome.value,
            "duration_s": round(self.duration_s, 6),
            "tier": self.tier,
            "markers": list(self.markers),
            "attempt": self.attempt,
            "chunk": self.chunk,
            "quarantined": self.quarantined,
            "message": self.message,
            "bundle": self.bundle,
            "ts": self.ts,
            **self._resources_json(),
            **self._order_json(),
        }

    def _resources_json(self) -> dict[str, Any]:
        """The resource fields that are known (an older record, or a platform that
        cannot measure, has none)."""
        out: dict[str, Any] = {}
        if self.rss_bytes is not None:
            out["rss_bytes"] = self.rss_bytes
        if self.rss_growth_bytes is not None:
            out["rss_growth_bytes"] = self.rss_growth_bytes
        if self.cpu_s is not None:
            out["cpu_s"] = round(self.cpu_s, 6)
        return out

    def _order_json(self) -> dict[str, Any]:
        """The order fields, on an ``order_dependent`` record only."""
        out: dict[str, Any] = {}
        if self.outcome is Outcome.ORDER_DEPENDENT:
            out["predecessors"] = list(self.predecessors)
        if self.polluter is not None:
            out["polluter"] = self.polluter
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestRecord:
        """Build a record from one parsed line; raises ``KeyError``/``ValueError``
        (never anything else) when the line is not a record."""
        try:
            return cls(
                version=int(data.get("version", FORMAT_VERSION)),
                run_id=str(data["run_id"]),
                test_id=str(data["test_id"]),
                outcome=Outcome(data["outcome"]),
                duration_s=float(data.get("duration_s", 0.0)),
                tier=int(data.get("tier", 1)),
                markers=tuple(str(m) for m in data.get("markers", ())),
                attempt=int(data.get("attempt", 1)),
                chunk=int(data.get("chunk", 0)),
                quarantined=bool(data.get("quarantined", False)),
                message=str(data.get("message", "")),
                bundle=None if data.get("bundle") is None else str(data["bundle"]),
                ts=str(data.get("ts", "")),
                rss_bytes=_optional_int(data.get("rss_bytes")),
                rss_growth_bytes=_optional_int(data.get("rss_growth_bytes")),
                cpu_s=None if data.get("cpu_s") is None else float(data["cpu_s"]),
                predecessors=tuple(str(t) for t in data.get("predecessors", ())),
                polluter=None if data.get("polluter") is None else str(data["polluter"]),
            )
        except (TypeError, AttributeError) as exc:
            raise ValueError(f"not a test record: {exc}") from exc


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def final_records(records: list[TestRecord]) -> dict[str, TestRecord]:
    """Each test's result: its last record in the run (SPEC, TestRecord)."""
    last: dict[str, TestRecord] = {}
    for record in records:
        last[record.test_id] = record
    return last


@dataclass(frozen=True, kw_only=True, slots=True)
class TestResult:
    """What the driver learned about one attempt, before it becomes a record.

    Carries the diagnosis (traceback, captured output, stacks, the child's own
    output) that goes into a failure bundle but not into ``run.jsonl``.
    """

    __test__ = False

    test_id: str
    outcome: Outcome
    duration_s: float
    message: str = ""
    when: str | None = None
    longrepr: str = ""
    sections: tuple[tuple[str, str], ...] = ()
    stacks: str = ""
    child_output: str = ""
    chunk: int = 0
    worker: int = 0
    child: int = 0
    rss_bytes: int | None = None
    """The worker's RSS after the test; for a dead worker's test, when last measured."""
    rss_growth_bytes: int | None = None
    cpu_s: float | None = None
    predecessors: tuple[str, ...] = ()
    """A failing test: the tests its worker ran before it since the worker started."""
    polluter: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Fingerprint:
    """The environment the tests ran in, as the first child reported it."""

    python: str = ""
    executable: str = ""
    pytest: str = ""
    plugins: tuple[str, ...] = ()
    rootdir: str = ""
    platform: str = ""
    inifile: str | None = None
    """The ini file pytest read (absolute); ``None``: none."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Collection:
    """The suite as one child collected it."""

    items: tuple[TestItem, ...]
    problems: tuple[TestResult, ...]
    """Files that failed to import (``error``) or skipped at import (``skipped``)."""
    fingerprint: Fingerprint
    startup_s: float
    collect_s: float
