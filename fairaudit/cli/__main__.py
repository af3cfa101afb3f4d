"""``python -m fairaudit.cli``: the same as the installed ``fairaudit`` command."""

from fairaudit.cli.app import run

run()
