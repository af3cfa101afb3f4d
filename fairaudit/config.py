"""Options from ``fairaudit.toml`` or ``[tool.fairaudit]`` in ``pyproject.toml`` (SPEC 7).

The command line wins over the file; the file wins over built-in defaults. Keys are the long
option names with dashes or underscores (``min-speakers = 50``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fairaudit.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def find_config(directory: Path | None = None) -> tuple[dict, Path | None]:
    """The ``[tool.fairaudit]`` table (or the whole ``fairaudit.toml``) and the file it came from."""
    directory = directory or Path.cwd()
    own = directory / "fairaudit.toml"
    if own.is_file():
        return _read(own), own
    project = directory / "pyproject.toml"
    if project.is_file():
        table = _read(project).get("tool", {}).get("fairaudit")
        if isinstance(table, dict):
            return table, project
    return {}, None


def section(config: dict, name: str) -> dict:
    """Options for one command: top-level keys plus ``[...audit]`` overrides; nested tables dropped."""
    merged = {k: v for k, v in config.items() if not isinstance(v, dict)}
    sub = config.get(name)
    if isinstance(sub, dict):
        merged.update({k: v for k, v in sub.items() if not isinstance(v, dict)})
    return {key.replace("-", "_"): value for key, value in merged.items()}


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        line = getattr(error, "lineno", None)
        raise InputError(f"not valid TOML: {error}", file=str(path), line=line) from None
