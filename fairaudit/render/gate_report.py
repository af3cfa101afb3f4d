"""Gate outputs: JUnit XML for CI dashboards and a Markdown pull-request comment."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from fairaudit.gate.judge import GateResult
from fairaudit.gate.policy import LEVEL_RULES, REGRESSION_RULES
from fairaudit.io.outputs import write_atomically
from fairaudit.render import safe_text

RULE_TEXT = {
    **LEVEL_RULES,
    **REGRESSION_RULES,
    "insufficient-data": "what an 'insufficient data' verdict means for the build",
}
MARKER = {"pass": "pass", "warn": "**WARN**", "fail": "**FAIL**", "skip": "skipped"}


def junit_xml(gate: GateResult, report: dict) -> str:
    """One test case per rule and method; failures (and warnings, as system-out) carry the figures."""
    suite = ET.Element(
        "testsuite",
        name="fairaudit gate",
        tests=str(len(gate.results)),
        failures=str(sum(r.outcome == "fail" for r in gate.results)),
        skipped=str(sum(r.outcome == "skip" for r in gate.results)),
        errors="0",
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("fairaudit_version", report.get("fairaudit_version")),
        ("input_sha256", (report.get("input") or {}).get("sha256")),
    ):
        ET.SubElement(properties, "property", name=name, value=safe_text.xml(value))
    for result in gate.results:
        method, message = safe_text.xml(result.method), safe_text.xml(result.message)
        case = ET.SubElement(suite, "testcase", classname=f"fairaudit.gate.{method}", name=f"{result.rule} [{method}]")
        if result.outcome == "fail":
            ET.SubElement(case, "failure", message=message, type="FairnessGateFailure").text = message
        elif result.outcome == "skip":
            ET.SubElement(case, "skipped", message=message)
        else:
            ET.SubElement(case, "system-out").text = f"{result.outcome.upper()}: {message}"
    suites = ET.Element("testsuites", name="fairaudit")
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def gate_markdown(gate: GateResult, report: dict) -> str:
    """A short pull-request comment: overall outcome, then one row per rule and method."""
    lines = [
        f"### fairaudit gate: {MARKER[gate.outcome] if gate.outcome != 'pass' else '**PASS**'}",
        "",
        "| method | verdict | rule | outcome | figures |",
        "|---|---|---|---|---|",
    ]
    for result in gate.results:
        verdict = report["methods"].get(result.method, {}).get("verdict", "")
        lines.append(
            f"| {md(result.method)} | {md(verdict)} | {md(result.rule)} | "
            f"{MARKER[result.outcome]} | {md(result.message)} |"
        )
    lines += [
        "",
        "WER gap = 100 x (WER(bottom) - WER(top)) / WER(top); "
        "bottom-cohort share = % of speakers in the bottom cohort; "
        'limits are judged on the 95% interval\'s lower bound unless the policy says `on = "point"`.',
    ]
    return "\n".join(lines) + "\n"


def print_gate(gate: GateResult, console) -> None:
    """The gate's outcome per rule and method as a terminal table, then the overall outcome."""
    from rich.table import Table

    escape = safe_text.terminal
    if not console.is_terminal and console.width < 140:
        console.width = 140  # files and CI logs have no width: do not squeeze the table to 80
    table = Table(title="fairaudit gate", title_justify="left")
    table.add_column("method", no_wrap=True)
    table.add_column("rule", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("figures", overflow="fold", ratio=1)
    style = {"fail": "bold red", "warn": "yellow", "pass": "green", "skip": "dim"}
    for result in gate.results:
        table.add_row(
            escape(result.method), result.rule, f"[{style[result.outcome]}]{result.outcome}[/]", escape(result.message)
        )
    console.print(table)
    if not gate.results:
        console.print("The policy has no rules: nothing to judge.")
    console.print(f"gate: [{style[gate.outcome]}]{gate.outcome.upper()}[/] (exit code {gate.exit_code})")


def md(text: object) -> str:
    """A user string as literal Markdown (the escaper shared with the audit's Markdown summary)."""
    return safe_text.markdown(text)


def write(path: str | Path, text: str) -> None:
    write_atomically(path, text)
