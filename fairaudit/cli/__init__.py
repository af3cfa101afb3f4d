"""The ``fairaudit`` command line (SPEC 7): the typer app in :mod:`fairaudit.cli.app`, one module per command."""

from fairaudit.cli.app import app, main, run

__all__ = ["app", "main", "run"]
