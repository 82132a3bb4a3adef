import os
from pathlib import Path


def test_forks_and_the_copy_runs_on():
    # The forked copy returns into pytest (no os._exit) and goes on running the
    # tests after this one: only the worker itself may speak for them, and the
    # copy must not outlive the run. Its pid is left where the self-check looks.
    pid = os.fork()
    if pid == 0:
        os.environ["MTEST_SELFCHECK_COPY"] = "1"
        return
    target = os.environ.get("MTEST_SELFCHECK_PIDS")
    if target:
        with Path(target).open("a") as handle:
            handle.write(f"{pid} fork-continue\n")


def test_sibling_of_the_fork():
    assert sum([1, 2, 3]) == 6
