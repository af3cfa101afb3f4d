"""The published JSON schemas are generated from their pydantic models, and real outputs obey them.

``data_schemas/{audit_report,compare_report,gate_policy}.schema.json`` must equal what the models
generate; after an intended change of a model, regenerate them with
``python tests/contract/test_json_schemas.py``.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from fairaudit.errors import InputError
from fairaudit.gate.policy import Policy, parse_policy
from fairaudit.io.config_file import read_toml
from fairaudit.report.compare_model import CompareReport
from fairaudit.report.model import AuditReport
from fairaudit.report.schema import model_schema

REPO = Path(__file__).resolve().parents[2]
PINNED = REPO / "tests" / "integration" / "pinned"
MODELS: dict[str, type[BaseModel]] = {
    "audit_report": AuditReport,
    "compare_report": CompareReport,
    "gate_policy": Policy,
}


def committed(name: str) -> dict:
    return json.loads((REPO / "data_schemas" / f"{name}.schema.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_committed_schema_is_the_models(name):
    assert committed(name) == model_schema(MODELS[name], name), (
        f"data_schemas/{name}.schema.json differs from its model: run python tests/contract/test_json_schemas.py"
    )


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_schema_is_valid_json_schema(name):
    Draft202012Validator.check_schema(committed(name))


def pinned_reports() -> list[tuple[str, dict]]:
    reports = []
    for name in ("all_methods", "options"):
        reports.append(("audit_report", json.loads((PINNED / f"{name}.json").read_text(encoding="utf-8"))))
    reports.append(("compare_report", json.loads((PINNED / "compare.json").read_text(encoding="utf-8"))))
    return reports


#: Models whose extra keys are method-specific by design (a definition records what its method's rule needs).
METHOD_SPECIFIC = {"Definition", "DefinitionCell"}


def undeclared_keys(model: type[BaseModel], data: object, where: str = "$") -> list[str]:
    """Keys the report holds that its model does not declare (free-form dict fields excepted)."""
    if not isinstance(data, dict) or model.__name__ in METHOD_SPECIFIC:
        return []
    found = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            found.append(f"{where}.{key}")
            continue
        for inner in nested_models(field.annotation):
            items = value if isinstance(value, list) else value.values() if _is_dict_of_models(field) else [value]
            for item in items:
                found += undeclared_keys(inner, item, f"{where}.{key}")
    return sorted(set(found))


def nested_models(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in nested_models(arg)]


def _is_dict_of_models(field) -> bool:
    return getattr(field.annotation, "__origin__", None) is dict


@pytest.mark.parametrize("kind, report", pinned_reports(), ids=lambda v: v if isinstance(v, str) else "")
def test_pinned_reports_obey_the_schema_and_declare_every_key(kind, report):
    assert not list(Draft202012Validator(committed(kind)).iter_errors(report))
    MODELS[kind].model_validate(report)
    assert undeclared_keys(MODELS[kind], report) == []


def test_the_schema_rejects_broken_reports():
    report = json.loads((PINNED / "all_methods.json").read_text(encoding="utf-8"))
    validator = Draft202012Validator(committed("audit_report"))
    for path, value in [
        (("methods", "geo-tree", "verdict"), "maybe"),
        (("methods", "geo-tree", "cohorts", 0, "wer"), -0.1),
        (("methods", "geo-tree", "wer_gap_ci"), [1.0]),
        (("input", "sha256"), "not-a-hash"),
    ]:
        broken = copy.deepcopy(report)
        target = broken
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        assert list(validator.iter_errors(broken)), f"accepted {path} = {value!r}"
    del report["methods"]["geo-tree"]["holdout"]
    assert list(validator.iter_errors(report)), "accepted a method without its holdout field"


POLICIES = [
    ({"max-wer-gap-pct": 40, "on": "point"}, True),
    ({"max-wer-gap-pct": {"warn": 20, "fail": 40}, "method": {"geo-tree": {"max-bottom-wer": 0.3}}}, True),
    ({"max-wer-gap-pct": {"warn": 20}, "methods": ["geo-tree"], "min-bottom-share-pct": 5}, True),
    ({"max-wer-gap-pct": -1}, False),
    ({"max-wer-gap-pct": {}}, False),
    ({"max-wer-gap-pct": {"fial": 1}}, False),
    ({"max-wer-gap-pct": True}, False),
    ({"max_wer_gap_pct": 10}, False),  # TOML keys are written with "-"
    ({"on": "upper"}, False),
    ({"min-bottom-share-pct": 101}, False),
    ({"bogus": 1}, False),
    ({"method": {"geo-tree": {"method": {}}}}, False),
    ({"method": {"geo-tree": {"methods": ["geo-tree"]}}}, False),  # methods is a [gate] key only
    ({"method": {"geo-tree": 3}}, False),
    ({"method": 3}, False),
]


@pytest.mark.parametrize("table, valid", POLICIES)
def test_the_policy_schema_and_the_reader_agree(table, valid):
    schema_says = not list(Draft202012Validator(committed("gate_policy")).iter_errors(table))
    assert schema_says == reads(table) == valid


def reads(table: dict) -> bool:
    try:
        parse_policy(table, "fairaudit.toml")
    except InputError:
        return False
    return True


def test_what_only_the_reader_can_refuse():
    """JSON Schema cannot compare two values, and TOML has inf: the reader refuses both."""
    schema = Draft202012Validator(committed("gate_policy"))
    assert not list(schema.iter_errors({"max-wer-gap-pct": {"warn": 30, "fail": 20}}))
    assert not reads({"max-wer-gap-pct": {"warn": 30, "fail": 20}})
    assert not reads({"max-wer-gap-pct": float("inf")})


def test_the_policy_schema_uses_standard_keywords_only():
    text = json.dumps(committed("gate_policy"))
    assert '"kind"' not in text and '"rule"' not in text


def test_the_shipped_ci_policy_obeys_the_schema():
    gate = read_toml(REPO / "examples" / "ci" / "fairaudit.toml")["gate"]
    assert not list(Draft202012Validator(committed("gate_policy")).iter_errors(gate))
    assert parse_policy(gate, "fairaudit.toml").rules


if __name__ == "__main__":
    for schema_name, schema_model in MODELS.items():
        target = REPO / "data_schemas" / f"{schema_name}.schema.json"
        target.write_text(json.dumps(model_schema(schema_model, schema_name), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {target.relative_to(REPO)}", file=sys.stderr)
