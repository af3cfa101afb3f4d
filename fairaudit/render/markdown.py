"""The Markdown summary (SPEC 6, ``--markdown FILE``): a short table fit for a pull-request comment.

One row per method (and a second, labelled row for held-out figures), then one line of
definitions. Every user-supplied string is escaped so it renders as text: Markdown's special
characters get a backslash and ``<``, ``>``, ``&`` become HTML entities, so no raw HTML, link,
emphasis or table cell break can be injected. Figures come from ``result.to_dict()``; nothing
is computed here.
"""

from __future__ import annotations

from fairaudit.render import format as fmt
from fairaudit.render import safe_text
from fairaudit.report.result import AuditResult

VERDICT_MARK = {"disparity": "**DISPARITY**", "no evidence": "no evidence", "insufficient data": "*insufficient data*"}
DEFINITIONS = (
    "WER = errors / reference words, pooled per cohort; WER gap = 100 x (WER(bottom) - WER(top)) / WER(top); "
    "bottom-cohort share = 100 x speakers in the bottom cohort / all assigned speakers; "
    "[95% interval] from a speaker-level bootstrap; p-value from a search-aware permutation test."
)


def escape(text: object) -> str:
    """``text`` as literal Markdown text on one line (the shared Markdown escaper)."""
    return safe_text.markdown(text)


def render_markdown(result: AuditResult) -> str:
    """A Markdown summary of every method's verdict and headline figures."""
    data = result.to_dict()
    source = data["input"].get("path") or "data frame"
    lines = [
        f"### fairaudit {escape(data['fairaudit_version'])}: {escape(source)}",
        "",
        f"{data['input']['utterances']:,} utterances from {data['input']['speakers']:,} speakers; seed {data['seed']}.",
        "",
        "| method | verdict | WER gap [95% CI] | bottom cohort (WER) | top cohort (WER) "
        "| bottom-cohort share [95% CI] | p-value |",
        "|---|---|---:|---|---|---:|---:|",
    ]
    for key, method in data["methods"].items():
        sets = [("", method)]
        if method.get("holdout") is not None:
            sets = [(" (discovery)", method), (" (held-out)", method["holdout"])]
        for label, figures in sets:
            verdict = "" if label == " (held-out)" else VERDICT_MARK.get(method["verdict"], escape(method["verdict"]))
            lines.append(
                "| "
                + " | ".join(
                    [
                        escape(key) + label + (" (utterances)" if method.get("cohort_level") == "utterance" else ""),
                        verdict,
                        _with_ci(fmt.pct(figures["wer_gap_pct"]), fmt.interval(*figures["wer_gap_ci"])),
                        _cohort(figures.get("bottom"), figures.get("bottom_description"), figures.get("bottom_wer")),
                        _cohort(figures.get("top"), figures.get("top_description"), figures.get("top_wer")),
                        _with_ci(fmt.pct(figures["bottom_share_pct"]), fmt.interval(*figures["bottom_share_ci"])),
                        fmt.p_value(figures.get("p_value")),
                    ]
                )
                + " |"
            )
    lines += ["", DEFINITIONS]
    for key, method in data["methods"].items():
        adjusted = method.get("adjusted")
        if adjusted and "sentence" in adjusted:
            lines += ["", f"**{escape(key)}**: {escape(adjusted['sentence'])}"]
        if method["verdict"] != "disparity" and method.get("detectable_gap_pct") is not None:
            lines += ["", f"**{escape(key)}**: {escape(method['verdict_reason'])}."]
    notes = [escape(note) for note in data.get("notes") or []]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes)]
    return "\n".join(lines) + "\n"


def _with_ci(value: str, interval: str) -> str:
    return f"{value} {interval}" if interval else value


def _cohort(cohort_id: str | None, description: str | None, wer: float | None) -> str:
    if not cohort_id:
        return "none"
    text = safe_text.markdown_cell(cohort_id)
    if description and description != cohort_id:
        text += f": {safe_text.markdown_cell(description)}"
    return f"{text} ({fmt.wer(wer)})"
