"""Unit tests for ``supervisor.runsetup``: the env-file parser, the options, one command's run.

The parser and the option checks take plain values; ``run_command`` and ``Once``
run real ``/bin/sh`` commands (small ones) in a temporary directory.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.args import make_config
from supervisor.config import DEFAULT_SETUP_TIMEOUT_S, Config
from supervisor.console import Console
from supervisor.control import StopControl
from supervisor.errors import MtestError
from supervisor.reaper import ANCESTRY_VAR, setup_mark
from supervisor.runsetup import Ended, Once, Ran, parse_env_file, run_command
from supervisor.store import Store

# -- parse_env_file --------------------------------------------------------------


def test_lines_become_variables_as_written() -> None:
    text = (
        "# the database\n"
        "\n"
        "DB_URL=postgres://u:p@127.0.0.1:5432/db?x=1\n"
        "   \n"
        "  # an indented comment\n"
        "QUOTED=\"kept\" 'as is' $HOME\n"
        "EMPTY=\n"
        "SPACES= a b \n"
        "crlf=1\r\n"
        "_X9=last"
    )
    assert parse_env_file(text, "f") == {
        "DB_URL": "postgres://u:p@127.0.0.1:5432/db?x=1",
        "QUOTED": "\"kept\" 'as is' $HOME",
        "EMPTY": "",
        "SPACES": " a b ",
        "crlf": "1",
        "_X9": "last",
    }


def test_the_last_of_a_repeated_key_wins() -> None:
    assert parse_env_file("A=1\nA=2\n", "f") == {"A": "2"}


def test_an_empty_file_sets_nothing() -> None:
    assert parse_env_file("", "f") == {}


@pytest.mark.parametrize(
    ("text", "number", "why"),
    [
        ("A=1\nno equals sign\n", 2, "expected KEY=VALUE"),
        ("A=1\n\n# c\n1A=2\n", 4, "expected KEY=VALUE"),
        (" A=1\n", 1, "expected KEY=VALUE"),
        ("A B=1\n", 1, "expected KEY=VALUE"),
        ("export A=1\n", 1, "expected KEY=VALUE"),
        ("=1\n", 1, "expected KEY=VALUE"),
        ("MTEST_WORKER=3\n", 1, "mtest's own"),
        ("A=x\0y\n", 1, "NUL"),
    ],
)
def test_a_malformed_line_is_an_error_naming_the_file_and_line(
    text: str, number: int, why: str
) -> None:
    with pytest.raises(MtestError) as caught:
        parse_env_file(text, "/p/.gates/last-run/setup.env")
    assert caught.value.code == 3
    assert caught.value.message.startswith(f"/p/.gates/last-run/setup.env:{number}: ")
    assert why in caught.value.message


_KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda k: not k.startswith("MTEST_")
)
_VALUES = st.text(st.characters(blacklist_characters="\n\r\0"), max_size=30)


@given(st.dictionaries(_KEYS, _VALUES, max_size=8))
def test_written_variables_read_back(env: dict[str, str]) -> None:
    text = "".join(f"# {i}\n{k}={v}\n\n" for i, (k, v) in enumerate(env.items()))
    assert parse_env_file(text, "f") == env


# -- the options -------------------------------------------------------------------


def _project(tmp_path: Path, table: str = "") -> Path:
    root = tmp_path / "p"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    if table:
        (root / "pyproject.toml").write_text(f"[tool.mtest]\n{table}")
    return root


def test_no_setup_by_default(tmp_path: Path) -> None:
    config = make_config([], _project(tmp_path))
    assert (config.setup, config.teardown) == (None, None)
    assert config.setup_timeout_s == DEFAULT_SETUP_TIMEOUT_S == 300.0


def test_the_table_gives_the_commands_and_the_flags_win(tmp_path: Path) -> None:
    root = _project(tmp_path, 'setup = "./up"\nteardown = "./down"\nsetup_timeout = "2m"\n')
    config = make_config([], root)
    assert (config.setup, config.teardown, config.setup_timeout_s) == ("./up", "./down", 120.0)
    config = make_config(["--setup", "a b", "--teardown=c", "--setup-timeout", "5"], root)
    assert (config.setup, config.teardown, config.setup_timeout_s) == ("a b", "c", 5.0)


@pytest.mark.parametrize(
    ("argv", "table", "named"),
    [
        (["--setup", ""], "", "--setup"),
        (["--teardown", "   "], "", "--teardown"),
        ([], 'setup = ""\n', "`setup` in"),
        ([], "setup = 3\n", "`setup` in"),
        ([], "teardown = ['a']\n", "`teardown` in"),
        (["--setup-timeout", "0"], "", "--setup-timeout"),
        (["--setup-timeout=-1s"], "", "--setup-timeout"),
        (["--setup-timeout", "soon"], "", "--setup-timeout"),
        ([], "setup_timeout = true\n", "`setup_timeout` in"),
    ],
)
def test_a_bad_command_or_timeout_is_a_usage_error_naming_it(
    tmp_path: Path, argv: list[str], table: str, named: str
) -> None:
    with pytest.raises(MtestError) as caught:
        make_config(argv, _project(tmp_path, table))
    assert caught.value.code == 4
    assert named in caught.value.message


@pytest.mark.parametrize("mode", ["--collect-only", "--report", "--self-check", "--quarantine"])
def test_the_flags_belong_to_runs_only(tmp_path: Path, mode: str) -> None:
    with pytest.raises(MtestError) as caught:
        make_config([mode, "--setup", "true"], _project(tmp_path))
    assert caught.value.code == 4
    assert "--setup is not used by this command" in caught.value.message


# -- one command -------------------------------------------------------------------


def _run(tmp_path: Path, command: str, **kw: object) -> Ran:
    options: dict[str, object] = {
        "what": "setup", "cwd": tmp_path, "env": dict(os.environ), "limit_s": 60.0,
        "grace_s": 0.5, "output": tmp_path / "out" / "setup-output.txt", "stop": StopControl(),
        "stopped": lambda: False,
    }  # fmt: skip
    options.update(kw)
    return run_command(command, **options)  # type: ignore[arg-type]


def test_a_command_runs_in_the_cwd_and_its_output_is_kept(tmp_path: Path) -> None:
    ran = _run(tmp_path, "pwd; echo to-stderr >&2; exit 0")
    assert ran.ok and ran.ended is Ended.EXITED and ran.returncode == 0
    assert ran.output.read_text().splitlines() == [str(tmp_path), "to-stderr"]


def test_a_failing_command_says_its_status(tmp_path: Path) -> None:
    ran = _run(tmp_path, "exit 7")
    assert not ran.ok
    assert ran.how == "exited with status 7"


def test_a_command_killed_by_a_signal_says_which(tmp_path: Path) -> None:
    ran = _run(tmp_path, "kill -SEGV $$")
    assert ran.how == "was killed by SIGSEGV"


def test_a_command_that_cannot_start_says_why(tmp_path: Path) -> None:
    ran = _run(tmp_path, "true", cwd=tmp_path / "missing")
    assert ran.ended is Ended.NOT_STARTED and not ran.ok
    assert "could not be started" in ran.how
    assert "cannot start the setup" in ran.output.read_text()


def test_the_shell_gets_no_blocked_signals(tmp_path: Path) -> None:
    """mtest blocks SIGTERM while a run is on: the command (and the service it starts)
    must not inherit that, nor Python's ignored SIGPIPE."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT])
    try:
        # In the background: a shell may clear its own mask, not what it starts with `&`.
        ran = _run(tmp_path, "grep -E '^Sig(Blk|Ign)' /proc/self/status & wait")
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    if not Path("/proc/self/status").exists():
        pytest.skip("no /proc on this platform")
    fields = dict(line.split(":\t") for line in ran.output.read_text().splitlines())
    assert int(fields["SigBlk"], 16) == 0
    assert int(fields["SigIgn"], 16) & (1 << (signal.SIGPIPE - 1)) == 0


