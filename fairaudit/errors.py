"""Errors that fairaudit reports to users.

Every problem with a user's input is an :class:`InputError` that names the file, the line,
the column and the offending value, so the CLI can print one clear sentence and exit with code 2.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class InputError(Exception):
    """Bad user input: a file, option or value fairaudit cannot use.

    ``line`` is the 1-based line number in the file as a text editor shows it (the header is
    line 1 of a CSV), or ``None`` when the problem is not tied to one line (e.g. a missing column).
    """

    message: str
    file: str | None = None
    line: int | None = None
    column: str | None = None
    value: object = None
    #: What kind of problem, for programs (the message is for people); see the codes below.
    code: str = "input"

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __reduce__(self):
        """Keep file, line, column and value when pickled (e.g. raised on a Dask worker)."""
        return (type(self), (self.message, self.file, self.line, self.column, self.value, self.code))

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.value is not None:
            where.append(f"value {_show(self.value)}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class UsageError(InputError):
    """A bad option or combination of options (exit code 2, like bad input)."""

    code: str = "usage"


#: InputError codes that programs act on (declared once; the message text may change freely).
NO_ROWS = "no-rows"  # a file with a header and no data rows (the Dask engine skips such a piece)
