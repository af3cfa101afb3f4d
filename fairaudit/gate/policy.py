"""The gate policy (SPEC 7): its rules and levels, read from [gate] in fairaudit.toml, pyproject.toml or --policy.

The policy is a pydantic model, so each key (its TOML name, bounds and help) is declared once here:
validation, the error messages, the gate's outputs and ``data_schemas/gate_policy.schema.json``
(``fairaudit schema gate_policy``, for editors that check TOML against a schema) all come from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, WithJsonSchema, model_validator
from pydantic.fields import FieldInfo

from fairaudit.errors import InputError
from fairaudit.io.config_file import find_config, read_toml

OUTCOMES = ("pass", "warn", "fail")
Outcome = Literal["pass", "warn", "fail"]

#: A relative rule needs a baseline figure clearly above zero: below this (a gap in %, or a WER
#: in percentage points) the relative change is refused rather than allowed to flip sign or explode.
MIN_RELATIVE_BASE = 1.0

LEVEL_RULE = "a finite number (the fail level) or a table with warn and/or fail, each a finite number of at least 0"


@dataclass(frozen=True)
class KeyInfo:
    """What kind of policy key a field is and the rule its value follows (for error messages).

    Attached as pydantic's ``json_schema_extra`` hook, which it leaves untouched, so the published
    schema carries only standard keywords.
    """

    kind: Literal["level", "regression", "setting", "table"]
    rule: str

    def __call__(self, schema: dict) -> None:
        return None


class Level(BaseModel):
    """Warn and fail thresholds of one rule (either may be absent); a bare number is the fail level."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    warn: float | None = Field(None, ge=0, allow_inf_nan=False, description="above this the rule warns")
    fail: float | None = Field(None, ge=0, allow_inf_nan=False, description="above this the rule fails the build")

    @model_validator(mode="before")
    @classmethod
    def _bare_number_is_fail(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"fail": value}
        if isinstance(value, dict) and not value:
            raise ValueError("an empty table")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Level:
        if self.warn is not None and self.fail is not None and self.warn > self.fail:
            raise ValueError(f"warn ({self.warn:g}) must not exceed fail ({self.fail:g})")
        return self

    def judge(self, value: float) -> str:
        if self.fail is not None and value > self.fail:
            return "fail"
        if self.warn is not None and value > self.warn:
            return "warn"
        return "pass"

    def describe(self, scale: float = 1.0, unit: str = "") -> str:
        """ "warn above 25, fail above 50"; ``scale`` and ``unit`` show a fraction as the figure it
        is compared with (0.15 -> "15%")."""
        parts = [
            f"{name} above {scale * limit:g}{unit}"
            for name, limit in (("warn", self.warn), ("fail", self.fail))
            if limit is not None
        ]
        return ", ".join(parts)


#: How a rule's value looks in TOML: a bare number (the fail level) or a { warn, fail } table.
LEVEL_JSON_SCHEMA = {
    "anyOf": [
        {"type": "number", "minimum": 0, "description": "the fail level"},
        {
            "type": "object",
            "properties": {
                "warn": {"type": "number", "minimum": 0, "description": "above this the rule warns"},
                "fail": {"type": "number", "minimum": 0, "description": "above this the rule fails the build"},
            },
            "additionalProperties": False,
            "minProperties": 1,
        },
    ]
}
RuleLevel = Annotated[Level, WithJsonSchema(LEVEL_JSON_SCHEMA)]


def _rule(kind: Literal["level", "regression"], help: str) -> Any:
    return Field(None, description=help, json_schema_extra=KeyInfo(kind, LEVEL_RULE))


def _setting(default: Any, help: str, rule: str, **bounds: Any) -> Any:
    return Field(default, description=help, json_schema_extra=KeyInfo("setting", rule), **bounds)


def key_info(field: FieldInfo | None) -> KeyInfo | None:
    """The :class:`KeyInfo` of a policy field (None for anything else)."""
    extra = field.json_schema_extra if field is not None else None
    return extra if isinstance(extra, KeyInfo) else None


