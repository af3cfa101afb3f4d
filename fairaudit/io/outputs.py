"""Writing output files safely: never over an input, never half-written (SPEC 6)."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def is_same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths are the same file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def replace_atomically(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary)`` on a temporary file in the target's directory, then rename it over
    ``path``: a full disk or a killed process leaves the previous file, never a fragment. The new
    file gets the usual permissions (0666 less the umask), not mkstemp's 0600.

    A symlink is written through (its target is replaced, the link stays); a path that exists but
    is not a regular file (``/dev/null``, ``/dev/stdout``, a named pipe) is written into directly:
    renaming over it would replace a device with a plain file."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows symlinks
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        write(path)
        return
    if path.is_symlink():
        path = path.resolve()
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.resolve().parent)
    os.close(handle)
    temporary = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(temporary, 0o666 & ~umask)
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`replace_atomically`)."""

    def write(temporary: Path) -> None:
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            if stat.S_ISREG(os.fstat(stream.fileno()).st_mode):  # a device or a pipe cannot be synced
                os.fsync(stream.fileno())

    replace_atomically(path, write)


def write_parquet_atomically(path: str | Path, frame: Any) -> None:
    """Write a pandas DataFrame to ``path`` as Parquet (no index) atomically (see :func:`replace_atomically`)."""
    replace_atomically(path, lambda temporary: frame.to_parquet(temporary, index=False))
