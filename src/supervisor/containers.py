"""The container engine: Docker or Podman, driven through its own command line.

mtest uses the runtime's CLI (``docker``/``podman``), never an SDK: whatever
the CLI accepts for a host (``unix://``, ``tcp://``, ``ssh://``) works. This
module owns what mtest asks of an engine and what it leaves there:

- ``resolve``/``check``: which runtime and host, before any test runs, with
  one clear line when the runtime is unknown or missing, or the engine does
  not answer (naming the host tried);
- ``ensure_image``: the image is present, or loaded from ``--image-tar``;
- ``run_args``: the ``run`` command of one worker's container, with the labels
  ``mtest.run=<run id>`` and ``mtest.pid=<supervisor pid>`` (and the host and
  the pid's start time, so ``mtest cleanup`` can tell a dead run from a live one);
- ``Fleet``: a run's containers — removals in the background, the label sweep at
  the end, and the counts the summary and metrics report (started, start
  failures, cleanup failures, timeouts);
- ``cleanup``: ``mtest cleanup``, containers of dead runs only;
- ``EngineLock``: one container run of a project at a time (``--container-lock``).

The decisions (argv, names, which containers are a dead run's) are pure; the
rest runs the CLI with a timeout and never raises past ``MtestError``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.errors import MtestError

RUNTIMES = ("docker", "podman")
HOST_VARS = {"docker": "DOCKER_HOST", "podman": "CONTAINER_HOST"}
DEFAULT_HOSTS = {"docker": "unix:///var/run/docker.sock", "podman": "podman's default connection"}
INSTALL_HINT = (
    "install docker.io (`apt-get install docker.io`) or podman, or pass --container-runtime"
)
LABEL_RUN = "mtest.run"
LABEL_PID = "mtest.pid"
LABEL_HOST = "mtest.host"
LABEL_START = "mtest.start"
"""The supervisor's start time (clock ticks since boot): with the pid, it names one process."""
CHECK_TIMEOUT_S = 60.0
"""A generous bound for one CLI call that asks the engine something (a loaded machine)."""
LOAD_TIMEOUT_S = 600.0
"""``load -i`` of a large image tarball."""
REMOVE_TIMEOUT_S = 60.0
LOCK_POLL_S = 0.2
GONE = ("no such container", "already in progress")
"""What ``rm -f`` says of a container that is gone or going (``--rm`` removes it)."""
START_FAILURES = frozenset({125, 126, 127})
"""``run``'s own exit statuses: the engine could not create the container (125), or its
command cannot be executed (126) or found (127)."""


@dataclass(frozen=True, kw_only=True)
class Engine:
    """A runtime's CLI and the engine it talks to."""

    runtime: str
    """``docker`` or ``podman``."""
    program: str
    """The CLI as found on PATH."""
    host: str | None = None
    """``--docker-host``: given to the CLI (``--host``/``--url``); ``None``: the CLI's own
    choice (``DOCKER_HOST``/``CONTAINER_HOST`` or its default)."""
    tried: str = ""
    """The host as the user would recognise it, and where it came from (for errors)."""

    def cli(self, *args: str) -> list[str]:
        """The CLI's argv for ``args``, with the host when one was given."""
        if self.host is None:
            return [self.program, *args]
        flag = "--host" if self.runtime == "docker" else "--url"
        return [self.program, flag, self.host, *args]


@dataclass(frozen=True, kw_only=True)
class Spec:
    """What every worker's container of a run shares."""

    engine: Engine
    image: str
    run_id: str
    args: tuple[str, ...] = ()
    """``--container-arg``: given to ``run`` before the image, as typed."""
    writable: tuple[Path, ...] = ()
    """Mounted read-write at the same path (the project, the gates dir)."""
    readable: tuple[Path, ...] = ()
    """Mounted read-only at the same path (mtest's probe)."""
    user: str = ""
    """``uid:gid`` the tests run as (the files they write stay the user's)."""
    labels: tuple[tuple[str, str], ...] = ()


