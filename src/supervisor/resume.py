"""``state.json``: the resume checkpoint, and reconciling it with ``run.jsonl``.

``run.jsonl`` is the source of truth: a test that has a record of this run is
done, whatever ``state.json`` says (after a crash the state may lag behind).
``state.json`` contributes what the records cannot: the run id, the original
command line (so a resumed run keeps its selection and options) and the ids
that were selected.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.args import make_config
from supervisor.config import Config, Mode
from supervisor.errors import MtestError
from supervisor.model import FORMAT_VERSION, TestRecord
from supervisor.store import STATE, Store


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where the run's node ids are rooted: pytest's rootdir and ini file (absolute)."""

    rootdir: str = ""
    """``""``: unknown (a state written before it was saved); the resumed run lists all."""
    inifile: str | None = None


@dataclass(frozen=True, kw_only=True)
class SavedState:
    run_id: str
    argv: tuple[str, ...]
    cwd: str
    selected: tuple[str, ...]
    outstanding: tuple[str, ...]
    complete: bool
    exit_code: int | None
    layout: Layout = Layout()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "run_id": self.run_id,
            "argv": list(self.argv),
            "cwd": self.cwd,
            "selected": list(self.selected),
            "outstanding": list(self.outstanding),
            "complete": self.complete,
            "exit_code": self.exit_code,
            "rootdir": self.layout.rootdir,
            "inifile": self.layout.inifile,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SavedState:
        def strings(key: str) -> tuple[str, ...]:
            value = data[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"`{key}` is not a list of strings")
            return tuple(value)

        code = data.get("exit_code")
        if code is not None and not isinstance(code, int):
            raise ValueError("`exit_code` is not an integer")
        rootdir, inifile = data.get("rootdir", ""), data.get("inifile")
        if not isinstance(rootdir, str) or not (inifile is None or isinstance(inifile, str)):
            raise ValueError("`rootdir` and `inifile` must be strings")
        return cls(
            run_id=str(data["run_id"]),
            argv=strings("argv"),
            cwd=str(data["cwd"]),
            selected=strings("selected"),
            outstanding=strings("outstanding"),
            complete=bool(data["complete"]),
            exit_code=code,
            layout=Layout(rootdir=rootdir, inifile=inifile),
        )


@dataclass(frozen=True, kw_only=True)
class ResumePoint:
    run_id: str
    config: Config
    selected: tuple[str, ...]
    outstanding: tuple[str, ...]
    records: list[TestRecord]
    layout: Layout = Layout()

    def listed(self) -> tuple[str, ...] | None:
        """The files of the outstanding tests, which are all a resumed run collects;
        ``None`` when the run's rootdir is unknown (then it collects everything)."""
        if not self.layout.rootdir:
            return None
        return tuple(dict.fromkeys(test_id.split("::", 1)[0] for test_id in self.outstanding))


def reconcile(selected: Sequence[str], records: Sequence[TestRecord], run_id: str) -> list[str]:
    """The selected tests of ``run_id`` that have no record yet, in selection order."""
    done = {r.test_id for r in records if r.run_id == run_id}
    return [test_id for test_id in selected if test_id not in done]


def save_state(
    store: Store, config: Config, run_id: str, selected: Sequence[str], *,
    done: Mapping[str, TestRecord], complete: bool, exit_code: int | None = None,
    layout: Layout = Layout(),
) -> None:  # fmt: skip
    """Checkpoint the run: its command line, what it selected and what is still to run."""
    ids = tuple(selected)
    state = SavedState(
        run_id=run_id,
        argv=config.argv,
        cwd=str(config.cwd),
        selected=ids,
        outstanding=tuple(t for t in ids if t not in done),
        complete=complete,
        exit_code=exit_code,
        layout=layout,
    )
    store.write_json(STATE, state.to_json())


_KEPT_ON_RESUME = frozenset({"--resume", "-q", "--quiet", "-v", "--verbose"})
_KEPT_WITH_VALUE = ("--gates-dir", "--metrics-file", "--events")
"""Taken from the ``--resume`` command line: where the state is, where this run's
metrics and events go."""


def ignored_flags(argv: Sequence[str]) -> list[str]:
    """The arguments of a ``--resume`` command line that it does not use.

    A resumed run keeps the interrupted run's selection and options; only the
    output's verbosity, where the gates directory is, ``--metrics-file`` and
    ``--events`` are taken from now.
    """
    ignored: list[str] = []
    words = iter(argv)
    for word in words:
        if word in _KEPT_WITH_VALUE:
            next(words, None)
        elif word not in _KEPT_ON_RESUME and word.partition("=")[0] not in _KEPT_WITH_VALUE:
            ignored.append(word)
    return ignored


def load_state(store: Store) -> SavedState | None:
    state: SavedState | None = store.load(STATE, SavedState.from_json)
    return state


def original_config(state: SavedState, config: Config) -> Config:
    """The interrupted run's options (its command line, in its cwd), with the
    verbosity and the gates directory of the ``--resume`` command line."""
    original = make_config(list(state.argv), Path(state.cwd))
    return dataclasses.replace(
        original, mode=Mode.RUN, verbosity=config.verbosity, gates_dir=config.gates_dir
    )


def load_resume_point(store: Store, config: Config) -> ResumePoint:
    """The interrupted run to continue, or exit 4 when there is none."""
    state = load_state(store)
    if state is None or state.complete:
        why = "no run was interrupted" if state is not None else "there is no readable state.json"
        raise MtestError(
            f"nothing to resume in `{store.paths.root}`: {why}",
            hint="start a new run with `mtest`",
        )
    ignored = ignored_flags(config.argv)
    if ignored:
        store.warn(
            f"--resume continues run {state.run_id} with its own options; "
            f"ignoring `{shlex.join(ignored)}`"
        )
    records = [r for r in store.read_records() if r.run_id == state.run_id]
    return ResumePoint(
        run_id=state.run_id,
        config=original_config(state, config),
        selected=state.selected,
        outstanding=tuple(reconcile(state.selected, records, state.run_id)),
        records=records,
        layout=state.layout,
    )