class MethodPolicy(BaseModel):
    """The rules and settings of a [gate.method.NAME] table: they apply to that method only, and every
    key not set there comes from [gate]."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=lambda name: name.replace("_", "-"))

    max_wer_gap_pct: RuleLevel | None = _rule("level", "maximum WER gap (%) between bottom and top cohorts")
    max_bottom_wer: RuleLevel | None = _rule(
        "level", "maximum bottom-cohort WER (fraction of reference words, e.g. 0.2 = 20%)"
    )
    max_gap_increase_points: RuleLevel | None = _rule(
        "regression", "maximum increase of the WER gap over the baseline, in gap percentage points"
    )
    max_gap_increase_pct: RuleLevel | None = _rule(
        "regression", "maximum relative increase of the WER gap over the baseline, in %"
    )
    max_cohort_wer_increase_points: RuleLevel | None = _rule(
        "regression", "maximum increase of any cohort's WER over the baseline, in WER percentage points"
    )
    max_cohort_wer_increase_pct: RuleLevel | None = _rule(
        "regression", "maximum relative increase of any cohort's WER over the baseline, in %"
    )
    on: Literal["lower", "point"] = _setting(
        "lower",
        "judge limits on the 95% interval's lower bound ('lower', default) or the point estimate ('point')",
        "one of lower, point",
    )
    insufficient_data: Outcome = _setting(
        "warn",
        "what an 'insufficient data' verdict means for the build: pass, warn (default) or fail",
        "one of pass, warn, fail",
    )
    not_evaluated: Outcome = _setting(
        "fail",
        "what a rule that cannot be evaluated means for the build (no baseline, cohorts not the baseline's, "
        "a relative rule on a gap near zero): pass, warn or fail (default)",
        "one of pass, warn, fail",
    )
    min_bottom_share_pct: float = _setting(
        0.0,
        "below this bottom-cohort share (% of speakers) a gap is reported but not actionable (default 0)",
        "a number between 0 and 100",
        ge=0,
        le=100,
        allow_inf_nan=False,
    )
    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The file the policy was read from (None for an empty default policy)."""
        return self._source

    @property
    def rules(self) -> dict[str, Level]:
        """The rules that are set, by TOML key, in declaration order."""
        return {_key(name): level for name in rule_names(self.__class__) if (level := getattr(self, name)) is not None}


class Policy(MethodPolicy):
    """The [gate] table of fairaudit.toml (or [tool.fairaudit.gate] in pyproject.toml, or --policy FILE).

    Per-method overrides in [gate.method.NAME] inherit every key they do not set from [gate]; their
    rules add to (or replace) the top-level ones.
    """

    model_config = ConfigDict(title="fairaudit gate policy")

    methods: list[str] | None = _setting(
        None, "which methods the gate judges (default: every method in the report)", "a list of method names"
    )
    method: dict[str, MethodPolicy] = Field(
        default_factory=dict,
        description="per-method overrides, e.g. [gate.method.geo-tree]; keys not set there come from [gate]",
        json_schema_extra=KeyInfo("table", "a table of per-method tables, e.g. [gate.method.geo-tree]"),
    )

    @property
    def per_method(self) -> dict[str, MethodPolicy]:
        """Each override merged over the top-level settings and rules."""
        merged = {}
        for name, override in self.method.items():
            values = {
                key: getattr(override if key in override.model_fields_set else self, key)
                for key in MethodPolicy.model_fields
            }
            combined = MethodPolicy.model_validate({_key(key): value for key, value in values.items()})
            combined._source = self._source
            merged[name] = combined
        return merged

    def for_method(self, method: str) -> MethodPolicy:
        """The policy that applies to ``method`` (``attribute:<columns>`` falls back to ``attribute``)."""
        overrides = self.per_method
        return overrides.get(method, overrides.get(method.split(":")[0], self))


def rule_names(model: type[BaseModel] = MethodPolicy, kind: str | None = None) -> list[str]:
    """Field names of the policy's rules (of one kind: "level" or "regression")."""
    kinds = {kind} if kind else {"level", "regression"}
    return [name for name, field in model.model_fields.items() if (info := key_info(field)) and info.kind in kinds]


