"""The typer app: its commands, help format and ``main()``. Exit codes: 0 success, 1 gate failed, 2 bad input/usage.

Each command lives in ``<command>_command.py``; the options several commands share in ``options.py``.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Protocol, TypeGuard

import typer

from fairaudit.cli.audit_command import audit
from fairaudit.cli.compare_command import compare
from fairaudit.cli.console import err_console
from fairaudit.cli.embed_command import embed
from fairaudit.cli.export_command import export
from fairaudit.cli.gate_command import gate
from fairaudit.cli.schema_command import schema
from fairaudit.cli.score_command import score
from fairaudit.cli.synth_command import synth
from fairaudit.cli.validate_command import validate
from fairaudit.errors import InputError


class PlainHelpCommand(typer.core.TyperCommand):
    """A typer command whose help reads like other Unix tools: ``fairaudit audit [OPTIONS] LOG``.

    typer writes required arguments as ``{LOG}`` (braces read as a set) and types a ``str`` argument
    ``<str>``; every argument naming a log or report here is a file path, a glob pattern or a URL,
    shown as ``<path>`` whether it is declared ``Path`` or (to keep ``s3://`` intact) ``str``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, typer.core.TyperArgument) and "LOG" in (param.metavar or ""):
                # typer declares display_type_rich a method; replacing it on one instance is the intent here
                param.display_type_rich = lambda ctx: "<path>"  # type: ignore[method-assign]

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece for piece in pieces]


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Audit a speech recogniser for fairness: find the speaker cohorts with the highest word error rate (WER).",
)


def _show_version(value: bool) -> None:
    """--version: print the version and stop."""
    if value:
        from fairaudit.version import __version__

        typer.echo(f"fairaudit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the fairaudit version and exit."
    ),
) -> None:
    """Audit a speech recogniser for fairness: find the speaker cohorts with the highest word error rate (WER)."""


# The commands, in the order `fairaudit --help` lists them.
app.command(cls=PlainHelpCommand)(audit)
app.command(cls=PlainHelpCommand)(compare)
app.command(cls=PlainHelpCommand)(gate)
app.command(cls=PlainHelpCommand)(validate)
app.command(cls=PlainHelpCommand)(score)
app.command(cls=PlainHelpCommand)(synth)
app.command(cls=PlainHelpCommand)(export)
app.command(cls=PlainHelpCommand)(embed)
app.command(cls=PlainHelpCommand)(schema)


def main() -> None:
    """Console entry point: bad input and usage errors print one line and exit 2, never a traceback."""
    if not os.environ.get("FAIRAUDIT_DEBUG"):
        import warnings

        # Library warnings (numpy casts, matplotlib, scikit-learn) are not messages for the user:
        # every condition that matters is checked and reported in plain words.
        warnings.simplefilter("ignore")
    try:
        code = app(standalone_mode=False)
    except InputError as error:
        _print_error("error:", str(error))
        sys.exit(2)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)  # run() then leaves at once, without waiting for a fit still on a worker thread
    except Exception as error:  # click usage errors and anything unexpected
        if _is_click_exception(error):
            # typer >= 0.2x vendors click as typer._click (its exceptions derive from
            # typer.TyperException, not click.ClickException): handle both.
            error.show()
            exit_code = getattr(error, "exit_code", None)
            sys.exit(exit_code if isinstance(exit_code, int) else 2)
        if os.environ.get("FAIRAUDIT_DEBUG"):
            raise
        _print_error(
            "internal error:",
            f"{type(error).__name__}: {error} (set FAIRAUDIT_DEBUG=1 for the traceback; please report it)",
        )
        sys.exit(3)
    sys.exit(code if isinstance(code, int) else 0)


def run() -> None:
    """The installed ``fairaudit`` command and ``python -m fairaudit.cli``: :func:`main`, then exit
    without tearing down the interpreter. After an audit the modules' and objects' finalisation
    took 0.3-0.5 s, with every output file already written and closed (tests call :func:`main`)."""
    try:
        main()
        code: object = 0
    except SystemExit as done:
        code = done.code
    except KeyboardInterrupt:  # a second Ctrl-C while main() was handling the first
        code = 130
    if code is not None and not isinstance(code, int):  # sys.exit("message"): print it, status 1
        if sys.stderr is not None:
            print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None when the descriptor was closed (`fairaudit --version >&-`)
                stream.flush()
        except (BrokenPipeError, ValueError, OSError):  # `| head` closed the pipe: nothing left to say
            pass
    os._exit(code or 0)


class _ShowableError(Protocol):
    """A click usage error (click's own or typer's vendored copy): it prints itself to stderr."""

    def show(self, file: Any = None) -> None: ...


def _is_click_exception(error: BaseException) -> TypeGuard[_ShowableError]:
    """A command-line parsing error from click, or from the copy of click that newer typer vendors."""
    kinds: list[type] = []
    try:
        import click

        kinds.append(click.ClickException)
    except ImportError:  # pragma: no cover - typer >= 0.2x no longer needs click installed
        pass
    vendored = getattr(typer, "TyperException", None)  # absent in older typer, which uses click itself
    if isinstance(vendored, type):
        kinds.append(vendored)
    return isinstance(error, tuple(kinds)) and hasattr(error, "show")


def _print_error(prefix: str, message: str) -> None:
    """One line on stderr (never wrapped to the terminal width, never read as rich markup or emoji)."""
    text = " ".join(message.split("\n"))
    err_console.print(f"[bold red]{prefix}[/bold red] {_escape(text)}", highlight=False, soft_wrap=True, emoji=False)


def _escape(text: str) -> str:
    from fairaudit.render.safe_text import terminal

    return terminal(text)


if __name__ == "__main__":  # pragma: no cover
    main()
