"""The launcher's decisions: the command a worker runs as, its environment, its exit status,
the binds of a sandbox, and ``--sandbox``/``--sandbox-writable`` as options."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor import launcher
from supervisor.args import make_config
from supervisor.errors import MtestError
from supervisor.launcher import LOCAL, Kind, Launcher
from supervisor.reaper import ProcInfo

ARGV = ("/venv/bin/python", "-c", "boot", "probe.py", "-p", "_mtest_probe", "tests")
CWD = Path("/work/project")


def pairs(args: list[str], option: str) -> list[tuple[str, str]]:
    """The (source, target) of each ``option SRC DST`` in bwrap's arguments."""
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == option]


def test_a_local_worker_runs_its_own_command_with_its_own_environment() -> None:
    assert launcher.command(LOCAL, ARGV, cwd=CWD) == list(ARGV)
    env = {"MTEST_PARENT_PID": "1", "A": "b"}
    assert launcher.child_env(LOCAL, env) == env
    assert launcher.exit_status(LOCAL, 139) == 139
    assert launcher.exit_status(LOCAL, -11) == -11
    assert launcher.pids_at_start(LOCAL, 42) == (42,)
    assert launcher.find_probe(LOCAL, 42, None) == (42,)


def test_a_sandboxed_worker_runs_its_command_after_bwrap_and_its_options() -> None:
    box = launcher.sandbox(writable=[CWD / ".gates"], visible=[CWD])
    argv = launcher.command(box, ARGV, cwd=CWD)
    assert argv[0] == "bwrap"
    split = argv.index("--")
    assert argv[split + 1 :] == list(ARGV)
    options = argv[1:split]
    for flag in ("--unshare-net", "--unshare-pid", "--die-with-parent"):
        assert flag in options
    assert ("/", "/") in pairs(options, "--ro-bind")
    assert (
        options[options.index("--dev") + 1],
        options[options.index("--proc") + 1],
    ) == ("/dev", "/proc")
    assert pairs(options, "--bind") == [(str(CWD / ".gates"), str(CWD / ".gates"))]
    assert options[-2:] == ["--chdir", str(CWD)]
    tmpfs = [options[i + 1] for i, a in enumerate(options) if a == "--tmpfs"]
    assert tmpfs == ["/tmp", "/dev/shm"]


def test_mounts_go_root_then_private_dirs_then_hidden_project_then_writable() -> None:
    project = Path("/tmp/pytest-of-me/proj")
    box = launcher.sandbox(
        writable=[project / ".gates", Path("/srv/out")], visible=[project, Path("/usr")]
    )
    options = launcher.bwrap_args(box, project)
    positions = {
        "root": options.index("/"),
        "tmp": options.index("/tmp"),
        "project": options.index(str(project)),
        "gates": options.index(str(project / ".gates")),
    }
    assert positions["root"] < positions["tmp"] < positions["project"] < positions["gates"]
    # Only what the private /tmp hides is bound back (read-only); /usr is seen anyway.
    assert pairs(options, "--ro-bind") == [("/", "/"), (str(project), str(project))]
    assert ("/srv/out", "/srv/out") in pairs(options, "--bind")


def test_the_cwd_is_kept_even_under_tmp() -> None:
    cwd = Path("/tmp/elsewhere/sub")
    options = launcher.bwrap_args(launcher.sandbox(writable=[], visible=[]), cwd)
    assert (str(cwd), str(cwd)) in pairs(options, "--ro-bind")
    assert options[-2:] == ["--chdir", str(cwd)]


def test_the_sandbox_does_not_hand_the_probe_a_parent_pid_it_cannot_see() -> None:
    box = launcher.sandbox(writable=[], visible=[])
    env = {"MTEST_PARENT_PID": "123", "MTEST_ANCESTRY": "run", "PATH": "/bin"}
    assert launcher.child_env(box, env) == {"MTEST_ANCESTRY": "run", "PATH": "/bin"}


@pytest.mark.parametrize(
    ("returncode", "local"),
    [(139, -11), (143, -15), (137, -9), (134, -6), (0, 0), (1, 1), (128, 128), (200, 200),
     (-9, -9), (None, None)],
)  # fmt: skip
def test_bwrap_exit_statuses_read_as_a_local_childs(returncode: int | None, local: int) -> None:
    box = launcher.sandbox(writable=[], visible=[])
    assert launcher.exit_status(box, returncode) == local


def test_a_sandboxed_worker_knows_none_of_its_pids_before_its_hello() -> None:
    box = launcher.sandbox(writable=[], visible=[])
    assert launcher.pids_at_start(box, 42) == ()
    assert launcher.find_probe(box, 42, None) == ()