def _key(name: str) -> str:
    return name.replace("_", "-")


def _help(kind: str) -> dict[str, str]:
    return {_key(name): MethodPolicy.model_fields[name].description or "" for name in rule_names(kind=kind)}


#: TOML key -> help text of the rules judged on one audit, and of those judged against a baseline.
LEVEL_RULES = _help("level")
REGRESSION_RULES = _help("regression")


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy from ``path`` (a TOML file with a [gate] table or gate keys at the top), else from
    ``fairaudit.toml`` / ``[tool.fairaudit.gate]`` in pyproject.toml, else an empty policy."""
    if path is not None:
        if not Path(path).is_file():
            raise InputError(
                "no such policy file" if not Path(path).exists() else "the policy is not a file", file=str(path)
            )
        data = read_toml(Path(path))
        table = data.get("tool", {}).get("fairaudit", {}).get("gate") if "tool" in data else None
        if table is None:
            table = data.get("gate", data)
        return parse_policy(table, str(path))
    config, source = find_config()
    table = config.get("gate")
    if table is None:
        return Policy()
    return parse_policy(table, str(source))


def parse_policy(table: object, source: str | None) -> Policy:
    """Validate a policy table; unknown keys and bad values raise InputError naming the file, key and value."""
    if not isinstance(table, dict):
        raise InputError("the gate policy must be a table of rules", file=source)
    try:
        policy = Policy.model_validate(table)
    except ValidationError as error:
        raise _input_error(error, table, source) from None
    _check_method_names(policy, source)
    policy._source = source
    return policy


def _check_method_names(policy: Policy, source: str | None) -> None:
    """A [gate.method.NAME] table for no method would silently never apply: a misspelt name is an error."""
    from fairaudit.methods.registry import method_classes

    known = sorted(method_classes())
    for name in policy.method:
        if name.split(":")[0] not in known:
            raise InputError(
                f"[gate.method.{name}] names no method; methods are: {', '.join(known)} "
                "(attribute:<columns> for one --by spec)",
                file=source,
                value=name,
            )


def _input_error(error: ValidationError, table: dict, source: str | None) -> InputError:
    """The first validation error as "<table> <key> must be <rule>" with the offending value."""
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    where, model, values = "[gate]", Policy.model_fields, table
    if loc == ["method"]:
        return InputError(
            "[gate] method must be a table of per-method tables, e.g. [gate.method.geo-tree]",
            file=source,
            value=_printable(table.get("method")),
        )
    if len(loc) >= 2 and loc[0] == "method":
        where, loc, values, model = (
            f"[gate.method.{loc[1]}]",
            loc[2:],
            table["method"][loc[1]],
            MethodPolicy.model_fields,
        )
        if not loc:
            return InputError(f"{where} must be a table of rules and settings", file=source, value=_printable(values))
    key = loc[0]
    value = values.get(key) if isinstance(values, dict) else None
    if first["type"] == "extra_forbidden" and len(loc) == 1:
        known = sorted(_key(name) for name in model)
        return InputError(
            f"unknown gate policy key {key!r} in {where}; known keys: {', '.join(known)}", file=source, value=key
        )
    info = key_info(model.get(key.replace("-", "_")))
    if first["type"] == "value_error" and "must not exceed" in str(first["msg"]):
        return InputError(f"{where} {key}: {str(first['msg']).removeprefix('Value error, ')}", file=source, value=value)
    rule = info.rule if info else "valid"
    example = f", e.g. {key} = {{ warn = 20, fail = 40 }}" if info and info.kind in ("level", "regression") else ""
    return InputError(f"{where} {key} must be {rule}{example}", file=source, value=_printable(value))


def _printable(value: object) -> object:
    return "nan" if isinstance(value, float) and math.isnan(value) else value


def has_rules(policy: Policy) -> bool:
    """Whether the policy (or any per-method override) holds a rule at all."""
    return bool(policy.rules) or any(sub.rules for sub in policy.method.values())
