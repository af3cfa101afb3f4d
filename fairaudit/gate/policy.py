"""The gate policy (SPEC 7): its rules and levels, read from [gate] in fairaudit.toml, pyproject.toml or --policy."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from fairaudit.errors import InputError
from fairaudit.io.config_file import find_config, read_toml

OUTCOMES = ("pass", "warn", "fail")


LEVEL_RULES = {
    "max-wer-gap-pct": "maximum WER gap (%) between bottom and top cohorts",
    "max-bottom-wer": "maximum bottom-cohort WER (fraction of reference words, e.g. 0.2 = 20%)",
}


REGRESSION_RULES = {
    "max-gap-increase-points": "maximum increase of the WER gap over the baseline, in gap percentage points",
    "max-gap-increase-pct": "maximum relative increase of the WER gap over the baseline, in %",
    "max-cohort-wer-increase-points": (
        "maximum increase of any cohort's WER over the baseline, in WER percentage points"
    ),
    "max-cohort-wer-increase-pct": "maximum relative increase of any cohort's WER over the baseline, in %",
}


SETTINGS = {
    "on": "judge limits on the 95% interval's lower bound ('lower', default) or the point estimate ('point')",
    "insufficient-data": "what an 'insufficient data' verdict means for the build: pass, warn (default) or fail",
    "min-bottom-share-pct": (
        "below this bottom-cohort share (% of speakers) a gap is reported but not actionable (default 0)"
    ),
    "methods": "which methods the gate judges (default: every method in the report)",
    "not-evaluated": "what a rule that cannot be evaluated means for the build (no baseline, cohorts not the "
    "baseline's, a relative rule on a gap near zero): pass, warn or fail (default)",
}


#: A relative rule needs a baseline figure clearly above zero: below this (a gap in %, or a WER
#: in percentage points) the relative change is refused rather than allowed to flip sign or explode.
MIN_RELATIVE_BASE = 1.0


@dataclass(frozen=True)
class Level:
    """Warn and fail thresholds of one rule (either may be absent)."""

    warn: float | None = None
    fail: float | None = None

    def judge(self, value: float) -> str:
        if self.fail is not None and value > self.fail:
            return "fail"
        if self.warn is not None and value > self.warn:
            return "warn"
        return "pass"

    def describe(self) -> str:
        parts = [
            f"{name} above {limit:g}" for name, limit in (("warn", self.warn), ("fail", self.fail)) if limit is not None
        ]
        return ", ".join(parts)


@dataclass
class Policy:
    """A validated gate policy: defaults plus per-method overrides."""

    rules: dict[str, Level] = field(default_factory=dict)
    on: str = "lower"
    insufficient_data: str = "warn"
    not_evaluated: str = "fail"
    min_bottom_share_pct: float = 0.0
    methods: list[str] | None = None
    per_method: dict[str, Policy] = field(default_factory=dict)
    source: str | None = None

    def for_method(self, method: str) -> Policy:
        return self.per_method.get(method, self.per_method.get(method.split(":")[0], self))


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
        return Policy(source=None)
    return parse_policy(table, str(source))


def parse_policy(table: dict, source: str | None, *, method: str | None = None) -> Policy:
    """Validate a policy table; unknown keys and bad values raise InputError naming the file."""
    if not isinstance(table, dict):
        raise InputError("the gate policy must be a table of rules", file=source)
    known = set(LEVEL_RULES) | set(REGRESSION_RULES) | set(SETTINGS) | ({"method"} if method is None else set())
    where = f"[gate.method.{method}]" if method else "[gate]"
    policy = Policy(source=source)
    for key, value in table.items():
        if key not in known:
            raise InputError(
                f"unknown gate policy key {key!r} in {where}; known keys: {', '.join(sorted(known))}",
                file=source,
                value=key,
            )
        if key in LEVEL_RULES or key in REGRESSION_RULES:
            policy.rules[key] = _parse_level(key, value, source, where)
        elif key == "on":
            policy.on = _choice(key, value, ("lower", "point"), source, where)
        elif key == "insufficient-data":
            policy.insufficient_data = _choice(key, value, OUTCOMES, source, where)
        elif key == "not-evaluated":
            policy.not_evaluated = _choice(key, value, OUTCOMES, source, where)
        elif key == "min-bottom-share-pct":
            policy.min_bottom_share_pct = _number(key, value, source, where, low=0, high=100)
        elif key == "methods":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InputError(f"{where} methods must be a list of method names", file=source, value=value)
            policy.methods = list(value)
    methods_table = table.get("method") or {}
    if not isinstance(methods_table, dict):
        raise InputError(
            f"{where} method must be a table of per-method overrides, e.g. [gate.method.geo-tree]",
            file=source,
            value=methods_table,
        )
    for name, sub in methods_table.items():
        if not isinstance(sub, dict):
            raise InputError(f"[gate.method.{name}] must be a table", file=source)
        override = parse_policy(sub, source, method=name)
        merged = Policy(
            rules={**policy.rules, **override.rules},
            on=sub.get("on", policy.on),
            insufficient_data=sub.get("insufficient-data", policy.insufficient_data),
            not_evaluated=sub.get("not-evaluated", policy.not_evaluated),
            min_bottom_share_pct=float(sub.get("min-bottom-share-pct", policy.min_bottom_share_pct)),
            source=source,
        )
        policy.per_method[name] = merged
    return policy


def _parse_level(key: str, value: object, source: str | None, where: str) -> Level:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Level(fail=_number(key, value, source, where))
    if not isinstance(value, dict) or not value or set(value) - {"warn", "fail"}:
        raise InputError(
            f"{where} {key} must be a number (the fail level) or a table with warn and/or fail, "
            f"e.g. {key} = {{ warn = 20, fail = 40 }}",
            file=source,
            value=value,
        )
    level = Level(**{name: _number(f"{key}.{name}", v, source, where) for name, v in value.items()})
    if level.warn is not None and level.fail is not None and level.warn > level.fail:
        raise InputError(
            f"{where} {key}: warn ({level.warn:g}) must not exceed fail ({level.fail:g})", file=source, value=value
        )
    return level


def _number(key: str, value: object, source: str | None, where: str, low: float = 0.0, high: float = math.inf) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (low <= value <= high)
        or math.isnan(value)
    ):
        raise InputError(f"{where} {key} must be a number between {low:g} and {high:g}", file=source, value=value)
    return float(value)


def _choice(key: str, value: object, choices: tuple[str, ...], source: str | None, where: str) -> str:
    if value not in choices:
        raise InputError(f"{where} {key} must be one of {', '.join(choices)}", file=source, value=value)
    return str(value)


def has_rules(policy: Policy) -> bool:
    """Whether the policy (or any per-method override) holds a rule at all."""
    return bool(policy.rules) or any(sub.rules for sub in policy.per_method.values())
