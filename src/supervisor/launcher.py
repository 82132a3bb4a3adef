"""Where a worker runs: between the command mtest builds and the one it executes.

``worker`` builds one pytest child (interpreter, bootstrap, probe, pipes,
files); the launcher decides only where it runs:

- ``LOCAL``: a plain child process, the command as built;
- ``CONTAINER`` (``--container IMAGE``): the same command in a container of
  the image, started by the runtime's CLI (``containers``), the project and
  mtest's directories mounted at the same paths so node ids and file paths do
  not change. Its control channel is the CLI's standard streams (no
  descriptor crosses into a container): stdin carries mtest's commands, stdout
  the doorbell, stderr the output; the bootstrap moves them to where the probe
  expects them (``MTEST_STDIO``). The CLI proxies SIGTERM and SIGUSR2 to the
  container's init, which passes them to pytest; a CLI killed after the grace
  leaves its container running, and the pool removes it (``containers.Fleet``).
- ``SANDBOX`` (``--sandbox``): the same command under bubblewrap — no
  network, its own pid namespace, the host read-only, a private ``/tmp``, and
  only mtest's own directories (the gates dir) and ``--sandbox-writable``
  paths writable. bwrap passes the two pipes through (inherited descriptors),
  keeps the environment and the process group, and ``--die-with-parent``
  ends the sandbox when mtest dies.

The driver, blame, timeouts, bundles and records do not know which: they see
a ``Popen`` whose process group holds the child, an exit status in a local
child's terms (``exit_status``: bwrap reports a signal as ``128 + n``), and,
once the child said hello, the host pids of the processes that make it
(``find_probe``): the last runs pytest (stacks, memory), the others are the
launcher's own and the reaper spares them. A container's processes are the
engine's, not mtest's descendants: its worker is the CLI process, which
relays the stacks signal, and its memory is what the probe's events report.

The decisions (the argv, the environment, the binds) are pure functions;
``check`` runs bwrap once, ``find_probe`` reads ``/proc``.
"""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from supervisor import containers, reaper
from supervisor.errors import MtestError

