"""Options from ``fairaudit.toml`` or ``[tool.fairaudit]`` in ``pyproject.toml`` (SPEC 7).

The command line wins over the file; the file wins over built-in defaults. Keys are the long
option names with dashes or underscores (``min-speakers = 50``). Top-level keys apply to every
command; a ``[audit]`` table (``[tool.fairaudit.audit]`` in ``pyproject.toml``) overrides them for
``fairaudit audit``. Column renames go in a ``[columns]`` table (``speaker_id = "client_id"``) or
as ``column = ["speaker_id=client_id"]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fairaudit.errors import InputError
from fairaudit.options import AuditOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Tables that may appear in the configuration: per-command sections and the column renames.
COMMAND_TABLES = ("audit", "gate", "validate", "score", "synth")
COLUMNS_TABLE = "columns"

#: Expected value kinds of the ``audit`` keys, for clear messages on wrong types: every
#: :class:`~fairaudit.options.AuditOptions` field (its declared kind) plus the keys that choose
#: inputs rather than analysis (``method`` is the CLI's singular spelling of ``methods``).
AUDIT_KINDS: dict[str, str] = {
    **{name: AuditOptions.field_info(name)["kind"] for name in AuditOptions.names()},
    "method": "names",
    "embeddings": "str",
    "normalize": "str",
    "column": "names",
    "columns": "table",
}

_KIND_TEXT = {
    "names": "a string or a list of strings",
    "int": "a whole number",
    "number": "a number",
    "gain": 'a non-negative number or "auto"',
    "str": "a string",
    "clusters": 'a whole number or "auto"',
    "table": 'a table of canonical = "actual" column names',
}


def find_config(directory: Path | None = None) -> tuple[dict, Path | None]:
    """The ``[tool.fairaudit]`` table (or the whole ``fairaudit.toml``) and the file it came from."""
    directory = directory or Path.cwd()
    own = directory / "fairaudit.toml"
    if own.is_file():
        return read_toml(own), own
    project = directory / "pyproject.toml"
    if project.is_file():
        table = read_toml(project).get("tool", {}).get("fairaudit")
        if isinstance(table, dict):
            return table, project
        if table is not None:
            raise InputError("[tool.fairaudit] must be a table of options", file=str(project))
    return {}, None


def read_config_file(path: Path) -> tuple[dict, Path]:
    """The options of a given file (e.g. ``gate --policy FILE``), read exactly as ``find_config``
    reads ``fairaudit.toml`` or ``pyproject.toml``: its audit keys apply wherever it comes from."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "no such configuration or policy file" if not path.exists() else "is not a file", file=str(path)
        )
    data = read_toml(path)
    table = data.get("tool", {}).get("fairaudit") if isinstance(data.get("tool"), dict) else None
    table = table if isinstance(table, dict) else data
    if "gate" not in table:
        return {}, path  # a bare policy (gate keys at the top): no audit options
    return table, path


def merge_configs(base: dict, override: dict) -> dict:
    """``override``'s options over ``base``'s; tables ([audit], [columns], ...) merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def section(config: dict, name: str) -> dict:
    """Options for one command: top-level keys plus ``[name]`` overrides, keys with underscores.

    Tables of other commands are dropped; the ``[columns]`` table is kept (merged, the command's
    own ``[name.columns]`` winning).
    """
    merged = {k: v for k, v in config.items() if not isinstance(v, dict)}
    columns = dict(config.get(COLUMNS_TABLE) or {}) if isinstance(config.get(COLUMNS_TABLE), dict) else {}
    sub = config.get(name)
    if isinstance(sub, dict):
        merged.update({k: v for k, v in sub.items() if not isinstance(v, dict)})
        if isinstance(sub.get(COLUMNS_TABLE), dict):
            columns.update(sub[COLUMNS_TABLE])
    settings = {key.replace("-", "_"): value for key, value in merged.items()}
    if columns:
        settings[COLUMNS_TABLE] = columns
    return settings


def check_section(config: dict, name: str, kinds: dict[str, str], path: Path | None) -> dict:
    """``section(config, name)`` after checking every key and value; InputError naming the file.

    Unknown keys, unknown tables and values of the wrong type are errors (exit code 2), never
    silently ignored.
    """
    where = str(path) if path is not None else None
    allowed_tables = set(COMMAND_TABLES) | {COLUMNS_TABLE}
    for label, table in [("", config)] + ([(f"{name}.", config[name])] if isinstance(config.get(name), dict) else []):
        for key, value in table.items():
            if isinstance(value, dict):
                if key in allowed_tables and (label == "" or key == COLUMNS_TABLE):
                    continue
                raise InputError(
                    f"unknown table [{label}{key}] in the configuration (known: "
                    f"{', '.join(f'[{t}]' for t in sorted(allowed_tables))})",
                    file=where,
                )
            if key.replace("-", "_") not in kinds:
                known = ", ".join(sorted(k.replace("_", "-") for k in kinds))
                raise InputError(f"unknown option {label}{key!r} in the configuration (known: {known})", file=where)
    settings = section(config, name)
    for key, value in settings.items():
        kind = kinds[key]
        if not _is_kind(value, kind):
            raise InputError(f"option {key.replace('_', '-')!r} must be {_KIND_TEXT[kind]}", file=where, value=value)
    return settings


def _is_kind(value: object, kind: str) -> bool:
    if kind == "names":
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "gain":
        return value == "auto" or (isinstance(value, (int, float)) and not isinstance(value, bool))
    if kind == "clusters":
        return value == "auto" or (isinstance(value, int) and not isinstance(value, bool))
    if kind == "str":
        return isinstance(value, str)
    if kind == "table":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return True  # pragma: no cover


def read_toml(path: Path) -> dict:
    """A TOML file as a dict; InputError naming the file and line when it is not valid TOML."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        line = getattr(error, "lineno", None)
        raise InputError(f"not valid TOML: {error}", file=str(path), line=line) from None
