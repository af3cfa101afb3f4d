"""The CI fairness gate (SPEC 7): judge an audit report against a policy, optionally a baseline.

The gate reads only the JSON audit report (``AuditResult.to_dict()`` or a saved ``--json`` file),
so gating a log and gating its saved report give the same answer. Outcomes per rule and method:
``pass``, ``warn``, ``fail``, or ``skip`` (the rule does not apply, with the reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from fairaudit.errors import InputError
from fairaudit.gate.policy import LEVEL_RULES, MIN_RELATIVE_BASE, Level, MethodPolicy, Policy


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


def read_report(path: str | Path) -> dict:
    """An audit report saved by ``fairaudit audit --json``, checked against its schema."""
    import json

    import jsonschema

    from fairaudit.report.schema import load_schema

    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except FileNotFoundError:
        raise InputError("no such audit report", file=str(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory, not an audit report", file=str(path)) from None
    except PermissionError:
        raise InputError("cannot be read (permission denied)", file=str(path)) from None
    except RecursionError:
        raise InputError("not a fairaudit audit report: nested too deeply", file=str(path)) from None
    except ValueError as error:
        if isinstance(error, (json.JSONDecodeError, UnicodeDecodeError)):
            raise InputError(
                f"not a JSON audit report: {error}", file=str(path), line=getattr(error, "lineno", None)
            ) from None
        raise InputError(str(error), file=str(path)) from None
    validator = jsonschema.Draft202012Validator(load_schema("audit_report"))
    problem = next(iter(sorted(validator.iter_errors(report), key=lambda e: list(e.path))), None)
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path) or "(top level)"
        raise InputError(
            f"not a valid fairaudit audit report at {where}: {problem.message} (schema: fairaudit schema audit_report)",
            file=str(path),
        )
    return report


def _reject_constant(name: str) -> float:
    """json.loads hook: NaN and infinities are never valid figures in a report (SPEC 6)."""
    raise ValueError(
        f"the report holds {name}, which is never a valid figure (SPEC 6: NaN and infinities never appear)"
    )


def run_gate(report: dict, policy: Policy, baseline: dict | None = None, comparison: dict | None = None) -> GateResult:
    """Apply every rule of ``policy`` to every method of ``report``.

    Regression rules judge the *change* of each figure on the same cohorts: ``comparison`` (a
    ``Comparison.to_dict()``, paired when the two logs match) or, without it, the ``baseline``
    report compared with ``report`` where both hold the same cohort definitions (unpaired, normal
    approximation from the two intervals).
    """
    results: list[RuleResult] = []
    methods = policy.methods or list(report["methods"])
    if comparison is None and baseline is not None:
        comparison = comparison_from_reports(baseline, report)
    if baseline is not None:
        results += _compatibility(report, baseline)
    for name in methods:
        method = report["methods"].get(name)
        if method is None:
            raise InputError(
                f"the policy gates method {name!r} but the audit report has no such method; "
                f"it has: {', '.join(report['methods'])}",
                file=policy.source,
            )
        rules = policy.for_method(name)
        figures = method["holdout"] if method.get("holdout") else method
        label = "held-out" if method.get("holdout") else "discovery"
        insufficient = method["verdict"] == "insufficient data"
        if insufficient:
            results.append(
                RuleResult(
                    "insufficient-data", name, rules.insufficient_data, f"insufficient data: {method['verdict_reason']}"
                )
            )
        for rule, level in rules.rules.items():
            if rule in LEVEL_RULES:
                if not insufficient:
                    results.append(_level_rule(rule, level, name, figures, rules, label))
            elif comparison is None:
                results.append(
                    RuleResult(
                        rule,
                        name,
                        rules.not_evaluated,
                        "not evaluated: no --baseline given (the released model's log or audit JSON)",
                    )
                )
            elif name not in comparison["methods"]:
                results.append(
                    RuleResult(
                        rule,
                        name,
                        rules.not_evaluated,
                        (
                            "not evaluated: this audit's cohorts are not the baseline's (different definitions); "
                            "gate the log itself, which is re-measured on the baseline's cohorts, "
                            "or audit it with --cohorts BASELINE_JSON"
                        ),
                    )
                )
            else:
                results.append(
                    _regression_rule(
                        rule, level, name, comparison["methods"][name], comparison.get("pairing", ""), rules
                    )
                )
    for rule in {r for sub in [policy, *policy.per_method.values()] for r in sub.rules}:
        ran = [r for r in results if r.rule == rule]
        if ran and all(r.outcome == "skip" for r in ran):
            results.append(
                RuleResult(
                    rule, "all methods", policy.not_evaluated, f"not evaluated: {rule} could not run on any method"
                )
            )
    return GateResult(results)


def _level_rule(rule: str, level: Level, method: str, figures: dict, policy: MethodPolicy, label: str) -> RuleResult:
    share = figures.get("bottom_share_pct")
    if share is not None and share < policy.min_bottom_share_pct:
        return RuleResult(
            rule,
            method,
            "pass",
            f"not actionable: bottom-cohort share {share:.2f}% is below the policy's minimum "
            f"{policy.min_bottom_share_pct:g}% ({label})",
        )
    if rule == "max-wer-gap-pct":
        value, how = _judged(figures.get("wer_gap_pct"), figures.get("wer_gap_ci"), policy.on)
        if value is None:
            return RuleResult(rule, method, "skip", "the WER gap is undefined (top cohort WER is 0)")
        text = (
            f"WER gap {figures['wer_gap_pct']:.1f}%{_ci(figures.get('wer_gap_ci'), '%')} "
            f"between {figures.get('bottom_description')} "
            f"and {figures.get('top_description')} ({label}); judged on the {how} {value:.1f}%"
        )
    else:
        ci = figures.get("bottom_wer_ci")
        if not ci or ci[0] is None:  # a report written before the bottom cohort had its own interval
            bottom = _bottom_cohort(figures)
            ci = bottom.get("wer_ci") if bottom else None
        value, how = _judged(figures.get("bottom_wer"), ci, policy.on)
        if value is None:
            return RuleResult(rule, method, "skip", "no bottom-cohort WER")
        text = (
            f"bottom-cohort WER {100 * figures['bottom_wer']:.2f}%{_ci(ci, '%', 100)} "
            f"({figures.get('bottom_description')}; {label}); judged on the {how} {100 * value:.2f}%"
        )
        return RuleResult(rule, method, level.judge(value), f"{text}; limits: {level.describe(100, '%')}", value)
    outcome = level.judge(value)
    return RuleResult(rule, method, outcome, f"{text}; limits: {level.describe(unit='%')}", value)


def _compatibility(report: dict, baseline: dict) -> list[RuleResult]:
    """A warning naming what differs between the audit and its baseline (methods, parameters, version)."""
    differences = []
    if report.get("fairaudit_version") != baseline.get("fairaudit_version"):
        differences.append(
            f"fairaudit version {baseline.get('fairaudit_version')} -> {report.get('fairaudit_version')}"
        )
    if set(report.get("methods", {})) != set(baseline.get("methods", {})):
        differences.append(
            f"methods {', '.join(sorted(baseline.get('methods', {})))} -> "
            f"{', '.join(sorted(report.get('methods', {})))}"
        )
    ignore = {"seed", "cohorts", "pairing"}
    before, after = baseline.get("parameters", {}), report.get("parameters", {})
    changed = sorted(k for k in set(before) | set(after) if k not in ignore and before.get(k) != after.get(k))
    if changed:
        differences.append("parameters " + ", ".join(f"{k} {before.get(k)!r} -> {after.get(k)!r}" for k in changed))
    if not differences:
        return []
    return [
        RuleResult("baseline-compatibility", "all methods", "warn", "the baseline differs: " + "; ".join(differences))
    ]


Z95 = 1.959963984540054


def _normal_change(before: float | None, after: float | None, ci_before, ci_after, scale: float) -> tuple:
    """Change after - before (x ``scale``) and an approximate 95% interval from two independent
    intervals (normal approximation: half-width / 1.96 = standard error)."""
    if before is None or after is None:
        return None, [None, None]
    change = scale * (after - before)
    ses = []
    for ci in (ci_before, ci_after):
        if not ci or ci[0] is None or ci[1] is None:
            return change, [None, None]
        ses.append(scale * (ci[1] - ci[0]) / (2 * Z95))
    half = Z95 * math.hypot(*ses)
    return change, [change - half, change + half]


def comparison_from_reports(before: dict, after: dict) -> dict:
    """Per method whose cohort definitions agree in both reports: each cohort's WER change and the
    gap's change, with approximate unpaired intervals (the reports hold no per-speaker data)."""
    methods = {}
    for name, now in after.get("methods", {}).items():
        then = before.get("methods", {}).get(name)
        if then is None or not now.get("definition") or _cells(now) != _cells(then):
            continue
        now_f = now["holdout"] if now.get("holdout") else now
        then_f = then["holdout"] if then.get("holdout") else then
        previous = {c["id"]: c for c in then_f["cohorts"]}
        cohorts = []
        for cohort in now_f["cohorts"]:
            old = previous.get(cohort["id"])
            if old is None or cohort.get("wer") is None or old.get("wer") is None:
                continue
            change, ci = _normal_change(old["wer"], cohort["wer"], old.get("wer_ci"), cohort.get("wer_ci"), 100.0)
            cohorts.append(
                {
                    "id": cohort["id"],
                    "description": cohort["description"],
                    "wer_before": old["wer"],
                    "wer_after": cohort["wer"],
                    "change_points": change,
                    "change_ci": ci,
                    "suppressed": False,
                }
            )
        gap_change, gap_ci = _normal_change(
            then_f.get("wer_gap_pct"), now_f.get("wer_gap_pct"), then_f.get("wer_gap_ci"), now_f.get("wer_gap_ci"), 1.0
        )
        methods[name] = {
            "cohorts": cohorts,
            "gap_before_pct": then_f.get("wer_gap_pct"),
            "gap_after_pct": now_f.get("wer_gap_pct"),
            "gap_change_points": gap_change,
            "gap_change_ci": gap_ci,
            "bottom": list(then_f.get("bottom_cohorts") or []),
        }
    return {"pairing": "unpaired: both audit reports, intervals combined by normal approximation", "methods": methods}