def _gone(pid: int, within: float = 60.0) -> bool:
    """Whether ``pid`` is gone (or a zombie) within ``within`` seconds (a hang guard)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to see the group")
def test_past_its_limit_the_whole_group_is_killed_even_when_it_ignores_sigterm(
    tmp_path: Path,
) -> None:
    ignore = f"{sys.executable} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'"  # noqa: E501
    command = f"{ignore} & echo $! > {tmp_path}/child; trap '' TERM; sleep 600"
    ran = _run(tmp_path, command, limit_s=1.0, grace_s=0.2)
    assert ran.ended is Ended.TIMED_OUT
    assert "did not finish within --setup-timeout 1s" in ran.how
    assert _gone(int((tmp_path / "child").read_text()))


def test_stopped_ends_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "began"
    ran = _run(tmp_path, f"touch {marker}; sleep 600", stopped=marker.exists)
    assert ran.ended is Ended.INTERRUPTED
    assert ran.how == "was stopped: mtest was interrupted"


def test_a_command_that_exits_leaves_its_background_process_alone(tmp_path: Path) -> None:
    ran = _run(tmp_path, f"sleep 600 & echo $! > {tmp_path}/bg")
    pid = int((tmp_path / "bg").read_text())
    try:
        assert ran.ok
        assert not _gone(pid, within=0.5)
    finally:
        os.kill(pid, signal.SIGKILL)


# -- Once ----------------------------------------------------------------------------


def _once(tmp_path: Path, argv: list[str]) -> tuple[Once, Store, Config]:
    root = _project(tmp_path)
    config = make_config(argv, root)
    store = Store(config.gates_dir, lambda line: None)
    store.paths.failures.mkdir(parents=True)
    console = Console.for_stream(open(os.devnull, "w"), verbosity=0)  # noqa: SIM115
    return Once(config, store, "RUN1", StopControl(), console), store, config


def test_once_reads_the_env_file_and_gives_the_teardown_the_same(tmp_path: Path) -> None:
    setup = 'echo "DB=$MTEST_RUN_ID $MTEST_ENV_FILE" >> "$MTEST_ENV_FILE"; env > setup-env.txt'
    once, store, config = _once(tmp_path, ["--setup", setup, "--teardown", "env > down-env.txt"])
    with once:
        assert once.env == {"DB": f"RUN1 {store.paths.setup_env}"}
    seen = dict(
        line.split("=", 1)
        for line in (config.cwd / "down-env.txt").read_text().splitlines()
        if "=" in line
    )
    assert seen["DB"] == f"RUN1 {store.paths.setup_env}"
    assert seen["MTEST_RUN_ID"] == "RUN1"
    assert seen[ANCESTRY_VAR].split(":")[-1] == setup_mark("RUN1") != "RUN1"
    assert any(note.startswith("teardown `env > down-env.txt` took") for note in store.notes)


def test_a_failing_setup_raises_exit_3_and_runs_no_teardown(tmp_path: Path) -> None:
    once, store, config = _once(
        tmp_path, ["--setup", "echo nope; exit 5", "--teardown", "touch td"]
    )
    with pytest.raises(MtestError) as caught, once:
        pytest.fail("the block must not run")
    assert caught.value.code == 3
    assert "the setup `echo nope; exit 5` exited with status 5" in caught.value.message
    assert str(store.paths.setup_output("setup")) in caught.value.message
    assert store.paths.setup_output("setup").read_text() == "nope\n"
    assert not (config.cwd / "td").exists()


def test_a_bad_env_file_ends_the_run_after_the_teardown(tmp_path: Path) -> None:
    setup = 'echo "not a variable" > "$MTEST_ENV_FILE"'
    once, store, config = _once(tmp_path, ["--setup", setup, "--teardown", "touch td"])
    with pytest.raises(MtestError) as caught, once:
        pytest.fail("the block must not run")
    assert caught.value.code == 3
    assert f"{store.paths.setup_env}:1:" in caught.value.message
    assert (config.cwd / "td").exists()


def test_a_failing_teardown_is_a_warning_note(tmp_path: Path) -> None:
    once, store, _ = _once(tmp_path, ["--teardown", "echo bad >&2; exit 9"])
    with once:
        pass
    assert any(
        "the teardown `echo bad >&2; exit 9` exited with status 9" in note for note in store.notes
    )
    assert store.paths.setup_output("teardown").read_text() == "bad\n"


def test_the_teardown_runs_once(tmp_path: Path) -> None:
    once, _, config = _once(tmp_path, ["--teardown", "echo x >> count"])
    with once:
        once.finish()
    assert (config.cwd / "count").read_text() == "x\n"