# PID 1 of a worker's container: the worker's parent, as mtest is a local worker's.
# It runs the worker, passes on the signals that come from outside the container
# (the engine proxies mtest's SIGTERM and the stacks signal: their sender's pid is
# 0 in here), ignores those a test sends from inside (`os.kill(os.getppid(), …)`
# reaches mtest's own process on the host, which ignores it too), reaps every
# orphan, and exits as the worker did (`128 + n` for signal `n`, as `docker run`
# reports it). Its signals are blocked and read with `sigwaitinfo`: the kernel
# never drops a blocked signal, even for an init.
INIT = """\
import os, signal, sys
wanted = set(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
worker = os.fork()
if worker == 0:
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    except OSError as exc:
        sys.stderr.write(f"mtest: cannot run {sys.argv[1]} in the container: {exc.strerror}\\n")
        os._exit(127)
while True:
    info = signal.sigwaitinfo(wanted)
    if info.si_signo != signal.SIGCHLD:
        if info.si_pid == 0:
            try:
                os.kill(worker, info.si_signo)
            except ProcessLookupError:
                pass
        continue
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            os._exit(0)
        if pid == 0:
            break
        if pid == worker:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)
"""


def with_init(argv: Sequence[str]) -> list[str]:
    """A worker's own command under mtest's init, run by the same interpreter."""
    return [argv[0], "-c", INIT, *argv]


# -- pure decisions ------------------------------------------------------------------


def labels_for(
    run_id: str, *, pid: int, host: str, start: int | None
) -> tuple[tuple[str, str], ...]:
    out = [(LABEL_RUN, run_id), (LABEL_PID, str(pid)), (LABEL_HOST, host)]
    if start is not None:
        out.append((LABEL_START, str(start)))
    return tuple(out)


def name_for(run_id: str, seq: int) -> str:
    """A worker's container name: ``mtest-<run id>-<child seq>``, in the engine's alphabet."""
    return "mtest-" + re.sub(r"[^a-zA-Z0-9_.-]", "-", f"{run_id}-{seq:04d}")


def _has_option(args: Sequence[str], *names: str) -> bool:
    return any(a in names or a.split("=", 1)[0] in names for a in args)


def run_args(
    spec: Spec, argv: Sequence[str], *, cwd: Path, name: str, env_names: Iterable[str]
) -> list[str]:
    """The CLI's ``run`` for one worker whose own command is ``argv``.

    ``-i`` attaches the worker's stdin (mtest's commands) and stdout (its
    doorbell); stderr carries the test output. ``argv`` runs under mtest's init
    (``INIT``, via ``with_init``): it passes the signals the CLI proxies (SIGTERM,
    SIGUSR2 for the stacks) to pytest, and reaps. No network unless
    ``--container-arg`` names one.
    Variables are passed by name (``-e NAME``): the CLI reads the values from
    its own environment, so none shows on a command line.
    """
    args = [
        "run", "-i", "--rm", "--name", name,
        *(f"--label={key}={value}" for key, value in spec.labels),
        "--workdir", str(cwd),
    ]  # fmt: skip
    if not _has_option(spec.args, "--network", "--net"):
        args.append("--network=none")
    if spec.user and not _has_option(spec.args, "--user", "-u"):
        args += ["--user", spec.user]
    for path in spec.writable:
        args += ["--volume", f"{path}:{path}"]
    for path in spec.readable:
        args += ["--volume", f"{path}:{path}:ro"]
    for env_name in sorted(set(env_names)):
        args += ["--env", env_name]
    return spec.engine.cli(*args, *spec.args, spec.image, *argv)


def repro_args(spec: Spec, *, mounts: Iterable[Path], cwd: Path) -> tuple[str, ...]:
    """A container like a worker's, to run one test by hand: the same image, mounts,
    network and ``--container-arg``s (no labels: mtest does not own it)."""
    args = ["run", "--rm", "-i", "--init"]
    if not _has_option(spec.args, "--network", "--net"):
        args.append("--network=none")
    for path in mounts:
        args += ["--volume", f"{path}:{path}"]
    args += ["--workdir", str(cwd)]
    return tuple(spec.engine.cli(*args, *spec.args, spec.image))


def exit_status(returncode: int | None) -> int | None:
    """``run`` exits ``128 + n`` when the container's command died of signal ``n``:
    as a local child's ``Popen.returncode`` would say it, ``-n``."""
    if returncode is not None and 128 < returncode < 128 + 65:
        return -(returncode - 128)
    return returncode