def _cells(method: dict) -> list:
    """A method's cohort definitions without their wording (what decides who is in which cohort)."""
    definition = method.get("definition") or {}
    return [{k: v for k, v in cell.items() if k != "description"} for cell in definition.get("cells", [])] + [
        {k: v for k, v in definition.items() if k not in ("cells", "rule", "withheld_cells")}
    ]


def _regression_rule(
    rule: str, level: Level, method: str, change: dict, pairing: str, policy: MethodPolicy
) -> RuleResult:
    """Judge the interval of a change on the same cohorts: its lower bound (default) or the point."""
    relative = rule.endswith("-pct")
    how_pairing = pairing.split(":")[0] if pairing else "unpaired"
    if rule.startswith("max-gap"):
        before, point, ci = (
            change.get("gap_before_pct"),
            change.get("gap_change_points"),
            change.get("gap_change_ci") or [None, None],
        )
        if point is None or before is None:
            return RuleResult(rule, method, "skip", "the WER gap is undefined in the baseline or the new audit")
        if relative and before < MIN_RELATIVE_BASE:
            return RuleResult(
                rule,
                method,
                policy.not_evaluated,
                (
                    f"refused: the baseline WER gap is {before:.1f}%, too close to zero (or below) "
                    "for a relative rule; use max-gap-increase-points"
                ),
            )
        scale = 100.0 / before if relative else 1.0
        value, how = _judged(scale * point, [None if v is None else scale * v for v in ci], policy.on)
        assert value is not None  # a point estimate was given
        unit = "% of the baseline gap" if relative else " gap points"
        text = (
            f"WER gap {before:.1f}% -> {change['gap_after_pct']:.1f}%: change {scale * point:+.1f}{unit}"
            f"{_interval(ci, scale)} ({how_pairing}); judged on the {how} {value:+.1f}"
        )
        return RuleResult(rule, method, level.judge(value), f"{text}; limits: {level.describe(unit=unit)}", value)
    worst, worst_text = -math.inf, ""
    unit = "% of its baseline WER" if relative else " WER points"
    for cohort in change["cohorts"]:
        if cohort.get("suppressed") or cohort.get("change_points") is None:
            continue
        base = 100 * cohort["wer_before"]
        if relative and base < MIN_RELATIVE_BASE:
            continue  # a WER near zero has no meaningful relative change
        scale = 100.0 / base if relative else 1.0
        ci = cohort.get("change_ci") or [None, None]
        value, how = _judged(scale * cohort["change_points"], [None if v is None else scale * v for v in ci], policy.on)
        assert value is not None  # a point estimate was given
        if value > worst:
            worst = value
            worst_text = (
                f"cohort {cohort['id']} ({cohort['description']}): "
                f"WER {base:.2f}% -> {100 * cohort['wer_after']:.2f}%, "
                f"change {scale * cohort['change_points']:+.2f}{unit}{_interval(ci, scale)} ({how_pairing}); "
                f"judged on the {how} {value:+.2f}"
            )
    if worst == -math.inf:
        return RuleResult(rule, method, "skip", "no cohort has a WER in both the baseline and the new audit")
    return RuleResult(
        rule, method, level.judge(worst), f"largest change: {worst_text}; limits: {level.describe(unit=unit)}", worst
    )


def _interval(ci: list, scale: float) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f" [{scale * ci[0]:+.1f}, {scale * ci[1]:+.1f}]"


def _judged(point: float | None, ci: list | None, on: str) -> tuple[float | None, str]:
    """The figure a limit is compared with: the interval's lower bound, or the point estimate."""
    if on == "lower" and ci and ci[0] is not None:
        return ci[0], "95% interval's lower bound"
    return point, "point estimate" if on == "point" else "point estimate (no interval computed)"


def _bottom_cohort(figures: dict) -> dict | None:
    ids = figures.get("bottom_cohorts") or []
    if len(ids) != 1:
        return None
    return next((c for c in figures["cohorts"] if c["id"] == ids[0]), None)


def _ci(ci: list | None, unit: str, scale: float = 1.0) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f" [{scale * ci[0]:.1f}{unit}, {scale * ci[1]:.1f}{unit}]"
