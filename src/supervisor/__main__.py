"""``python -m supervisor``: the same program as the ``mtest`` console script."""

from supervisor.cli import main

main()
