"""Renderers of a comparison of two systems (terminal and Markdown); they compute nothing."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from fairaudit.render import format as fmt
from fairaudit.render.markdown import escape as md_escape
from fairaudit.render.safe_text import markdown_cell, terminal_cell
from fairaudit.render.safe_text import terminal as escape


def _points(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f}"


def _interval(ci: list[float | None]) -> str:
    low, high = ci
    return "" if low is None or high is None else f"[{low:+.2f}, {high:+.2f}]"


def _pairing_line(data: dict) -> str:
    unmatched = data["unmatched_utterances"]
    holdout = (data.get("parameters") or {}).get("holdout")
    held = (
        f"; cohorts discovered on the other speakers, both systems measured on the {holdout:g} held out (--holdout)"
        if holdout
        else ""
    )
    return (
        f"{data['pairing']}; {data['matched_utterances']:,} utterances matched, unmatched: "
        f"{unmatched['baseline']:,} in the baseline, {unmatched['new']:,} in the new log; "
        f"cohorts: {data['cohorts_from']}{held}"
    )


def print_comparison(data: dict, console: Console | None = None) -> None:
    """Per method: each cohort's WER before and after, the change with its 95% interval, the verdict."""
    console = console or Console()
    if not console.is_terminal and console.width < 140:
        console.width = 140
    console.print(escape(_pairing_line(data)))
    for name, method in data["methods"].items():
        console.rule(f"[bold]{escape(name)}")
        table = Table(title="change in WER (new - baseline), percentage points", title_justify="left")
        for column in ("cohort", "speakers", "WER before", "WER after", "change", "95% CI", "P(better)", "verdict"):
            table.add_column(column, justify="left" if column in ("cohort", "verdict") else "right")
        for cohort in method["cohorts"]:
            if cohort["suppressed"]:
                table.add_row(terminal_cell(cohort["id"]), "", "", "", "", "", "", "suppressed")
                continue
            name_cell = f"{terminal_cell(cohort['id'])}\n[dim]{terminal_cell(cohort['description'])}[/dim]"
            better = "" if cohort["probability_improved"] is None else f"{cohort['probability_improved']:.2f}"
            table.add_row(
                name_cell,
                f"{cohort['speakers']:,}",
                fmt.wer(cohort["wer_before"]),
                fmt.wer(cohort["wer_after"]),
                _points(cohort["change_points"]),
                _interval(cohort["change_ci"]),
                better,
                cohort["verdict"],
            )
        console.print(table)
        console.print(escape(gap_line(method)))
        before, after = method["summary_before"], method["summary_after"]
        console.print(
            f"cohort WERs, before -> after: mean {fmt.wer(before['mean_wer'])} -> {fmt.wer(after['mean_wer'])}, "
            f"max {fmt.wer(before['max_wer'])} -> {fmt.wer(after['max_wer'])}, "
            f"spread {fmt.wer(before['spread'])} -> {fmt.wer(after['spread'])}"
        )


def gap_line(method: dict) -> str:
    """One sentence on the gap between the stored bottom and top cohorts, before and after."""
    if not method["bottom"] or not method["top"]:
        return "no WER gap to compare: the cohorts have no bottom cohort for this method (see its audit's verdict)"
    bottom = " + ".join(method["bottom"])
    return (
        f"WER gap of {bottom} vs {'the rest' if len(method['top']) > 1 else ' + '.join(method['top'])}: "
        f"{fmt.pct(method['gap_before_pct'])} -> {fmt.pct(method['gap_after_pct'])}, change "
        f"{_points(method['gap_change_points'])} points {_interval(method['gap_change_ci'])}: {method['gap_verdict']}"
    )


def comparison_markdown(data: dict) -> str:
    """A short pull-request comment: per method the gap change and the cohorts that got worse."""
    lines = ["## fairaudit: baseline vs new model", "", md_escape(_pairing_line(data)), ""]
    for name, method in data["methods"].items():
        worse = [c for c in method["cohorts"] if c["verdict"] == "worse"]
        lines += [f"### {md_escape(name)}", "", md_escape(gap_line(method)), ""]
        lines += ["| cohort | WER before | WER after | change (points) [95% CI] | verdict |", "|---|---|---|---|---|"]
        for cohort in method["cohorts"]:
            if cohort["suppressed"]:
                continue
            lines.append(
                f"| {markdown_cell(cohort['id'])} | {fmt.wer(cohort['wer_before'])} | {fmt.wer(cohort['wer_after'])} | "
                f"{_points(cohort['change_points'])} {_interval(cohort['change_ci'])} | {cohort['verdict']} |"
            )
        lines += ["", f"{len(worse)} cohort(s) worse." if worse else "No cohort is worse.", ""]
    return "\n".join(lines)


def comparison_html(data: dict) -> str:
    """The self-contained HTML page of a comparison (tables and one change chart per method)."""
    from fairaudit.render.charts import change_by_cohort
    from fairaudit.render.html import environment, method_title

    methods = []
    for name, method in data["methods"].items():
        before, after = method["summary_before"], method["summary_after"]
        methods.append(
            {
                "title": method_title(name),
                "gap_line": gap_line(method),
                "mean": f"{fmt.wer(before['mean_wer'])} -> {fmt.wer(after['mean_wer'])}",
                "max": f"{fmt.wer(before['max_wer'])} -> {fmt.wer(after['max_wer'])}",
                "spread": f"{fmt.wer(before['spread'])} -> {fmt.wer(after['spread'])}",
                "cohorts": [
                    dict(
                        c,
                        before=fmt.wer(c["wer_before"]),
                        after=fmt.wer(c["wer_after"]),
                        change=_points(c["change_points"]),
                        ci=_interval(c["change_ci"]),
                        css={"worse": "bottom", "better": "top"}.get(c["verdict"], ""),
                        better="" if c["probability_improved"] is None else f"{c['probability_improved']:.2f}",
                    )
                    for c in method["cohorts"]
                ],
                "chart": change_by_cohort(method["cohorts"]),
            }
        )
    return (
        environment()
        .get_template("comparison.html.j2")
        .render(
            title="fairaudit comparison",
            version=data["fairaudit_version"],
            baseline=data["baseline"].get("path") or "data frame",
            new=data["new"].get("path") or "data frame",
            pairing=data["pairing"],
            pairing_short=data["pairing"].split(":")[0],
            cohorts_from=data["cohorts_from"],
            methods=methods,
            min_report_speakers=data["parameters"].get("min_report_speakers", 10),
        )
    )
