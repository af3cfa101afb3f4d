"""The JSON schemas in ``data_schemas/`` (installed as the package ``fairaudit._schemas``).

The report and policy schemas are generated from their pydantic models (:func:`model_schema`) and
committed, so they can be read without fairaudit; ``tests/contract/test_json_schemas.py`` pins
each file to its model (run it as a script to regenerate them). The input schemas are written by
hand.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

SCHEMA_NAMES = ("utterance_log", "embeddings", "demographics", "audit_report", "compare_report", "gate_policy")
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def load_schema(name: str) -> dict:
    """The parsed JSON schema ``data_schemas/<name>.schema.json``."""
    if name not in SCHEMA_NAMES:
        raise KeyError(name)
    filename = f"{name}.schema.json"
    source = Path(__file__).resolve().parents[2] / "data_schemas" / filename  # a source checkout
    if source.is_file():
        return json.loads(source.read_text(encoding="utf-8"))
    return json.loads(resources.files("fairaudit._schemas").joinpath(filename).read_text(encoding="utf-8"))


def model_schema(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of ``model`` as published in ``data_schemas/<name>.schema.json``."""
    generated = model.model_json_schema(by_alias=True, schema_generator=_WithoutFieldTitles)
    return {"$schema": SCHEMA_DIALECT, "$id": f"https://fairaudit.dev/schemas/{name}.schema.json", **generated}


class _WithoutFieldTitles(GenerateJsonSchema):
    """Pydantic's generator without the titles it derives from field names ("Wer Gap Pct"): the
    property name and its description say it better."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False
