"""mtest's version, in one place (the package and ``--version`` read it)."""

__version__ = "0.1.0"
