"""The terminal: the stdout console for results, the stderr console for errors and progress bars."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

err_console = Console(stderr=True)


def stdout_console(plain: bool = False) -> Console:
    """The console for results. Piped or redirected (CI logs, files): each line stays one line and
    tables keep their natural width instead of being wrapped and squeezed to 80 columns.

    ``plain``: the text holds user strings (paths, column names) that must never be read as rich
    markup or emoji codes (a path like ``runs[/red]/log.csv`` would otherwise crash the print).
    """
    options: dict[str, Any] = {"markup": False, "emoji": False} if plain else {"emoji": False}
    console = ResultConsole(**options)
    return console if console.is_terminal else ResultConsole(soft_wrap=True, **options)


class ResultConsole(Console):
    """A stdout console whose reader may stop reading (``fairaudit audit LOG | head``).

    rich's default turns a closed pipe into exit code 1, which here means "gate failed"; the work is
    done by the time results are printed, so stop printing quietly and exit 0 instead.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # pragma: no cover - stdout without a file descriptor
            pass
        raise typer.Exit(0)


@contextmanager
def progress_bars(enabled: bool):
    """A rich progress bar factory for the bootstrap, permutation and embedding loops (stderr only)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bars:

        def factory(description: str, total: int):
            task = bars.add_task(description, total=total)
            return lambda done: bars.advance(task, done)

        yield factory
