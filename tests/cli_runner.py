"""Run the ``fairaudit`` console entry point in-process and capture what it prints (shared by tests)."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass

from fairaudit.cli import main


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def run_main(*args: object) -> Run:
    """Call ``fairaudit.cli:main`` with ``args`` and return its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["fairaudit", *map(str, args)]
    code: object = None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as done:
        code = done.code
    finally:
        sys.argv = argv
    assert code is not None, "main() must end with sys.exit"
    return Run(0 if code is None else int(code), out.getvalue(), err.getvalue())
