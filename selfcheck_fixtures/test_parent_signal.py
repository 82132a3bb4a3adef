import os
import signal


def test_sends_sigterm_to_its_parent():
    if os.environ.get("MTEST_SELFCHECK_COPY"):
        return  # a forked copy (test_fork_continue) would signal the worker, not mtest
    os.kill(os.getppid(), signal.SIGTERM)


def test_runs_after_the_signal():
    assert "signal".upper() == "SIGNAL"