@given(st.lists(st.sampled_from(["/a", "/a/b", "/a/b/c", "/ab", "/c", "/c/d", "/"]), max_size=7))
def test_outermost_keeps_no_path_inside_another_and_covers_them_all(names: list[str]) -> None:
    paths = [Path(n) for n in names]
    kept = launcher.outermost(paths)
    assert len(set(kept)) == len(kept)
    for one in kept:
        assert not any(one != other and one.is_relative_to(other) for other in kept)
    for path in paths:
        assert any(path.is_relative_to(k) for k in kept)


def info(pid: int, ppid: int) -> ProcInfo:
    return ProcInfo(pid=pid, ppid=ppid, pgid=10, session=10, state="S", start=pid)


def test_chain_walks_from_the_launched_process_down_to_pytests() -> None:
    table = {p.pid: p for p in [info(10, 1), info(11, 10), info(12, 11), info(13, 12)]}
    assert launcher.chain(table, 10, 12) == (10, 11, 12)
    assert launcher.chain(table, 10, 10) == (10,)
    assert launcher.chain(table, 11, 10) == ()  # not below it
    assert launcher.chain(table, 10, 99) == ()  # gone


def test_sandbox_for_a_run_makes_mtests_own_dirs_and_sees_the_interpreter(tmp_path: Path) -> None:
    gates = tmp_path / "proj" / ".gates"
    box = launcher.sandbox_for(
        own=[gates, gates / "cache"], writable=[], project=[tmp_path / "proj"],
        python=str(tmp_path / "venv" / "bin" / "python"), env={"PYTHONPATH": "/opt/lib:"},
    )  # fmt: skip
    assert box.kind is Kind.SANDBOX
    assert (gates / "cache").is_dir()
    assert box.writable == (gates,)
    assert tmp_path / "venv" in box.visible
    assert Path("/opt/lib") in box.visible
    assert launcher.PROBE_DIR in box.visible or any(
        launcher.PROBE_DIR.is_relative_to(v) for v in box.visible
    )


# -- the options ----------------------------------------------------------------------

needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "out").mkdir()
    return tmp_path


def test_no_sandbox_by_default(project: Path) -> None:
    config = make_config([], project)
    assert (config.sandbox, config.sandbox_writable) == (False, ())


@needs_bwrap
def test_sandbox_writable_paths_are_relative_to_the_cwd(project: Path) -> None:
    config = make_config(
        ["--sandbox", "--sandbox-writable", "out", "--sandbox-writable", "pytest.ini"], project
    )
    assert config.sandbox
    assert config.sandbox_writable == (project / "out", project / "pytest.ini")


@needs_bwrap
def test_the_table_turns_the_sandbox_on_and_the_flag_off(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        '[tool.mtest]\nsandbox = true\nsandbox_writable = ["out"]\n'
    )
    config = make_config([], project)
    assert config.sandbox and config.sandbox_writable == (project / "out",)
    assert not make_config(["--no-sandbox"], project).sandbox


def test_a_missing_writable_path_is_named(project: Path) -> None:
    with pytest.raises(MtestError) as caught:
        make_config(["--sandbox", "--sandbox-writable", "nowhere"], project)
    assert "--sandbox-writable `nowhere`" in caught.value.message
    assert "does not exist" in caught.value.message
    assert caught.value.code == 4


def test_writable_paths_without_the_sandbox_are_a_usage_error(project: Path) -> None:
    with pytest.raises(MtestError, match="needs --sandbox") as caught:
        make_config(["--sandbox-writable", "out"], project)
    assert caught.value.code == 4


@pytest.mark.parametrize(
    ("table", "wanted"),
    [('sandbox = "yes"', "sandbox"), ('sandbox_writable = "out"', "sandbox_writable")],
)
def test_bad_table_values_are_named(project: Path, table: str, wanted: str) -> None:
    (project / "pyproject.toml").write_text(f"[tool.mtest]\n{table}\n")
    with pytest.raises(MtestError, match=f"`{wanted}`"):
        make_config([], project)


@pytest.mark.parametrize("mode", ["--report", "--self-check", "--quarantine"])
def test_the_sandbox_is_for_commands_that_run_the_projects_tests(project: Path, mode: str) -> None:
    with pytest.raises(MtestError, match="--sandbox is not used by this command"):
        make_config([mode, "--sandbox"], project)


def test_without_bwrap_the_sandbox_is_one_usage_error_naming_the_package(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(project / "out"))  # an empty directory: no bwrap
    with pytest.raises(MtestError) as caught:
        launcher.check(Launcher(kind=Kind.SANDBOX))
    assert "`bwrap` is not on PATH" in caught.value.message
    assert "apt-get install bubblewrap" in caught.value.hint
    assert caught.value.code == 4
    launcher.check(LOCAL)  # a local run needs nothing
