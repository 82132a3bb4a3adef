"""The container launcher's decisions, without an engine: the ``run`` command of a worker,
its name and labels, exit statuses, which labelled containers are a dead run's, what the
engine's listing means, the lock, and ``--container`` and its options."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor import containers, launcher
from supervisor.args import make_config
from supervisor.containers import Engine, Found, Spec
from supervisor.errors import MtestError
from supervisor.launcher import Kind

ARGV = ("python3", "-c", "boot", "/src/supervisor/probe.py", "-p", "_mtest_probe", "tests")
CWD = Path("/work/project")
DOCKER = Engine(runtime="docker", program="/usr/bin/docker", tried="x")
SPEC = Spec(
    engine=DOCKER, image="img:1", run_id="20261206T201817Z-d2f9",
    writable=(CWD,), readable=(Path("/src/supervisor"),), user="1000:1000",
    labels=containers.labels_for("20261206T201817Z-d2f9", pid=4242, host="box", start=77),
)  # fmt: skip


def run(spec: Spec = SPEC, env: tuple[str, ...] = ("MTEST_WORKER",)) -> list[str]:
    return containers.run_args(spec, ARGV, cwd=CWD, name="mtest-x-0001", env_names=env)


def values(args: list[str], option: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == option]


def test_a_worker_runs_attached_removed_with_an_init_and_the_run_labels() -> None:
    args = run()
    assert args[:3] == ["/usr/bin/docker", "run", "-i"]
    assert "--rm" in args and "--init" not in args  # mtest's own init runs the worker
    assert values(args, "--name") == ["mtest-x-0001"]
    labels = [a.split("=", 1)[1] for a in args if a.startswith("--label=")]
    assert labels == [
        "mtest.run=20261206T201817Z-d2f9", "mtest.pid=4242", "mtest.host=box", "mtest.start=77"
    ]  # fmt: skip
    assert values(args, "--workdir") == [str(CWD)]
    assert values(args, "--user") == ["1000:1000"]
    # the image, then the worker's own command, unchanged
    image = args.index("img:1")
    assert args[image + 1 :] == list(ARGV)


def test_paths_are_mounted_at_the_same_place_and_the_probe_read_only() -> None:
    volumes = values(run(), "--volume")
    assert volumes == [f"{CWD}:{CWD}", "/src/supervisor:/src/supervisor:ro"]


def test_variables_go_by_name_so_no_value_shows_on_the_command_line() -> None:
    args = run(env=("MTEST_WORKER", "DATABASE_URL", "MTEST_WORKER"))
    assert values(args, "--env") == ["DATABASE_URL", "MTEST_WORKER"]
    assert not any("=" in v for v in values(args, "--env"))


def test_no_network_unless_the_user_names_one() -> None:
    assert "--network=none" in run()
    for given_args in (("--network=host",), ("--network", "host"), ("--net=bridge",)):
        args = run(Spec(**{**SPEC.__dict__, "args": given_args}))
        assert "--network=none" not in args
        assert args[args.index("img:1") - len(given_args) : args.index("img:1")] == list(given_args)


def test_a_user_given_by_the_user_wins() -> None:
    args = run(Spec(**{**SPEC.__dict__, "args": ("--user=0:0",)}))
    assert values(args, "--user") == []
    assert "--user=0:0" in args


def test_the_host_goes_to_the_cli_as_each_runtime_spells_it() -> None:
    docker = Engine(runtime="docker", program="docker", host="tcp://h:2375")
    podman = Engine(runtime="podman", program="podman", host="unix:///run/p.sock")
    assert docker.cli("ps") == ["docker", "--host", "tcp://h:2375", "ps"]
    assert podman.cli("ps") == ["podman", "--url", "unix:///run/p.sock", "ps"]
    assert Engine(runtime="docker", program="docker").cli("ps") == ["docker", "ps"]


@given(st.text(min_size=1, max_size=40), st.integers(min_value=0, max_value=99999))
def test_names_are_valid_for_the_engine_and_differ_per_child(run_id: str, seq: int) -> None:
    name = containers.name_for(run_id, seq)
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name)
    assert name != containers.name_for(run_id, seq + 1)


@pytest.mark.parametrize(
    ("code", "local"), [(0, 0), (1, 1), (139, -11), (137, -9), (143, -15), (125, 125), (None, None)]
)
def test_a_signal_death_reads_as_a_local_childs(code: int | None, local: int | None) -> None:
    assert containers.exit_status(code) == local
    box = launcher.Launcher(kind=Kind.CONTAINER, container=SPEC)
    assert launcher.exit_status(box, code) == local


def test_the_container_launcher_turns_the_command_and_the_channel() -> None:
    box = launcher.Launcher(kind=Kind.CONTAINER, container=SPEC)
    env = launcher.child_env(box, {"MTEST_PARENT_PID": "1", "MTEST_WORKER": "0", "PATH": "/x"})
    assert "MTEST_PARENT_PID" not in env  # another pid namespace: stdin's end says it
    assert env["MTEST_STDIO"] == "1"
    assert (env["MTEST_CONTROL_FD"], env["MTEST_NOTIFY_FD"]) == ("0", "1")
    argv = launcher.command(box, ARGV, cwd=CWD, name="mtest-x-0002", env=env)
    assert values(argv, "--name") == ["mtest-x-0002"]
    # the worker's own command, under mtest's init run by the same interpreter
    assert argv[argv.index("img:1") + 1 :] == ["python3", "-c", containers.INIT, *ARGV]
    passed = values(argv, "--env")
    assert "MTEST_STDIO" in passed and "MTEST_WORKER" in passed
    assert "PATH" not in passed  # the host's PATH means nothing in the image
    assert box.stdio and not box.samples
    assert launcher.pids_at_start(box, 42) == (42,)  # the CLI relays the stacks signal
    assert launcher.find_probe(box, 42, 7) == (42,)


def test_the_environment_a_container_gets_is_mtests_and_pythons_only() -> None:
    env = {
        "MTEST_RUN_ID": "r", "MTEST_SETUP_DB": "x", "PYTHONPYCACHEPREFIX": "/c",
        "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/root", "VIRTUAL_ENV": "/v", "PATH": "/b",
    }  # fmt: skip
    assert sorted(launcher.container_env(env)) == [
        "MTEST_RUN_ID", "MTEST_SETUP_DB", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX"
    ]  # fmt: skip


def test_the_project_and_mtests_dirs_are_mounted_once(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    gates = project / ".gates"
    box = launcher.container_for(
        Spec(engine=DOCKER, image="i", run_id="r"), own=[gates, gates / "cache"],
        project=[project, project / "sub"],
    )  # fmt: skip
    assert box.kind is Kind.CONTAINER and box.container is not None
    assert box.container.writable == (project,)
    assert gates.is_dir()  # made: the engine would make a root-owned one
    assert box.container.readable == (launcher.PROBE_DIR,)
    assert box.container.user == f"{os.getuid()}:{os.getgid()}"


def found(pid: str, host: str = "box", start: str | None = None, name: str = "c") -> Found:
    labels = {containers.LABEL_RUN: "r", containers.LABEL_PID: pid, containers.LABEL_HOST: host}
    if start is not None:
        labels[containers.LABEL_START] = start
    return Found(id=name, name=name, labels=labels)


def test_only_the_containers_of_runs_that_died_on_this_host_are_dead() -> None:
    alive = {(10, 5), (11, None)}

    def is_alive(pid: int, start: int | None) -> bool:
        return (pid, start) in alive or (pid, None) in alive

    dead, kept = containers.dead_runs(
        [
            found("10", start="5", name="live"),
            found("10", start="6", name="reused-pid"),
            found("11", name="live-no-start"),
            found("12", name="gone"),
            found("12", host="elsewhere", name="other-host"),
            found("x", name="bad-pid"),
        ],
        host="box",
        alive=is_alive,
    )
    assert [c.name for c in dead] == ["reused-pid", "gone"]
    assert [c.name for c in kept] == ["live", "live-no-start", "other-host", "bad-pid"]


def test_the_engines_listing_is_read_from_docker_and_from_podman() -> None:
    docker = json.dumps({"ID": "abc", "Names": "mtest-r-0001", "Labels": "mtest.run=r,mtest.pid=9"})
    podman = json.dumps({"Id": "def", "Names": ["n2"], "Labels": {"mtest.run": "r"}})
    first, second = (containers._found(line) for line in (docker, podman))
    assert first == Found(
        id="abc", name="mtest-r-0001", labels={"mtest.run": "r", "mtest.pid": "9"}
    )
    assert second == Found(id="def", name="n2", labels={"mtest.run": "r"})
    assert containers._found("not json") is None
    assert containers._found("[1]") is None


def test_this_process_is_alive_and_a_reused_pid_is_not() -> None:
    start = containers.process_start(os.getpid())
    assert start is not None
    assert containers.is_alive(os.getpid(), start)
    assert containers.is_alive(os.getpid(), None)
    assert not containers.is_alive(os.getpid(), start + 1)


def test_a_second_holder_of_the_lock_waits_and_says_who_holds_it(tmp_path: Path) -> None:
    said: list[str] = []
    path = tmp_path / "container.lock"
    with containers.EngineLock(path, waiting=said.append, stopped=lambda: False):
        assert f"pid {os.getpid()}" in path.read_text()
        second = containers.EngineLock(path, waiting=said.append, stopped=lambda: True)
        with pytest.raises(MtestError) as caught, second:
            pass
        assert caught.value.code == 2
    assert len(said) == 1 and f"held by pid {os.getpid()}" in said[0]
    with containers.EngineLock(path, waiting=said.append, stopped=lambda: True):
        pass  # free again
    assert len(said) == 1


def test_an_unknown_runtime_or_none_on_path_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MtestError, match="unknown container runtime `rkt`"):
        containers.resolve("rkt", None, {})
    old = os.environ["PATH"]
    os.environ["PATH"] = str(tmp_path)
    try:
        with pytest.raises(MtestError, match="needs `docker` or `podman` on PATH") as caught:
            containers.resolve(None, None, {})
    finally:
        os.environ["PATH"] = old
    assert "docker.io" in caught.value.hint


def test_the_host_tried_is_named_with_where_it_came_from(tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    old = os.environ["PATH"]
    os.environ["PATH"] = str(tmp_path)
    try:
        by_flag = containers.resolve("docker", "tcp://h:1", {"DOCKER_HOST": "unix:///x"})
        by_env = containers.resolve("docker", None, {"DOCKER_HOST": "unix:///x"})
        default = containers.resolve("docker", None, {})
    finally:
        os.environ["PATH"] = old
    assert by_flag.tried == "tcp://h:1 (from --docker-host)"
    assert by_env.tried == "unix:///x (from DOCKER_HOST)" and by_env.host is None
    assert default.tried.startswith("unix:///var/run/docker.sock (docker's default")
    with pytest.raises(MtestError, match=r"cannot reach the docker engine at tcp://h:1"):
        containers.check(by_flag)


def test_counts_read_as_the_summary_and_metrics_take_them() -> None:
    fleet = containers.Fleet(DOCKER, "r", started=3, start_failures=1, timeouts=2)
    fleet.unremoved = {"a"}
    assert fleet.counts.as_dict() == {
        "started": 3, "start_failures": 1, "timeouts": 2, "cleanup_failures": 1
    }  # fmt: skip


# -- the options --------------------------------------------------------------------------


def project(tmp_path: Path, table: str = "") -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[tool.mtest]\n{table}")
    return tmp_path


def test_container_options_are_read_from_flags_and_the_table(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        'container = "img:2"\ncontainer_args = ["--cpus=1"]\nimage_tar = "img.tar"\n'
        'container_runtime = "docker"\n',
    )
    config = make_config(["--container-arg=--memory=1g", "--container-lock", "l.lock"], root)
    assert config.container == "img:2"
    assert config.container_args == ("--cpus=1", "--memory=1g")
    assert config.image_tar == root / "img.tar"
    assert config.container_lock == root / "l.lock"
    assert config.container_runtime == "docker"
    # the image's interpreter, not this one (which need not exist in the image)
    assert (config.python, config.python_origin) == ("python3", "the image's python3")
    named = make_config(["--container", "i", "--python", "/opt/py/bin/python3"], root)
    assert named.python == "/opt/py/bin/python3"  # not checked here: it is the image's


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--container-runtime", "docker"], "--container-runtime needs --container"),
        (["--image-tar", "x.tar"], "--image-tar needs --container"),
        (["--container-arg=--cpus=1"], "--container-arg needs --container"),
        (["--container", "i", "--sandbox"], "--container and --sandbox cannot be combined"),
        (["--self-check", "--container", "i"], "--container is not used by this command"),
    ],
)
def test_container_options_out_of_place_are_usage_errors(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    with pytest.raises(MtestError, match=re.escape(message)) as caught:
        make_config(argv, project(tmp_path))
    assert caught.value.code == 4


def test_a_bad_container_args_table_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(MtestError, match="invalid `container_args`"):
        make_config([], project(tmp_path, 'container = "i"\ncontainer_args = "--cpus=1"\n'))


def test_cleanup_takes_the_engine_options_and_retries(tmp_path: Path) -> None:
    config = make_config(
        ["cleanup", "--retries", "2", "--docker-host", "tcp://h:1"], project(tmp_path)
    )
    assert config.mode.value == "cleanup"
    assert (config.retries, config.docker_host) == (2, "tcp://h:1")
