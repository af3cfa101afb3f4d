"""Terminal output (SPEC 6): per method a ranked cohort table and one headline line."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from fairaudit.render import format as fmt
from fairaudit.render.safe_text import shortened
from fairaudit.render.safe_text import terminal as escape
from fairaudit.render.safe_text import terminal_cell as cell
from fairaudit.report.result import (
    SUPPRESSED_DESCRIPTION,
    AuditResult,
    Figures,
    MethodResult,
    public_ids,
    published_order,
)

VERDICT_STYLE = {"disparity": "bold red", "no evidence": "green", "insufficient data": "yellow"}


def headline(result: MethodResult, figures: Figures | None = None) -> str:
    """ "WER gap 41.7% [CI] between <bottom> and <top>; bottom-cohort share 0.8%" plus the verdict."""
    figures = figures or result.discovery
    if figures.wer_gap_pct is None:
        return f"{result.verdict}: {result.verdict_reason}"
    gap_ci = fmt.interval(*figures.wer_gap_ci)
    share_ci = fmt.interval(*figures.bottom_share_ci)
    return (
        f"WER gap {fmt.pct(figures.wer_gap_pct)}{' ' + gap_ci if gap_ci else ''} between "
        f"{shortened(result.bottom_label(figures))} ({shortened(result.describe(figures.bottom, figures))}, "
        f"WER {fmt.wer(figures.bottom_wer)}) and {shortened(result.top_label(figures))} "
        f"({shortened(result.describe(figures.top, figures))}, WER {fmt.wer(figures.top_wer)}); "
        f"bottom-cohort share {fmt.pct(figures.bottom_share_pct)}{' ' + share_ci if share_ci else ''} of speakers "
        f"({fmt.pct(figures.bottom_utterance_share_pct)} of utterances, "
        f"{fmt.pct(figures.bottom_word_share_pct)} of words)"
    )


def cohort_table(result: MethodResult, figures: Figures, title: str, min_report_speakers: int) -> Table:
    """The ranked cohort table of one method on one set of speakers (WER in % of reference words)."""
    table = Table(title=title, title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("cohort", min_width=24, ratio=3)
    table.add_column("role")
    for column in ("speakers", "share", "utts", "words", "WER", "95% CI"):
        table.add_column(column, justify="right", no_wrap=True)
    has_p = "p_value_bh" in figures.cohorts.columns
    if has_p:
        table.add_column("p (BH)", justify="right")
    # Suppressed cohorts last, unranked and undescribed: their rank or geometry would reveal them.
    rows = published_order(figures)
    public = public_ids(figures)
    for visible_rank, row in enumerate(rows, start=1):
        role = (
            "bottom"
            if row["id"] in figures.bottom
            else "top"
            if row["id"] in figures.top and len(figures.top) == 1
            else "ineligible"  # fewer than --min-speakers: shown, but never chosen as bottom or top
            if not row["suppressed"] and not row["eligible"]
            else ""
        )
        if row["suppressed"]:
            name = f"{cell(public[str(row['id'])])}\n[dim]{SUPPRESSED_DESCRIPTION}[/dim]"
            cells = ["", name, role, "", "", "", "", "suppressed", ""]
        else:
            name = f"{cell(row['id'])}\n[dim]{cell(row['description'])}[/dim]"
            cells = [
                str(visible_rank),
                name,
                role,
                f"{row['speakers']:,}",
                fmt.pct(row["speaker_share_pct"]),
                f"{row['utterances']:,}",
                f"{row['ref_words']:,}",
                fmt.wer(_none(row["wer"])),
                fmt.interval(_none(row["wer_ci_low"]), _none(row["wer_ci_high"]), fmt.wer),
            ]
        if has_p:
            cells.append("" if row["suppressed"] else fmt.p_value(_none(row["p_value_bh"])))
        table.add_row(*cells, style="bold" if role == "bottom" else None)
    return table


def anatomy_table(figures: Figures, target_gap: float | None) -> Table | None:
    """Per reported cohort: error anatomy (when the log has it), the labelled mean of per-utterance
    WERs, the detectable gap and, with --target-gap, the speakers needed; None when nothing to show."""
    rows = [r for r in figures.cohorts.to_dict("records") if not r["suppressed"]]
    has_anatomy = any(_none(r.get("substitution_rate")) is not None for r in rows)
    has_power = any(_none(r.get("detectable_gap_pct")) is not None for r in rows)
    target_gap = target_gap if has_power else None  # utterance-level cohorts have no power figures
    if not rows or not (has_anatomy or target_gap):
        return None
    table = Table(
        title="error anatomy and power (rates per reference word; * mean of per-utterance WERs, not the WER)",
        title_justify="left",
    )
    table.add_column("cohort", ratio=3)
    columns = ["subst.", "del.", "ins.", "empty hyp.", "mean utt WER*"] if has_anatomy else []
    columns += ["detectable gap"] + ([f"speakers for {target_gap:g}%"] if target_gap else [])
    for column in columns:
        table.add_column(column, justify="right", no_wrap=True)
    for row in sorted(rows, key=lambda r: r["rank"]):
        cells = [cell(row["id"])]
        if has_anatomy:
            cells += [fmt.wer(_none(row[k])) for k in ("substitution_rate", "deletion_rate", "insertion_rate")]
            cells += [fmt.pct(_none(row["empty_hypothesis_pct"])), fmt.wer(_none(row["mean_utterance_wer"]))]
        cells.append(fmt.pct(_none(row["detectable_gap_pct"])))
        if target_gap:
            needed = _none(row["speakers_needed"])
            cells.append("" if needed is None else f"+{int(needed):,}")
        table.add_row(*cells)
    return table


def adjusted_line(figures: Figures) -> str | None:
    """The --adjust result in one line: rate ratios raw and adjusted with intervals, and the sentence."""
    adjusted = figures.adjusted
    if not adjusted:
        return None
    if "error" in adjusted:
        return f"adjusted for {', '.join(adjusted['covariates'])}: not computed ({adjusted['error']})"
    raw, adj = adjusted["raw"], adjusted["adjusted"]
    return (
        f"rate ratio bottom vs top (errors per reference word): raw {raw['rate_ratio']:.2f} "
        f"[{raw['ci'][0]:.2f}, {raw['ci'][1]:.2f}], adjusted for {', '.join(adjusted['covariates'])} "
        f"{adj['rate_ratio']:.2f} [{adj['ci'][0]:.2f}, {adj['ci'][1]:.2f}] ({adjusted['speakers']:,} speakers). "
        + adjusted["sentence"]
    )


def print_audit(result: AuditResult, console: Console | None = None) -> None:
    """Print every method's tables, headline and verdict (140 columns wide when not a terminal)."""
    console = console or Console()
    if not console.is_terminal and console.width < 140:
        console.width = 140  # files and pipes have no width: do not squeeze the tables to 80
    source = result.input.get("path") or "data frame"
    console.print(
        f"[bold]fairaudit {result.version}[/bold]: {result.input['utterances']:,} utterances from "
        f"{result.input['speakers']:,} speakers in {escape(str(source))}"
    )
    for note in result.notes:
        console.print(f"note: {escape(note)}")
    conflicts = {k: v for k, v in result.speaker_conflicts.items() if v}
    if conflicts:
        console.print(
            "speakers with conflicting metadata (most frequent value used): "
            + ", ".join(f"{escape(k)} {v:,}" for k, v in conflicts.items())
        )
    for name, method in result.methods.items():
        console.rule(f"[bold]{escape(name)}")
        minimum = result.parameters.get("min_report_speakers", 10)
        console.print(cohort_table(method, method.discovery, "discovery" if method.holdout else "cohorts", minimum))
        if method.holdout is not None:
            console.print(
                cohort_table(
                    method, method.holdout, "held-out (re-measured on speakers not used for discovery)", minimum
                )
            )
        unassigned = ", ".join(
            f"{escape(reason)}: {count:,}" for reason, count in method.partition.unassigned_reasons.items()
        )
        if unassigned:
            console.print(f"unassigned speakers: {unassigned}")
        if method.cohort_level == "utterance":
            console.print(fmt.UTTERANCE_LEVEL)
        extra = anatomy_table(method.discovery, result.parameters.get("target_gap"))
        if extra is not None:
            console.print(extra)
        label = "discovery: " if method.holdout is not None else ""
        console.print(label + escape(headline(method, method.discovery)))
        adjusted = adjusted_line(method.discovery)
        if adjusted:
            console.print(escape(adjusted))
        if method.holdout is not None:
            console.print("held-out: " + escape(headline(method, method.holdout)))
        style = VERDICT_STYLE.get(method.verdict, "")
        console.print(f"verdict: [{style}]{method.verdict}[/{style}] ({escape(method.verdict_reason)})")


def _none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
