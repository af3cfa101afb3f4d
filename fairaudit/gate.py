"""The CI fairness gate (SPEC 7): judge an audit report against a policy, optionally a baseline.

The gate reads only the JSON audit report (``AuditResult.to_dict()`` or a saved ``--json`` file),
so gating a log and gating its saved report give the same answer. Outcomes per rule and method:
``pass``, ``warn``, ``fail``, or ``skip`` (the rule does not apply, with the reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from fairaudit.config import _read as read_toml  # the shared TOML reader with file-named errors
from fairaudit.config import find_config
from fairaudit.errors import InputError

OUTCOMES = ("pass", "warn", "fail")
LEVEL_RULES = {
    "max-wer-gap-pct": "maximum WER gap (%) between bottom and top cohorts",
    "max-bottom-wer": "maximum bottom-cohort WER (fraction of reference words, e.g. 0.2 = 20%)",
}
REGRESSION_RULES = {
    "max-gap-increase-points": "maximum increase of the WER gap over the baseline, in gap percentage points",
    "max-gap-increase-pct": "maximum relative increase of the WER gap over the baseline, in %",
    "max-cohort-wer-increase-points": "maximum increase of any cohort's WER over the baseline, in WER percentage points",
    "max-cohort-wer-increase-pct": "maximum relative increase of any cohort's WER over the baseline, in %",
}
SETTINGS = {
    "on": "judge limits on the 95% interval's lower bound ('lower', default) or the point estimate ('point')",
    "insufficient-data": "what an 'insufficient data' verdict means for the build: pass, warn (default) or fail",
    "min-bottom-share-pct": "below this bottom-cohort share (% of speakers) a gap is reported but not actionable (default 0)",
    "methods": "which methods the gate judges (default: every method in the report)",
}


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
        parts = [f"{name} above {limit:g}" for name, limit in (("warn", self.warn), ("fail", self.fail)) if limit is not None]
        return ", ".join(parts)


@dataclass
class Policy:
    """A validated gate policy: defaults plus per-method overrides."""

    rules: dict[str, Level] = field(default_factory=dict)
    on: str = "lower"
    insufficient_data: str = "warn"
    min_bottom_share_pct: float = 0.0
    methods: list[str] | None = None
    per_method: dict[str, "Policy"] = field(default_factory=dict)
    source: str | None = None

    def for_method(self, method: str) -> "Policy":
        return self.per_method.get(method, self.per_method.get(method.split(":")[0], self))


@dataclass
class RuleResult:
    """One test case of the gate: a rule applied to one method."""

    rule: str
    method: str
    outcome: str  # pass, warn, fail or skip
    message: str
    value: float | None = None


@dataclass
class GateResult:
    results: list[RuleResult]

    @property
    def outcome(self) -> str:
        outcomes = {r.outcome for r in self.results}
        return "fail" if "fail" in outcomes else "warn" if "warn" in outcomes else "pass"

    @property
    def exit_code(self) -> int:
        return 1 if self.outcome == "fail" else 0


# ---------------------------------------------------------------- policy loading and validation


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy from ``path`` (a TOML file with a [gate] table or gate keys at the top), else from
    ``fairaudit.toml`` / ``[tool.fairaudit.gate]`` in pyproject.toml, else an empty policy."""
    if path is not None:
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
                f"unknown gate policy key {key!r} in {where}; known keys: {', '.join(sorted(known))}", file=source, value=key
            )
        if key in LEVEL_RULES or key in REGRESSION_RULES:
            policy.rules[key] = _parse_level(key, value, source, where)
        elif key == "on":
            policy.on = _choice(key, value, ("lower", "point"), source, where)
        elif key == "insufficient-data":
            policy.insufficient_data = _choice(key, value, OUTCOMES, source, where)
        elif key == "min-bottom-share-pct":
            policy.min_bottom_share_pct = _number(key, value, source, where, low=0, high=100)
        elif key == "methods":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InputError(f"{where} methods must be a list of method names", file=source, value=value)
            policy.methods = list(value)
    for name, sub in (table.get("method") or {}).items():
        if not isinstance(sub, dict):
            raise InputError(f"[gate.method.{name}] must be a table", file=source)
        override = parse_policy(sub, source, method=name)
        merged = Policy(
            rules={**policy.rules, **override.rules},
            on=sub.get("on", policy.on),
            insufficient_data=sub.get("insufficient-data", policy.insufficient_data),
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
            f"{where} {key} must be a number (the fail level) or a table with warn and/or fail, e.g. {key} = {{ warn = 20, fail = 40 }}",
            file=source, value=value,
        )
    level = Level(**{name: _number(f"{key}.{name}", v, source, where) for name, v in value.items()})
    if level.warn is not None and level.fail is not None and level.warn > level.fail:
        raise InputError(f"{where} {key}: warn ({level.warn:g}) must not exceed fail ({level.fail:g})", file=source, value=value)
    return level