@dataclass(frozen=True, kw_only=True)
class Found:
    """A container the engine listed with mtest's labels."""

    id: str
    name: str
    labels: Mapping[str, str]


def dead_runs(
    found: Iterable[Found], *, host: str, alive: Callable[[int, int | None], bool]
) -> tuple[list[Found], list[Found]]:
    """``(dead, kept)``: containers of runs whose supervisor is gone, and the others.

    A run is dead when its supervisor ran on this host and its pid is no longer
    the process that started it (``alive(pid, start)`` says it is). A container
    of another host's run, or without a readable pid, is kept: mtest cannot
    know, and never removes what it cannot prove is left over.
    """
    dead, kept = [], []
    for container in found:
        labels = container.labels
        try:
            pid = int(labels.get(LABEL_PID, ""))
            start = int(labels[LABEL_START]) if LABEL_START in labels else None
        except ValueError:
            kept.append(container)
            continue
        if labels.get(LABEL_HOST) == host and not alive(pid, start):
            dead.append(container)
        else:
            kept.append(container)
    return dead, kept


# -- asking the engine -------------------------------------------------------------


def resolve(
    runtime: str | None, host: str | None, env: Mapping[str, str], *, origin: str = ""
) -> Engine:
    """The engine of a run: ``runtime`` (default: the first of docker, podman on PATH)
    and ``host`` (default: the CLI's own, from its environment variable)."""
    if runtime is not None and runtime not in RUNTIMES:
        raise MtestError(
            f"unknown container runtime `{runtime}`{origin}",
            hint="use --container-runtime docker or --container-runtime podman",
        )
    names = (runtime,) if runtime is not None else RUNTIMES
    for name in names:
        program = shutil.which(name)
        if program is not None:
            break
    else:
        wanted = " or ".join(f"`{n}`" for n in names)
        raise MtestError(
            f"--container needs {wanted} on PATH, and none is there", hint=INSTALL_HINT
        )
    var = HOST_VARS[name]
    if host is not None:
        tried = f"{host} (from --docker-host)"
    elif env.get(var):
        tried = f"{env[var]} (from {var})"
    else:
        tried = f"{DEFAULT_HOSTS[name]} ({name}'s default; set --docker-host or {var})"
    return Engine(runtime=name, program=program, host=host, tried=tried)


