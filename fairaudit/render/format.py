"""Number formatting shared by the text renderers, so every output shows figures the same way."""

from __future__ import annotations


def pct(value: float | None, digits: int = 1) -> str:
    """A percentage such as "41.7%", or "n/a" when undefined."""
    return "n/a" if value is None else f"{value:.{digits}f}%"


def wer(value: float | None) -> str:
    """A WER fraction shown as a percentage of words, e.g. 0.1234 -> "12.34%"."""
    return "n/a" if value is None else f"{100 * value:.2f}%"


def interval(low: float | None, high: float | None, fmt=pct) -> str:
    """A 95% interval such as "[20.1%, 36.0%]", or "" when not computed."""
    if low is None or high is None:
        return ""
    return f"[{fmt(low)}, {fmt(high)}]"


def p_value(value: float | None) -> str:
    return "not tested" if value is None else f"{value:.3g}"


#: Said beside every table of utterance-level cohorts (``--by`` on a column that varies within speakers).
UTTERANCE_LEVEL = (
    "utterance-level cohorts: a cohort is the utterances with that value; "
    "a speaker counts in every cohort they have utterances in"
)
