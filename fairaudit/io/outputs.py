"""Writing output files safely: never over an input, never half-written (SPEC 6)."""

from __future__ import annotations

import os
import stat
import sys
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
    is not a regular file (``/dev/null``, a named pipe), or any path under /dev or /proc (``/dev/stdout``
    redirected to a file), is written into directly: renaming over it would replace a device, or the
    file the shell redirected to, with a new file."""
    path = Path(path)
    if writes_in_place(path):
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


def writes_in_place(path: str | Path) -> bool:
    """Whether ``path`` is written into rather than replaced: an existing path that is not a regular
    file (a device, a named pipe), or any path under /dev or /proc (``/dev/stdout`` may lead to the
    regular file the shell redirected to, which must be appended to, not replaced)."""
    if str(path).startswith(("/dev/", "/proc/")):
        return True
    try:
        mode = os.stat(path).st_mode  # follows symlinks
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def write_atomically(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`replace_atomically`)."""

    stream_of = {"/dev/stdout": sys.stdout, "/dev/fd/1": sys.stdout, "/dev/stderr": sys.stderr, "/dev/fd/2": sys.stderr}
    if str(path) in stream_of:  # the process's own stream: same file offset as everything else it prints
        stream_of[str(path)].write(text)
        stream_of[str(path)].flush()
        return
    in_place = writes_in_place(path)

    def write(temporary: Path) -> None:
        with open(temporary, "a" if in_place else "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            if stat.S_ISREG(os.fstat(stream.fileno()).st_mode):  # a device or a pipe cannot be synced
                os.fsync(stream.fileno())

    replace_atomically(path, write)


def write_parquet_atomically(path: str | Path, frame: Any) -> None:
    """Write a pandas DataFrame to ``path`` as Parquet (no index) atomically (see :func:`replace_atomically`)."""
    replace_atomically(path, lambda temporary: frame.to_parquet(temporary, index=False))