def _number(key: str, value: object, source: str | None, where: str, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value <= high) or math.isnan(value):
        raise InputError(f"{where} {key} must be a number between {low:g} and {high:g}", file=source, value=value)
    return float(value)


def _choice(key: str, value: object, choices: tuple[str, ...], source: str | None, where: str) -> str:
    if value not in choices:
        raise InputError(f"{where} {key} must be one of {', '.join(choices)}", file=source, value=value)
    return str(value)


def read_report(path: str | Path) -> dict:
    """An audit report saved by ``fairaudit audit --json``, checked against its schema."""
    import json

    import jsonschema

    from fairaudit.schemas import load_schema

    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such audit report", file=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"not a JSON audit report: {error}", file=str(path), line=getattr(error, "lineno", None)) from None
    validator = jsonschema.Draft202012Validator(load_schema("audit_report"))
    problem = next(iter(sorted(validator.iter_errors(report), key=lambda e: list(e.path))), None)
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path) or "(top level)"
        raise InputError(
            f"not a valid fairaudit audit report at {where}: {problem.message} (schema: fairaudit schema audit_report)", file=str(path)
        )
    return report


# ---------------------------------------------------------------- judging


def run_gate(report: dict, policy: Policy, baseline: dict | None = None) -> GateResult:
    """Apply every rule of ``policy`` to every method of ``report`` (and ``baseline``)."""
    results: list[RuleResult] = []
    methods = policy.methods or list(report["methods"])
    for name in methods:
        method = report["methods"].get(name)
        if method is None:
            raise InputError(f"the policy gates method {name!r} but the audit report has no such method; it has: {', '.join(report['methods'])}", file=policy.source)
        rules = policy.for_method(name)
        figures = method["holdout"] if method.get("holdout") else method
        label = "held-out" if method.get("holdout") else "discovery"
        if method["verdict"] == "insufficient data":
            results.append(RuleResult("insufficient-data", name, rules.insufficient_data, f"insufficient data: {method['verdict_reason']}"))
            continue
        for rule, level in rules.rules.items():
            if rule in LEVEL_RULES:
                results.append(_level_rule(rule, level, name, figures, rules, label))
            elif baseline is None:
                results.append(RuleResult(rule, name, "skip", "no --baseline audit given"))
            else:
                results.append(_regression_rule(rule, level, name, figures, baseline, rules, label))
    return GateResult(results)


def _level_rule(rule: str, level: Level, method: str, figures: dict, policy: Policy, label: str) -> RuleResult:
    share = figures.get("bottom_share_pct")
    if share is not None and share < policy.min_bottom_share_pct:
        return RuleResult(rule, method, "pass", f"not actionable: bottom-cohort share {share:.2f}% is below the policy's minimum {policy.min_bottom_share_pct:g}% ({label})")
    if rule == "max-wer-gap-pct":
        value, how = _judged(figures.get("wer_gap_pct"), figures.get("wer_gap_ci"), policy.on)
        if value is None:
            return RuleResult(rule, method, "skip", "the WER gap is undefined (top cohort WER is 0)")
        text = (
            f"WER gap {figures['wer_gap_pct']:.1f}%{_ci(figures.get('wer_gap_ci'), '%')} between {figures.get('bottom_description')} "
            f"and {figures.get('top_description')} ({label}); judged on the {how} {value:.1f}%"
        )
    else:
        bottom = _bottom_cohort(figures)
        ci = bottom.get("wer_ci") if bottom else None
        value, how = _judged(figures.get("bottom_wer"), ci, policy.on)
        if value is None:
            return RuleResult(rule, method, "skip", "no bottom-cohort WER")
        text = (
            f"bottom-cohort WER {100 * figures['bottom_wer']:.2f}%{_ci(ci, '%', 100)} in {figures.get('bottom_description')} "
            f"({label}); judged on the {how} {100 * value:.2f}%"
        )
    outcome = level.judge(value)
    return RuleResult(rule, method, outcome, f"{text}; limits: {level.describe()}", value)


