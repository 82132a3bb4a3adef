import os


def test_calls_os_exit_0():
    os._exit(0)
