"""Memory and CPU of the workers: sizes, mtest's own samples, and the ``--max-rss`` rules.

Each test's figures come from the probe (``end``: the worker's RSS after the
test, its growth during the test, the CPU seconds it used); between events
mtest samples each live worker's ``/proc/<pid>/status`` itself (``sample``):
``VmRSS`` for ``--max-rss`` and for the memory a dead worker had, ``VmHWM`` (the
kernel's high-water mark, exact whatever the sampling rate) for the run's peak.

The decisions are pure: whether a size is over the limit (``exceeds``), whether
an idle worker is replaced (``recycles``), which tests the summary names as
growing the most (``largest_growth``), the run's peak (``run_peak``) and how a
size reads (``format_size``). Whether a running test is killed for the limit is
``blame.overdue``'s call (one of the kill's reasons), with ``exceeds``.

RSS is one process's: a test's forked or spawned children are not counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from supervisor.model import TestRecord

SAMPLE_S = 0.05
"""mtest samples each worker at most this often (a loop turn can come sooner)."""
GROWTH_SHOWN = 5
"""``summary.md`` names this many tests with the largest RSS growth."""
GROWTH_FLOOR_BYTES = 1024 * 1024
"""A test that grew its worker's RSS by less is not named: allocator noise, not a leak."""
_KIB = 1024
_UNITS = ((1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"))


@dataclass(frozen=True, kw_only=True)
class Sample:
    """One look at a live worker's memory, in bytes."""

    rss_bytes: int
    """``VmRSS``: resident now."""
    peak_bytes: int
    """``VmHWM``: the most it has been resident since it started."""


def sample(pid: int) -> Sample | None:
    """The memory of live process ``pid`` (Linux ``/proc``), ``None`` where it cannot be read.

    A process that has exited (a zombie) has no memory lines: ``None`` too, so the
    caller keeps its last sample from before the death.
    """
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            text = status.read()
    except OSError:
        return None
    return parse_status(text)


def parse_status(text: bytes) -> Sample | None:
    """``VmRSS`` and ``VmHWM`` (kB) from a ``/proc/<pid>/status`` text."""
    found: dict[bytes, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(b":")
        if key in (b"VmRSS", b"VmHWM"):
            with contextlib.suppress(ValueError, IndexError):
                found[key] = int(value.split()[0]) * _KIB
    rss = found.get(b"VmRSS")
    if rss is None:
        return None
    return Sample(rss_bytes=rss, peak_bytes=max(rss, found.get(b"VmHWM", rss)))


def exceeds(rss_bytes: int | None, limit_bytes: int | None) -> bool:
    """Whether a measured RSS is above ``--max-rss`` (never without both)."""
    return rss_bytes is not None and limit_bytes is not None and rss_bytes > limit_bytes


def recycles(*, rss_bytes: int | None, limit_bytes: int | None, ran: int) -> bool:
    """Whether an idle worker is replaced before it runs another test: it is above
    the limit and has run a test. A worker above it before running any (the limit
    is below what a session of this suite needs) is kept: replacing it would only
    start the same again; its tests then run one per worker, or are killed."""
    return ran > 0 and exceeds(rss_bytes, limit_bytes)


def recycle_note(recycled: Sequence[int | None], limit_bytes: int | None) -> str | None:
    """The run's note on workers replaced for ``--max-rss`` (``None``: none was)."""
    if not recycled or limit_bytes is None:
        return None
    sizes = [size for size in recycled if size is not None]
    largest = f"; largest {format_size(max(sizes))}" if sizes else ""
    return (
        f"{len(recycled)} worker(s) were replaced between tests for --max-rss "
        f"{format_size(limit_bytes)} (above it, or one test's growth away from it{largest})"
    )


def largest_growth(
    records: Iterable[TestRecord], *, count: int = GROWTH_SHOWN, floor: int = GROWTH_FLOOR_BYTES
) -> list[TestRecord]:
    """The tests that grew their worker's RSS the most (at least ``floor``), largest
    first, ties by id: the summary's "may leak" list."""
    grown = [r for r in records if r.rss_growth_bytes is not None and r.rss_growth_bytes >= floor]
    grown.sort(key=lambda r: (-(r.rss_growth_bytes or 0), r.test_id))
    return grown[:count]


def run_peak(sampled: int | None, records: Iterable[TestRecord]) -> int | None:
    """The largest RSS of any worker of the run: mtest's samples (high-water marks)
    and what the records say (a resumed run's earlier sessions, a platform without
    ``/proc``); ``None`` when nothing was measured."""
    sizes = [r.rss_bytes for r in records if r.rss_bytes is not None]
    if sampled is not None:
        sizes.append(sampled)
    return max(sizes, default=None)


def format_size(size: int) -> str:
    """``150 MiB``, ``301.2 MiB``, ``1.5 GiB``, ``812 KiB``, ``0 B`` (powers of 1024).

    A negative size (a test that freed memory) reads ``-3.5 MiB``.
    """
    sign, magnitude = ("-" if size < 0 else ""), abs(size)
    for unit, name in _UNITS:
        if magnitude >= unit:
            text = f"{magnitude / unit:.1f}".removesuffix(".0")
            return f"{sign}{text} {name}"
    return f"{sign}{magnitude} B"


def format_growth(size: int) -> str:
    """A change in size with its sign: ``+200 MiB``, ``-3.5 MiB``, ``+0 B``."""
    return format_size(size) if size < 0 else f"+{format_size(size)}"