def _regression_rule(rule: str, level: Level, method: str, figures: dict, baseline: dict, policy: Policy, label: str) -> RuleResult:
    before_method = baseline["methods"].get(method)
    if before_method is None or before_method["verdict"] == "insufficient data":
        return RuleResult(rule, method, "skip", "the baseline audit has no figures for this method")
    before = before_method["holdout"] if before_method.get("holdout") else before_method
    relative = rule.endswith("-pct")
    if rule.startswith("max-gap"):
        now, how = _judged(figures.get("wer_gap_pct"), figures.get("wer_gap_ci"), policy.on)
        then = before.get("wer_gap_pct")
        if now is None or then is None:
            return RuleResult(rule, method, "skip", "the WER gap is undefined in the audit or the baseline")
        increase = _increase(now, then, relative)
        unit = "%" if relative else " points"
        text = f"WER gap {then:.1f}% -> {figures['wer_gap_pct']:.1f}% ({label}; judged on the {how} {now:.1f}%): increase {increase:.1f}{unit}"
        return RuleResult(rule, method, level.judge(increase), f"{text}; limits: {level.describe()}", increase)
    # cohort WER: cohorts with the same id and description in both audits
    previous = {(c["id"], c["description"]): c for c in before["cohorts"] if c.get("wer") is not None}
    worst, worst_text = -math.inf, "no cohort is defined the same way in both audits"
    for cohort in figures["cohorts"]:
        match = previous.get((cohort["id"], cohort["description"]))
        if match is None or cohort.get("wer") is None:
            continue
        now, how = _judged(cohort["wer"], cohort.get("wer_ci"), policy.on)
        increase = _increase(100 * now, 100 * match["wer"], relative)
        if increase > worst:
            unit = "%" if relative else " WER points"
            worst = increase
            worst_text = (
                f"cohort {cohort['id']} ({cohort['description']}): WER {100 * match['wer']:.2f}% -> {100 * cohort['wer']:.2f}% "
                f"({label}; judged on the {how} {100 * now:.2f}%): increase {increase:.2f}{unit}"
            )
    if worst == -math.inf:
        return RuleResult(rule, method, "skip", worst_text)
    return RuleResult(rule, method, level.judge(worst), f"largest increase: {worst_text}; limits: {level.describe()}", worst)


def _judged(point: float | None, ci: list | None, on: str) -> tuple[float | None, str]:
    """The figure a limit is compared with: the interval's lower bound, or the point estimate."""
    if on == "lower" and ci and ci[0] is not None:
        return ci[0], "95% interval's lower bound"
    return point, "point estimate" if on == "point" else "point estimate (no interval computed)"


def _increase(now: float, then: float, relative: bool) -> float:
    if relative:
        return math.inf if then == 0 and now > 0 else 0.0 if then == 0 else 100 * (now - then) / then
    return now - then


def _bottom_cohort(figures: dict) -> dict | None:
    ids = figures.get("bottom_cohorts") or []
    if len(ids) != 1:
        return None
    return next((c for c in figures["cohorts"] if c["id"] == ids[0]), None)


def _ci(ci: list | None, unit: str, scale: float = 1.0) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f" [{scale * ci[0]:.1f}{unit}, {scale * ci[1]:.1f}{unit}]"
