"""Run mtest in this process and write its own CPU seconds (all threads) to a file at exit.

    python bench/selfcpu.py OUT [mtest arguments...]

``real.py``'s storm scenario runs mtest through this script: the process
tree's CPU (``run.timed``) minus what this writes is the CPU of mtest's
children. It exits as mtest does.
"""

import atexit
import resource
import runpy
import sys


def _save(out: str) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(out, "w", encoding="utf-8") as file:
        file.write(repr(usage.ru_utime + usage.ru_stime))


if __name__ == "__main__":
    atexit.register(_save, sys.argv[1])
    sys.argv = ["mtest", *sys.argv[2:]]
    runpy.run_module("supervisor", run_name="__main__", alter_sys=True)
