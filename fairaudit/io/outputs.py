"""Writing output files safely: never over an input, never half-written (SPEC 6)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def is_same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths are the same file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to a temporary file in the same directory, then rename it over
    ``path``: a full disk or a killed process leaves the previous file, never a fragment."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
