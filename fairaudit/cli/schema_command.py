"""``fairaudit schema``: print one of the JSON schemas of fairaudit's inputs and reports."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from fairaudit.errors import UsageError
from fairaudit.report.schema import SCHEMA_NAMES


def schema(
    name: Annotated[str, typer.Argument(metavar="NAME", help="One of: " + ", ".join(SCHEMA_NAMES) + ".")],
) -> None:
    """Print one of fairaudit's JSON schemas."""
    from fairaudit.report.schema import load_schema

    if name not in SCHEMA_NAMES:
        raise UsageError(f"unknown schema {name!r}: choose from {', '.join(SCHEMA_NAMES)}")
    typer.echo(json.dumps(load_schema(name), indent=2))