def _call(
    engine: Engine, *args: str, timeout: float = CHECK_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """One CLI call; an engine that does not answer in time reads as a failed call."""
    try:
        return subprocess.run(
            engine.cli(*args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", f"no answer within {timeout:g}s")
    except OSError as exc:
        return subprocess.CompletedProcess(args, 127, "", exc.strerror or str(exc))


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def check(engine: Engine) -> str:
    """The engine answers: its version. Raises ``MtestError`` (exit 4) naming the host tried."""
    done = _call(engine, "version", "--format", "{{.Server.Version}}")
    if done.returncode != 0 or not done.stdout.strip():
        said = last_line(done.stderr) or f"exit status {done.returncode}"
        raise MtestError(
            f"cannot reach the {engine.runtime} engine at {engine.tried}: {said}",
            hint=f"start the engine, or point --docker-host (or {HOST_VARS[engine.runtime]}) "
            "at one that runs",
        )
    return done.stdout.strip()


def image_present(engine: Engine, image: str) -> bool:
    return _call(engine, "image", "inspect", "--format", "{{.Id}}", image).returncode == 0


def ensure_image(engine: Engine, image: str, tar: Path | None) -> bool:
    """The image is on the engine; loads ``tar`` first when it is not. ``True``: loaded.

    Raises ``MtestError`` (exit 4) when the image is missing and there is no tar,
    when the tar is not an image (``load`` refuses it), or when it held other images.
    """
    if image_present(engine, image):
        return False
    if tar is None:
        raise MtestError(
            f"image `{image}` is not on the {engine.runtime} engine at {engine.tried}",
            hint=f"`{engine.runtime} pull {image}` (or build it), or pass --image-tar PATH "
            "to load it offline",
        )
    if not tar.is_file():
        raise MtestError(
            f"invalid --image-tar `{tar}`: no such file", hint="name a tarball from `docker save`"
        )
    done = _call(engine, "load", "-i", str(tar), timeout=LOAD_TIMEOUT_S)
    if done.returncode != 0:
        said = last_line(done.stderr) or f"exit status {done.returncode}"
        raise MtestError(
            f"--image-tar `{tar}` is not an image tarball ({engine.runtime} load: {said})",
            hint=f"make it with `{engine.runtime} save -o {tar.name} {image}`",
        )
    if not image_present(engine, image):
        held = last_line(done.stdout) or "nothing named"
        raise MtestError(
            f"--image-tar `{tar}` does not hold image `{image}` ({held})",
            hint="pass the image name the tarball holds to --container, or save that image",
        )
    return True


def start_error(engine: Engine, code: int | None, output: str, *, python: str) -> MtestError:
    """The run cannot start its containers: the engine's own first words, and the fix."""
    said = [line.strip() for line in output.splitlines() if line.strip()]
    first = next((s for s in said if "--help" not in s), said[0] if said else "no output")
    return MtestError(
        f"the container did not start ({engine.runtime} run exited {code}): {first}",
        hint=f"check the --container-arg values, and that the image has `{python}` with "
        f"pytest (`{engine.runtime} run --rm IMAGE {python} -m pytest --version`)",
    )


def labelled(engine: Engine, **match: str) -> list[Found]:
    """The containers (running or not) that carry mtest's run label (and ``match``)."""
    filters = [
        f"label={LABEL_RUN}",
        *(f"label={k.replace('_', '.')}={v}" for k, v in match.items()),
    ]
    args = ["ps", "-a", "--no-trunc", "--format", "{{json .}}"]
    for flt in filters:
        args += ["--filter", flt]
    done = _call(engine, *args)
    if done.returncode != 0:
        raise MtestError(
            f"cannot list containers on the {engine.runtime} engine at {engine.tried}: "
            f"{last_line(done.stderr) or done.returncode}",
            hint="start the engine, or point --docker-host at the one the runs used",
        )
    return [c for c in (_found(line) for line in done.stdout.splitlines()) if c is not None]


def _found(line: str) -> Found | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if not isinstance(row, dict):
        return None
    raw = row.get("Labels", "")
    if isinstance(raw, dict):  # podman gives a map
        labels = {str(k): str(v) for k, v in raw.items()}
    else:  # docker: "k=v,k=v"
        labels = dict(part.split("=", 1) for part in str(raw).split(",") if "=" in part)
    names = row.get("Names", "")
    name = names[0] if isinstance(names, list) and names else str(names)
    return Found(id=str(row.get("ID") or row.get("Id") or ""), name=name, labels=labels)


def remove(engine: Engine, ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """``rm -f`` each of ``ids``: ``(removed, failed)``; one already gone counts as removed."""
    removed: list[str] = []
    failed: list[str] = []
    for ident in ids:
        done = _call(engine, "rm", "-f", ident, timeout=REMOVE_TIMEOUT_S)
        gone = done.returncode == 0 or any(g in done.stderr.lower() for g in GONE)
        (removed if gone else failed).append(ident)
    return removed, failed


def remove_run(engine: Engine, run_id: str) -> tuple[list[str], list[str]]:
    """Every container of run ``run_id``: ``(removed, failed)`` (the label sweep)."""
    try:
        found = labelled(engine, mtest_run=run_id)
    except MtestError:
        return [], [f"the containers of run {run_id}"]
    return remove(engine, [c.id for c in found])


def process_start(pid: int) -> int | None:
    """A process's start time (clock ticks since boot), ``None`` when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rpartition(")")[2].split()[19])
    except (IndexError, ValueError):
        return None


def is_alive(pid: int, start: int | None) -> bool:
    """Whether ``pid`` is still the process that started at ``start`` (when known)."""
    now = process_start(pid)
    if now is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return start is None  # /proc unreadable: only a pid to go by
    return start is None or now == start


def this_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True, kw_only=True)
class Cleanup:
    removed: tuple[str, ...]
    failed: tuple[str, ...]
    kept: tuple[Found, ...]
    """Containers with mtest's labels whose run is alive, or another host's."""


def cleanup(engine: Engine, *, retries: int = 0) -> Cleanup:
    """``mtest cleanup``: remove the containers of dead runs (by label, nothing else),
    trying each failed removal again up to ``retries`` times, a second apart."""
    dead, kept = dead_runs(labelled(engine), host=this_host(), alive=is_alive)
    removed, failed = remove(engine, [c.id for c in dead])
    for _ in range(retries):
        if not failed:
            break
        time.sleep(1.0)
        again, failed = remove(engine, failed)
        removed += again
    names = {c.id: c.name for c in dead}
    return Cleanup(
        removed=tuple(names.get(i, i) for i in removed),
        failed=tuple(names.get(i, i) for i in failed),
        kept=tuple(kept),
    )


# -- a run's containers ----------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """What a run's containers did, for the summary and the metrics."""

    started: int = 0
    start_failures: int = 0
    """Containers whose ``run`` failed before pytest said hello (exit 125–127)."""
    timeouts: int = 0
    """Containers that did not stop within the kill grace and were killed."""
    cleanup_failures: int = 0
    """Containers mtest could not remove (``rm -f`` failed, or the sweep could not list)."""

    def as_dict(self) -> dict[str, int]:
        return {
            "started": self.started, "start_failures": self.start_failures,
            "timeouts": self.timeouts, "cleanup_failures": self.cleanup_failures,
        }  # fmt: skip


@dataclass
class Fleet:
    """A run's containers: removals in the background while the loop turns, the sweep
    by label at the end, and the counts."""

    engine: Engine
    run_id: str
    started: int = 0
    start_failures: int = 0
    timeouts: int = 0
    pending: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    unremoved: set[str] = field(default_factory=set)
    """What the last sweep could not remove (ids), or a removal that failed since."""

    @property
    def counts(self) -> Counts:
        return Counts(
            started=self.started, start_failures=self.start_failures, timeouts=self.timeouts,
            cleanup_failures=len(self.unremoved),
        )  # fmt: skip

    def remove_later(self, name: str) -> None:
        """Remove container ``name`` now, without waiting (its CLI was killed, or it
        did not start: ``--rm`` will not see to it)."""
        if name in self.pending:
            return
        try:
            self.pending[name] = subprocess.Popen(
                self.engine.cli("rm", "-f", name), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
        except OSError:
            self.unremoved.add(name)

    def poll(self) -> None:
        """Collect the removals that finished (a failed one is retried by the sweep)."""
        for name, proc in list(self.pending.items()):
            if proc.poll() is not None:
                self._settle(name, proc)

    def _settle(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        del self.pending[name]
        said = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr is not None:
            proc.stderr.close()
        if proc.returncode != 0 and not any(g in said.lower() for g in GONE):
            self.unremoved.add(name)

    def finish(self, timeout_s: float = REMOVE_TIMEOUT_S) -> Counts:
        """The run's workers are over: wait for the removals, then remove whatever still
        carries the run's label; what could not be removed is counted. Idempotent."""
        deadline = time.monotonic() + timeout_s
        for name, proc in list(self.pending.items()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            self._settle(name, proc)
        _, failed = remove_run(self.engine, self.run_id)
        self.unremoved = set(failed)
        return self.counts


# -- one container run at a time ---------------------------------------------------------


class EngineLock:
    """An exclusive ``flock`` on ``--container-lock`` for the whole run: container runs of
    one project take turns. ``waiting`` is told once, with the holder, if it must wait."""

    def __init__(
        self, path: Path, *, waiting: Callable[[str], None], stopped: Callable[[], bool]
    ) -> None:
        self.path = path
        self.waiting = waiting
        self.stopped = stopped
        self.fd: int | None = None

    def __enter__(self) -> EngineLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise MtestError(
                f"cannot open the container lock `{self.path}`: {exc.strerror}",
                hint="point --container-lock at a writable path",
            ) from None
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                pass
            if not told:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another run"
                self.waiting(f"waiting for the container lock {self.path} (held by {holder})")
                told = True
            if self.stopped():
                os.close(fd)
                raise MtestError(
                    f"interrupted while waiting for the container lock {self.path}", code=2
                )
            time.sleep(LOCK_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {this_host()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)  # closing releases the lock
            self.fd = None