BWRAP = "bwrap"
INSTALL_HINT = "install bubblewrap (`apt-get install bubblewrap`, `dnf install bubblewrap`)"
PRIVATE = (Path("/tmp"), Path("/dev/shm"))
"""Fresh, empty, writable in each sandbox (tmpfs): nothing of the host's is seen there."""
PROBE_DIR = Path(__file__).resolve().parent
"""Where the bootstrap loads the probe from (``worker.PROBE_PATH``): the child must see it."""
CHECK_TIMEOUT_S = 60.0
"""A generous bound for ``bwrap … true`` on a loaded machine."""
HELD_AT_SPAWN = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""Blocked in bwrap itself (the child clears its mask): SIGTERM to the group then reaches
the test's process alone, which may handle it, and SIGKILL after the grace ends all —
as for a local child. bwrap dying of SIGTERM would kill the sandbox at once."""


class Kind(enum.Enum):
    LOCAL = "local"
    SANDBOX = "sandbox"
    CONTAINER = "container"


@dataclass(frozen=True, kw_only=True)
class Launcher:
    """Where the workers of a run execute, and what that place needs to know."""

    kind: Kind = Kind.LOCAL
    writable: tuple[Path, ...] = ()
    """Sandbox: absolute paths bound read-write (the gates dir, ``--sandbox-writable``)."""
    visible: tuple[Path, ...] = ()
    """Sandbox: absolute paths the child reads (the project, the interpreter, mtest's probe):
    those under a private directory (``/tmp``) are bound back, read-only."""
    container: containers.Spec | None = None
    """Container: the engine, the image, the mounts and the labels."""

    @property
    def stdio(self) -> bool:
        """Whether the control channel is the launched process's standard streams."""
        return self.kind is Kind.CONTAINER

    @property
    def samples(self) -> bool:
        """Whether the worker's pytest is a host process mtest can read (``/proc``)."""
        return self.kind is not Kind.CONTAINER


LOCAL = Launcher()


def container_for(
    spec: containers.Spec, *, own: Iterable[Path], project: Iterable[Path]
) -> Launcher:
    """The containers of a run: the project and mtest's ``own`` directories mounted
    read-write at the same paths, mtest's probe read-only (the image's interpreter runs
    it: the bootstrap needs only the standard library and the image's pytest)."""
    own = list(own)
    for path in own:
        path.mkdir(parents=True, exist_ok=True)
    writable = outermost([*project, *own])
    readable = tuple(
        p for p in outermost([PROBE_DIR]) if not any(p.is_relative_to(w) for w in writable)
    )
    user = f"{os.getuid()}:{os.getgid()}" if hasattr(os, "getuid") else ""
    return Launcher(
        kind=Kind.CONTAINER,
        container=replace(spec, writable=writable, readable=readable, user=spec.user or user),
    )


def sandbox(*, writable: Iterable[Path], visible: Iterable[Path]) -> Launcher:
    return Launcher(kind=Kind.SANDBOX, writable=outermost(writable), visible=outermost(visible))


def sandbox_for(
    *, own: Iterable[Path], writable: Iterable[Path], project: Iterable[Path], python: str,
    env: Mapping[str, str],
) -> Launcher:  # fmt: skip
    """The sandbox of a run: it writes mtest's ``own`` directories (made here if missing:
    bwrap binds only what exists) and ``writable``; it sees the project, the interpreter's
    prefix (a venv's too), mtest's probe and ``PYTHONPATH``, wherever they are."""
    own = list(own)
    for path in own:
        path.mkdir(parents=True, exist_ok=True)
    interpreter = Path(python)
    path_entries = [Path(p).resolve() for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return sandbox(
        writable=[*own, *writable],
        visible=[
            *project, interpreter.parent.parent, interpreter.resolve().parent.parent,
            PROBE_DIR, *path_entries,
        ],
    )  # fmt: skip


def outermost(paths: Iterable[Path]) -> tuple[Path, ...]:
    """The paths without duplicates and without those inside another, sorted."""
    chosen: list[Path] = []
    for path in sorted(set(paths)):
        if not any(path.is_relative_to(kept) for kept in chosen):
            chosen.append(path)
    return tuple(chosen)


def hidden(paths: Iterable[Path]) -> tuple[Path, ...]:
    """Those of ``paths`` that a private directory would hide from the child."""
    return tuple(p for p in paths if any(p.is_relative_to(d) for d in PRIVATE))


# -- the command and the environment --------------------------------------------


def bwrap_args(launcher: Launcher, cwd: Path) -> list[str]:
    """bwrap's options (without the program): namespaces, then mounts in order.

    Later mounts go over earlier ones: the read-only root, the private
    directories, the visible paths they hid (read-only), the writable paths.
    """
    args = [
        "--unshare-net", "--unshare-pid", "--die-with-parent",
        "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
    ]  # fmt: skip
    for private in PRIVATE:
        args += ["--tmpfs", str(private)]
    for path in hidden(outermost([*launcher.visible, cwd])):
        args += ["--ro-bind", str(path), str(path)]
    for path in launcher.writable:
        args += ["--bind", str(path), str(path)]
    return [*args, "--chdir", str(cwd)]


def command(
    launcher: Launcher, argv: Sequence[str], *, cwd: Path, name: str = "",
    env: Mapping[str, str] | None = None,
) -> list[str]:  # fmt: skip
    """What is executed for a worker whose own command is ``argv``; ``name`` and ``env``
    (what the container must see, ``container_env``) are a container's."""
    if launcher.kind is Kind.LOCAL:
        return list(argv)
    if launcher.kind is Kind.CONTAINER:
        assert launcher.container is not None
        return containers.run_args(
            launcher.container, containers.with_init(argv), cwd=cwd, name=name,
            env_names=container_env(env or {}),
        )  # fmt: skip
    return [BWRAP, *bwrap_args(launcher, cwd), "--", *argv]


CONTAINER_VARS = frozenset({"PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED"})
"""Host variables a container also gets (besides mtest's and the run's own)."""


def container_env(env: Mapping[str, str]) -> list[str]:
    """The names of the variables a container gets from the worker's environment:
    mtest's protocol and the run's (``MTEST_*``, the setup's), a few of Python's — not
    the host's ``PATH``, ``HOME`` or virtualenv, which mean nothing in the image."""
    return [k for k in env if k.startswith("MTEST_") or k in CONTAINER_VARS]


def child_env(launcher: Launcher, env: Mapping[str, str]) -> dict[str, str]:
    """The worker's environment as the launcher passes it on.

    In the sandbox the probe cannot watch mtest's pid (another pid namespace:
    its parent is bwrap's init); bwrap's ``--die-with-parent`` does that job. In a
    container, the channel is the standard streams (``MTEST_STDIO``), and its end
    (mtest gone) is the end of stdin.
    """
    out = dict(env)
    if launcher.kind is not Kind.LOCAL:
        out.pop("MTEST_PARENT_PID", None)
    if launcher.stdio:
        out.update(MTEST_STDIO="1", MTEST_CONTROL_FD="0", MTEST_NOTIFY_FD="1")
    return out


def exit_status(launcher: Launcher, returncode: int | None) -> int | None:
    """The child's exit status as a local child's ``Popen.returncode`` would say it.

    bwrap exits ``128 + n`` when the command died of signal ``n`` (a test's own
    ``sys.exit(139)`` reads as SIGSEGV: bwrap gives no way to tell them apart).
    """
    if launcher.kind is Kind.LOCAL:
        return returncode
    return containers.exit_status(returncode)


@contextlib.contextmanager
def spawning(launcher: Launcher) -> Iterator[None]:
    """Around ``Popen``: what the launched process inherits from this thread (its mask)."""
    if launcher.kind is not Kind.SANDBOX:  # a container's CLI proxies the signals it gets
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_AT_SPAWN)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


# -- the processes that make a worker ----------------------------------------------


def chain(table: Mapping[int, reaper.ProcInfo], root: int, target: int) -> tuple[int, ...]:
    """The pids from ``root`` down to ``target`` (both included); empty if not below it."""
    path = [target]
    while path[-1] != root:
        info = table.get(path[-1])
        if info is None or info.ppid in path or info.ppid <= 0:
            return ()
        path.append(info.ppid)
    return tuple(reversed(path))


def pids_at_start(launcher: Launcher, proc_pid: int) -> tuple[int, ...]:
    """A worker's host pids known as soon as it is launched (see ``find_probe``): a local
    child's own, a container's CLI; none for a sandbox until its hello."""
    return () if launcher.kind is Kind.SANDBOX else (proc_pid,)


def find_probe(launcher: Launcher, proc_pid: int, reported: int | None) -> tuple[int, ...]:
    """The host pids of a worker's processes, from the launched one down to the one that
    runs pytest, which reported pid ``reported`` (its own view) in its hello.

    Local: the launched process is pytest's. Container: the CLI, which relays
    signals to it. Sandbox: the one below it whose innermost pid (``NSpid``) is
    ``reported``; empty when it cannot be found.
    """
    if launcher.kind is not Kind.SANDBOX:
        return (proc_pid,)
    if reported is None:
        return ()
    table = reaper.process_table()
    below = reaper.subtree(reaper.children_of(table), proc_pid) - {proc_pid}
    for pid in sorted(below):
        if _innermost_pid(pid) == reported:
            return chain(table, proc_pid, pid)
    return ()


def _innermost_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        return None
    return None


# -- before any worker starts -----------------------------------------------------


def check(launcher: Launcher) -> None:
    """The launcher can start a worker here; raises ``MtestError`` (exit 4) otherwise.

    Sandbox: ``bwrap`` on PATH, and able to make the namespaces (it runs
    ``true`` once with the same namespaces and mounts; the paths to bind are
    checked where they are named).
    """
    if launcher.kind is not Kind.SANDBOX:
        return
    found = shutil.which(BWRAP)
    if found is None:
        raise MtestError(
            "--sandbox needs bubblewrap, and `bwrap` is not on PATH", hint=INSTALL_HINT
        )
    try:
        done = subprocess.run(
            [found, *bwrap_args(Launcher(kind=launcher.kind), Path("/")), "--", "true"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=CHECK_TIMEOUT_S, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise MtestError(f"--sandbox: cannot run `{found}` ({why})", hint=INSTALL_HINT) from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise MtestError(
            f"--sandbox: `{found}` cannot create the sandbox here "
            f"({said[-1] if said else f'exit status {done.returncode}'})",
            hint="bwrap needs unprivileged user namespaces (sysctl "
            "kernel.unprivileged_userns_clone=1), a setuid bwrap, or root",
        )
