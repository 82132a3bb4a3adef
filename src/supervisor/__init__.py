"""mtest: a test supervisor that drives pytest from the outside."""

__version__ = "0.1.0"
