"""Access to the JSON schemas in ``data_schemas/`` (installed as the package ``fairaudit._schemas``)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

SCHEMA_NAMES = ("utterance_log", "embeddings", "demographics", "audit_report", "compare_report")


def load_schema(name: str) -> dict:
    """The parsed JSON schema ``data_schemas/<name>.schema.json``."""
    if name not in SCHEMA_NAMES:
        raise KeyError(name)
    filename = f"{name}.schema.json"
    source = Path(__file__).resolve().parents[2] / "data_schemas" / filename  # a source checkout
    if source.is_file():
        return json.loads(source.read_text(encoding="utf-8"))
    return json.loads(resources.files("fairaudit._schemas").joinpath(filename).read_text(encoding="utf-8"))
