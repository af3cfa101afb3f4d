"""Figures: one method's measured cohorts and headline numbers on one set of speakers (data only).

The statistics fill them (:mod:`fairaudit.stats.measure`); reports and renderers read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

COHORT_FIELDS = (
    "id",
    "description",
    "rank",
    "speakers",
    "utterances",
    "ref_words",
    "errors",
    "wer",
    "wer_ci",
    "speaker_share_pct",
    "utterance_share_pct",
    "word_share_pct",
    "eligible",
    "suppressed",
)


@dataclass
class Figures:
    """Headline figures of one method on one set of speakers (discovery or held-out)."""

    cohorts: pd.DataFrame  # one row per cohort, columns as COHORT_FIELDS (wer_ci_low/high split)
    bottom: list[str]
    top: list[str]
    wer_gap_pct: float | None
    wer_gap_ci: list[float | None]
    bottom_share_pct: float | None
    bottom_share_ci: list[float | None]
    bottom_utterance_share_pct: float | None
    bottom_word_share_pct: float | None
    bottom_wer: float | None
    top_wer: float | None
    p_value: float | None
    speakers: int
    assigned_speakers: int
    overall_wer: float | None = None  # pooled over every assigned speaker
    reported_wer: float | None = None  # pooled over the cohorts not suppressed (safe to publish)
    #: The smallest bottom-vs-top gap (%) this many speakers could detect at alpha with 80% power,
    #: and (with --target-gap) the extra bottom-cohort speakers that gap needs (SPEC 10).
    detectable_gap_pct: float | None = None
    speakers_needed: float | None = None
    #: --adjust: rate ratios of bottom vs top, raw and adjusted for the named covariates.
    adjusted: dict | None = None
    #: 95% interval of the bottom cohort's pooled WER (the union of its cells), as for a cohort's.
    bottom_wer_ci: list[float | None] = field(default_factory=lambda: [None, None])
    #: Why the bottom and top figures are withheld for privacy (``fairaudit.privacy``), else None.
    withheld: str | None = None
