"""Output files of the commands: checks before anything is written, and write errors as one-line errors."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from fairaudit.errors import InputError, UsageError
from fairaudit.io.outputs import is_same_file, write_atomically


def check_output(path: Path | None, inputs: list[Path | None]) -> None:
    """Refuse to write an output over an input file, into a missing directory or onto a directory."""
    if path is None:
        return
    path = Path(path)
    for source in inputs:
        if source is not None and path.exists() and is_same_file(path, source):
            raise UsageError(f"refusing to overwrite the input file {source} with an output (the same file)")
    if path.is_dir():
        raise UsageError(f"the output {path} is a directory; give a file name")
    if not path.resolve().parent.is_dir():
        raise UsageError(f"can not write {path}: the directory {path.resolve().parent} does not exist")


def check_outputs(outputs: list[Path | None], inputs: list[Path | None]) -> None:
    """Every output checked against the inputs, and no two outputs on the same file."""
    seen: dict[Path, Path] = {}
    for out in outputs:
        if out is None:
            continue
        check_output(out, inputs)
        key = Path(out).resolve()
        if key in seen:
            raise UsageError(f"two outputs would write the same file {out}")
        seen[key] = out


@contextmanager
def writing(path: Path):
    """Turn an operating-system error while writing an output into a one-line error (exit 2)."""
    try:
        yield
    except OSError as error:
        raise InputError(f"can not write this output: {error.strerror or error}", file=str(path)) from None


def write_output(path: Path, text: str) -> None:
    """Write a text output file atomically; an operating-system error is a one-line error (exit 2)."""
    with writing(path):
        write_atomically(path, text)
