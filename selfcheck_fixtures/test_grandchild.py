import os
import subprocess
import sys
from pathlib import Path


def test_leaves_a_grandchild():
    # A grandchild in its own session escapes the child's process group; mtest
    # must still kill it. Its pid is left where the self-check looks for it.
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)"],
        start_new_session=True,
    )
    target = os.environ.get("MTEST_SELFCHECK_PIDS")
    if target:
        with Path(target).open("a") as handle:
            handle.write(f"{child.pid} grandchild\n")
